//! Read-only instance commands: list, show, status, env, logs. The registry is joined with
//! live systemd state read in ONE batch (ListUnitsByNames + concurrent property reads on one
//! D-Bus connection), so 50 instances cost one round of D-Bus calls, not 50 processes.

use super::{find, probe_health, resolve_version};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State, TlsSource, VersionBinding};
use crate::domain::validate;
use crate::ops::Ctx;
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd, UnitStatus};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

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
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// systemd's UnitFileState: enabled, disabled, ...
    pub enabled: String,
    pub main_pid: Option<u32>,
    pub restarts: u32,
    pub memory_bytes: Option<u64>,
    /// `up` (GET /health answered), `down` (running but not answering), `stopped`.
    pub health: &'static str,
    pub tls_source: Option<TlsSource>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_changed: time::OffsetDateTime,
}

/// `instance list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub instances: Vec<InstanceView>,
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

fn view(layout: &Layout, e: &InstanceEntry, st: Option<&UnitStatus>) -> Result<InstanceView> {
    let st = st.cloned().unwrap_or_default();
    let active = st.active_state == "active";
    let health = match (active, active && probe_health(e.port)) {
        (true, true) => "up",
        (true, false) => "down",
        _ => "stopped",
    };
    Ok(InstanceView {
        name: e.name.clone(),
        domain: e.domain.clone(),
        url: inst::url(&e.domain, e.https_port),
        port: e.port,
        https_port: e.https_port,
        version_binding: e.version_binding.clone(),
        version: installed_version(layout, &e.version_binding)?,
        data_dir: e.data_dir.clone(),
        unit: Layout::unit_name(&e.name),
        load_state: st.load_state,
        active_state: st.active_state,
        sub_state: st.sub_state,
        enabled: st.unit_file_state,
        main_pid: Some(st.main_pid).filter(|p| *p != 0),
        restarts: st.n_restarts,
        memory_bytes: st.memory_bytes,
        health,
        tls_source: e.tls_source,
        created_at: e.created_at,
        last_changed: e.last_changed,
    })
}

/// Registry entries joined with one batched status read.
fn views(ctx: &Ctx, entries: &[&InstanceEntry]) -> Result<Vec<InstanceView>> {
    let units: Vec<String> = entries.iter().map(|e| Layout::unit_name(&e.name)).collect();
    let sd = LazySystemd::new();
    let statuses = sd.unit_status(&units)?;
    entries
        .iter()
        .map(|e| {
            let unit = Layout::unit_name(&e.name);
            view(&ctx.layout, e, statuses.iter().find(|s| s.unit == unit))
        })
        .collect()
}

/// Every instance (no lock: registry files are replaced by rename, a reader sees a whole
/// file; works unprivileged).
pub fn list(ctx: &Ctx) -> Result<ListResult> {
    let state = State::load(&ctx.layout)?;
    let mut entries: Vec<&InstanceEntry> = state.instances.iter().collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListResult {
        instances: views(ctx, &entries)?,
    })
}

/// One instance.
pub fn show(ctx: &Ctx, name: &str) -> Result<InstanceView> {
    validate::instance_name(name)?;
    sys::logging::set_instance(name);
    let state = State::load(&ctx.layout)?;
    let e = find(&state, name)?;
    Ok(views(ctx, &[e])?.remove(0))
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
