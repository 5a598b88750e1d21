//! `backup restore <id> [--as NEW]`: put a backup's data back, in place or as a new
//! instance beside the live one.
//!
//! The archive is extracted first, into a private staging directory on the data's own
//! filesystem, while the instance keeps serving: the slow part (reading, checking every
//! member, the SHA-256 in the same pass, see `sys::unpack`) changes nothing, so a refused
//! archive, a full disk or a `kill -9` there leaves the live instance as it was. Only then,
//! under the locks, the switch is one transaction (`domain::txn`): stop -> swap the data
//! directory with the staged one in one `renameat2(RENAME_EXCHANGE)` -> rebind the version
//! the data was written by -> start -> health gate. Any failure undoes every step: the
//! previous data, binding and drop-in come back and the instance is started again.
//!
//! Actual migrates its data one way on start (an older server refuses newer data), so the
//! data must run on the version that wrote it: the recorded version is bound (installed
//! first if it is missing); `current` stays the binding when it still is that version.
//!
//! Crash safety of the swap: a marker file `SWAPPED` is written into the staging dir
//! before the exchange. A later restore removes leftovers of interrupted restores that
//! have no marker (they hold only extracted archive data) and keeps, with a warning, any
//! that has one (it may hold the instance's previous data: never deleted silently).

use super::safety::{self, Offer};
use crate::domain::audit::Target;
use crate::domain::backup::{Entry, Status};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, State, VersionBinding};
use crate::domain::txn::{self, Plan, PlannedAction, Rollback};
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::lifecycle::confirm;
use crate::ops::instance::{
    self as instance_ops, begin, find, render_dropin, resolve_version, step_dropin,
    step_save_state, step_start_healthy, step_stop,
};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd};
use crate::sys::unpack::{self, Limits, Unpacked};
use anyhow::{Context, Result};
use serde::Serialize;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Prefix of the staging directories of restores (in the instance dir or instance root).
pub const STAGING_PREFIX: &str = ".abssctl-restore-";
/// The marker of a staging dir whose data was swapped with the live data.
pub const SWAPPED_MARKER: &str = "SWAPPED";

/// What `backup restore` was asked.
#[derive(Debug, Clone)]
pub struct RestoreArgs {
    pub id: String,
    /// Restore into a new instance of this name instead of in place.
    pub as_name: Option<String>,
    pub domain: Option<String>,
    pub port: Option<u16>,
    pub offer: Offer,
}

/// `backup restore --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreResult {
    pub id: String,
    /// The instance whose data is now the backup's.
    pub instance: String,
    /// `in-place` or `new-instance`.
    pub mode: &'static str,
    pub domain: String,
    pub port: u16,
    pub version: String,
    pub version_binding: String,
    pub files: u64,
    pub data_bytes: u64,
    /// The backup taken of the data this restore replaced, if any.
    pub pre_restore_backup: Option<String>,
    pub healthy_after_ms: Option<u64>,
    /// Checking and extracting the archive into staging (the instance still serving).
    pub extract_ms: u64,
    /// In place: how long the instance did not serve (stop, swap, start, health gate).
    pub downtime_ms: Option<u64>,
    pub duration_ms: u64,
    pub changed: bool,
    pub dry_run: bool,
    pub planned_actions: Vec<PlannedAction>,
}

/// Restore a backup (see the module doc).
pub fn restore(ctx: &mut Ctx, args: &RestoreArgs) -> Result<RestoreResult> {
    let started = Instant::now();
    ctx.require_root()?;
    let idx = super::load_index(ctx)?;
    let entry = idx.find(&args.id)?.clone();
    if let Some(n) = &args.as_name {
        validate::instance_name(n)?;
    }
    if args.as_name.is_none() && (args.domain.is_some() || args.port.is_some()) {
        return Err(
            Failure::validation("--domain and --port go with --as NEW_NAME")
                .hint("an in-place restore keeps the instance's domain and port")
                .into(),
        );
    }
    if entry.status == Status::Missing || !entry.archive_path.is_file() {
        return Err(Failure::environment(format!(
            "the archive of backup {} is missing ({})",
            entry.id,
            entry.archive_path.display()
        ))
        .hint("see abssctl backup list; abssctl backup reconcile marks missing archives")
        .into());
    }
    let target = args
        .as_name
        .clone()
        .unwrap_or_else(|| entry.instance.clone());
    sys::logging::set_instance(&target);
    ctx.op.target = Some(Target {
        kind: "instance".into(),
        name: target.clone(),
    });
    match &args.as_name {
        Some(new) => super::restore_as::restore_as(ctx, args, &entry, new, started),
        None => in_place(ctx, args, &entry, started),
    }
}

/// The binding the restored data gets: the version that wrote it; `current` if the
/// backup followed `current` and `current` still is that version.
pub fn recorded_binding(layout: &Layout, entry: &Entry) -> Result<VersionBinding> {
    let followed = entry.version_binding == VersionBinding::Current.to_string();
    let Some(v) = &entry.instance_version else {
        // No version recorded (it was not resolvable when the backup was taken).
        return Ok(if followed {
            VersionBinding::Current
        } else {
            parse_binding(&entry.version_binding)?
        });
    };
    if followed && resolve_version(layout, &VersionBinding::Current).is_ok_and(|r| &r.version == v)
    {
        return Ok(VersionBinding::Current);
    }
    parse_binding(v)
}

fn parse_binding(s: &str) -> Result<VersionBinding> {
    Ok(match validate::version(s)? {
        validate::VersionSpec::Exact(x) => VersionBinding::Exact(x),
        _ => VersionBinding::Current,
    })
}

/// The recorded version installed if it is missing (`version install X`, not made
/// current): additive, so it stays if the restore fails later, and the report says so.
pub fn ensure_installed(ctx: &mut Ctx, binding: &VersionBinding) -> Result<()> {
    if resolve_version(&ctx.layout, binding).is_ok() || ctx.globals.dry_run {
        return Ok(());
    }
    let VersionBinding::Exact(v) = binding else {
        // `current` missing: nothing to install that the backup names.
        return resolve_version(&ctx.layout, binding).map(drop);
    };
    let opts = crate::ops::version::InstallOpts {
        version: v.to_string(),
        set_current: false,
        include_prerelease: true,
        offline: false,
        // Not set current: no instance changes version, nothing is offered.
        offer: crate::ops::backup::safety::Offer::Skip,
    };
    crate::ops::version::install(ctx, &opts)
        .with_context(|| format!("installing Actual {v}, the version the backup's data needs"))?;
    ctx.op
        .warnings
        .push(format!("installed Actual {v} for the restored data"));
    Ok(())
}

/// A private staging directory for a restore in `dir` (0700, root), kept on drop: after
/// the swap it may hold the instance's previous data, so it is removed only by name.
pub fn new_staging(dir: &Path) -> Result<PathBuf> {
    let t = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(dir)
        .with_context(|| format!("creating a staging directory in {}", dir.display()))?;
    Ok(t.keep())
}

/// Remove leftovers of interrupted restores in `dir`: those without the swap marker hold
/// only extracted archive data; those with it are kept and reported.
pub fn sweep_leftovers(ctx: &mut Ctx, dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(STAGING_PREFIX) {
            continue;
        }
        let p = e.path();
        if p.join(SWAPPED_MARKER).exists() {
            ctx.op.warnings.push(format!(
                "{} is left from an interrupted restore and may hold an instance's previous data: look at it, then remove it",
                p.display()
            ));
        } else {
            sys::instdir::remove_tree(&p)?;
        }
    }
    Ok(())
}

/// Extract and check the archive of `entry` into `staging`, its data handed to `owner`.
pub fn extract(entry: &Entry, staging: &Path) -> Result<Unpacked> {
    let u = unpack::unpack(
        &entry.archive_path,
        entry.algorithm,
        &entry.checksum_sha256,
        staging,
        &Limits::default(),
    )?;
    if u.manifest.id != entry.id || u.manifest.instance != entry.instance {
        return Err(Failure::validation(format!(
            "{} holds backup {} of '{}', not {} of '{}'",
            entry.archive_path.display(),
            u.manifest.id,
            u.manifest.instance,
            entry.id,
            entry.instance
        ))
        .hint("the index and the archive disagree: run abssctl backup reconcile")
        .into());
    }
    Ok(u)
}

/// Mark a backup corrupt in the index when its archive failed the checksum.
pub fn mark_if_corrupt(ctx: &mut Ctx, entry: &Entry, err: &anyhow::Error) {
    if err.downcast_ref::<crate::sys::unpack::Corrupt>().is_none() {
        return;
    }
    let marked = ctx.lock_global().and_then(|g| {
        super::update_index(ctx, &g, |idx| {
            idx.set_status(&entry.id, Status::Corrupt, time::OffsetDateTime::now_utc());
            Ok(())
        })
    });
    if let Err(e) = marked {
        tracing::warn!("could not mark {} corrupt in the index: {e:#}", entry.id);
    }
}

fn in_place(
    ctx: &mut Ctx,
    args: &RestoreArgs,
    entry: &Entry,
    started: Instant,
) -> Result<RestoreResult> {
    let name = validate::instance_name(&entry.instance)?;
    let state = State::load(&ctx.layout)?;
    let live = find(&state, name.as_str())
        .map_err(|_| {
            anyhow::Error::from(
                Failure::validation(format!(
                    "instance '{}' of backup {} no longer exists",
                    entry.instance, entry.id
                ))
                .hint(format!(
                    "restore it as an instance: abssctl backup restore {} --as {}",
                    entry.id, entry.instance
                )),
            )
        })?
        .clone();
    let binding = recorded_binding(&ctx.layout, entry)?;
    let when = entry
        .created_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    confirm(
        ctx,
        &format!(
            "replace the data of '{}' with backup {} of {when} (restarts it; Actual {})?",
            live.name, entry.id, binding
        ),
        "restore",
    )?;
    let made = safety::before(
        ctx,
        std::slice::from_ref(&live.name),
        "restore",
        &format!("restore '{}' from backup {}", live.name, entry.id),
        args.offer,
    )?;
    ensure_installed(ctx, &binding)?;

    let instance_dir = ctx.layout.instance_dir(&live.name);
    let mut staged: Option<(PathBuf, Unpacked)> = None;
    let mut extract_ms = 0;
    if !ctx.globals.dry_run {
        sweep_leftovers(ctx, &instance_dir)?;
        let staging = new_staging(&instance_dir)?;
        let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
        progress.step(&format!("extracting {}", entry.archive_path.display()));
        let t0 = Instant::now();
        let r = extract(entry, &staging).and_then(|u| {
            let acct = sys::users::Accounts::new(&ctx.layout.root)
                .lookup(&inst::service_user(&live.name))?
                .ok_or_else(|| {
                    anyhow::Error::from(Failure::environment(format!(
                        "the system account {} of '{}' does not exist",
                        inst::service_user(&live.name),
                        live.name
                    )))
                })?;
            sys::users::chown_tree(&u.data_dir, 0, (acct.uid, acct.gid))?;
            Ok(u)
        });
        progress.finish();
        extract_ms = t0.elapsed().as_millis() as u64;
        match r {
            Ok(u) => staged = Some((staging, u)),
            Err(e) => {
                let cleanup = sys::instdir::remove_tree(&staging);
                mark_if_corrupt(ctx, entry, &e);
                cleanup?;
                return Err(e.context(format!("restore of backup {}", entry.id)));
            }
        }
    }

    // From here on the staging dir exists: whatever fails (a lock, the registry, the
    // drop-in template, systemd), it is dealt with, never left behind.
    let staging = staged.as_ref().map(|(dir, _)| dir.clone());
    let clock = Clock {
        started,
        extract_ms,
    };
    let r = switch(ctx, entry, name.as_str(), &binding, staged, &made, clock);
    if let Some(dir) = &staging {
        finish_staging(ctx, dir, r.as_ref().err())?;
    }
    r
}

/// When the restore began, and how long its extraction took (for the result).
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    extract_ms: u64,
}

/// The transaction of an in-place restore, under the locks (see the module doc).
fn switch(
    ctx: &mut Ctx,
    entry: &Entry,
    name: &str,
    binding: &VersionBinding,
    staged: Option<(PathBuf, Unpacked)>,
    made: &[super::create::Created],
    clock: Clock,
) -> Result<RestoreResult> {
    let data = ctx.layout.data_dir(name);
    let instance_dir = ctx.layout.instance_dir(name);
    let (name, locks) = begin(ctx, name)?;
    // Under the lock, the instance as it is now (it may have changed meanwhile).
    let before = State::load(&ctx.layout)?;
    let old = find(&before, name.as_str())?.clone();
    let mut after = before.clone();
    let mut new: InstanceEntry = old.clone();
    let rebind = new.version_binding != *binding;
    if rebind {
        new.version_binding = binding.clone();
        new.last_changed = time::OffsetDateTime::now_utc();
    }
    if let Some(slot) = after.instances.iter_mut().find(|i| i.name == old.name) {
        *slot = new.clone();
    }
    let resolved = resolve_version(&ctx.layout, &new.version_binding).or_else(|e| {
        // A dry run plans the install ensure_installed would do.
        if ctx.globals.dry_run {
            Ok(instance_ops::Resolved {
                version: new.version_binding.to_string(),
                dir: ctx.layout.version_dir(&new.version_binding.to_string()),
                node: ctx.layout.runtimes_dir.join("node-pending/bin/node"),
            })
        } else {
            Err(e)
        }
    })?;
    let dropin = render_dropin(&ctx.layout, &new, &resolved)?;
    let unit = Layout::unit_name(&old.name);
    let sd = LazySystemd::new();
    let sdr: &dyn Systemd = &sd;
    let layout = ctx.layout.clone();
    let timing = Cell::new(None);
    let was_active = !ctx.globals.dry_run
        && sd
            .unit_status(std::slice::from_ref(&unit))?
            .first()
            .is_some_and(|s| s.active_state == "active");
    let mut plan = Plan::new();
    if was_active || ctx.globals.dry_run {
        step_stop(&mut plan, sdr, unit.clone(), old.port);
    }
    let staged_data = staged
        .as_ref()
        .map(|(_, u)| u.data_dir.clone())
        .unwrap_or_else(|| {
            PathBuf::from(format!("{}/{STAGING_PREFIX}*/data", instance_dir.display()))
        });
    step_swap(&mut plan, staged_data, data.clone());
    if rebind {
        step_save_state(
            &mut plan,
            &layout,
            &locks,
            &before,
            &after,
            format!(
                "record the binding {} of '{}'",
                new.version_binding, old.name
            ),
        );
    }
    step_dropin(
        &mut plan,
        sdr,
        inst::dropin_path(&layout, &old.name),
        Some(dropin),
        true,
    );
    step_start_healthy(&mut plan, sdr, unit, old.port, false, Some(&timing));
    let planned = plan.planned_actions();
    ctx.record_plan(planned.clone());
    // The backup of the replaced data (planned or made) comes first in the result too.
    let planned = ctx.op.planned.clone();
    let dry_run = ctx.globals.dry_run;
    // The instance is down from its stop (the first step) to its health gate (the last).
    let down = Instant::now();
    let outcome = plan.run(dry_run);
    let downtime_ms = (was_active && !dry_run).then(|| down.elapsed().as_millis() as u64);
    drop(locks);
    outcome?;
    let (files, bytes) = staged.map(|(_, u)| (u.files, u.bytes)).unwrap_or_default();
    Ok(RestoreResult {
        id: entry.id.clone(),
        instance: old.name.clone(),
        mode: "in-place",
        domain: old.domain.clone(),
        port: old.port,
        version: resolved.version,
        version_binding: new.version_binding.to_string(),
        files,
        data_bytes: bytes,
        pre_restore_backup: made.first().map(|b| b.id.clone()),
        healthy_after_ms: timing.get().map(|d| d.as_millis() as u64),
        extract_ms: clock.extract_ms,
        downtime_ms,
        duration_ms: clock.started.elapsed().as_millis() as u64,
        changed: !dry_run,
        dry_run,
        planned_actions: planned,
    })
}

/// Step: the staged data and the live data change places in one rename (the marker
/// first, so a crash after it never lets a sweep delete the previous data). Undo swaps
/// them back and removes the marker.
fn step_swap<'a>(plan: &mut Plan<'a>, staged: PathBuf, live: PathBuf) {
    plan.step(
        "data_swap",
        format!(
            "swap {} with the restored data (the previous data kept until the end)",
            live.display()
        ),
        move || {
            let marker = staged
                .parent()
                .context("internal: staged data has no parent")?
                .join(SWAPPED_MARKER);
            sys::fs::write_atomic(&marker, b"", 0o600)?;
            crate::failpoint!("data_swap-after-marker");
            if let Err(e) = sys::fs::exchange(&staged, &live) {
                sys::fs::remove_file_if_exists(&marker)?;
                return Err(e);
            }
            txn::undo(move || {
                sys::fs::exchange(&staged, &live)?;
                sys::fs::remove_file_if_exists(&marker)?;
                sys::fs::sync_parent(&marker)
            })
        },
    );
}

/// After the transaction: success -> the staging dir holds the previous data, removed
/// (a backup was offered before); failure with a complete rollback -> it holds the
/// restored data again, removed; an incomplete rollback -> kept, and the error says where.
pub fn finish_staging(ctx: &mut Ctx, dir: &Path, err: Option<&anyhow::Error>) -> Result<()> {
    let complete = err.is_none_or(|e| e.downcast_ref::<Rollback>().is_none_or(|r| r.complete()));
    if !complete {
        ctx.op.warnings.push(format!(
            "the rollback was incomplete: {} is kept (it may hold the instance's previous data)",
            dir.display()
        ));
        return Ok(());
    }
    if let Err(e) = sys::instdir::remove_tree(dir) {
        ctx.op.warnings.push(format!(
            "could not remove {} ({e:#}); remove it by hand",
            dir.display()
        ));
    }
    Ok(())
}
