//! Bounded D-Bus calls, and how their failures read. Every method call and property read
//! abssctl makes to systemd goes through [`call`], so none can hang the CLI, and each
//! failure names what was asked and of which unit.

use crate::error::Failure;
use anyhow::Result;
use std::future::Future;
use std::time::Duration;
use zbus_systemd::zbus;

/// How long one D-Bus method call or property read may take. 25 s is the default reply
/// timeout of both libdbus and sd-bus (so what `systemctl` waits for a plain call): a
/// healthy systemd answers in milliseconds, so reaching it means PID 1 or the bus is stuck,
/// and the operator learns which call hung instead of watching abssctl wait forever.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(25);

/// Manager.Reload (daemon-reload) only replies once every generator has run and every unit
/// file is re-read; `systemctl daemon-reload` waits twice systemd's 90 s default timeout
/// for it, and so do we.
pub(super) const RELOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// `d` for a message: "25s", "1.5s".
pub(super) fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Await one D-Bus call within `limit`; `what` and `unit` name it in any error ("systemd
/// refused to {what} {unit}: ..." or "... did not answer within ...").
pub(super) async fn call<T>(
    what: &str,
    unit: &str,
    limit: Duration,
    fut: impl Future<Output = zbus::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(reply) => reply.map_err(|e| dbus_failure(what, unit, e)),
        Err(_) => Err(no_answer(what, unit, limit)),
    }
}

/// A call that got no reply within `limit`: exit 4, naming the call and the unit.
pub(super) fn no_answer(what: &str, unit: &str, limit: Duration) -> anyhow::Error {
    Failure::provider(format!(
        "systemd did not answer within {} when asked to {what} {unit}",
        secs(limit)
    ))
    .hint("systemd (PID 1) or the D-Bus system bus is stuck or overloaded; look at `journalctl -b`")
    .into()
}

/// Raised when the bus or systemd is absent; one message for both, since the operator's
/// remedy is the same.
pub(super) fn no_systemd(err: impl std::fmt::Display) -> anyhow::Error {
    Failure::environment(format!("no systemd on the system bus ({err})"))
        .hint(
            "abssctl needs systemd as PID 1 and a D-Bus system bus (package dbus or \
             dbus-broker); in a container, boot it with systemd as init",
        )
        .into()
}

/// A D-Bus method failure of systemd, naming the unit and what was asked.
pub(super) fn dbus_failure(what: &str, unit: &str, err: zbus::Error) -> anyhow::Error {
    let msg = match &err {
        zbus::Error::MethodError(name, detail, _) => match detail {
            Some(d) => format!("{d} ({})", name.as_str()),
            None => name.as_str().to_string(),
        },
        other => other.to_string(),
    };
    let text = format!("systemd refused to {what} {unit}: {msg}");
    if msg.contains("AccessDenied") || msg.contains("Access denied") {
        return Failure::environment(text)
            .hint("run abssctl as root")
            .into();
    }
    Failure::provider(text).into()
}

/// What became of a job that outlived its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Abandoned {
    /// Job.Cancel succeeded (a stop or reload: nothing more to undo).
    Cancelled,
    /// Job.Cancel succeeded and the unit, left activating by the cancelled start, was stopped.
    CancelledAndStopped,
    /// Job.Cancel succeeded; stopping the unit afterwards failed, for this reason.
    StopFailed(String),
    /// Job.Cancel itself failed, for this reason.
    CancelFailed(String),
}

/// The message for a job that did not finish within `limit`; says what was done about it.
pub(super) fn abandoned_message(
    verb: &str,
    unit: &str,
    limit: Duration,
    how: &Abandoned,
) -> String {
    let head = format!(
        "systemd job '{verb} {unit}' did not finish within {}",
        secs(limit)
    );
    match how {
        Abandoned::Cancelled => format!("{head}; the job was cancelled"),
        Abandoned::CancelledAndStopped => {
            format!("{head}; the job was cancelled and {unit} stopped")
        }
        Abandoned::StopFailed(why) => {
            format!("{head}; the job was cancelled, but stopping {unit} failed: {why}")
        }
        Abandoned::CancelFailed(why) => format!("{head}, and cancelling the job failed: {why}"),
    }
}

/// A finished job's result ("done", "failed", "canceled", "timeout", "dependency",
/// "skipped", ...): anything but "done" is a provider error naming the unit and the result.
pub(super) fn job_outcome(verb: &str, unit: &str, result: &str) -> Result<()> {
    if result == "done" {
        return Ok(());
    }
    Err(Failure::provider(format!(
        "systemd could not {verb} {unit}: job result '{result}'"
    ))
    .hint(format!("look at `journalctl -u {unit}`"))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Kind, classify};

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(secs(Duration::from_secs(25)), "25s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn abandoned_jobs_say_what_was_done() {
        let t = Duration::from_secs(1);
        let m = |how| abandoned_message("start", "x.service", t, &how);
        assert_eq!(
            m(Abandoned::Cancelled),
            "systemd job 'start x.service' did not finish within 1s; the job was cancelled"
        );
        assert!(m(Abandoned::CancelledAndStopped).ends_with("cancelled and x.service stopped"));
        let stop = m(Abandoned::StopFailed("no answer".into()));
        assert!(stop.contains("the job was cancelled, but stopping x.service failed: no answer"));
        let cancel = m(Abandoned::CancelFailed("NoSuchJob".into()));
        assert!(
            cancel.contains("cancelling the job failed: NoSuchJob"),
            "{cancel}"
        );
        assert!(!cancel.contains("was cancelled"), "{cancel}");
    }

    #[test]
    fn only_done_is_a_finished_job() {
        assert!(job_outcome("start", "a.service", "done").is_ok());
        for result in ["failed", "canceled", "timeout", "dependency"] {
            let err = job_outcome("start", "a.service", result).expect_err(result);
            let (kind, msg, hint) = classify(&err);
            assert_eq!(kind, Kind::Provider);
            assert!(msg.contains("a.service") && msg.contains(result), "{msg}");
            assert!(hint.is_some_and(|h| h.contains("journalctl -u a.service")));
        }
    }

    #[test]
    fn failures_name_the_call_and_the_unit() {
        let (kind, msg, _) = classify(&no_answer("start", "a.service", CALL_TIMEOUT));
        assert_eq!(kind, Kind::Provider);
        assert_eq!(
            msg,
            "systemd did not answer within 25s when asked to start a.service"
        );
        let denied = zbus::Error::Failure("Access denied".into());
        let (kind, msg, hint) = classify(&dbus_failure("stop", "a.service", denied));
        assert_eq!(kind, Kind::Environment);
        assert!(
            msg.starts_with("systemd refused to stop a.service"),
            "{msg}"
        );
        assert_eq!(hint.as_deref(), Some("run abssctl as root"));
        let other = zbus::Error::Failure("boom".into());
        assert_eq!(
            classify(&dbus_failure("stop", "a", other)).0,
            Kind::Provider
        );
    }

    /// A call that never answers ends at the limit, as a provider error naming it.
    #[tokio::test]
    async fn a_call_without_an_answer_times_out() {
        let limit = Duration::from_millis(20);
        let never = std::future::pending::<zbus::Result<()>>();
        let err = call("reload", "nginx.service", limit, never)
            .await
            .expect_err("pending forever");
        let (kind, msg, _) = classify(&err);
        assert_eq!(kind, Kind::Provider);
        assert!(
            msg.contains("within 0.02s when asked to reload nginx.service"),
            "{msg}"
        );
        let ok = call("reload", "nginx.service", limit, async { Ok(7) }).await;
        assert_eq!(ok.expect("answered"), 7);
    }
}
