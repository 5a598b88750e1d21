//! Instances bound to `current` follow `version switch`: their drop-in is re-rendered for the
//! new version (it names the version dir and its Node runtime) and, when running, they take
//! the upgrade's path: stopped, their data copied beside them, started on the new version
//! and gated (healthy, /info reports the new version, the accounts answer). A failure puts
//! everything back: the drop-ins, the data the new version may have migrated (the copy is
//! swapped back), the `current` link (undone by the caller's earlier step) and the running
//! processes.

use super::lifecycle::step_restore_running;
use super::{
    Expect, Gate, JOB_TIMEOUT, render_dropin, resolve_version, step_dropin, step_start_gated,
};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{State, VersionBinding};
use crate::domain::txn::Plan;
use crate::ops::Ctx;
use crate::sys::lock::LockGuard;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use std::cell::{Cell, RefCell};
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
    /// The new version has started on the data (from then on a rollback swaps the copy in).
    started: Cell<bool>,
    /// The copy of the data made while stopped (removed once the switch succeeded).
    copy: RefCell<Option<PathBuf>>,
    gate: Gate,
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
            started: Cell::new(false),
            copy: RefCell::new(None),
            gate: Gate {
                expect: Expect {
                    version: Some(target.version.clone()),
                },
                timeout: std::time::Duration::from_secs(ctx.cfg().upgrades_health_timeout),
            },
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

/// Steps AFTER the switch: new drop-ins; a running follower is stopped, its data copied,
/// then started on the new version and gated (see the module doc).
pub fn plan_follow<'a>(
    plan: &mut Plan<'a>,
    layout: &'a Layout,
    sd: &'a dyn Systemd,
    followers: &'a [Follower],
    dry_run: bool,
) {
    for f in followers {
        let running = f.was_active || dry_run;
        f.adopt.plan(plan);
        if running {
            // No undo of its own: the keep-running step, undone last, starts it again.
            let unit = f.unit.clone();
            plan.step("unit_stop", format!("stop {unit}"), move || {
                sd.stop_unit(&unit, JOB_TIMEOUT)?;
                Ok(None)
            });
            crate::ops::upgrade::one::step_data_guard(plan, layout, &f.name, &f.started, &f.copy);
        }
        step_dropin(
            plan,
            sd,
            f.dropin_path.clone(),
            Some(f.dropin.clone()),
            true,
        );
        if running {
            plan.step(
                "upgrade_mark",
                format!("from here on the data of '{}' may be migrated", f.name),
                move || {
                    f.started.set(true);
                    Ok(None)
                },
            );
            step_start_gated(
                plan,
                sd,
                f.unit.clone(),
                f.port,
                false,
                f.gate.clone(),
                None,
            );
        }
    }
}

/// After a successful switch: the copies of the followers' data are no longer needed.
/// Returns what could not be removed (a warning each).
pub fn finish(followers: &[Follower]) -> Vec<String> {
    let mut warnings = Vec::new();
    for f in followers {
        if let Some(dir) = f.copy.borrow_mut().take()
            && let Err(e) = crate::sys::instdir::remove_tree(&dir)
        {
            warnings.push(format!(
                "could not remove the copy {} ({e:#}); remove it by hand",
                dir.display()
            ));
        }
    }
    warnings
}

/// After a failed switch: the copies a rollback could not swap back (they hold the data
/// from before the switch), one warning each.
pub fn kept(followers: &[Follower]) -> Vec<String> {
    followers
        .iter()
        .filter_map(|f| {
            f.copy.borrow().as_ref().map(|d| {
                format!(
                    "the data of '{}' from before the switch is kept in {}",
                    f.name,
                    d.display()
                )
            })
        })
        .collect()
}
