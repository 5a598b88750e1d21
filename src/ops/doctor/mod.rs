//! `abssctl doctor`: every check of ADR-029 as a probe of the one probe engine
//! (`ops::probe`), at most eight at once, each against its own deadline; the findings add
//! up to one report (`domain::doctor`), saved to `<state_dir>/doctor.json` for `instance
//! list`, the confconsole menu and the support bundle, and logged to the journal.
//!
//! Facts that every per-instance probe needs (the registry, systemd's view of the units)
//! are read first, once; then each probe owns copies of what it reads, as the engine
//! requires ('static, read-only). `--fix` (`fix.rs`) repairs only the safe findings, under
//! the global lock, and runs the probes again so the report shows what is left.

mod env;
mod fix;
mod fs;
mod instances;

use crate::domain::doctor::{self as model, Category, Finding, Status};
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State};
use crate::error::{Failure, Kind};
use crate::ops::probe::{self, Outcome, Probe};
use crate::ops::{Ctx, Report};
use crate::sys;
use crate::sys::systemd::UnitStatus;
use anyhow::Result;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

pub use fix::Fix;

/// The packaged daily doctor run (`systemd/abssctl-doctor.service`).
pub const DOCTOR_UNIT: &str = "abssctl-doctor.service";
/// At most this many probes at once (ADR-029).
pub const PARALLEL: usize = 8;
/// A probe that runs a program (`nginx -t`, `node --version`) or asks systemd.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(5);
/// A probe that only reads local files.
pub const FILE_TIMEOUT: Duration = Duration::from_secs(5);
/// App health: TCP connect (and each read) 1 s, the whole probe 3 s, 2 retries.
pub const HEALTH_CONNECT: Duration = Duration::from_secs(1);
pub const HEALTH_TOTAL: Duration = Duration::from_secs(3);
pub const HEALTH_RETRIES: u32 = 2;

/// What the operator asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these categories (empty: all).
    pub only: Vec<Category>,
    pub fix: bool,
    /// Override of every probe's timeout (`--timeout-ms`).
    pub timeout: Option<Duration>,
    /// Override of the app health retries (`--retries`).
    pub retries: Option<u32>,
}

/// What every probe may read, read once before the probes run.
#[derive(Debug)]
pub struct Facts {
    pub layout: Layout,
    /// The registry, or why it could not be read.
    pub state: std::result::Result<State, String>,
    /// systemd's view of each instance unit; Err: why systemd could not be asked.
    pub live: std::result::Result<Vec<UnitStatus>, String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
}

impl Facts {
    pub fn instances(&self) -> &[InstanceEntry] {
        self.state
            .as_ref()
            .map(|s| s.instances.as_slice())
            .unwrap_or(&[])
    }
    /// systemd's status of an instance's unit (None: systemd not reachable).
    pub fn unit(&self, name: &str) -> Option<UnitStatus> {
        let unit = Layout::unit_name(name);
        self.live.as_ref().ok().map(|l| {
            l.iter()
                .find(|s| s.unit == unit)
                .cloned()
                .unwrap_or_default()
        })
    }
    fn timeout(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
    }
}

/// One probe before it runs: its id and category (for a timed-out or panicked answer) and
/// the work, which returns one finding or several (`disk.*`).
#[derive(Debug)]
pub struct Check {
    pub id: String,
    pub category: Category,
    pub probe: Probe<Vec<Finding>>,
}

impl Check {
    pub fn new(
        id: impl Into<String>,
        category: Category,
        timeout: Duration,
        run: impl FnOnce() -> Vec<Finding> + Send + 'static,
    ) -> Check {
        let id = id.into();
        Check {
            probe: Probe::new(id.clone(), timeout, run),
            id,
            category,
        }
    }
    /// A probe with one finding.
    pub fn one(
        id: impl Into<String>,
        category: Category,
        timeout: Duration,
        run: impl FnOnce() -> Finding + Send + 'static,
    ) -> Check {
        Check::new(id, category, timeout, move || vec![run()])
    }
}

/// The result of `abssctl doctor` (`--json`: the report, plus the fixes with `--fix`).
#[derive(Debug, Clone, Serialize)]
pub struct DoctorResult {
    #[serde(flatten)]
    pub report: model::Report,
    /// With `--fix`: what was repaired (or, with --dry-run, would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixes: Option<Vec<Fix>>,
    #[serde(skip)]
    pub dry_run: bool,
}

/// Read the shared facts: the registry, then systemd's view of every unit in ONE batch,
/// itself a probe (a hung bus costs its timeout, once).
fn gather(ctx: &Ctx, opts: &Options) -> Facts {
    let state = State::load(&ctx.layout).map_err(|e| crate::error::classify(&e).1);
    // The doctor's own unit too: an empty list would not reach systemd at all, and
    // env.systemd must say whether it answers.
    let mut units = vec![DOCTOR_UNIT.to_string()];
    if let Ok(s) = &state {
        units.extend(s.instances.iter().map(|e| Layout::unit_name(&e.name)));
    }
    let t = opts.timeout.unwrap_or(EXEC_TIMEOUT);
    let ask = Probe::new("env.systemd", t, move || {
        use crate::sys::systemd::{LazySystemd, Systemd};
        LazySystemd::over_bus()
            .unit_status(&units)
            .map_err(|e| crate::error::classify(&e).1)
    });
    let live = match probe::run_all(vec![ask], 1).pop() {
        Some(Outcome::Done { value, .. }) => value,
        Some(Outcome::TimedOut { after }) => Err(format!(
            "systemd did not answer within {} ms",
            after.as_millis()
        )),
        Some(Outcome::Panicked(m)) => Err(format!("asking systemd failed: {m}")),
        None => Err("systemd was not asked".into()),
    };
    Facts {
        layout: ctx.layout.clone(),
        state,
        live,
        timeout: opts.timeout,
        retries: opts.retries.unwrap_or(HEALTH_RETRIES),
    }
}

/// Every probe, in report order.
fn checks(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let mut v = Vec::new();
    v.extend(env::checks(ctx, facts));
    v.extend(instances::checks(ctx, facts));
    v.extend(fs::checks(ctx, facts));
    v
}

/// Run the probes of the asked categories and collect their findings in order.
pub fn probe_all(ctx: &Ctx, opts: &Options) -> Vec<Finding> {
    let facts = Arc::new(gather(ctx, opts));
    let wanted = |c: Category| opts.only.is_empty() || opts.only.contains(&c);
    let list: Vec<Check> = checks(ctx, &facts)
        .into_iter()
        .filter(|c| wanted(c.category))
        .collect();
    let heads: Vec<(String, Category)> = list.iter().map(|c| (c.id.clone(), c.category)).collect();
    let outcomes = probe::run_all(list.into_iter().map(|c| c.probe).collect(), PARALLEL);
    heads
        .into_iter()
        .zip(outcomes)
        .flat_map(|((id, category), o)| match o {
            Outcome::Done { value, .. } => value,
            Outcome::TimedOut { after } => vec![Finding::red(
                id,
                category,
                format!("did not answer within {} ms", after.as_millis()),
                "look at what this probe reads (it hangs); raise --timeout-ms to wait longer",
            )],
            Outcome::Panicked(m) => vec![Finding::red(
                id,
                category,
                format!("the probe failed: {m}"),
                "a bug in abssctl doctor: please report it",
            )],
        })
        .filter(|f| wanted(f.category))
        .collect()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `abssctl doctor`.
pub fn run(ctx: &mut Ctx, opts: &Options) -> Result<DoctorResult> {
    let mut findings = probe_all(ctx, opts);
    let mut fixes = None;
    if opts.fix {
        let planned = fix::plan(ctx, &findings);
        if ctx.globals.dry_run || planned.is_empty() {
            fixes = Some(planned);
        } else {
            ctx.require_root()?;
            if !ctx.globals.yes && !ctx.ui.confirm(&fix::question(&planned))? {
                return Err(
                    Failure::validation("fixes not confirmed; nothing was changed")
                        .hint("answer yes at the prompt, or pass --yes in scripts")
                        .into(),
                );
            }
            let done = fix::apply(ctx, planned)?;
            // The report shows what is left after the repairs.
            findings = probe_all(ctx, opts);
            fixes = Some(done);
        }
    }
    let report = model::Report::new(findings, now_rfc3339());
    if !ctx.globals.dry_run {
        save(&ctx.layout, &report);
    }
    log(&report);
    Ok(DoctorResult {
        report,
        fixes,
        dry_run: ctx.globals.dry_run,
    })
}

/// The last saved report (`instance list`, the support bundle): `None` when there is none
/// or it does not parse (a read command does not fail over a hint; a debug line says why).
pub fn read_last(layout: &Layout) -> Option<model::Report> {
    let path = layout.doctor_report();
    match sys::fs::read_optional(&path) {
        Ok(Some(text)) => serde_json::from_str(&text)
            .map_err(|e| tracing::warn!("ignoring {}: {e}", path.display()))
            .ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("no doctor report: {e:#}");
            None
        }
    }
}

/// Keep the last report for readers that must not probe themselves. A report that cannot
/// be written (not root) is no reason to fail the check itself.
fn save(layout: &Layout, report: &model::Report) {
    let path = layout.doctor_report();
    let text = match serde_json::to_vec_pretty(report) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("could not encode the doctor report: {e}");
            return;
        }
    };
    if let Err(e) = sys::fs::write_atomic(&path, &text, 0o644) {
        if sys::privilege::is_root() {
            tracing::warn!("could not save the doctor report: {e:#}");
        } else {
            tracing::debug!("doctor report not writable as this user: {e:#}");
        }
    }
}

/// Each non-green finding to the journal, its severity as the priority (red = err,
/// yellow = warning), with the probe id, category and status as fields to filter on.
fn log(report: &model::Report) {
    for f in &report.probes {
        let (id, category, status) = (f.id.as_str(), f.category.as_str(), f.status.as_str());
        match f.status {
            Status::Red => tracing::error!(
                probe_id = id,
                category,
                status,
                remediation = f.remediation.as_str(),
                "doctor {id}: {}",
                f.message
            ),
            Status::Yellow => tracing::warn!(
                probe_id = id,
                category,
                status,
                remediation = f.remediation.as_str(),
                "doctor {id}: {}",
                f.message
            ),
            Status::Green => {}
        }
    }
}

/// The exit code's failure kind, for `Report::failed`.
fn kind_of(rc: i32) -> Kind {
    match rc {
        2 => Kind::Validation,
        3 => Kind::Environment,
        _ => Kind::Provider,
    }
}

/// The command's report: the findings (human or `--json`), failed with the worst
/// finding's exit code when anything is red.
pub fn into_report(r: &DoctorResult, human: String) -> Result<Report> {
    let changed = r
        .fixes
        .as_ref()
        .is_some_and(|f| !r.dry_run && !f.is_empty());
    let out = Report::new(r, human)?.changed(changed);
    if r.report.rc == 0 {
        return Ok(out);
    }
    let red = r.report.summary.red;
    Ok(out.failed(
        kind_of(r.report.rc),
        format!("doctor found {red} red problem(s); see the report above"),
        None,
    ))
}
