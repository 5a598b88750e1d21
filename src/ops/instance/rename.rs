//! `instance rename OLD NEW`: the unit, drop-in, directories, vhost, registry entry, port
//! reservations and lock all move to the new name, in one transaction. The data directory
//! is moved, not copied, so a rename costs no disk space and keeps file ownership. The
//! instance's system account is renamed with it (`usermod --login`, same uid), so the moved
//! data stays its own; an instance that still ran as the shared account gets its new
//! name's account and its data handed over (see `account`).

use super::account;
use super::lifecycle::{ActionResult, confirm, finish, step_restore_running};
use super::{
    BootStart, JOB_TIMEOUT, Locks, begin, find, render_dropin, resolve_version, step_dropin,
};
use super::{step_save_state, step_start_healthy};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State};
use crate::domain::txn::{self, Plan};
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::backup::safety::{self, Offer};
use crate::ops::vhost::{self, Providers, VhostRequest};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd};
use anyhow::Result;
use std::cell::Cell;
use std::path::PathBuf;

/// Rename an instance (see the module doc). The server is down from the stop of the old
/// unit until the new one answers (a few seconds). Every check, the question and the
/// backup it offers (`offer`) come before the locks (the backup takes them itself); the
/// checks run again under the locks.
pub fn rename(ctx: &mut Ctx, old_name: &str, new_name: &str, offer: Offer) -> Result<ActionResult> {
    let new = validate::instance_name(new_name)?;
    let old = super::check(ctx, old_name)?;
    let e = checks(ctx, &State::load(&ctx.layout)?, &old, &new)?.entry;
    confirm(
        ctx,
        &format!(
            "rename '{}' to '{}' (the server restarts)?",
            e.name,
            new.as_str()
        ),
        "rename",
    )?;
    safety::before(
        ctx,
        std::slice::from_ref(&e.name),
        "rename",
        &format!("rename '{}' to '{}'", e.name, new.as_str()),
        offer,
    )?;

    let (old, locks): (_, Locks) = begin(ctx, old_name)?;
    // Lines carry both names (the journal keeps both values of the field).
    sys::logging::set_instance(new.as_str());
    let _new_lock = if ctx.globals.dry_run {
        None
    } else {
        Some(ctx.lock_instance(new.as_str())?)
    };
    let before = State::load(&ctx.layout)?;
    let Checked {
        entry: e,
        old_dir,
        new_dir,
        accounts,
        adopt,
    } = checks(ctx, &before, &old, &new)?;

    let mut after = before.clone();
    let mut moved = e.clone();
    moved.name = new.as_str().to_string();
    moved.data_dir = ctx.layout.data_dir(new.as_str());
    moved.last_changed = time::OffsetDateTime::now_utc();
    for i in after.instances.iter_mut().filter(|i| i.name == e.name) {
        *i = moved.clone();
    }
    for r in after.ports.iter_mut().filter(|r| r.instance == e.name) {
        r.instance = moved.name.clone();
    }
    let resolved = resolve_version(&ctx.layout, &moved.version_binding)?;
    let dropin = render_dropin(&ctx.layout, &moved, &resolved)?;

    let (old_unit, new_unit) = (Layout::unit_name(&e.name), Layout::unit_name(&moved.name));
    let sd = LazySystemd::new();
    let nginx = super::LazyNginx::default();
    let sdr: &dyn Systemd = &sd;
    let prov = Providers {
        systemd: &sd,
        nginx: &nginx,
    };
    let layout = ctx.layout.clone();
    let was_active = !ctx.globals.dry_run
        && sd
            .unit_status(std::slice::from_ref(&old_unit))?
            .first()
            .is_some_and(|s| s.active_state == "active");
    let timing = Cell::new(None);
    let mut plan = Plan::new();
    // A dry run reads no unit state: it plans the instance as running.
    let keep_running = was_active || ctx.globals.dry_run;
    step_restore_running(&mut plan, sdr, old_unit.clone(), e.port, keep_running);
    {
        // No undo of its own: step_restore_running above starts it again on rollback.
        let unit = old_unit.clone();
        plan.step("unit_stop", format!("stop {old_unit}"), move || {
            sdr.stop_unit(&unit, JOB_TIMEOUT)?;
            txn::no_undo()
        });
    }
    super::step_unit_file(&mut plan, sdr, old_unit.clone(), BootStart::Disable, "");
    step_dropin(
        &mut plan,
        sdr,
        inst::dropin_path(&layout, &e.name),
        None,
        true,
    );
    // The backup timer follows the instance (its schedule moves with the registry entry).
    if crate::ops::backup::schedule::has_timer(&layout, &e) {
        crate::ops::backup::schedule::plan_off(&mut plan, sdr, &layout, &e.name);
    }
    vhost::plan_remove(ctx, &old, prov, &mut plan)?;
    {
        let (from, to) = (old_dir.clone(), new_dir.clone());
        plan.step(
            "move_dirs",
            format!("move {} to {}", old_dir.display(), new_dir.display()),
            move || {
                sys::instdir::rename_dir(&from, &to)?;
                txn::undo(move || sys::instdir::rename_dir(&to, &from))
            },
        );
    }
    match &adopt {
        None => account::plan_rename(&mut plan, &accounts, &e.name, &moved.name),
        Some(a) => a.plan(&mut plan),
    }
    step_save_state(
        &mut plan,
        &layout,
        &locks,
        &before,
        &after,
        format!("rename '{}' to '{}' in the registry", e.name, moved.name),
    );
    step_dropin(
        &mut plan,
        sdr,
        inst::dropin_path(&layout, &moved.name),
        Some(dropin),
        false,
    );
    super::step_unit_file(&mut plan, sdr, new_unit.clone(), BootStart::Enable, "");
    if let Some(sched) = &moved.schedule {
        crate::ops::backup::schedule::plan_on(&mut plan, sdr, &layout, &moved.name, sched, true);
    }
    step_start_healthy(&mut plan, sdr, new_unit, moved.port, false, Some(&timing));
    let req = VhostRequest {
        name: new.clone(),
        domain: validate::domain(&moved.domain)?,
        port: moved.port,
        https_port: moved.https_port,
        custom_tls: moved.tls_cert.clone().zip(moved.tls_key.clone()),
    };
    vhost::plan_apply(ctx, &req, prov, &mut plan)?;
    finish(ctx, plan, new.as_str(), "rename", &timing)
}

/// What the checks of a rename found (see [`checks`]).
struct Checked {
    entry: InstanceEntry,
    old_dir: PathBuf,
    new_dir: PathBuf,
    accounts: sys::users::Accounts,
    adopt: Option<account::Adopt>,
}

/// Every check of a rename of `old` to `new` in `before` (nothing is changed): `old` exists,
/// `new` is free in the registry, on disk and among the system accounts.
fn checks(
    ctx: &Ctx,
    before: &State,
    old: &validate::InstanceName,
    new: &validate::InstanceName,
) -> Result<Checked> {
    let e = find(before, old.as_str())?.clone();
    if before.instances.iter().any(|i| i.name == new.as_str()) {
        return Err(
            Failure::validation(format!("instance '{}' already exists", new.as_str()))
                .hint("pick a name that `abssctl instance list` does not show")
                .into(),
        );
    }
    let (old_dir, new_dir) = (
        ctx.layout.instance_dir(&e.name),
        ctx.layout.instance_dir(new.as_str()),
    );
    if sys::instdir::exists(&new_dir) {
        return Err(
            Failure::validation(format!("{} already exists", new_dir.display()))
                .hint("move it away first (it may hold the data of a deleted instance)")
                .into(),
        );
    }
    // The account follows; the new name's account must not exist yet (it may be kept for
    // the data of a deleted instance of that name, which must not become ours).
    let accounts = sys::users::Accounts::new(&ctx.layout.root);
    let old_acct = account::find(&accounts, &e.name, &inst::service_user(&e.name))?;
    let new_user = inst::service_user(new.as_str());
    if accounts.lookup(&new_user)?.is_some() || accounts.group_exists(&new_user)? {
        return Err(Failure::validation(format!(
            "the system account or group {new_user} already exists"
        ))
        .hint(format!(
            "it may belong to a deleted instance '{}' whose data was kept: remove it (userdel {new_user}) once that data is dealt with, or pick another name",
            new.as_str()
        ))
        .into());
    }
    let adopt = match old_acct {
        account::Found::Ours(_) => None,
        account::Found::Missing => Some(account::Adopt::prepare_at(
            &ctx.layout,
            new.as_str(),
            &ctx.layout.data_dir(&e.name),
            &ctx.cfg().service_user,
        )?),
    };
    Ok(Checked {
        entry: e,
        old_dir,
        new_dir,
        accounts,
        adopt,
    })
}
