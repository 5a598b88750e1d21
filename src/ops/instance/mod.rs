//! Instance use cases: create, lifecycle (start/stop/…/delete, set-*), queries (list, show,
//! status, env, logs). Shared here: locks, version resolution, the drop-in and registry
//! steps, and waiting for a started server to answer.

use crate::domain::audit::Target;
use crate::domain::instance::{self as inst, Startup};
use crate::domain::layout::Layout;
use crate::domain::render;
use crate::domain::state::{InstanceEntry, State, VersionBinding};
use crate::domain::txn::{self, Plan};
use crate::domain::validate::{self, InstanceName};
use crate::domain::versions;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::sys;
use crate::sys::lock::LockGuard;
use crate::sys::nginx::{ConfigTest, NginxCli, TestPassed};
use crate::sys::systemd::Systemd;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod account;
pub mod create;
pub mod follow;
pub mod lifecycle;
pub mod query;
pub mod rename;

/// How long a start/stop/restart job may take (Node starts in ~2 s; a slow disk or a
/// first migration after an upgrade can take longer).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a started server has to answer GET /health.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// One health probe (loopback: anything slower is a hung server).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Journal lines shown when an instance does not come up.
const JOURNAL_TAIL: usize = 12;

/// `nginx -t` found on first use, so commands that never touch nginx (and dry runs) work
/// on a machine without it.
#[derive(Debug, Default)]
pub struct LazyNginx(std::cell::OnceCell<NginxCli>);

impl ConfigTest for LazyNginx {
    fn test(&self) -> Result<TestPassed> {
        if let Some(n) = self.0.get() {
            return n.test();
        }
        let n = NginxCli::from_path()?;
        self.0.get_or_init(|| n).test()
    }
}

/// The locks of a mutation on one instance (global, then the instance). A dry run takes
/// none: it writes nothing.
pub type Locks = Option<(LockGuard, LockGuard)>;

/// What [`begin`] does before the locks: the name is valid, the caller is root, and the
/// operation is recorded as about `name`. For the checks a command runs before the backup
/// it offers (`ops::backup::safety`), which must come before its locks.
pub fn check(ctx: &mut Ctx, name: &str) -> Result<InstanceName> {
    let name = validate::instance_name(name)?;
    sys::logging::set_instance(name.as_str());
    ctx.require_root()?;
    ctx.op.target = Some(Target {
        kind: "instance".into(),
        name: name.as_str().to_string(),
    });
    Ok(name)
}

/// Root check, name check, audit target, locks.
pub fn begin(ctx: &mut Ctx, name: &str) -> Result<(InstanceName, Locks)> {
    let name = check(ctx, name)?;
    if ctx.globals.dry_run {
        return Ok((name, None));
    }
    let global = ctx.lock_global()?;
    let one = ctx.lock_instance(name.as_str())?;
    Ok((name, Some((global, one))))
}

/// The registry entry of `name`, or a validation error pointing at `instance list`.
pub fn find<'s>(state: &'s State, name: &str) -> Result<&'s InstanceEntry> {
    state
        .instances
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| {
            Failure::validation(format!("no instance named '{name}'"))
                .hint("see the instances with: abssctl instance list")
                .into()
        })
}

/// An installed Actual version and the Node runtime its tree was built for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    pub version: String,
    pub dir: PathBuf,
    pub node: PathBuf,
}

/// The version directory `current` points to, if any.
pub fn current_version_dir(layout: &Layout) -> Result<Option<PathBuf>> {
    Ok(sys::instdir::read_link(&layout.current_link)?.map(|t| {
        if t.is_absolute() {
            t
        } else {
            layout.install_root.join(t)
        }
    }))
}

/// Resolve a binding to an installed version (its manifest names the runtime).
pub fn resolve_version(layout: &Layout, binding: &VersionBinding) -> Result<Resolved> {
    let dir = match binding {
        VersionBinding::Exact(v) => layout.version_dir(&v.to_string()),
        VersionBinding::Current => current_version_dir(layout)?.ok_or_else(|| {
            anyhow::Error::from(
                Failure::environment("no Actual version is installed (no 'current' version)")
                    .hint("install one: abssctl version install latest"),
            )
        })?,
    };
    let manifest_path = dir.join(versions::MANIFEST_FILE);
    let text = sys::fs::read_optional(&manifest_path)?.ok_or_else(|| {
        let v = dir
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('v').to_string())
            .unwrap_or_default();
        anyhow::Error::from(
            Failure::environment(format!(
                "Actual {v} is not installed ({} is missing)",
                manifest_path.display()
            ))
            .hint(format!("install it: abssctl version install {v}")),
        )
    })?;
    let m = versions::parse_manifest(&text)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    Ok(Resolved {
        version: m.version,
        dir,
        node: m.runtime.node,
    })
}

/// The drop-in text of an instance (operator template in templates_dir wins).
pub fn render_dropin(layout: &Layout, entry: &InstanceEntry, v: &Resolved) -> Result<String> {
    let input = inst::DropinInput {
        name: entry.name.clone(),
        user: inst::service_user(&entry.name),
        port: entry.port,
        data_dir: entry.data_dir.clone(),
        version: v.version.clone(),
        version_dir: v.dir.clone(),
        node: v.node.clone(),
    };
    let tctx = inst::dropin_context(&input)?;
    let override_path = layout.templates_dir.join(render::INSTANCE_DROPIN);
    let text = sys::fs::read_optional(&override_path)?;
    Ok(render::render(
        render::INSTANCE_DROPIN,
        text.as_deref().map(|t| (override_path.as_path(), t)),
        &tctx,
    )?)
}

/// Step: write the registry; undo writes the previous one back.
pub fn step_save_state<'a>(
    plan: &mut Plan<'a>,
    layout: &'a Layout,
    locks: &'a Locks,
    before: &'a State,
    after: &'a State,
    description: String,
) {
    plan.step("registry_write", description, move || {
        let (global, _) = locks
            .as_ref()
            .context("internal: registry write planned without the global lock")?;
        after.save(layout, global)?;
        txn::undo(move || before.save(layout, global))
    });
}

/// The drop-in file becomes `text` (None: removed, and its directory with it when empty),
/// durably.
fn put_dropin(path: &Path, text: Option<&str>) -> Result<()> {
    match text {
        Some(t) => sys::fs::write_atomic(path, t.as_bytes(), inst::DROPIN_MODE),
        None => {
            if sys::fs::remove_file_if_exists(path)? {
                sys::fs::sync_parent(path)?;
            }
            if let Some(dir) = path.parent() {
                // Only if empty: an operator's own drop-in next to ours stays.
                sys::instdir::remove_dir_if_empty(dir)?;
            }
            Ok(())
        }
    }
}

/// Write (Some) or remove (None) a drop-in and reload systemd; returns the previous text.
/// The step has two effects (the file, systemd's view of it), so a failed reload puts the
/// previous file back before the error goes up: the plan only undoes steps that
/// succeeded, and this one must not leave a file systemd was never told about. A second
/// reload follows the restore, in case the failed call had reloaded after all.
fn swap_dropin(
    sd: &dyn Systemd,
    path: &Path,
    text: Option<&str>,
    reload: bool,
) -> Result<Option<String>> {
    let previous = sys::fs::read_optional(path)?;
    if previous.as_deref() == text {
        return Ok(previous);
    }
    put_dropin(path, text)?;
    if reload && let Err(e) = sd.daemon_reload() {
        return Err(match put_dropin(path, previous.as_deref()) {
            Err(back) => e.context(format!(
                "and putting the previous {} back failed ({back:#}); fix it by hand",
                path.display()
            )),
            Ok(()) => match sd.daemon_reload() {
                Ok(()) => e.context(format!("previous {} put back", path.display())),
                Err(again) => e.context(format!(
                    "previous {} put back; systemd has not reloaded it ({again:#}): run systemctl daemon-reload",
                    path.display()
                )),
            },
        });
    }
    Ok(previous)
}

/// Step: the instance's drop-in becomes `text` (None: removed), then daemon-reload unless
/// `reload` is false because the next step reloads anyway (EnableUnitFiles does: one
/// reload fewer on the create path). The undo always reloads.
pub fn step_dropin<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    path: PathBuf,
    text: Option<String>,
    reload: bool,
) {
    step_dropin_as(plan, sd, "unit_dropin", path, text, reload);
}

/// [`step_dropin`] under another action name (the backup timer's drop-in is `timer_dropin`).
pub fn step_dropin_as<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    action: &'static str,
    path: PathBuf,
    text: Option<String>,
    reload: bool,
) {
    let desc = match (&text, reload) {
        (Some(_), true) => format!("write {} and reload systemd", path.display()),
        (Some(_), false) => format!("write {}", path.display()),
        (None, _) => format!("remove {} and reload systemd", path.display()),
    };
    plan.step(action, desc, move || {
        let previous = swap_dropin(sd, &path, text.as_deref(), reload)?;
        if previous.as_deref() == text.as_deref() {
            return txn::no_undo();
        }
        txn::undo(move || swap_dropin(sd, &path, previous.as_deref(), true).map(drop))
    });
}

/// Which way [`step_unit_file`] turns a unit's start at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootStart {
    Enable,
    Disable,
}

/// Step: enable (or disable) the unit's start at boot; the undo does the reverse. The one
/// place this pair is written (create, enable, disable, delete and rename use it).
/// `note` is added to the description (e.g. " (start at boot)").
pub fn step_unit_file<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    unit: String,
    want: BootStart,
    note: &str,
) {
    let (action, verb) = match want {
        BootStart::Enable => ("unit_enable", "enable"),
        BootStart::Disable => ("unit_disable", "disable"),
    };
    plan.step(action, format!("{verb} {unit}{note}"), move || {
        let units = vec![unit];
        let enable = want == BootStart::Enable;
        set_boot(sd, &units, enable)?;
        txn::undo(move || set_boot(sd, &units, !enable))
    });
}

fn set_boot(sd: &dyn Systemd, units: &[String], enable: bool) -> Result<()> {
    if enable {
        sd.enable_units(units)
    } else {
        sd.disable_units(units)
    }
}

/// The last journal lines of a unit, for an error hint; a failure to read them is said so.
pub fn journal_tail(unit: &str) -> String {
    // A service's output reaches journald through a stream socket, asynchronously: right
    // after the process died its last lines may not be readable yet. Only failure paths
    // come here, so a short pause costs nothing on the way to a working instance.
    std::thread::sleep(Duration::from_millis(300));
    match sys::journal::read(&sys::journal::Query {
        unit: unit.to_string(),
        lines: Some(JOURNAL_TAIL),
        since: None,
    }) {
        Ok(lines) if lines.is_empty() => "(the journal has no lines for it)".into(),
        Ok(lines) => lines.join("\n  "),
        Err(e) => format!("(could not read the journal: {e:#})"),
    }
}

/// Probe GET /health once.
pub fn probe_health(port: u16) -> bool {
    probe_health_within(port, PROBE_TIMEOUT)
}

/// Probe GET /health once, each socket operation bounded by `timeout`.
pub fn probe_health_within(port: u16, timeout: Duration) -> bool {
    matches!(sys::http::get(port, "/health", timeout),
        Ok(r) if r.status == 200 && r.body.contains("UP"))
}

/// What the server must show before it counts as healthy: beyond GET /health, that it
/// runs `version` (GET /info: the unit really started the binding's version, not a stale
/// drop-in) and that its account endpoint answers (its data migrated and opened). An
/// upgrade gates on it; a plain start passes `None` for the version.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub version: Option<String>,
}

/// Wait until the server on `port` answers GET /health, watching its unit: a unit that
/// failed or was restarted after a crash ends the wait at once (it is crash-looping), and
/// the error carries the last journal lines.
pub fn wait_healthy(
    sd: &dyn Systemd,
    unit: &str,
    port: u16,
    restarts_before: u32,
    timeout: Duration,
) -> Result<Duration> {
    wait_serving(sd, unit, port, restarts_before, timeout, &Expect::default())
}

/// The one path to "healthy" for start, restart, restore and upgrade (see [`Expect`]).
/// Polls every 20-100 ms: a refused loopback connection costs microseconds, and the
/// server's first answer is what every caller waits for.
pub fn wait_serving(
    sd: &dyn Systemd,
    unit: &str,
    port: u16,
    restarts_before: u32,
    timeout: Duration,
    expect: &Expect,
) -> Result<Duration> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut last_answer = String::new();
    loop {
        if probe_health(port) {
            match serves(port, expect) {
                Ok(()) => return Ok(started.elapsed()),
                Err(Wrong::Fatal(why)) => {
                    return Err(Failure::provider(format!("{unit} is not healthy: {why}"))
                        .hint(format!("last log lines:\n  {}", journal_tail(unit)))
                        .into());
                }
                Err(Wrong::NotYet(why)) => last_answer = why,
            }
        }
        let st = sd
            .unit_status(&[unit.to_string()])?
            .into_iter()
            .next()
            .with_context(|| format!("systemd returned no status for {unit}"))?;
        let failing = inst::startup(
            &st.active_state,
            &st.sub_state,
            st.n_restarts,
            restarts_before,
        ) == Startup::Failing;
        if failing || started.elapsed() > timeout {
            let why = if failing {
                let restarts = st.n_restarts.saturating_sub(restarts_before);
                let again = if restarts > 0 {
                    format!(", restarted {restarts} time(s)")
                } else {
                    String::new()
                };
                format!(
                    "its process exited ({}/{}{again})",
                    st.active_state, st.sub_state
                )
            } else if !last_answer.is_empty() {
                format!("{last_answer} within {}s", timeout.as_secs())
            } else {
                format!(
                    "no answer on 127.0.0.1:{port}/health within {}s",
                    timeout.as_secs()
                )
            };
            return Err(Failure::provider(format!("{unit} is not healthy: {why}"))
                .hint(format!("last log lines:\n  {}", journal_tail(unit)))
                .into());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Why a server that answers /health does not pass the gate yet (or never will).
enum Wrong {
    NotYet(String),
    Fatal(String),
}

/// The checks after /health said UP (see [`Expect`]).
fn serves(port: u16, expect: &Expect) -> std::result::Result<(), Wrong> {
    let Some(want) = &expect.version else {
        return Ok(());
    };
    let info = sys::http::get(port, "/info", PROBE_TIMEOUT)
        .map_err(|e| Wrong::NotYet(format!("GET /info failed ({e:#})")))?;
    let got = serde_json::from_str::<serde_json::Value>(&info.body)
        .ok()
        .and_then(|v| v["build"]["version"].as_str().map(str::to_string));
    match got {
        Some(v) if v == *want => {}
        // Another version answers: the unit runs what its drop-in said before (waiting
        // longer changes nothing).
        Some(v) => return Err(Wrong::Fatal(format!("it runs Actual {v}, not {want}"))),
        None => {
            return Err(Wrong::NotYet(format!(
                "GET /info gave no version (HTTP {})",
                info.status
            )));
        }
    }
    let acct = sys::http::get(port, "/account/needs-bootstrap", PROBE_TIMEOUT)
        .map_err(|e| Wrong::NotYet(format!("GET /account/needs-bootstrap failed ({e:#})")))?;
    let ok = acct.status == 200
        && serde_json::from_str::<serde_json::Value>(&acct.body).is_ok_and(|v| v["status"] == "ok");
    if ok {
        Ok(())
    } else {
        Err(Wrong::NotYet(format!(
            "GET /account/needs-bootstrap answered HTTP {}",
            acct.status
        )))
    }
}

/// NRestarts of a unit now (0 for a unit systemd does not know yet).
pub fn restarts_now(sd: &dyn Systemd, unit: &str) -> Result<u32> {
    Ok(sd
        .unit_status(&[unit.to_string()])?
        .first()
        .map(|s| s.n_restarts)
        .unwrap_or(0))
}

/// Step: stop the unit; undo starts it again and waits for /health, so a rolled-back
/// stop leaves the instance serving as before.
pub fn step_stop<'a>(plan: &mut Plan<'a>, sd: &'a dyn Systemd, unit: String, port: u16) {
    plan.step("unit_stop", format!("stop {unit}"), move || {
        sd.stop_unit(&unit, JOB_TIMEOUT)?;
        txn::undo(move || {
            sd.reset_failed(&unit)?;
            sd.start_unit(&unit, JOB_TIMEOUT)?;
            wait_healthy(sd, &unit, port, 0, HEALTH_TIMEOUT).map(drop)
        })
    });
}

/// Step: start (or restart) the unit and wait for /health; undo stops it.
pub fn step_start_healthy<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    unit: String,
    port: u16,
    restart: bool,
    timing: Option<&'a std::cell::Cell<Option<Duration>>>,
) {
    let gate = Gate {
        expect: Expect::default(),
        timeout: HEALTH_TIMEOUT,
    };
    step_start_gated(plan, sd, unit, port, restart, gate, timing);
}

/// What a start waits for, and how long.
#[derive(Debug, Clone)]
pub struct Gate {
    pub expect: Expect,
    pub timeout: Duration,
}

/// Step: start (or restart) the unit and wait until it passes `gate`; undo stops it.
pub fn step_start_gated<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    unit: String,
    port: u16,
    restart: bool,
    gate: Gate,
    timing: Option<&'a std::cell::Cell<Option<Duration>>>,
) {
    let verb = if restart { "restart" } else { "start" };
    let what = match &gate.expect.version {
        Some(v) => format!(
            "{verb} {unit} and wait until 127.0.0.1:{port} is healthy, runs Actual {v} and its accounts answer"
        ),
        None => format!("{verb} {unit} and wait for GET /health on 127.0.0.1:{port}"),
    };
    plan.step(
        if restart {
            "unit_restart"
        } else {
            "unit_start"
        },
        what,
        move || {
            // A start asked for is not a crash loop: not refused by the start limit (and
            // NRestarts counts from 0 again, so it is read after).
            sd.reset_failed(&unit)?;
            let before = restarts_now(sd, &unit)?;
            let t0 = Instant::now();
            if restart {
                sd.restart_unit(&unit, JOB_TIMEOUT)?;
            } else {
                sd.start_unit(&unit, JOB_TIMEOUT)?;
            }
            match wait_serving(sd, &unit, port, before, gate.timeout, &gate.expect) {
                Ok(_) => {
                    if let Some(t) = timing {
                        t.set(Some(t0.elapsed()));
                    }
                }
                Err(e) => {
                    // Leave nothing crash-looping behind; the error says why it stopped.
                    return Err(match sd.stop_unit(&unit, JOB_TIMEOUT) {
                        Ok(()) => e,
                        Err(stop) => e.context(format!("and stopping it failed: {stop:#}")),
                    });
                }
            }
            txn::undo(move || sd.stop_unit(&unit, JOB_TIMEOUT))
        },
    );
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
