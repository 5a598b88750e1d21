//! Instances bound to `current` follow `version switch`: their drop-in is re-rendered for the
//! new version (it names the version dir and its Node runtime) and, when running, they are
//! restarted and must answer /health. A failure puts everything back: the drop-ins, the
//! `current` link (undone by the caller's earlier step) and the running processes.

use super::lifecycle::step_restore_running;
use super::{render_dropin, resolve_version, step_dropin, step_start_healthy};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{State, VersionBinding};
use crate::domain::txn::Plan;
use crate::ops::Ctx;
use crate::sys::lock::LockGuard;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use std::path::PathBuf;

/// One instance that follows `current`, with its new drop-in.
#[derive(Debug)]
pub struct Follower {
    pub name: String,
    unit: String,
    port: u16,
    dropin_path: PathBuf,
    dropin: String,
    /// The drop-in names the instance's own account: made first if missing.
    adopt: super::account::Adopt,
    pub was_active: bool,
    _lock: Option<LockGuard>,
}

/// The instances bound to `current`, each locked (the caller holds the global lock) and
/// with its drop-in rendered for `new_version`. Nothing is changed here.
pub fn prepare(ctx: &mut Ctx, sd: &dyn Systemd, new_version: &str) -> Result<Vec<Follower>> {
    let state = State::load(&ctx.layout)?;
    let target = resolve_version(
        &ctx.layout,
        &VersionBinding::Exact(semver::Version::parse(new_version)?),
    )?;
    let mut out = Vec::new();
    for e in state
        .instances
        .iter()
        .filter(|e| e.version_binding == VersionBinding::Current)
    {
        let lock = if ctx.globals.dry_run {
            None
        } else {
            Some(ctx.lock_instance(&e.name)?)
        };
        let unit = Layout::unit_name(&e.name);
        let was_active = !ctx.globals.dry_run
            && sd
                .unit_status(std::slice::from_ref(&unit))?
                .first()
                .is_some_and(|s| s.active_state == "active");
        out.push(Follower {
            name: e.name.clone(),
            port: e.port,
            dropin_path: inst::dropin_path(&ctx.layout, &e.name),
            dropin: render_dropin(&ctx.layout, e, &target)?,
            adopt: super::account::Adopt::prepare(&ctx.layout, &e.name, &ctx.cfg().service_user)?,
            unit,
            was_active,
            _lock: lock,
        });
    }
    Ok(out)
}

/// Steps that must come BEFORE the `current` switch: on rollback, running followers are
/// started again with their previous settings (undone last). A dry run reads no unit
/// state and plans them as running, as it does their restart in [`plan_follow`].
pub fn plan_keep_running<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    followers: &'a [Follower],
    dry_run: bool,
) {
    for f in followers {
        step_restore_running(plan, sd, f.unit.clone(), f.port, f.was_active || dry_run);
    }
}

/// Steps AFTER the switch: new drop-ins, then restart and health wait of running followers.
pub fn plan_follow<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    followers: &'a [Follower],
    dry_run: bool,
) {
    for f in followers {
        f.adopt.plan(plan);
        step_dropin(
            plan,
            sd,
            f.dropin_path.clone(),
            Some(f.dropin.clone()),
            true,
        );
        if f.was_active || dry_run {
            step_start_healthy(plan, sd, f.unit.clone(), f.port, true, None);
        }
    }
}
