//! One instance moves to another version as one transaction, under its locks from the stop
//! to the health gate:
//!
//! stop -> snapshot (reason `pre-upgrade`, taken while stopped: an exact backup, kept) ->
//! a copy of the data beside it -> rebind (registry, account, drop-in) -> start -> health
//! gate (unit up and not restarting, /health UP, /info reports the TARGET version, the
//! account endpoint answers).
//!
//! A failure anywhere undoes the steps in reverse: the unit is stopped, the drop-in and the
//! registry entry are put back, and, once the new version has started (its migrations are
//! one way), the copy is swapped in for the migrated data with one rename, then the old
//! version is started and gated again. The copy makes the rollback exact and quick (no
//! archive to unpack); the snapshot is the way back later (`instance rollback`) and off the
//! box. The outcome names both results: why the upgrade failed, and whether the rollback
//! was complete.

use super::downgrade;
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State, VersionBinding};
use crate::domain::txn::{self, Plan, Rollback};
use crate::ops::Ctx;
use crate::ops::backup::create::{self, CreateArgs, Created};
use crate::ops::instance::{
    Expect, Gate, Locks, begin, find, render_dropin, resolve_version, step_dropin, step_save_state,
    step_start_gated, wait_serving,
};
use crate::ops::instance::{JOB_TIMEOUT, account::Adopt};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd};
use anyhow::{Context, Result};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The reason recorded on the snapshot an upgrade takes (what `instance rollback` finds).
pub const REASON: &str = "pre-upgrade";

/// How one instance's upgrade ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Runs the target version and passed the gate.
    Upgraded,
    /// Already ran the target version: nothing done.
    Unchanged,
    /// Failed; back on its old version and its own data, serving (if it served before).
    RolledBack,
    /// Failed, and the rollback did not complete: see `rollback` and the warnings.
    RollbackIncomplete,
    /// Refused before any change (e.g. a downgrade below the data's migrations).
    Refused,
    /// Not tried: a rolling upgrade stopped at an earlier instance.
    NotAttempted,
    /// Planned (`--dry-run`).
    Planned,
}

/// One instance in the result of `upgrade`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub instance: String,
    pub status: Status,
    pub from: Option<String>,
    pub to: String,
    pub version_binding: Option<String>,
    /// The snapshot taken before the change (what a rollback restores).
    pub snapshot: Option<String>,
    /// Stop to healthy (success) or to the old version healthy again (rollback).
    pub downtime_ms: Option<u64>,
    /// Start of the new version to passing the gate.
    pub healthy_after_ms: Option<u64>,
    /// From the failed gate to the old version healthy again.
    pub rollback_ms: Option<u64>,
    pub error: Option<String>,
    /// "rolled back" or "rollback incomplete (...)".
    pub rollback: Option<String>,
    /// A rollback that did not finish kept the copy of the data from before here.
    pub kept_copy: Option<PathBuf>,
    /// The failure's category (exit code) and the transaction's rollback record.
    #[serde(skip)]
    pub failure: Option<(crate::error::Kind, Option<Rollback>)>,
}

impl Outcome {
    pub fn new(instance: &str, status: Status, to: &str) -> Outcome {
        Outcome {
            instance: instance.to_string(),
            status,
            from: None,
            to: to.to_string(),
            version_binding: None,
            snapshot: None,
            downtime_ms: None,
            healthy_after_ms: None,
            rollback_ms: None,
            error: None,
            rollback: None,
            kept_copy: None,
            failure: None,
        }
    }

    /// Did this upgrade leave the box changed (upgraded, or a rollback that kept effects)?
    pub fn changed(&self) -> bool {
        self.status == Status::Upgraded
            || self.status == Status::RollbackIncomplete
            || matches!(&self.failure, Some((_, Some(r))) if r.changed())
    }

    /// Did this instance end where the operator wanted it (or untouched by choice)?
    pub fn ok(&self) -> bool {
        matches!(
            self.status,
            Status::Upgraded | Status::Unchanged | Status::Planned
        )
    }
}

/// The binding after the upgrade: a follower of `current` keeps following when `current`
/// already is the target; otherwise the instance is bound to the target exactly. `target`
/// is an installed version's manifest version, so one that is not semver is a broken
/// manifest: an environment error, never a silent fall back to `current`.
pub fn binding_for(layout: &Layout, old: &VersionBinding, target: &str) -> Result<VersionBinding> {
    if *old == VersionBinding::Current
        && resolve_version(layout, &VersionBinding::Current).is_ok_and(|r| r.version == target)
    {
        return Ok(VersionBinding::Current);
    }
    semver::Version::parse(target)
        .map(VersionBinding::Exact)
        .map_err(|e| {
            crate::error::environment(format!(
                "the installed version's manifest names '{target}', not a version ({e}); \
                 reinstall it with `abssctl version reinstall {target}`"
            ))
        })
}

/// Move `name` to `binding` (which resolves to an installed version) through the
/// transaction of the module doc. `Err` only for what stops the command before any change
/// (input, locks, registry); the upgrade's own failure is an `Outcome`.
pub fn upgrade(
    ctx: &mut Ctx,
    name: &str,
    binding: &VersionBinding,
    gate_timeout: Duration,
) -> Result<Outcome> {
    let (name, locks): (_, Locks) = begin(ctx, name)?;
    let name = name.as_str().to_string();
    let before = State::load(&ctx.layout)?;
    let old = find(&before, &name)?.clone();
    let to = resolve_version(&ctx.layout, binding)?;
    for l in leftovers(&ctx.layout, &name)? {
        ctx.op.warnings.push(format!(
            "{} is left from an interrupted upgrade and may hold the data from before it: look at it, then remove it",
            l.display()
        ));
    }
    let mut out = Outcome::new(&name, Status::Planned, &to.version);
    let from = resolve_version(&ctx.layout, &old.version_binding).ok();
    out.from = from.as_ref().map(|f| f.version.clone());
    out.version_binding = Some(binding.to_string());
    let mut new: InstanceEntry = old.clone();
    new.version_binding = binding.clone();
    let dropin = render_dropin(&ctx.layout, &new, &to)?;
    let dropin_path = inst::dropin_path(&ctx.layout, &name);
    let on_disk = sys::fs::read_optional(&dropin_path)?;
    if new == old && on_disk.as_deref() == Some(dropin.as_str()) {
        out.status = Status::Unchanged;
        return Ok(out);
    }
    if let Err(e) = downgrade::check(&ctx.layout, &name, &to.version, &to.dir) {
        drop(locks);
        return Err(e);
    }
    new.last_changed = time::OffsetDateTime::now_utc();
    let mut after = before.clone();
    if let Some(slot) = after.instances.iter_mut().find(|i| i.name == name) {
        *slot = new.clone();
    }
    let adopt = Adopt::prepare(&ctx.layout, &name, &ctx.cfg().service_user)?;
    let unit = Layout::unit_name(&name);
    let sd = LazySystemd::new();
    let sdr: &dyn Systemd = &sd;
    let dry_run = ctx.globals.dry_run;
    let was_active = !dry_run
        && sd
            .unit_status(std::slice::from_ref(&unit))?
            .first()
            .is_some_and(|s| s.active_state == "active");
    let layout = ctx.layout.clone();
    let old_gate = Gate {
        expect: Expect {
            version: from.as_ref().map(|f| f.version.clone()),
        },
        timeout: gate_timeout,
    };
    let new_gate = Gate {
        expect: Expect {
            version: Some(to.version.clone()),
        },
        timeout: gate_timeout,
    };
    let snap: RefCell<Option<Created>> = RefCell::new(None);
    let copy_dir: RefCell<Option<PathBuf>> = RefCell::new(None);
    let started_new = Cell::new(false);
    let failed_at: Cell<Option<Instant>> = Cell::new(None);
    let back_at: Cell<Option<Instant>> = Cell::new(None);
    let timing = Cell::new(None);
    let snap_args = CreateArgs {
        instance: Some(name.clone()),
        message: format!("taken before the upgrade to Actual {}", to.version),
        reason: Some(REASON.into()),
        ..CreateArgs::default()
    };
    let cx = RefCell::new(&mut *ctx);
    let mut plan = Plan::new();
    step_stop_gated(
        &mut plan,
        sdr,
        unit.clone(),
        old.port,
        old_gate,
        was_active || dry_run,
        &back_at,
    );
    plan.step(
        "backup_create",
        format!(
            "back up '{name}' while it is stopped (reason {REASON}; kept, it is what a rollback restores)"
        ),
        || {
            let (global, _) = locks
                .as_ref()
                .context("internal: snapshot planned without the locks")?;
            let made = create::create_held(&mut cx.borrow_mut(), global, &name, &snap_args)?;
            *snap.borrow_mut() = Some(made);
            crate::failpoint!("upgrade-after-snapshot");
            Ok(None)
        },
    );
    step_data_guard(&mut plan, &layout, &name, &started_new, &copy_dir);
    step_save_state(
        &mut plan,
        &layout,
        &locks,
        &before,
        &after,
        format!("record the binding {binding} of '{name}'"),
    );
    adopt.plan(&mut plan);
    step_dropin(&mut plan, sdr, dropin_path, Some(dropin), true);
    plan.step(
        "upgrade_mark",
        format!(
            "from here on the data may be migrated by Actual {}",
            to.version
        ),
        || {
            started_new.set(true);
            txn::undo(|| {
                failed_at.set(Some(Instant::now()));
                Ok(())
            })
        },
    );
    step_start_gated(
        &mut plan,
        sdr,
        unit.clone(),
        old.port,
        false,
        new_gate,
        Some(&timing),
    );
    if !was_active && !dry_run {
        // It was stopped: gated, then left as it was found.
        plan.step(
            "unit_stop",
            format!("stop {unit} again (it was stopped)"),
            || {
                sdr.stop_unit(&unit, JOB_TIMEOUT)?;
                Ok(None)
            },
        );
    }
    cx.borrow_mut().record_plan(plan.planned_actions());
    let t0 = Instant::now();
    let result = plan.run(dry_run);
    let total = t0.elapsed();
    drop(locks);
    out.snapshot = snap.borrow().as_ref().map(|c| c.id.clone());
    if let Some(dir) = copy_dir.borrow().as_ref() {
        // Success: the copy is no longer needed (the snapshot stays). A failed rollback
        // left it on purpose: the error names it.
        if result.is_ok() {
            if let Err(e) = sys::instdir::remove_tree(dir) {
                ctx.op.warnings.push(format!(
                    "could not remove the pre-upgrade copy {} ({e:#}); remove it by hand",
                    dir.display()
                ));
            }
        } else {
            ctx.op.warnings.push(format!(
                "the data of '{name}' from before the upgrade is kept in {} (the rollback did not finish)",
                dir.display()
            ));
            out.kept_copy = Some(dir.clone());
        }
    }
    if dry_run {
        return Ok(out);
    }
    match result {
        Ok(_) => {
            out.status = Status::Upgraded;
            out.downtime_ms = was_active.then_some(total.as_millis() as u64);
            out.healthy_after_ms = timing.get().map(|d: Duration| d.as_millis() as u64);
        }
        Err(e) => {
            let rb = e.downcast_ref::<Rollback>().cloned();
            out.status = match &rb {
                Some(r) if !r.complete() => Status::RollbackIncomplete,
                _ => Status::RolledBack,
            };
            out.rollback = rb.as_ref().map(ToString::to_string);
            let (kind, message, _) = crate::error::classify(&e);
            out.error = Some(message);
            out.failure = Some((kind, rb));
            out.downtime_ms = was_active.then_some(total.as_millis() as u64);
            if let (Some(f), Some(b)) = (failed_at.get(), back_at.get()) {
                out.rollback_ms = Some(b.saturating_duration_since(f).as_millis() as u64);
            }
        }
    }
    Ok(out)
}

/// Step: stop the unit (when it runs); undo starts it again and gates it on its OLD
/// version, recording when it was back.
fn step_stop_gated<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    unit: String,
    port: u16,
    gate: Gate,
    running: bool,
    back_at: &'a Cell<Option<Instant>>,
) {
    if !running {
        return;
    }
    plan.step("unit_stop", format!("stop {unit}"), move || {
        sd.stop_unit(&unit, JOB_TIMEOUT)?;
        txn::undo(move || {
            sd.reset_failed(&unit)?;
            sd.start_unit(&unit, JOB_TIMEOUT)?;
            wait_serving(sd, &unit, port, 0, gate.timeout, &gate.expect)?;
            back_at.set(Some(Instant::now()));
            Ok(())
        })
    });
}

/// Prefix of the directory (in the instance dir) that holds the copy of the data made
/// while the instance is stopped, until the upgrade has passed its gate.
pub const COPY_PREFIX: &str = ".abssctl-upgrade-";

/// Step: an exact copy of the stopped instance's data beside it (root-only dir); undo, once
/// the new version has started (its migrations are one way), swaps the copy back in with
/// one rename and removes the migrated data (the snapshot holds the same data as the copy).
/// Before that start, undo only removes the copy. After a successful plan the caller
/// removes it.
pub(crate) fn step_data_guard<'a>(
    plan: &mut Plan<'a>,
    layout: &'a Layout,
    name: &'a str,
    started_new: &'a Cell<bool>,
    copy_dir: &'a RefCell<Option<PathBuf>>,
) {
    plan.step(
        "data_copy",
        format!("copy the data of '{name}' beside it (swapped back in if the new version fails)"),
        move || {
            let dir = tempfile::Builder::new()
                .prefix(COPY_PREFIX)
                .tempdir_in(layout.instance_dir(name))
                .context("creating the directory for the copy of the data")?
                .keep();
            *copy_dir.borrow_mut() = Some(dir.clone());
            let copy = dir.join("data");
            if let Err(e) = sys::copytree::copy_tree(&layout.data_dir(name), &copy) {
                return Err(match sys::instdir::remove_tree(&dir) {
                    Ok(_) => e,
                    Err(c) => e.context(format!("and removing {} failed: {c:#}", dir.display())),
                });
            }
            txn::undo(move || {
                if started_new.get() {
                    crate::failpoint!("upgrade-swap-back");
                    sys::fs::exchange(&copy, &layout.data_dir(name))?;
                    sys::fs::sync_parent(&copy)?;
                }
                sys::instdir::remove_tree(&dir)?;
                *copy_dir.borrow_mut() = None;
                Ok(())
            })
        },
    );
}

/// Leftovers of upgrades a crash interrupted: reported, never deleted (one may hold the
/// only exact copy of the data from before an upgrade, beside its snapshot).
pub fn leftovers(layout: &Layout, name: &str) -> Result<Vec<PathBuf>> {
    let dir = layout.instance_dir(name);
    Ok(sys::fs::list_names(&dir)?
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(COPY_PREFIX))
        .map(|n| dir.join(n))
        .collect())
}
