//! Lifecycle of an existing instance: start, stop, restart, enable, disable, delete, and
//! the setting changes (set-port, set-version, set-domain). Each is a transaction; each is
//! idempotent (asking for the state that already holds changes nothing).

use super::{
    BootStart, JOB_TIMEOUT, Locks, begin, find, render_dropin, resolve_version, step_dropin,
    step_save_state, step_start_healthy,
};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, Reserved, State, VersionBinding};
use crate::domain::txn::{self, Plan, PlannedAction};
use crate::domain::validate::{self, VersionSpec};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::backup::safety::{self, Offer};
use crate::ops::vhost::{self, Providers, VhostRequest};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd};
use anyhow::Result;
use serde::Serialize;
use std::cell::Cell;
use std::time::Duration;

/// What a lifecycle command did (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    pub name: String,
    pub unit: String,
    pub action: String,
    pub changed: bool,
    pub dry_run: bool,
    pub healthy_after_ms: Option<u64>,
    pub planned_actions: Vec<PlannedAction>,
    /// The ids of the backups made before the change (delete, rename, set-version).
    pub backups: Vec<String>,
}

/// The verbs with no settings change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Enable,
    Disable,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Enable => "enable",
            Verb::Disable => "disable",
        }
    }
}

pub(super) fn finish(
    ctx: &mut Ctx,
    plan: Plan<'_>,
    name: &str,
    action: &str,
    timing: &Cell<Option<Duration>>,
) -> Result<ActionResult> {
    ctx.record_plan(plan.planned_actions());
    // The backup offered before the change (planned or made) comes first in the result.
    let planned = ctx.op.planned.clone();
    let dry_run = ctx.globals.dry_run;
    let changed = !plan.is_empty() && !dry_run;
    plan.run(dry_run)?;
    Ok(ActionResult {
        name: name.to_string(),
        unit: Layout::unit_name(name),
        action: action.to_string(),
        changed,
        dry_run,
        healthy_after_ms: timing.get().map(|d| d.as_millis() as u64),
        planned_actions: planned,
        backups: ctx.op.backups.clone(),
    })
}

/// start / stop / restart / enable / disable.
pub fn run_verb(ctx: &mut Ctx, name: &str, verb: Verb) -> Result<ActionResult> {
    let (name, _locks): (_, Locks) = begin(ctx, name)?;
    let state = State::load(&ctx.layout)?;
    let e = find(&state, name.as_str())?.clone();
    let unit = Layout::unit_name(&e.name);
    let sd = LazySystemd::new();
    let sdr: &dyn Systemd = &sd;
    let timing = Cell::new(None);
    let mut plan = Plan::new();
    // Current state, to skip what already holds (not read for a dry run: no bus needed).
    let live = if ctx.globals.dry_run {
        None
    } else {
        sd.unit_status(std::slice::from_ref(&unit))?
            .into_iter()
            .next()
    };
    let active = live.as_ref().is_some_and(|s| s.active_state == "active");
    let enabled = live
        .as_ref()
        .is_some_and(|s| s.unit_file_state == "enabled");
    match verb {
        Verb::Start if active && super::probe_health(e.port) => {}
        Verb::Start => {
            step_start_healthy(&mut plan, sdr, unit.clone(), e.port, active, Some(&timing))
        }
        Verb::Restart => {
            step_start_healthy(&mut plan, sdr, unit.clone(), e.port, true, Some(&timing))
        }
        Verb::Stop
            if live.is_some()
                && !active
                && live
                    .as_ref()
                    .is_some_and(|s| s.active_state != "activating") => {}
        Verb::Stop => {
            super::step_stop(&mut plan, sdr, unit, e.port);
        }
        Verb::Enable if enabled => {}
        Verb::Enable => {
            super::step_unit_file(&mut plan, sdr, unit, BootStart::Enable, " (start at boot)")
        }
        Verb::Disable if live.is_some() && !enabled => {}
        Verb::Disable => super::step_unit_file(
            &mut plan,
            sdr,
            unit,
            BootStart::Disable,
            " (no start at boot)",
        ),
    }
    finish(ctx, plan, name.as_str(), verb.word(), &timing)
}

/// Step (first in a plan that restarts an instance with new settings): nothing on apply;
/// on rollback, after the old settings are back, start the instance again if it was
/// running, so a failed change leaves it serving as before.
pub(super) fn step_restore_running<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    unit: String,
    port: u16,
    was_active: bool,
) {
    if !was_active {
        return;
    }
    plan.step(
        "unit_keep_running",
        format!("on failure, start {unit} again with its previous settings"),
        move || {
            txn::undo(move || {
                sd.reset_failed(&unit)?;
                sd.restart_unit(&unit, JOB_TIMEOUT)?;
                super::wait_healthy(sd, &unit, port, 0, super::HEALTH_TIMEOUT).map(drop)
            })
        },
    );
}

/// Ask before a destructive or disruptive change (spec: delete, set-version, rename).
pub(crate) fn confirm(ctx: &Ctx, question: &str, what: &str) -> Result<()> {
    if ctx.globals.yes || ctx.globals.dry_run {
        return Ok(());
    }
    if ctx.ui.confirm(question)? {
        return Ok(());
    }
    Err(
        Failure::validation(format!("{what} not confirmed; nothing was changed"))
            .hint("answer yes at the prompt, or pass --yes in scripts")
            .into(),
    )
}

/// `instance delete`: stop, disable, remove the vhost, the drop-in and the registry entry;
/// the data stays unless `purge_data`. Kept data keeps its system account: it is locked as
/// it always was (no password, no shell), and while it exists its uid goes to nobody else,
/// so no future account can own the kept files; re-creating the instance takes it back.
/// `purge_data` removes the account first (undone by recreating it with the same ids),
/// then the data (no undo: the last step). The checks, the question and the backup it
/// offers (`offer`) come before the locks: the backup takes them itself.
pub fn delete(ctx: &mut Ctx, name: &str, purge_data: bool, offer: Offer) -> Result<ActionResult> {
    let checked = super::check(ctx, name)?;
    let e = find(&State::load(&ctx.layout)?, checked.as_str())?.clone();
    let what = if purge_data {
        format!(
            "delete instance '{}' AND its data in {}",
            e.name,
            e.data_dir.display()
        )
    } else {
        format!(
            "delete instance '{}' (its data in {} is kept)",
            e.name,
            e.data_dir.display()
        )
    };
    confirm(ctx, &format!("{what}?"), "delete")?;
    safety::before(
        ctx,
        std::slice::from_ref(&e.name),
        "delete",
        &format!("delete instance '{}'", e.name),
        offer,
    )?;
    let (name, locks): (_, Locks) = begin(ctx, name)?;
    let before = State::load(&ctx.layout)?;
    let e = find(&before, name.as_str())?.clone();
    let mut after = before.clone();
    after.instances.retain(|i| i.name != e.name);
    after.release(&e.name)?;
    let unit = Layout::unit_name(&e.name);
    let sd = LazySystemd::new();
    let nginx = super::LazyNginx::default();
    let sdr: &dyn Systemd = &sd;
    let layout = ctx.layout.clone();
    let timing = Cell::new(None);
    let mut plan = Plan::new();
    vhost::plan_remove(
        ctx,
        &name,
        Providers {
            systemd: &sd,
            nginx: &nginx,
        },
        &mut plan,
    )?;
    super::step_stop(&mut plan, sdr, unit.clone(), e.port);
    super::step_unit_file(&mut plan, sdr, unit.clone(), BootStart::Disable, "");
    step_dropin(
        &mut plan,
        sdr,
        inst::dropin_path(&layout, &e.name),
        None,
        true,
    );
    if crate::ops::backup::schedule::has_timer(&layout, &e) {
        crate::ops::backup::schedule::plan_off(&mut plan, sdr, &layout, &e.name);
    }
    step_save_state(
        &mut plan,
        &layout,
        &locks,
        &before,
        &after,
        format!("remove '{}' and its ports from the registry", e.name),
    );
    let accounts = sys::users::Accounts::new(&layout.root);
    if purge_data
        && super::account::find(&accounts, &e.name, &inst::service_user(&e.name))?
            != super::account::Found::Missing
    {
        super::account::plan_remove(&mut plan, accounts, &e.name);
    }
    if purge_data {
        let dir = layout.instance_dir(&e.name);
        plan.step_irreversible(
            "purge_data",
            format!("remove {} and everything in it", dir.display()),
            move || {
                sys::instdir::remove_tree(&dir)?;
                txn::no_undo()
            },
        );
    }
    finish(ctx, plan, name.as_str(), "delete", &timing)
}

/// What a settings change is.
#[derive(Debug, Clone)]
pub enum Change {
    Port(u16),
    /// The version, and what to do about the backup offered before it changes.
    Version(String, Offer),
    Domain(String),
}

/// set-port / set-version / set-domain: registry, drop-in (port, version), vhost (port,
/// domain), restart and wait healthy; a failure puts every piece back and the instance
/// running on its old settings.
pub fn set(ctx: &mut Ctx, name: &str, change: &Change) -> Result<ActionResult> {
    // Input checks first: bad input changes nothing and needs no lock.
    match change {
        Change::Port(p) => {
            validate::port(i64::from(*p))?;
        }
        Change::Version(v, _) => {
            validate::version(v)?;
        }
        Change::Domain(d) => {
            validate::domain(d)?;
        }
    }
    if let Change::Version(_, offer) = change {
        // The question and the offered backup come before the locks (the backup takes
        // them itself), after every check, and only when the version changes.
        let checked = super::check(ctx, name)?;
        let state = State::load(&ctx.layout)?;
        let old = find(&state, checked.as_str())?.clone();
        let (_, new, _) = settle(ctx, &state, &old, change)?;
        if new != old || dropin_drifted(ctx, &new, false)? {
            // An exact version that is not installed is refused here, before anything.
            let to = resolve_version(&ctx.layout, &new.version_binding)?;
            confirm(
                ctx,
                &format!(
                    "switch '{}' to Actual {} (restarts it; data migrates one way)?",
                    old.name, new.version_binding
                ),
                "set-version",
            )?;
            // The data is at stake only when the server will run another version: not
            // for a new binding that resolves to the version its drop-in runs already.
            let from = resolve_version(&ctx.layout, &old.version_binding).ok();
            let runs_another = from.is_none_or(|f| f.version != to.version)
                || dropin_drifted(ctx, &old, false).unwrap_or(true);
            if runs_another {
                safety::before(
                    ctx,
                    std::slice::from_ref(&old.name),
                    "set-version",
                    &format!("switch '{}' to Actual {}", old.name, new.version_binding),
                    *offer,
                )?;
            }
        }
    }
    let (name, locks): (_, Locks) = begin(ctx, name)?;
    let before = State::load(&ctx.layout)?;
    let old = find(&before, name.as_str())?.clone();
    let (mut after, mut new, action) = settle(ctx, &before, &old, change)?;
    let timing = Cell::new(None);
    // Same binding: nothing to do, unless the drop-in on disk no longer runs what the
    // binding says (it drifted, e.g. `current` moved without it): then re-render it.
    if new == old && !(matches!(change, Change::Version(..)) && dropin_drifted(ctx, &new, true)?) {
        return finish(ctx, Plan::new(), name.as_str(), action, &timing);
    }
    new.last_changed = time::OffsetDateTime::now_utc();
    if let Some(slot) = after.instances.iter_mut().find(|i| i.name == old.name) {
        *slot = new.clone();
    }
    let resolved = resolve_version(&ctx.layout, &new.version_binding)?;
    let dropin = render_dropin(&ctx.layout, &new, &resolved)?;
    // The drop-in names the instance's own account: make it first if it is missing.
    let adopt = super::account::Adopt::prepare(&ctx.layout, &old.name, &ctx.cfg().service_user)?;
    let dropin_path = inst::dropin_path(&ctx.layout, &old.name);
    let dropin_changed = sys::fs::read_optional(&dropin_path)?.as_deref() != Some(dropin.as_str());
    let unit = Layout::unit_name(&old.name);
    let sd = LazySystemd::new();
    let nginx = super::LazyNginx::default();
    let sdr: &dyn Systemd = &sd;
    let layout = ctx.layout.clone();
    let was_active = !ctx.globals.dry_run
        && sd
            .unit_status(std::slice::from_ref(&unit))?
            .first()
            .is_some_and(|s| s.active_state == "active");
    let mut plan = Plan::new();
    // A dry run reads no unit state: it plans the instance as running (as for the restart).
    let keep_running = was_active || ctx.globals.dry_run;
    step_restore_running(&mut plan, sdr, unit.clone(), old.port, keep_running);
    step_save_state(
        &mut plan,
        &layout,
        &locks,
        &before,
        &after,
        format!("record the new {} of '{}'", &action[4..], old.name),
    );
    adopt.plan(&mut plan);
    step_dropin(&mut plan, sdr, dropin_path, Some(dropin), true);
    if dropin_changed && (was_active || ctx.globals.dry_run) {
        step_start_healthy(&mut plan, sdr, unit, new.port, true, Some(&timing));
    }
    if new.port != old.port || new.domain != old.domain {
        let domain = validate::domain(&new.domain)?;
        let req = VhostRequest {
            name: name.clone(),
            domain,
            port: new.port,
            https_port: new.https_port,
            custom_tls: new.tls_cert.clone().zip(new.tls_key.clone()),
        };
        vhost::plan_apply(
            ctx,
            &req,
            Providers {
                systemd: &sd,
                nginx: &nginx,
            },
            &mut plan,
        )?;
    }
    finish(ctx, plan, name.as_str(), action, &timing)
}

/// The registry and the entry after `change` of `old` (not yet stamped), and the action word.
fn settle(
    ctx: &Ctx,
    before: &State,
    old: &InstanceEntry,
    change: &Change,
) -> Result<(State, InstanceEntry, &'static str)> {
    let mut after = before.clone();
    let mut new: InstanceEntry = old.clone();
    let action = match change {
        Change::Port(p) => {
            if *p != old.port {
                let probe = sys::net::SystemPorts::snapshot();
                let now = time::OffsetDateTime::now_utc();
                match after.reserve(&old.name, Some(*p), ctx.cfg().ports_base, &probe, now)? {
                    Reserved::New(_) | Reserved::Existing(_) => {}
                }
                after
                    .ports
                    .retain(|r| !(r.instance == old.name && r.port == old.port));
                new.port = *p;
            }
            "set-port"
        }
        Change::Version(v, _) => {
            new.version_binding = match validate::version(v)? {
                VersionSpec::Current => VersionBinding::Current,
                VersionSpec::Exact(x) => VersionBinding::Exact(x),
                VersionSpec::Latest => {
                    return Err(Failure::validation("'latest' is not an installed version")
                        .hint("give an installed version X.Y.Z, or 'current'")
                        .into());
                }
            };
            "set-version"
        }
        Change::Domain(d) => {
            let d = validate::domain(d)?;
            if let Some(other) = before
                .instances
                .iter()
                .find(|i| i.domain == d.as_str() && i.name != old.name)
            {
                return Err(Failure::validation(format!(
                    "domain {} is already used by instance '{}'",
                    d.as_str(),
                    other.name
                ))
                .hint("give each instance its own domain")
                .into());
            }
            new.domain = d.as_str().to_string();
            "set-domain"
        }
    };
    Ok((after, new, action))
}

/// Does the rendered drop-in of `entry` on disk differ from what its binding renders now?
fn dropin_drifted(ctx: &Ctx, entry: &InstanceEntry, warn: bool) -> Result<bool> {
    let resolved = resolve_version(&ctx.layout, &entry.version_binding)?;
    let dropin = render_dropin(&ctx.layout, entry, &resolved)?;
    let on_disk = sys::fs::read_optional(&inst::dropin_path(&ctx.layout, &entry.name))?;
    let drifted = on_disk.as_deref() != Some(dropin.as_str());
    if drifted && warn {
        tracing::warn!(
            "the drop-in of '{}' does not run {} as its binding says: re-rendering it",
            entry.name,
            resolved.version
        );
    }
    Ok(drifted)
}
