//! `backup restore <id> --as NEW [--domain D] [--port P]`: the backup's data as a NEW
//! instance beside the live one (to look at last week's budget, or to bring back an
//! instance that was deleted or renamed since). It is `instance create` with the data
//! extracted first and moved into place instead of an empty data directory, so it has
//! every check, step and rollback of create: its own account, port, unit and vhost.
//!
//! The domain, unless given: the backup's own when no instance uses it any more (the
//! instance was deleted), else `<NEW>.<backup's domain>`.

use super::restore::{
    RestoreArgs, RestoreResult, STAGING_PREFIX, extract, finish_staging, mark_if_corrupt,
    new_staging, recorded_binding, sweep_leftovers,
};
use crate::domain::backup::Entry;
use crate::domain::state::{State, VersionBinding};
use crate::domain::validate;
use crate::ops::Ctx;
use crate::ops::instance::create::{self, CreateArgs};
use crate::sys;
use anyhow::Result;
use std::time::Instant;

/// The domain of the new instance (see the module doc).
pub fn derive_domain(state: &State, entry: &Entry, new: &str) -> String {
    if state.instances.iter().any(|i| i.domain == entry.domain) {
        format!("{new}.{}", entry.domain)
    } else {
        entry.domain.clone()
    }
}

pub fn restore_as(
    ctx: &mut Ctx,
    args: &RestoreArgs,
    entry: &Entry,
    new: &str,
    started: Instant,
) -> Result<RestoreResult> {
    let state = State::load(&ctx.layout)?;
    let domain = match &args.domain {
        Some(d) => d.clone(),
        None => derive_domain(&state, entry, new),
    };
    validate::domain(&domain)?;
    let binding = recorded_binding(&ctx.layout, entry)?;
    let root = ctx.layout.instance_root.clone();
    let mut create_args = CreateArgs {
        name: new.to_string(),
        domain,
        port: args.port,
        version: match &binding {
            VersionBinding::Exact(v) => Some(v.to_string()),
            VersionBinding::Current => None,
        },
        https_port: None,
        password: None,
        restored_data: Some(root.join(format!("{STAGING_PREFIX}<new>/data"))),
    };
    if ctx.globals.dry_run {
        let r = create::create(ctx, &create_args)?;
        return Ok(result(entry, r, (0, 0), 0, started));
    }
    // The cheap refusals of create (a used name or domain, a bad port) before the
    // extraction: the same checks run again inside create, under its locks.
    if state.instances.iter().any(|i| i.name == new) {
        return Err(
            crate::error::Failure::validation(format!("instance '{new}' already exists"))
                .hint("restore as a new name (--as NAME), or in place without --as")
                .into(),
        );
    }
    sys::fs::create_dir_all_mode(&root, 0o755)?;
    sweep_leftovers(ctx, &root)?;
    let staging = new_staging(&root)?;
    let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
    progress.step(&format!("extracting {}", entry.archive_path.display()));
    let t0 = Instant::now();
    let unpacked = extract(entry, &staging);
    progress.finish();
    let extract_ms = t0.elapsed().as_millis() as u64;
    let u = match unpacked {
        Ok(u) => u,
        Err(e) => {
            let cleanup = sys::instdir::remove_tree(&staging);
            mark_if_corrupt(ctx, entry, &e);
            cleanup?;
            return Err(e.context(format!("restore of backup {}", entry.id)));
        }
    };
    create_args.restored_data = Some(u.data_dir.clone());
    let created = create::create(ctx, &create_args);
    finish_staging(ctx, &staging, created.as_ref().err())?;
    let r = created.map_err(|e| e.context(format!("restore of backup {} as '{new}'", entry.id)))?;
    Ok(result(entry, r, (u.files, u.bytes), extract_ms, started))
}

/// `(files, bytes)` extracted in `extract_ms`.
fn result(
    entry: &Entry,
    r: create::CreateResult,
    (files, bytes): (u64, u64),
    extract_ms: u64,
    started: Instant,
) -> RestoreResult {
    RestoreResult {
        id: entry.id.clone(),
        instance: r.name,
        mode: "new-instance",
        domain: r.domain,
        port: r.port,
        version: r.version,
        version_binding: r.version_binding.to_string(),
        files,
        data_bytes: bytes,
        pre_restore_backup: None,
        healthy_after_ms: r.healthy_after_ms,
        extract_ms,
        // A new instance: the live one is never stopped.
        downtime_ms: None,
        duration_ms: started.elapsed().as_millis() as u64,
        changed: r.changed,
        dry_run: r.dry_run,
        planned_actions: r.planned_actions,
    }
}
