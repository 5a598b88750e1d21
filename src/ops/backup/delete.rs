//! `backup delete <id>`: the archive, its `.sha256` and its index entry.

use crate::domain::backup::{self as bk, Entry};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::lifecycle::confirm;
use crate::sys;
use anyhow::Result;
use serde::Serialize;

/// `backup delete --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub dry_run: bool,
    pub backup: Entry,
    /// Files removed (or, in a dry run, that would be).
    pub removed: Vec<std::path::PathBuf>,
}

/// Remove the archive and `.sha256` of `entry` (its index entry is already gone),
/// durably; returns what was there.
pub fn remove_files(entry: &Entry) -> Result<Vec<std::path::PathBuf>> {
    let mut removed = Vec::new();
    for p in [
        entry.archive_path.clone(),
        bk::checksum_path(&entry.archive_path),
    ] {
        if sys::fs::remove_file_if_exists(&p)? {
            removed.push(p);
        }
    }
    if let Some(p) = removed.first() {
        sys::fs::sync_parent(p)?;
    }
    Ok(removed)
}

/// Delete one backup: asked first (unless --yes); under the global lock the entry leaves
/// the index first, then the files go. A failure between the two leaves an archive with
/// no entry, never an entry whose archive was silently removed.
pub fn delete(ctx: &mut Ctx, id: &str) -> Result<Deleted> {
    ctx.require_root()?;
    let entry = super::load_index(ctx)?.find(id)?.clone();
    let files: Vec<_> = [
        entry.archive_path.clone(),
        bk::checksum_path(&entry.archive_path),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    if ctx.globals.dry_run {
        return Ok(Deleted {
            dry_run: true,
            backup: entry,
            removed: files,
        });
    }
    confirm(
        ctx,
        &format!(
            "delete backup {} of '{}' ({}; irreversible)?",
            entry.id,
            entry.instance,
            entry.archive_path.display()
        ),
        "backup delete",
    )?;
    let global = ctx.lock_global()?;
    let entry = super::update_index(ctx, &global, |idx| {
        idx.remove(id).ok_or_else(|| {
            Failure::validation(format!("no backup with id '{id}' (deleted meanwhile?)")).into()
        })
    })?;
    let removed = remove_files(&entry)?;
    ctx.op.planned.push(crate::domain::txn::PlannedAction {
        action: "backup_delete".into(),
        description: format!("delete backup {}", entry.id),
        irreversible: true,
    });
    Ok(Deleted {
        dry_run: false,
        backup: entry,
        removed,
    })
}
