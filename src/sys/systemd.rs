//! systemd over D-Bus (org.freedesktop.systemd1): unit files, jobs, properties, transient
//! units. No `systemctl` subprocesses: the D-Bus API gives job results and typed properties.
//!
//! The trait is what `ops` uses; the real implementation drives zbus from one tokio
//! runtime owned by this module (the rest of abssctl is synchronous).

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Live facts about one unit, read in one batch for many units.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitStatus {
    pub unit: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub main_pid: u32,
    pub n_restarts: u32,
    pub memory_bytes: Option<u64>,
    pub unit_file_state: String,
}

/// A sandboxed one-shot command run as a transient service (ProtectSystem=strict, only
/// `writable` writable, no setuid, no devices), used to build Actual versions without ever
/// running npm as root. It runs as `user` when given (the package's `abssctl-build` system
/// user, which owns the build dir and npm cache, so nothing needs to be opened to others),
/// else as a DynamicUser.
#[derive(Debug, Clone, Default)]
pub struct TransientSpec {
    /// Unit name, e.g. `abssctl-build-26.9.0-<opid>.service`.
    pub unit: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    /// Paths the command may write (ReadWritePaths=); everything else is read-only.
    pub writable: Vec<PathBuf>,
    pub timeout: Duration,
    /// A system user to run as (User= and Group=); `None`: DynamicUser=yes.
    pub user: Option<String>,
}

/// How a transient command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransientOutcome {
    /// systemd's `Result` property: "success", "exit-code", "timeout", "signal", ...
    pub result: String,
    pub exit_status: i32,
    /// The uid the dynamic user got (files it wrote are owned by it).
    pub uid: Option<u32>,
}

/// What abssctl asks of systemd.
pub trait Systemd {
    fn daemon_reload(&self) -> Result<()>;
    fn enable_units(&self, units: &[String]) -> Result<()>;
    fn disable_units(&self, units: &[String]) -> Result<()>;
    /// Start and wait for the job to finish (JobRemoved), within `timeout`; a job result
    /// other than "done" is a provider error naming the unit and the result.
    fn start_unit(&self, unit: &str, timeout: Duration) -> Result<()>;
    fn stop_unit(&self, unit: &str, timeout: Duration) -> Result<()>;
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<()>;
    /// ResetFailedUnit: clear the unit's failed state and the count of its start rate
    /// limit, before a start abssctl asks for. The limit (StartLimitBurst=) is the unit's
    /// guard against crash loops, not against the operator: otherwise the sixth settings
    /// change in ten minutes, or the restart that rolls a failed one back, is refused with
    /// `start-limit-hit`. A unit systemd has not loaded has nothing to reset (Ok).
    fn reset_failed(&self, unit: &str) -> Result<()>;
    /// ReloadUnit (nginx is reloaded, never restarted).
    fn reload_unit(&self, unit: &str, timeout: Duration) -> Result<()>;
    /// Properties of many units in one pass.
    fn unit_status(&self, units: &[String]) -> Result<Vec<UnitStatus>>;
    /// Run a sandboxed command as a transient service and wait until it ends.
    fn run_transient(&self, spec: &TransientSpec) -> Result<TransientOutcome>;
}

use crate::error::{Failure, provider};
use anyhow::Context;
use futures_util::StreamExt;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus::proxy::CacheProperties;
use zbus_systemd::zbus::{self, OwnedObjectPath, OwnedVariant, Variant};

/// The real systemd, over the D-Bus system bus. Owns one current-thread tokio runtime: the
/// rest of abssctl is synchronous, and zbus 6 has no blocking API, so every call is a
/// `block_on` of an async body on this runtime (the connection's tasks run during it).
#[derive(Debug)]
pub struct DbusSystemd {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

/// The job verbs abssctl uses; all are awaited through `JobRemoved`.
#[derive(Debug, Clone, Copy)]
enum JobKind {
    Start,
    Stop,
    Restart,
    Reload,
}

impl JobKind {
    fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

/// Raised when the bus or systemd is absent; one message for both, since the operator's
/// remedy is the same.
fn no_systemd(err: impl std::fmt::Display) -> anyhow::Error {
    Failure::environment(format!("no systemd on the system bus ({err})"))
        .hint(
            "abssctl needs systemd as PID 1 and a D-Bus system bus (package dbus or \
             dbus-broker); in a container, boot it with systemd as init",
        )
        .into()
}

/// A D-Bus method failure of systemd, naming the unit and what was asked.
fn dbus_failure(what: &str, unit: &str, err: zbus::Error) -> anyhow::Error {
    let msg = match &err {
        zbus::Error::MethodError(name, detail, _) => match detail {
            Some(d) => format!("{d} ({})", name.as_str()),
            None => name.as_str().to_string(),
        },
        other => other.to_string(),
    };
    let mut f = Failure::provider(format!("systemd refused to {what} {unit}: {msg}"));
    if msg.contains("AccessDenied") || msg.contains("Access denied") {
        f = Failure::environment(format!("systemd refused to {what} {unit}: {msg}"))
            .hint("run abssctl as root");
    }
    f.into()
}

fn variant<'a>(v: impl Into<Variant<'a>>) -> Result<OwnedVariant> {
    OwnedVariant::try_from(v.into()).context("encoding a D-Bus property")
}

/// Units whose properties are read at once (4 calls each, under dbus-daemon's limit of
/// 128 pending replies per connection, with room for the signal subscription calls).
const UNITS_IN_FLIGHT: usize = 24;

/// systemd's "unset" marker for 64-bit numbers (e.g. MemoryCurrent without accounting).
const U64_UNSET: u64 = u64::MAX;
/// systemd's "unset" marker for a uid.
const UID_UNSET: u32 = u32::MAX;

/// The unit properties of a transient sandboxed command, as systemd's D-Bus API wants them.
/// Type=exec makes the start job fail if the binary cannot be executed; AddRef keeps the
/// unit loaded until we have read its result even with CollectMode=inactive-or-failed.
fn transient_properties(spec: &TransientSpec) -> Result<Vec<(String, OwnedVariant)>> {
    let program = spec
        .argv
        .first()
        .ok_or_else(|| anyhow::anyhow!("transient unit {} has an empty command", spec.unit))?
        .clone();
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let writable: Vec<String> = spec
        .writable
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let exec_start = vec![(program, spec.argv.clone(), false)];
    let mut props = vec![
        (
            "Description".to_string(),
            variant(format!("abssctl: {}", spec.argv.join(" ")))?,
        ),
        ("Type".into(), variant("exec")?),
        ("ExecStart".into(), variant(exec_start)?),
        (
            "WorkingDirectory".into(),
            variant(spec.working_dir.to_string_lossy().into_owned())?,
        ),
        ("Environment".into(), variant(env)?),
        ("ProtectSystem".into(), variant("strict")?),
        ("ProtectHome".into(), variant("yes")?),
        ("PrivateTmp".into(), variant(true)?),
        ("PrivateDevices".into(), variant(true)?),
        ("NoNewPrivileges".into(), variant(true)?),
        // A build must not leave setuid files or world-writable modes behind, and every
        // process it starts dies with the unit (npm's children included).
        ("RestrictSUIDSGID".into(), variant(true)?),
        ("UMask".into(), variant(0o022u32)?),
        ("KillMode".into(), variant("control-group")?),
        ("ProtectKernelTunables".into(), variant(true)?),
        ("ProtectKernelModules".into(), variant(true)?),
        ("LockPersonality".into(), variant(true)?),
        ("ReadWritePaths".into(), variant(writable)?),
        ("RemainAfterExit".into(), variant(false)?),
        ("CollectMode".into(), variant("inactive-or-failed")?),
        ("AddRef".into(), variant(true)?),
    ];
    match &spec.user {
        Some(user) => {
            props.push(("User".into(), variant(user.clone())?));
            props.push(("Group".into(), variant(user.clone())?));
        }
        None => props.push(("DynamicUser".into(), variant(true)?)),
    }
    if !spec.timeout.is_zero() {
        let usec = u64::try_from(spec.timeout.as_micros()).unwrap_or(U64_UNSET - 1);
        props.push(("RuntimeMaxUSec".into(), variant(usec)?));
    }
    Ok(props)
}

impl DbusSystemd {
    /// Connect to the system bus and check that systemd answers there.
    pub fn connect() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime for D-Bus")?;
        let conn = rt.block_on(async {
            let conn = zbus::Connection::system().await.map_err(no_systemd)?;
            let manager = ManagerProxy::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(no_systemd)?;
            manager.version().await.map_err(no_systemd)?;
            // Without a subscription systemd may not emit JobRemoved to us.
            manager
                .subscribe()
                .await
                .map_err(|e| dbus_failure("subscribe", "to job signals", e))?;
            Ok::<_, anyhow::Error>(conn)
        })?;
        Ok(DbusSystemd { rt, conn })
    }

    async fn manager(&self) -> Result<ManagerProxy<'static>> {
        ManagerProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating the systemd manager proxy")
    }

    /// Queue a job and wait for its JobRemoved. The signal stream is opened before the
    /// method call so a fast job cannot finish unseen.
    async fn job(&self, kind: JobKind, unit: &str, timeout: Duration) -> Result<()> {
        let manager = self.manager().await?;
        let mut removed = manager
            .receive_job_removed()
            .await
            .context("subscribing to systemd's JobRemoved signal")?;
        let name = unit.to_string();
        let mode = "replace".to_string();
        let job = match kind {
            JobKind::Start => manager.start_unit(name, mode).await,
            JobKind::Stop => manager.stop_unit(name, mode).await,
            JobKind::Restart => manager.restart_unit(name, mode).await,
            JobKind::Reload => manager.reload_unit(name, mode).await,
        }
        .map_err(|e| dbus_failure(kind.verb(), unit, e))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args().context("decoding JobRemoved")?;
                if *args.job() == job {
                    return Ok(args.result().clone());
                }
            }
            anyhow::bail!("the D-Bus connection closed while waiting for the job")
        };
        let result = tokio::time::timeout(timeout, wait).await.map_err(|_| {
            anyhow::Error::from(
                Failure::provider(format!(
                    "systemd job '{} {unit}' did not finish within {}s",
                    kind.verb(),
                    timeout.as_secs()
                ))
                .hint(format!("look at `journalctl -u {unit}`")),
            )
        })??;
        if result == "done" {
            return Ok(());
        }
        Err(Failure::provider(format!(
            "systemd could not {} {unit}: job result '{result}'",
            kind.verb()
        ))
        .hint(format!("look at `journalctl -u {unit}`"))
        .into())
    }

    async fn status_of(&self, row: UnitRow) -> Result<UnitStatus> {
        let (unit, load_state, active_state, sub_state, path) = row;
        let mut status = UnitStatus {
            unit,
            load_state,
            active_state,
            sub_state,
            ..UnitStatus::default()
        };
        if status.load_state != "loaded" {
            return Ok(status);
        }
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let s = ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let ctx = |p: &str| format!("reading {p} of {}", status.unit);
        let (file_state, pid, restarts, memory) = tokio::join!(
            u.unit_file_state(),
            s.main_pid(),
            s.n_restarts(),
            s.memory_current()
        );
        status.unit_file_state = file_state.with_context(|| ctx("UnitFileState"))?;
        status.main_pid = pid.with_context(|| ctx("MainPID"))?;
        status.n_restarts = restarts.with_context(|| ctx("NRestarts"))?;
        status.memory_bytes =
            Some(memory.with_context(|| ctx("MemoryCurrent"))?).filter(|m| *m != U64_UNSET);
        Ok(status)
    }

    async fn transient(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        let manager = self.manager().await?;
        let props = transient_properties(spec)?;
        let mut removed = manager
            .receive_job_removed()
            .await
            .context("subscribing to systemd's JobRemoved signal")?;
        let job = manager
            .start_transient_unit(spec.unit.clone(), "fail".into(), props, Vec::new())
            .await
            .map_err(|e| dbus_failure("start transient unit", &spec.unit, e))?;
        // The job ends when the command was executed (Type=exec) or failed to be.
        let job_result = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(signal) = removed.next().await {
                let args = signal.args().context("decoding JobRemoved")?;
                if *args.job() == job {
                    return Ok(args.result().clone());
                }
            }
            anyhow::bail!("the D-Bus connection closed while waiting for the job")
        })
        .await
        .map_err(|_| provider(format!("systemd did not start {} within 60s", spec.unit)))??;
        drop(removed);
        if job_result != "done" && job_result != "failed" {
            self.unref(&manager, &spec.unit).await;
            return Err(provider(format!(
                "systemd could not start {}: job result '{job_result}'",
                spec.unit
            )));
        }
        let path = manager
            .get_unit(spec.unit.clone())
            .await
            .map_err(|e| dbus_failure("find", &spec.unit, e))?;
        let outcome = self.wait_until_ended(&path, spec).await;
        self.unref(&manager, &spec.unit).await;
        outcome
    }

    /// Poll the unit until it is inactive or failed (it holds a reference, so it cannot be
    /// garbage-collected before we read its result). The uid is read while it runs, since
    /// systemd releases a dynamic user when the unit stops.
    async fn wait_until_ended(
        &self,
        path: &OwnedObjectPath,
        spec: &TransientSpec,
    ) -> Result<TransientOutcome> {
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let s = ServiceProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        // Our own deadline: systemd's RuntimeMaxUSec plus a grace period for the stop.
        let deadline = (!spec.timeout.is_zero())
            .then(|| tokio::time::Instant::now() + spec.timeout + Duration::from_secs(30));
        let mut uid = None;
        let mut pause = Duration::from_millis(50);
        loop {
            let state = u.active_state().await.context("reading ActiveState")?;
            if state == "inactive" || state == "failed" {
                let result = s.result().await.context("reading Result")?;
                let exit_status = s
                    .exec_main_status()
                    .await
                    .context("reading ExecMainStatus")?;
                return Ok(TransientOutcome {
                    result,
                    exit_status,
                    uid,
                });
            }
            if uid.is_none() {
                uid = Some(s.uid().await.context("reading UID")?).filter(|u| *u != UID_UNSET);
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
                return Err(provider(format!(
                    "{} did not end within {}s",
                    spec.unit,
                    spec.timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Manager.Reload: systemd re-reads unit files and drop-ins.
    async fn reload_unit_files(&self) -> Result<()> {
        self.manager()
            .await?
            .reload()
            .await
            .map_err(|e| dbus_failure("reload", "the unit files", e))
    }

    /// Drop our reference so systemd collects the unit. A failure here leaves a dead
    /// transient unit behind until reboot, which is worth a warning but not a failed build.
    async fn unref(&self, manager: &ManagerProxy<'_>, unit: &str) {
        if let Err(e) = manager.unref_unit(unit.to_string()).await {
            tracing::warn!(unit, error = %e, "could not release the transient unit");
        }
    }
}

/// name, load state, active state, sub state, object path (from ListUnitsByNames).
type UnitRow = (String, String, String, String, OwnedObjectPath);

impl Systemd for DbusSystemd {
    fn daemon_reload(&self) -> Result<()> {
        self.rt.block_on(self.reload_unit_files())
    }

    fn enable_units(&self, units: &[String]) -> Result<()> {
        self.rt.block_on(async {
            self.manager()
                .await?
                .enable_unit_files(units.to_vec(), false, true)
                .await
                .map_err(|e| dbus_failure("enable", &units.join(" "), e))?;
            // As systemctl does: without a reload, UnitFileState keeps the old answer.
            self.reload_unit_files().await
        })
    }

    fn disable_units(&self, units: &[String]) -> Result<()> {
        self.rt.block_on(async {
            self.manager()
                .await?
                .disable_unit_files(units.to_vec(), false)
                .await
                .map_err(|e| dbus_failure("disable", &units.join(" "), e))?;
            self.reload_unit_files().await
        })
    }

    fn start_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.job(JobKind::Start, unit, timeout))
    }

    fn stop_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.job(JobKind::Stop, unit, timeout))
    }

    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.job(JobKind::Restart, unit, timeout))
    }

    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.rt.block_on(async {
            match self
                .manager()
                .await?
                .reset_failed_unit(unit.to_string())
                .await
            {
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
                {
                    Ok(())
                }
                r => r.map_err(|e| dbus_failure("reset-failed", unit, e)),
            }
        })
    }

    fn reload_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.rt.block_on(self.job(JobKind::Reload, unit, timeout))
    }

    fn unit_status(&self, units: &[String]) -> Result<Vec<UnitStatus>> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        self.rt.block_on(async {
            let rows = self
                .manager()
                .await?
                .list_units_by_names(units.to_vec())
                .await
                .map_err(|e| dbus_failure("list", &units.join(" "), e))?;
            let reads = rows
                .into_iter()
                .map(|r| self.status_of((r.0, r.2, r.3, r.4, r.6)));
            // Bounded: dbus-daemon caps pending replies per connection (128 on Debian's
            // system bus), and each unit costs 4 concurrent property reads.
            futures_util::stream::iter(reads)
                .buffered(UNITS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        })
    }

    fn run_transient(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        self.rt.block_on(self.transient(spec))
    }
}

/// Connects on first use: dry runs, and reads with nothing to ask systemd, never need a
/// bus (so they also work where systemd is absent, e.g. while preparing an image).
#[derive(Debug, Default)]
pub struct LazySystemd {
    inner: std::cell::OnceCell<DbusSystemd>,
}

impl LazySystemd {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self) -> Result<&DbusSystemd> {
        if let Some(s) = self.inner.get() {
            return Ok(s);
        }
        let s = DbusSystemd::connect()?;
        Ok(self.inner.get_or_init(|| s))
    }
}

impl Systemd for LazySystemd {
    fn daemon_reload(&self) -> Result<()> {
        self.get()?.daemon_reload()
    }
    fn enable_units(&self, units: &[String]) -> Result<()> {
        self.get()?.enable_units(units)
    }
    fn disable_units(&self, units: &[String]) -> Result<()> {
        self.get()?.disable_units(units)
    }
    fn start_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.get()?.start_unit(unit, timeout)
    }
    fn stop_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.get()?.stop_unit(unit, timeout)
    }
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.get()?.restart_unit(unit, timeout)
    }
    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.get()?.reset_failed(unit)
    }
    fn reload_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.get()?.reload_unit(unit, timeout)
    }
    fn unit_status(&self, units: &[String]) -> Result<Vec<UnitStatus>> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        self.get()?.unit_status(units)
    }
    fn run_transient(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        self.get()?.run_transient(spec)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn transient_properties_sandbox_the_command() {
        let spec = TransientSpec {
            unit: "abssctl-build-x.service".into(),
            argv: vec![
                "/opt/node/bin/node".into(),
                "npm-cli.js".into(),
                "ci".into(),
            ],
            env: BTreeMap::from([("HOME".into(), "/srv/app/.staging/x".into())]),
            working_dir: "/srv/app/.staging/x".into(),
            writable: vec!["/srv/app/.staging/x".into()],
            timeout: Duration::from_secs(600),
            user: None,
        };
        let props = transient_properties(&spec).expect("props");
        let get = |k: &str| {
            props
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| format!("{:?}", **v))
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert!(get("DynamicUser").contains("true"));
        assert!(get("ProtectSystem").contains("strict"));
        assert!(get("CollectMode").contains("inactive-or-failed"));
        assert!(get("ReadWritePaths").contains("/srv/app/.staging/x"));
        assert!(get("Environment").contains("HOME=/srv/app/.staging/x"));
        assert!(get("ExecStart").contains("npm-cli.js"));
        assert!(get("RuntimeMaxUSec").contains("600000000"));
        let sig = props
            .iter()
            .find(|(n, _)| n == "ExecStart")
            .map(|(_, v)| v.value_signature().to_string())
            .expect("ExecStart");
        assert_eq!(sig, "a(sasb)");
        assert!(get("RestrictSUIDSGID").contains("true"));
        let named = transient_properties(&TransientSpec {
            user: Some("abssctl-build".into()),
            ..spec
        })
        .expect("props");
        assert!(named.iter().all(|(n, _)| n != "DynamicUser"));
        assert!(
            named
                .iter()
                .any(|(n, v)| n == "User" && format!("{:?}", **v).contains("abssctl-build"))
        );
    }

    #[test]
    fn empty_command_is_refused() {
        let spec = TransientSpec::default();
        assert!(transient_properties(&spec).is_err());
    }

    /// Against a real systemd (the container tier points DBUS_SYSTEM_BUS_ADDRESS at the
    /// container's bus): a transient command's exit status and result come back, and a
    /// unit that does not exist is a provider error naming it.
    #[test]
    #[ignore = "needs systemd on the system bus (real tier)"]
    fn real_systemd_transient_and_jobs() {
        let sd = DbusSystemd::connect().expect("connect");
        let run = |unit: &str, script: &str| {
            sd.run_transient(&TransientSpec {
                unit: unit.into(),
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: BTreeMap::from([("X".into(), "1".into())]),
                working_dir: "/".into(),
                writable: vec![],
                timeout: Duration::from_secs(30),
                user: None,
            })
            .expect("transient")
        };
        let ok = run("abssctl-test-ok.service", "sleep 0.3; test \"$X\" = 1");
        assert_eq!((ok.result.as_str(), ok.exit_status), ("success", 0));
        assert!(ok.uid.is_some_and(|u| u != 0), "{ok:?}");
        let bad = run("abssctl-test-bad.service", "exit 3");
        assert_eq!((bad.result.as_str(), bad.exit_status), ("exit-code", 3));
        let ro = run(
            "abssctl-test-ro.service",
            "touch /etc/abssctl-should-not-exist",
        );
        assert_eq!(ro.result, "exit-code");
        let err = sd
            .start_unit("abssctl-no-such-unit.service", Duration::from_secs(5))
            .expect_err("missing unit");
        assert!(format!("{err:#}").contains("abssctl-no-such-unit.service"));
        let st = sd
            .unit_status(&["dbus.service".into(), "nope.service".into()])
            .expect("status");
        assert_eq!(st[0].active_state, "active");
        assert!(st[0].main_pid > 0);
        assert_eq!(st[1].load_state, "not-found");
    }
}
