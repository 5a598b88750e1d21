//! [`DbusSystemd`]: the real systemd over the D-Bus system bus. Every method call and
//! property read is bounded (`call`); jobs are awaited through their JobRemoved signal and
//! cancelled when they outlive their timeout; a transient command is followed through its
//! unit's PropertiesChanged signals.

use super::call::{self, Abandoned, CALL_TIMEOUT, RELOAD_TIMEOUT, call, no_systemd, secs};
use super::transient::{U64_UNSET, UID_UNSET, has_ended, transient_properties, unit_change};
use super::{Systemd, TimerStatus, TransientOutcome, TransientSpec, UnitStatus};
use crate::error::{Failure, provider};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use std::time::Duration;
use zbus_systemd::systemd1::{JobProxy, JobRemovedStream, ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus::fdo::PropertiesProxy;
use zbus_systemd::zbus::proxy::CacheProperties;
use zbus_systemd::zbus::{self, OwnedObjectPath};

/// Units whose properties are read at once (4 calls each, under dbus-daemon's limit of
/// 128 pending replies per connection, with room for the signal subscription calls).
const UNITS_IN_FLIGHT: usize = 24;

/// The start job of a transient command ends as soon as the command was executed
/// (Type=exec) or failed to be, which takes well under a second unless systemd is stuck.
const TRANSIENT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Past a transient command's RuntimeMaxUSec, how long systemd may take to stop it (its
/// SIGTERM, then SIGKILL) before we stop waiting.
const TRANSIENT_STOP_GRACE: Duration = Duration::from_secs(30);

/// After a cancelled start, how long its unit may take to stop: systemd's default
/// TimeoutStopSec (90 s, then SIGKILL) and a margin.
const STOP_AFTER_CANCEL_TIMEOUT: Duration = Duration::from_secs(95);

/// When Job.Cancel fails because the job has just ended, its JobRemoved was sent before
/// that answer; this is how long we look for it.
const LATE_RESULT_WAIT: Duration = Duration::from_secs(1);

const SYSTEMD_SERVICE: &str = "org.freedesktop.systemd1";

/// The real systemd, over the D-Bus system bus. Owns one current-thread tokio runtime: the
/// rest of abssctl is synchronous, and zbus 6 has no blocking API, so every call is a
/// `block_on` of an async body on this runtime (the connection's tasks run during it).
#[derive(Debug)]
pub struct DbusSystemd {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    /// Set once `Subscribe` was called: only a command that waits for a job needs systemd's
    /// signals, so a read (`instance list`) spends no round trip on it, and systemd does
    /// not track a subscriber that is gone a few milliseconds later.
    subscribed: tokio::sync::OnceCell<()>,
}

/// The job verbs abssctl uses; all are awaited through `JobRemoved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Cancelling this job cancels the job only, not the work: a unit whose start was
    /// cancelled stays activating with its process running, so it is stopped as well.
    fn stop_when_cancelled(self) -> bool {
        matches!(self, JobKind::Start | JobKind::Restart)
    }
}

/// The result of `job`, from its JobRemoved on `removed`.
async fn job_result(removed: &mut JobRemovedStream, job: &OwnedObjectPath) -> Result<String> {
    while let Some(signal) = removed.next().await {
        let args = signal.args().context("decoding JobRemoved")?;
        if args.job() == job {
            return Ok(args.result().clone());
        }
    }
    Err(provider(
        "the D-Bus connection closed while waiting for a systemd job",
    ))
}

/// The current-thread runtime a [`DbusSystemd`] runs its calls on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime for D-Bus")
}

/// The Manager on `conn`, once systemd has answered a first call there (its version).
async fn checked_manager(conn: &zbus::Connection) -> Result<ManagerProxy<'static>> {
    let manager = ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(no_systemd)?;
    tokio::time::timeout(CALL_TIMEOUT, manager.version())
        .await
        .map_err(|_| call::no_answer("read", "its version", CALL_TIMEOUT))?
        .map_err(no_systemd)?;
    Ok(manager)
}

impl DbusSystemd {
    /// Connect to the system bus and check that systemd answers there.
    pub fn connect() -> Result<Self> {
        let rt = runtime()?;
        let (conn, manager) = rt.block_on(async {
            let conn = tokio::time::timeout(CALL_TIMEOUT, zbus::Connection::system())
                .await
                .map_err(|_| {
                    no_systemd(format!(
                        "the system bus did not answer within {}",
                        secs(CALL_TIMEOUT)
                    ))
                })?
                .map_err(no_systemd)?;
            let manager = checked_manager(&conn).await?;
            Ok::<_, anyhow::Error>((conn, manager))
        })?;
        Ok(Self::of(rt, conn, manager))
    }

    /// For reads only (no job can be waited for on it, see `super::private`): systemd's
    /// private socket when this process is root and it is there, else `Ok(None)`.
    pub fn connect_for_reads() -> Result<Option<Self>> {
        let rt = runtime()?;
        let Some((conn, manager)) = rt.block_on(async {
            let Some(conn) = tokio::time::timeout(CALL_TIMEOUT, super::private::connect())
                .await
                .map_err(|_| {
                    no_systemd(format!(
                        "systemd's private socket did not answer within {}",
                        secs(CALL_TIMEOUT)
                    ))
                })??
            else {
                return Ok::<_, anyhow::Error>(None);
            };
            let manager = checked_manager(&conn).await?;
            Ok(Some((conn, manager)))
        })?
        else {
            return Ok(None);
        };
        Ok(Some(Self::of(rt, conn, manager)))
    }

    fn of(
        rt: tokio::runtime::Runtime,
        conn: zbus::Connection,
        manager: ManagerProxy<'static>,
    ) -> Self {
        DbusSystemd {
            rt,
            conn,
            manager,
            subscribed: tokio::sync::OnceCell::new(),
        }
    }

    pub(super) fn manager(&self) -> &ManagerProxy<'static> {
        &self.manager
    }

    pub(super) fn connection(&self) -> &zbus::Connection {
        &self.conn
    }

    /// A stream of every JobRemoved; opened before the call that queues a job, so a fast
    /// job cannot finish unseen.
    async fn job_signals(&self) -> Result<JobRemovedStream> {
        // Without a subscription systemd may not emit JobRemoved or PropertiesChanged.
        self.subscribed
            .get_or_try_init(|| {
                call(
                    "subscribe",
                    "to its signals",
                    CALL_TIMEOUT,
                    self.manager.subscribe(),
                )
            })
            .await?;
        call(
            "subscribe",
            "to JobRemoved",
            CALL_TIMEOUT,
            self.manager.receive_job_removed(),
        )
        .await
    }

    /// Queue a job and wait for it to finish; a result other than "done" is an error.
    async fn job(&self, kind: JobKind, unit: &str, timeout: Duration) -> Result<()> {
        let mut removed = self.job_signals().await?;
        let (name, mode) = (unit.to_string(), "replace".to_string());
        let m = &self.manager;
        let queued = async {
            match kind {
                JobKind::Start => m.start_unit(name, mode).await,
                JobKind::Stop => m.stop_unit(name, mode).await,
                JobKind::Restart => m.restart_unit(name, mode).await,
                JobKind::Reload => m.reload_unit(name, mode).await,
            }
        };
        let job = call(kind.verb(), unit, CALL_TIMEOUT, queued).await?;
        let result = self
            .finish_job(&mut removed, &job, kind, unit, timeout)
            .await?;
        call::job_outcome(kind.verb(), unit, &result)
    }

    /// Wait for `job`'s JobRemoved on `removed` and return its result. A job that is still
    /// there after `limit` is cancelled (and a start's unit stopped), and the error says so,
    /// or why that failed.
    async fn finish_job(
        &self,
        removed: &mut JobRemovedStream,
        job: &OwnedObjectPath,
        kind: JobKind,
        unit: &str,
        limit: Duration,
    ) -> Result<String> {
        if let Ok(result) = tokio::time::timeout(limit, job_result(removed, job)).await {
            return result;
        }
        let how = match self.cancel_job(job, kind, unit).await {
            Ok(()) if kind.stop_when_cancelled() => {
                match self.stop_after_cancel(removed, unit).await {
                    Ok(()) => Abandoned::CancelledAndStopped,
                    Err(e) => Abandoned::StopFailed(format!("{e:#}")),
                }
            }
            Ok(()) => Abandoned::Cancelled,
            Err(e) => {
                // It may have ended between our timeout and the cancel (systemd answers
                // NoSuchJob then): its JobRemoved came first, so take that result.
                let late = tokio::time::timeout(LATE_RESULT_WAIT, job_result(removed, job));
                if let Ok(Ok(result)) = late.await {
                    return Ok(result);
                }
                Abandoned::CancelFailed(format!("{e:#}"))
            }
        };
        Err(
            Failure::provider(call::abandoned_message(kind.verb(), unit, limit, &how))
                .hint(format!("look at `journalctl -u {unit}`"))
                .into(),
        )
    }

    /// org.freedesktop.systemd1.Job.Cancel on the job's object path.
    async fn cancel_job(&self, job: &OwnedObjectPath, kind: JobKind, unit: &str) -> Result<()> {
        let proxy = JobProxy::builder(&self.conn)
            .path(job.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd job proxy")?;
        let what = format!("cancel the {} job of", kind.verb());
        call(&what, unit, CALL_TIMEOUT, proxy.cancel()).await
    }

    /// Stop `unit` after its start job was cancelled, and wait for that stop. A stop that
    /// takes too long stays queued (systemd finishes it); the error says so.
    async fn stop_after_cancel(&self, removed: &mut JobRemovedStream, unit: &str) -> Result<()> {
        let stop = self
            .manager
            .stop_unit(unit.to_string(), "replace".to_string());
        let job = call("stop", unit, CALL_TIMEOUT, stop).await?;
        match tokio::time::timeout(STOP_AFTER_CANCEL_TIMEOUT, job_result(removed, &job)).await {
            Ok(result) => call::job_outcome("stop", unit, &result?),
            Err(_) => Err(provider(format!(
                "{unit} did not stop within {} (its stop job is still queued)",
                secs(STOP_AFTER_CANCEL_TIMEOUT)
            ))),
        }
    }

    async fn unit_proxy(&self, path: &OwnedObjectPath) -> Result<UnitProxy<'static>> {
        UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd unit proxy")
    }

    async fn service_proxy(&self, path: &OwnedObjectPath) -> Result<ServiceProxy<'static>> {
        ServiceProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd service proxy")
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
        let (u, s) = (
            self.unit_proxy(&path).await?,
            self.service_proxy(&path).await?,
        );
        let name = status.unit.as_str();
        let (file_state, pid, restarts, memory) = tokio::join!(
            call(
                "read UnitFileState of",
                name,
                CALL_TIMEOUT,
                u.unit_file_state()
            ),
            call("read MainPID of", name, CALL_TIMEOUT, s.main_pid()),
            call("read NRestarts of", name, CALL_TIMEOUT, s.n_restarts()),
            call(
                "read MemoryCurrent of",
                name,
                CALL_TIMEOUT,
                s.memory_current()
            ),
        );
        status.unit_file_state = file_state?;
        status.main_pid = pid?;
        status.n_restarts = restarts?;
        status.memory_bytes = Some(memory?).filter(|m| *m != U64_UNSET);
        Ok(status)
    }

    async fn transient(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        let unit = spec.unit.as_str();
        let props = transient_properties(spec)?;
        let mut removed = self.job_signals().await?;
        let start =
            self.manager
                .start_transient_unit(spec.unit.clone(), "fail".into(), props, Vec::new());
        let job = call("start transient unit", unit, CALL_TIMEOUT, start).await?;
        // The job ends when the command was executed (Type=exec) or failed to be.
        let started = self
            .finish_job(
                &mut removed,
                &job,
                JobKind::Start,
                unit,
                TRANSIENT_START_TIMEOUT,
            )
            .await;
        drop(removed);
        let outcome = match started {
            Ok(r) if r == "done" || r == "failed" => self.wait_until_ended(spec).await,
            Ok(r) => Err(provider(format!(
                "systemd could not start {unit}: job result '{r}'"
            ))),
            Err(e) => Err(e),
        };
        self.unref(unit).await;
        outcome
    }

    /// Wait until the unit is inactive or failed, from its PropertiesChanged signals (it
    /// holds a reference, so it cannot be garbage-collected before we read its result).
    /// The uid is taken while it runs, since systemd releases a dynamic user at stop.
    async fn wait_until_ended(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        let unit = spec.unit.as_str();
        let path = call(
            "find",
            unit,
            CALL_TIMEOUT,
            self.manager.get_unit(spec.unit.clone()),
        )
        .await?;
        let props = PropertiesProxy::builder(&self.conn)
            .destination(SYSTEMD_SERVICE)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a D-Bus properties proxy")?;
        let mut changes = call(
            "watch",
            unit,
            CALL_TIMEOUT,
            props.receive_properties_changed(),
        )
        .await?;
        // Read only once subscribed: a change after this read is in `changes`.
        let (u, s) = (
            self.unit_proxy(&path).await?,
            self.service_proxy(&path).await?,
        );
        let mut state = call("read ActiveState of", unit, CALL_TIMEOUT, u.active_state()).await?;
        let uid = call("read UID of", unit, CALL_TIMEOUT, s.uid()).await?;
        let mut uid = Some(uid).filter(|u| *u != UID_UNSET);
        // Our own deadline: systemd's RuntimeMaxUSec plus a grace period for the stop.
        let deadline = (!spec.timeout.is_zero())
            .then(|| tokio::time::Instant::now() + spec.timeout + TRANSIENT_STOP_GRACE);
        while !has_ended(&state) {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, changes.next())
                    .await
                    .map_err(|_| {
                        provider(format!("{unit} did not end within {}", secs(spec.timeout)))
                    })?,
                None => changes.next().await,
            };
            let signal = next.ok_or_else(|| {
                provider(format!(
                    "the D-Bus connection closed while waiting for {unit} to end"
                ))
            })?;
            let args = signal.args().context("decoding PropertiesChanged")?;
            let change = unit_change(
                args.interface_name().as_str(),
                args.changed_properties(),
                args.invalidated_properties(),
            )
            .with_context(|| format!("reading a PropertiesChanged of {unit}"))?;
            uid = uid.or(change.uid);
            if let Some(new) = change.active_state {
                state = new;
            } else if change.reread_state {
                state = call("read ActiveState of", unit, CALL_TIMEOUT, u.active_state()).await?;
            }
        }
        let result = call("read Result of", unit, CALL_TIMEOUT, s.result()).await?;
        let exit_status = call(
            "read ExecMainStatus of",
            unit,
            CALL_TIMEOUT,
            s.exec_main_status(),
        )
        .await?;
        Ok(TransientOutcome {
            result,
            exit_status,
            uid,
        })
    }

    /// Manager.Reload: systemd re-reads unit files and drop-ins.
    async fn reload_unit_files(&self) -> Result<()> {
        call(
            "reload",
            "the unit files",
            RELOAD_TIMEOUT,
            self.manager.reload(),
        )
        .await
    }

    /// Drop our reference so systemd collects the unit. A failure here leaves a dead
    /// transient unit behind until reboot, which is worth a warning but not a failed build.
    async fn unref(&self, unit: &str) {
        let unref = self.manager.unref_unit(unit.to_string());
        if let Err(e) = call("release", unit, CALL_TIMEOUT, unref).await {
            tracing::warn!(unit, error = %format!("{e:#}"), "could not release the transient unit");
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
            let enable = self.manager.enable_unit_files(units.to_vec(), false, true);
            call("enable", &units.join(" "), CALL_TIMEOUT, enable).await?;
            // As systemctl does: without a reload, UnitFileState keeps the old answer.
            self.reload_unit_files().await
        })
    }

    fn disable_units(&self, units: &[String]) -> Result<()> {
        self.rt.block_on(async {
            let disable = self.manager.disable_unit_files(units.to_vec(), false);
            call("disable", &units.join(" "), CALL_TIMEOUT, disable).await?;
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
            let reset = self.manager.reset_failed_unit(unit.to_string());
            match tokio::time::timeout(CALL_TIMEOUT, reset).await {
                Err(_) => Err(call::no_answer("reset-failed", unit, CALL_TIMEOUT)),
                Ok(Err(zbus::Error::MethodError(name, _, _)))
                    if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
                {
                    Ok(())
                }
                Ok(r) => r.map_err(|e| call::dbus_failure("reset-failed", unit, e)),
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
            let list = self.manager.list_units_by_names(units.to_vec());
            let rows = call("list", &units.join(" "), CALL_TIMEOUT, list).await?;
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

    fn timer_status(&self, timers: &[String]) -> Result<Vec<TimerStatus>> {
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(timers.len());
            for t in timers {
                out.push(self.timer_of(t).await?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cancelled_start_stops_its_unit() {
        assert!(JobKind::Start.stop_when_cancelled());
        assert!(JobKind::Restart.stop_when_cancelled());
        assert!(!JobKind::Stop.stop_when_cancelled());
        assert!(!JobKind::Reload.stop_when_cancelled());
    }
}
