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

/// A sandboxed one-shot command run as a transient service (DynamicUser=yes,
/// ProtectSystem=strict, only `writable` writable), used to build Actual versions without
/// ever running npm as root.
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
    /// ReloadUnit (nginx is reloaded, never restarted).
    fn reload_unit(&self, unit: &str, timeout: Duration) -> Result<()>;
    /// Properties of many units in one pass.
    fn unit_status(&self, units: &[String]) -> Result<Vec<UnitStatus>>;
    /// Run a sandboxed command as a transient service and wait until it ends.
    fn run_transient(&self, spec: &TransientSpec) -> Result<TransientOutcome>;
}
