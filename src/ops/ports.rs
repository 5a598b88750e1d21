//! Port reservations: list (read-only, no lock), reserve and release (root, global lock,
//! one-step transaction that restores the previous registry on failure).

use crate::domain::audit::Target;
use crate::domain::state::{PortReservation, Reserved, State};
use crate::domain::txn::{self, Plan, PlannedAction};
use crate::domain::validate;
use crate::ops::Ctx;
use crate::sys::lock::LockGuard;
use crate::sys::net::SystemPorts;
use anyhow::{Context, Result};
use serde::Serialize;

/// `ports list` data (the `--json` contract: `{"ports": [{port, instance, reserved_at}]}`).
#[derive(Debug, Clone, Serialize)]
pub struct PortList {
    pub ports: Vec<PortReservation>,
}

/// `ports reserve` data.
#[derive(Debug, Clone, Serialize)]
pub struct ReserveResult {
    pub instance: String,
    pub port: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub reserved_at: time::OffsetDateTime,
    pub changed: bool,
    pub dry_run: bool,
    pub planned_actions: Vec<PlannedAction>,
}

/// `ports release` data.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseResult {
    pub instance: String,
    pub released: Vec<PortReservation>,
    pub dry_run: bool,
    pub planned_actions: Vec<PlannedAction>,
}

/// Every reservation, by port. Reads without a lock: writers replace files by rename, so
/// a reader sees a whole old or a whole new file, and unprivileged users can list.
pub fn list(ctx: &Ctx) -> Result<PortList> {
    let mut ports = State::load(&ctx.layout)?.ports;
    ports.sort_by_key(|r| r.port);
    Ok(PortList { ports })
}

/// Root check, name check, audit target, then the locks (global -> instance). A dry run
/// takes no lock: it writes nothing, and reading needs none (see [`list`]).
fn begin(ctx: &mut Ctx, instance: &str) -> Result<Option<(LockGuard, LockGuard)>> {
    ctx.require_root()?;
    validate::instance_name(instance)?;
    crate::sys::logging::set_instance(instance);
    ctx.op.target = Some(Target {
        kind: "instance".into(),
        name: instance.to_string(),
    });
    if ctx.globals.dry_run {
        return Ok(None);
    }
    let global = ctx.lock_global()?;
    let inst = ctx.lock_instance(instance)?;
    Ok(Some((global, inst)))
}

/// Run a one-step plan that writes `after` and, on a later failure, writes `before` back.
fn write_plan(
    ctx: &mut Ctx,
    locks: &Option<(LockGuard, LockGuard)>,
    action: &str,
    description: String,
    before: &State,
    after: &State,
) -> Result<Vec<PlannedAction>> {
    let layout = ctx.layout.clone();
    let mut plan = Plan::new();
    plan.step(action, description, || {
        let (global, _) = locks
            .as_ref()
            .context("internal: registry write planned without the global lock")?;
        after.save(&layout, global)?;
        txn::undo(|| before.save(&layout, global))
    });
    let planned = plan.planned_actions();
    ctx.record_plan(planned.clone());
    plan.run(ctx.globals.dry_run)?;
    Ok(planned)
}

/// Reserve a port for `instance` (the next free one, or `port`). Idempotent when the
/// instance already holds it.
pub fn reserve(ctx: &mut Ctx, instance: &str, port: Option<u16>) -> Result<ReserveResult> {
    let locks = begin(ctx, instance)?;
    let before = State::load(&ctx.layout)?;
    let mut after = before.clone();
    let probe = SystemPorts::snapshot();
    // Whole seconds: the registry is read by people, sub-second precision helps no one.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("internal: clock")?;
    let base = ctx.cfg().ports_base;
    let (r, changed) = match after.reserve(instance, port, base, &probe, now)? {
        Reserved::Existing(r) => (r, false),
        Reserved::New(r) => (r, true),
    };
    let planned = if changed {
        let desc = format!(
            "reserve port {} for '{instance}' in {}",
            r.port,
            ctx.layout.registry_file.display()
        );
        write_plan(ctx, &locks, "reserve_port", desc, &before, &after)?
    } else {
        Vec::new()
    };
    Ok(ReserveResult {
        instance: instance.to_string(),
        port: r.port,
        reserved_at: r.reserved_at,
        changed: changed && !ctx.globals.dry_run,
        dry_run: ctx.globals.dry_run,
        planned_actions: planned,
    })
}

/// Release every port reserved for `instance` (refused while the instance exists).
pub fn release(ctx: &mut Ctx, instance: &str) -> Result<ReleaseResult> {
    let locks = begin(ctx, instance)?;
    let before = State::load(&ctx.layout)?;
    let mut after = before.clone();
    let released = after.release(instance)?;
    let ports: Vec<String> = released.iter().map(|r| r.port.to_string()).collect();
    let desc = format!(
        "release port(s) {} of '{instance}' in {}",
        ports.join(", "),
        ctx.layout.registry_file.display()
    );
    let planned = write_plan(ctx, &locks, "release_port", desc, &before, &after)?;
    Ok(ReleaseResult {
        instance: instance.to_string(),
        released,
        dry_run: ctx.globals.dry_run,
        planned_actions: planned,
    })
}
