//! Read-only instance commands: list, show, status, env, logs. The registry is joined with
//! live systemd state read in ONE batch (ListUnitsByNames + concurrent property reads on one
//! D-Bus connection), so 50 instances cost one round of D-Bus calls, not 50 processes; the
//! health of every running instance is read all at once (`list`: one answered connection
//! each, on one thread; `status`: GET /health through the probe engine,
//! [`crate::ops::probe`]), so the list costs the slowest answer, and a hung server one
//! probe timeout ([`HealthProbe`] says why the two differ).

use super::{find, probe_health_within, resolve_version};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State, TlsSource, VersionBinding};
use crate::domain::updates::UpdatesRecord;
use crate::domain::validate;
use crate::ops::Ctx;
use crate::ops::probe::{self, Outcome, Probe};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd, UnitStatus};
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long `list`/`status` wait for one instance's answer. A healthy server answers
/// on loopback in a few milliseconds (benches/list.sh), so half a second is a hundred
/// times that: a server that has not answered by then is stuck (accepted the connection,
/// never answered), not slow, and a read command (the confconsole menu, `status` in a
/// shell loop) should not wait the 2 s the start gate allows ([`super::PROBE_TIMEOUT`]).
/// Such a server is reported as `health: "timeout"`.
pub const LIST_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The socket timeouts inside a list probe: past the engine's deadline, so that a hung
/// server is reported by the engine as timed out (never as `down` by a read timeout that
/// happened to fire first); the abandoned probe thread ends on it shortly after, or when
/// the command exits.
const LIST_PROBE_IO_TIMEOUT: Duration = Duration::from_millis(750);

/// How many health probes run at once. Each is a loopback request that waits on ANOTHER
/// process (the instance's Node server): abssctl's own share is a thread and a few
/// syscalls, so running all of them at once costs no CPU worth counting while the servers
/// answer in parallel. With every running instance probed at once, any number of hung
/// servers costs one timeout; the cap only bounds the threads on a box with very many
/// instances (beyond it, hung servers cost one timeout per round of this size).
const LIST_PROBES_AT_ONCE: usize = 64;

/// One instance: what the registry says and what is live (the `--json` contract of
/// list/show/status).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub name: String,
    pub domain: String,
    pub url: String,
    pub port: u16,
    pub https_port: Option<u16>,
    pub version_binding: VersionBinding,
    /// The installed version the binding resolves to (None: not installed).
    pub version: Option<String>,
    pub data_dir: PathBuf,
    pub unit: String,
    // The live fields: null when systemd could not be asked (the registry fields above
    // are still shown, with one warning).
    pub load_state: Option<String>,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    /// systemd's UnitFileState: enabled, disabled, ...
    pub enabled: Option<String>,
    pub main_pid: Option<u32>,
    pub restarts: Option<u32>,
    pub memory_bytes: Option<u64>,
    /// `up` (the probe of [`Self::health_probe`] was answered), `down` (running, but
    /// refused the connection or answered something else), `timeout` (accepted, no answer
    /// within [`LIST_PROBE_TIMEOUT`]: a hung server), `unknown` (the probe itself failed),
    /// `stopped` (not active). Null when systemd could not be asked.
    pub health: Option<&'static str>,
    /// How `health` was read; null with it.
    pub health_probe: Option<HealthProbe>,
    pub tls_source: Option<TlsSource>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_changed: time::OffsetDateTime,
    /// A newer stable release than `version`, by the last recorded update check (never
    /// the network); null: up to date, or no check recorded.
    pub update_available: Option<String>,
}

/// How `list` and `status` ask a running server whether it answers.
///
/// `list` asks every instance at once, so what a probe costs the servers is what the list
/// costs: a GET /health takes about 1.7 ms of its server's CPU (HTTP parsing, the app's
/// middleware, the answer), a bare connection a third of that (benches/list.sh), and
/// fifty of them share two cores. Actual's /health answers UP unconditionally, so all it
/// proves beyond the connection is that the process on the port routes HTTP; `status`
/// (one instance) and the doctor still send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthProbe {
    /// GET /health answered 200 and UP.
    Http,
    /// The server accepted a connection and closed it when we hung up without a request
    /// ([`sys::http::answer_connections`]): its event loop runs.
    Connection,
}

/// `instance list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub instances: Vec<InstanceView>,
    /// The last doctor run (the daily timer's or an operator's), never run here: a list
    /// must stay a fast read. Null when the doctor has not run.
    pub doctor: Option<DoctorLast>,
    /// What could not be read (systemd unreachable: live fields are null).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What `instance list` shows of the last doctor report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorLast {
    pub checked_at: String,
    pub rc: i32,
    pub summary: crate::domain::doctor::Summary,
    /// The probe ids that were red, then yellow (the next step is `abssctl doctor`).
    pub red: Vec<String>,
    pub yellow: Vec<String>,
}

impl DoctorLast {
    fn of(r: crate::domain::doctor::Report) -> DoctorLast {
        use crate::domain::doctor::Status;
        let ids = |st: Status| {
            r.probes
                .iter()
                .filter(|f| f.status == st)
                .map(|f| f.id.clone())
                .collect()
        };
        DoctorLast {
            red: ids(Status::Red),
            yellow: ids(Status::Yellow),
            checked_at: r.checked_at.clone(),
            rc: r.rc,
            summary: r.summary,
        }
    }
}

/// The installed version a binding resolves to; `None` when it is not installed (a fact
/// to show), an error when it is installed but unreadable (a broken manifest).
fn installed_version(layout: &Layout, binding: &VersionBinding) -> Result<Option<String>> {
    let dir = match binding {
        VersionBinding::Exact(v) => Some(layout.version_dir(&v.to_string())),
        VersionBinding::Current => super::current_version_dir(layout)?,
    };
    match dir {
        Some(d) if sys::instdir::exists(&d.join(crate::domain::versions::MANIFEST_FILE)) => {
            Ok(Some(resolve_version(layout, binding)?.version))
        }
        _ => Ok(None),
    }
}

/// What systemd said about the units (`None`: it could not be asked).
type Live = Option<Vec<UnitStatus>>;

/// The health probes of every instance, started at once on their own thread, BEFORE
/// systemd is asked: the probes wait on the instances' servers and the status read on
/// systemd, so the two overlap and the list costs the longer of them, not their sum.
/// Instances that turn out not to be active are probed too (a refused loopback connect,
/// microseconds) and their answers dropped; a foreign process hung on a stopped
/// instance's port can make the list wait one probe timeout, never more.
fn start_probes(
    entries: &[&InstanceEntry],
    how: HealthProbe,
) -> std::thread::JoinHandle<HashMap<String, Outcome<bool>>> {
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let ports: Vec<u16> = entries.iter().map(|e| e.port).collect();
    if how == HealthProbe::Connection {
        // One batch on one thread, bounded by one timeout however many servers hang.
        return std::thread::spawn(move || connection_outcomes(names, &ports));
    }
    let probes: Vec<Probe<bool>> = names
        .iter()
        .zip(&ports)
        .map(|(name, &port)| {
            Probe::new(name.clone(), LIST_PROBE_TIMEOUT, move || {
                probe_health_within(port, LIST_PROBE_IO_TIMEOUT)
            })
        })
        .collect();
    std::thread::spawn(move || {
        let at_once = probes.len().min(LIST_PROBES_AT_ONCE);
        names
            .into_iter()
            .zip(probe::run_all(probes, at_once))
            .collect()
    })
}

/// The answers of [`sys::http::answer_connections`] as probe outcomes, by name. When the
/// probes cannot run at all, no outcome: every running instance's health is "unknown".
fn connection_outcomes(names: Vec<String>, ports: &[u16]) -> HashMap<String, Outcome<bool>> {
    let answers = match sys::http::answer_connections(ports, LIST_PROBE_TIMEOUT) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("the connection probes could not run: {e:#}");
            return HashMap::new();
        }
    };
    let outcome = |a: Option<bool>| match a {
        Some(value) => Outcome::Done {
            value,
            elapsed: Duration::ZERO,
        },
        None => Outcome::TimedOut {
            after: LIST_PROBE_TIMEOUT,
        },
    };
    names
        .into_iter()
        .zip(answers)
        .map(|(n, a)| (n, outcome(a)))
        .collect()
}

/// The health of each instance (by name) from systemd's view and the probes: `stopped`
/// unless active, else what its probe found. `warnings` gets one line per probe that
/// failed as a bug (a panic), never per timeout: a timeout is a fact about the server and
/// is its `health`.
fn healths(
    entries: &[&InstanceEntry],
    live: &[UnitStatus],
    probes: std::thread::JoinHandle<HashMap<String, Outcome<bool>>>,
    warnings: &mut Vec<String>,
) -> HashMap<String, &'static str> {
    let mut outcomes = probes.join().unwrap_or_else(|_| {
        warnings.push("the health probes failed (a bug); health is unknown".into());
        HashMap::new()
    });
    let mut out = HashMap::new();
    for e in entries {
        let unit = Layout::unit_name(&e.name);
        let active = live
            .iter()
            .any(|s| s.unit == unit && s.active_state == "active");
        let health = match outcomes.remove(&e.name) {
            _ if !active => "stopped",
            Some(Outcome::Done { value: true, .. }) => "up",
            Some(Outcome::Done { value: false, .. }) => "down",
            Some(Outcome::TimedOut { .. }) => "timeout",
            Some(Outcome::Panicked(why)) => {
                warnings.push(format!("the health probe of '{}' failed: {why}", e.name));
                "unknown"
            }
            None => "unknown",
        };
        out.insert(e.name.clone(), health);
    }
    out
}

/// The installed version of each distinct binding, read once: 50 instances bound to
/// `current` cost one link and one manifest read, not fifty.
fn versions(
    layout: &Layout,
    entries: &[&InstanceEntry],
) -> Result<HashMap<String, Option<String>>> {
    let mut out = HashMap::new();
    for e in entries {
        if let std::collections::hash_map::Entry::Vacant(slot) =
            out.entry(e.version_binding.to_string())
        {
            slot.insert(installed_version(layout, &e.version_binding)?);
        }
    }
    Ok(out)
}

fn view(
    e: &InstanceEntry,
    live: &Live,
    health: Option<(&'static str, HealthProbe)>,
    version: Option<String>,
    updates: Option<&UpdatesRecord>,
) -> InstanceView {
    let unit = Layout::unit_name(&e.name);
    // A unit systemd does not list is one it does not know: all defaults ("", 0).
    let st = live.as_ref().map(|l| {
        l.iter()
            .find(|s| s.unit == unit)
            .cloned()
            .unwrap_or_default()
    });
    let st = st.as_ref();
    InstanceView {
        update_available: updates.and_then(|u| u.update_for(version.as_deref())),
        version,
        name: e.name.clone(),
        domain: e.domain.clone(),
        url: inst::url(&e.domain, e.https_port),
        port: e.port,
        https_port: e.https_port,
        version_binding: e.version_binding.clone(),
        data_dir: e.data_dir.clone(),
        load_state: st.map(|s| s.load_state.clone()),
        active_state: st.map(|s| s.active_state.clone()),
        sub_state: st.map(|s| s.sub_state.clone()),
        enabled: st.map(|s| s.unit_file_state.clone()),
        main_pid: st.map(|s| s.main_pid).filter(|p| *p != 0),
        restarts: st.map(|s| s.n_restarts),
        memory_bytes: st.and_then(|s| s.memory_bytes),
        health: health.map(|h| h.0),
        health_probe: health.map(|h| h.1),
        unit,
        tls_source: e.tls_source,
        created_at: e.created_at,
        last_changed: e.last_changed,
    }
}

/// Registry entries joined with one batched status read. Reading is not changing: when
/// systemd cannot be asked (no bus, a container without systemd, a timeout) the registry
/// is still shown, the live fields are null and ONE warning says why (the confconsole
/// menu and `doctor` list instances on a box whose systemd is in trouble).
fn views(
    ctx: &Ctx,
    sd: &dyn Systemd,
    entries: &[&InstanceEntry],
    how: HealthProbe,
) -> Result<(Vec<InstanceView>, Vec<String>)> {
    let units: Vec<String> = entries.iter().map(|e| Layout::unit_name(&e.name)).collect();
    let probes = start_probes(entries, how);
    let mut warnings = Vec::new();
    let live: Live = match sd.unit_status(&units) {
        Ok(l) => Some(l),
        Err(e) => {
            warnings.push(format!(
                "systemd could not be asked about the instances ({}); live fields are unknown",
                crate::error::classify(&e).1
            ));
            None
        }
    };
    // The last recorded update check: a missing or unreadable file only leaves the
    // update fields empty (a read command does not fail over a hint).
    let updates = crate::ops::updates::read_record(ctx);
    let versions = versions(&ctx.layout, entries)?;
    // Without systemd's view there is no telling which answers count: health stays null
    // and the probes are not waited for (their threads end with the command).
    let healths = match &live {
        Some(l) => healths(entries, l, probes, &mut warnings),
        None => HashMap::new(),
    };
    let list = entries
        .iter()
        .map(|e| {
            let health = live
                .as_ref()
                .map(|_| (healths.get(&e.name).copied().unwrap_or("unknown"), how));
            let version = versions
                .get(&e.version_binding.to_string())
                .cloned()
                .flatten();
            view(e, &live, health, version, updates.as_ref())
        })
        .collect();
    Ok((list, warnings))
}

/// Every instance (no lock: the registry is replaced by rename, a reader sees a whole
/// file; works unprivileged).
pub fn list(ctx: &mut Ctx) -> Result<ListResult> {
    list_with(ctx, &LazySystemd::new())
}

/// [`list`] against a given systemd (tests pass a stand-in; the health probes are real).
pub fn list_with(ctx: &mut Ctx, sd: &dyn Systemd) -> Result<ListResult> {
    let state = State::load(&ctx.layout)?;
    let mut entries: Vec<&InstanceEntry> = state.instances.iter().collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let (instances, warnings) = views(ctx, sd, &entries, HealthProbe::Connection)?;
    ctx.op.warnings.extend(warnings.clone());
    Ok(ListResult {
        instances,
        doctor: crate::ops::doctor::read_last(&ctx.layout).map(DoctorLast::of),
        warnings,
    })
}

/// One instance, and what could not be read (see [`views`]).
pub fn show(ctx: &mut Ctx, name: &str) -> Result<(InstanceView, Vec<String>)> {
    show_with(ctx, &LazySystemd::new(), name)
}

/// [`show`] against a given systemd (see [`list_with`]).
pub fn show_with(
    ctx: &mut Ctx,
    sd: &dyn Systemd,
    name: &str,
) -> Result<(InstanceView, Vec<String>)> {
    validate::instance_name(name)?;
    sys::logging::set_instance(name);
    let state = State::load(&ctx.layout)?;
    let e = find(&state, name)?;
    let (mut list, warnings) = views(ctx, sd, &[e], HealthProbe::Http)?;
    ctx.op.warnings.extend(warnings.clone());
    Ok((list.remove(0), warnings))
}

/// `instance env --json`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvResult {
    pub name: String,
    pub dropin: PathBuf,
    pub env: Vec<(String, String)>,
}

/// The environment the instance's server gets (as the drop-in on disk sets it).
pub fn env(ctx: &Ctx, name: &str) -> Result<EnvResult> {
    validate::instance_name(name)?;
    sys::logging::set_instance(name);
    let state = State::load(&ctx.layout)?;
    let e = find(&state, name)?;
    let path = inst::dropin_path(&ctx.layout, &e.name);
    let text = sys::fs::read_optional(&path)?.ok_or_else(|| {
        anyhow::Error::from(
            crate::error::Failure::environment(format!("{} is missing", path.display())).hint(
                format!(
                    "write it again: abssctl instance set-version {name} {}",
                    e.version_binding
                ),
            ),
        )
    })?;
    Ok(EnvResult {
        name: e.name.clone(),
        env: inst::env_of(&text),
        dropin: path,
    })
}

/// `instance logs`.
#[derive(Debug, Clone, Serialize)]
pub struct LogsResult {
    pub name: String,
    pub unit: String,
    pub lines: Vec<String>,
}

/// The journal of the instance's unit; with `follow`, streams to stdout until interrupted.
pub fn logs(
    ctx: &Ctx,
    name: &str,
    lines: Option<usize>,
    since: Option<String>,
    follow: bool,
) -> Result<LogsResult> {
    validate::instance_name(name)?;
    sys::logging::set_instance(name);
    let state = State::load(&ctx.layout)?;
    let e = find(&state, name)?;
    let q = sys::journal::Query {
        unit: Layout::unit_name(&e.name),
        lines: Some(lines.unwrap_or(50)),
        since,
    };
    if follow {
        let rc = sys::journal::follow(&q)?;
        if rc != 0 {
            return Err(crate::error::environment(format!(
                "journalctl ended with exit code {rc}"
            )));
        }
        return Ok(LogsResult {
            name: e.name.clone(),
            unit: q.unit,
            lines: Vec::new(),
        });
    }
    Ok(LogsResult {
        name: e.name.clone(),
        lines: sys::journal::read(&q)?,
        unit: q.unit,
    })
}
