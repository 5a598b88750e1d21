//! systemd over D-Bus (org.freedesktop.systemd1): unit files, jobs, properties, transient
//! units. No `systemctl` subprocesses: the D-Bus API gives job results and typed properties.
//!
//! The trait is what `ops` uses; the real implementation ([`DbusSystemd`], in `dbus`)
//! drives zbus from one tokio runtime it owns (the rest of abssctl is synchronous). Every
//! D-Bus call is bounded (`call`); the pure halves of transient units are in `transient`.

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

/// A timer and the service it triggers (for `backup schedule --list`). Times are
/// CLOCK_REALTIME microseconds; `None`: never / not planned.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TimerStatus {
    pub timer: String,
    pub load_state: String,
    pub active_state: String,
    pub unit_file_state: String,
    pub next_elapse_usec: Option<u64>,
    pub last_trigger_usec: Option<u64>,
    /// The unit it triggers (its `Unit=`), and how that one last ended.
    pub service: String,
    pub service_active_state: String,
    /// systemd's `Result` of its last run ("success", "exit-code", ...).
    pub service_result: String,
    pub service_ended_usec: Option<u64>,
    pub service_exit_status: Option<i32>,
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
    /// The uid it ran as: the dynamic user's or the named user's (files it wrote are
    /// owned by it).
    pub uid: Option<u32>,
}

/// What abssctl asks of systemd.
pub trait Systemd {
    fn daemon_reload(&self) -> Result<()>;
    fn enable_units(&self, units: &[String]) -> Result<()>;
    fn disable_units(&self, units: &[String]) -> Result<()>;
    /// Start and wait for the job to finish (JobRemoved), within `timeout`; a job result
    /// other than "done" is a provider error naming the unit and the result. A job still
    /// running at `timeout` is cancelled (a start's or restart's unit is then stopped) and
    /// that is a provider error saying so. Every other D-Bus call is bounded as well.
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
    /// Timers and their services, one entry per timer (a unit systemd cannot load comes
    /// back with its load state and nothing else).
    fn timer_status(&self, timers: &[String]) -> Result<Vec<TimerStatus>>;
}

mod call;
mod dbus;
mod private;
mod timer;
mod transient;

pub use dbus::DbusSystemd;
pub use timer::check_calendar;

/// Connects on first use: dry runs, and reads with nothing to ask systemd, never need a
/// bus (so they also work where systemd is absent, e.g. while preparing an image).
#[derive(Debug, Default)]
pub struct LazySystemd {
    inner: std::cell::OnceCell<DbusSystemd>,
    /// Root's reads go to systemd's private socket (`private`): set on the first read
    /// made before any change, `None` when that socket cannot be used.
    reader: std::cell::OnceCell<Option<DbusSystemd>>,
}

impl LazySystemd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads too go over the system bus: for the doctor, whose `env.systemd` says whether
    /// the bus that every change needs answers (the private socket would answer for it).
    pub fn over_bus() -> Self {
        let s = Self::default();
        // Set to "no private socket" up front, so `reads` goes to the bus.
        let _ = s.reader.set(None);
        s
    }

    fn get(&self) -> Result<&DbusSystemd> {
        if let Some(s) = self.inner.get() {
            return Ok(s);
        }
        let s = DbusSystemd::connect()?;
        Ok(self.inner.get_or_init(|| s))
    }

    /// Where a read goes: the bus when this command is already connected there (one
    /// connection per command), else the private socket, else the bus. A private socket
    /// that fails to connect is not an error: the bus answers the same questions.
    fn reads(&self) -> Result<&DbusSystemd> {
        if let Some(s) = self.inner.get() {
            return Ok(s);
        }
        let private = self.reader.get_or_init(|| {
            DbusSystemd::connect_for_reads().unwrap_or_else(|e| {
                tracing::debug!("reading over the system bus: {e:#}");
                None
            })
        });
        match private {
            Some(s) => Ok(s),
            None => self.get(),
        }
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
        self.reads()?.unit_status(units)
    }
    fn run_transient(&self, spec: &TransientSpec) -> Result<TransientOutcome> {
        self.get()?.run_transient(spec)
    }
    fn timer_status(&self, timers: &[String]) -> Result<Vec<TimerStatus>> {
        if timers.is_empty() {
            return Ok(Vec::new());
        }
        self.reads()?.timer_status(timers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    /// Against a real systemd, as root: the private socket is used, answers what the bus
    /// answers (a unit that runs, one that does not exist), many reads in a row each get
    /// their answer, and `over_bus` (the doctor's) never takes the private socket.
    #[test]
    #[ignore = "needs systemd on the system bus (real tier)"]
    fn real_systemd_private_reads_are_the_bus_reads() {
        let units = vec![
            "dbus.service".to_string(),
            "abssctl-nope.service".to_string(),
        ];
        let bus = DbusSystemd::connect().expect("connect").unit_status(&units);
        for _ in 0..20 {
            let private = DbusSystemd::connect_for_reads()
                .expect("connect to the private socket")
                .expect("root has the private socket");
            let got = private.unit_status(&units).expect("read");
            let want = bus.as_ref().expect("bus read");
            let key = |v: &[UnitStatus]| {
                v.iter()
                    .map(|s| {
                        (
                            s.unit.clone(),
                            s.load_state.clone(),
                            s.active_state.clone(),
                            s.main_pid,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(key(&got), key(want));
            assert!(
                got[0].main_pid != 0 && got[0].active_state == "active",
                "{got:?}"
            );
        }
        let doctor = LazySystemd::over_bus();
        doctor.unit_status(&units).expect("read over the bus");
        assert!(
            doctor.inner.get().is_some(),
            "the doctor's read went elsewhere"
        );
        let list = LazySystemd::new();
        list.unit_status(&units).expect("read");
        assert!(list.inner.get().is_none(), "root's read went over the bus");
    }

    /// Against a real systemd (the container tier points DBUS_SYSTEM_BUS_ADDRESS at the
    /// container's bus): a transient command's exit status and result come back, as a
    /// dynamic user or as a named one, and a unit that does not exist is a provider error
    /// naming it.
    #[test]
    #[ignore = "needs systemd on the system bus (real tier)"]
    fn real_systemd_transient_and_jobs() {
        let sd = DbusSystemd::connect().expect("connect");
        let run_as = |unit: &str, script: &str, user: Option<&str>| {
            sd.run_transient(&TransientSpec {
                unit: unit.into(),
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: BTreeMap::from([("X".into(), "1".into())]),
                working_dir: "/".into(),
                writable: vec![],
                timeout: Duration::from_secs(30),
                user: user.map(str::to_string),
            })
            .expect("transient")
        };
        let run = |unit: &str, script: &str| run_as(unit, script, None);
        let ok = run("abssctl-test-ok.service", "sleep 0.3; test \"$X\" = 1");
        assert_eq!((ok.result.as_str(), ok.exit_status), ("success", 0));
        assert!(ok.uid.is_some_and(|u| u != 0), "{ok:?}");
        let nobody = nix::unistd::User::from_name("nobody")
            .expect("passwd")
            .expect("a nobody user");
        let named = run_as(
            "abssctl-test-nobody.service",
            "sleep 0.3; test \"$(id -u)\" = $(id -u nobody) && test \"$X\" = 1",
            Some("nobody"),
        );
        assert_eq!((named.result.as_str(), named.exit_status), ("success", 0));
        assert_eq!(named.uid, Some(nobody.uid.as_raw()), "{named:?}");
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

    /// Removes the test unit file (and reloads) however the test ends.
    struct UnitFile(PathBuf);

    impl Drop for UnitFile {
        fn drop(&mut self) {
            if let Err(e) = std::fs::remove_file(&self.0) {
                eprintln!("removing {}: {e}", self.0.display());
            }
            if let Ok(sd) = DbusSystemd::connect()
                && let Err(e) = sd.daemon_reload()
            {
                eprintln!("daemon-reload after removing {}: {e:#}", self.0.display());
            }
        }
    }

    /// A start job that outlives its timeout is cancelled, its unit is not left activating
    /// with the process running, and the error says what happened (exit 4).
    #[test]
    #[ignore = "needs systemd on the system bus (real tier)"]
    fn real_systemd_cancels_a_start_that_outlives_its_timeout() {
        let unit = "abssctl-test-slow.service";
        let file = UnitFile(PathBuf::from("/run/systemd/system").join(unit));
        std::fs::create_dir_all("/run/systemd/system").expect("unit dir");
        std::fs::write(
            &file.0,
            "[Service]\nType=oneshot\nExecStart=/bin/sleep 30\n",
        )
        .expect("unit file");
        let sd = DbusSystemd::connect().expect("connect");
        sd.daemon_reload().expect("daemon-reload");
        let began = std::time::Instant::now();
        let err = sd
            .start_unit(unit, Duration::from_secs(1))
            .expect_err("a 30 s start cannot finish in 1 s");
        let (kind, msg, _) = crate::error::classify(&err);
        assert_eq!(kind, crate::error::Kind::Provider, "{msg}");
        assert!(msg.contains("did not finish within 1s"), "{msg}");
        assert!(msg.contains("the job was cancelled"), "{msg}");
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{:?}",
            began.elapsed()
        );
        let st = sd.unit_status(&[unit.to_string()]).expect("status");
        assert_eq!(st[0].load_state, "loaded", "{st:?}");
        assert!(
            st[0].active_state != "activating" && st[0].main_pid == 0,
            "{st:?}"
        );
    }
}
