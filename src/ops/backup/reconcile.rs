//! `backup reconcile [--instance N | --all]`: make the index and the backup directories
//! agree again, after a crash, a hand copy or a restored disk, without ever losing one.
//!
//! - an archive with no entry is ADDED, from its own manifest (its first member), with
//!   the checksum and size of the file; one whose manifest cannot be read, or names
//!   another id or instance than its file and directory, is reported and left alone;
//! - an entry whose archive file is gone is marked `missing` (never dropped: it says a
//!   backup existed; `backup delete` removes it on purpose);
//! - leftovers of an interrupted `backup create` (`.abssctl-*.partial` temp archives and
//!   `.abssctl-staging-*` dirs) are removed, under the instance's lock, so never those of
//!   a create that is running;
//! - anything else is reported and never touched.

use crate::domain::backup::{self as bk, Algorithm, Entry, Status};
use crate::domain::txn::PlannedAction;
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::sys;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A file reconcile did not touch, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Left {
    pub path: PathBuf,
    pub why: String,
}

/// `backup reconcile --json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileResult {
    pub dry_run: bool,
    pub added: Vec<String>,
    pub marked_missing: Vec<String>,
    pub removed: Vec<PathBuf>,
    pub left_alone: Vec<Left>,
}

/// `<id>.<ext>` -> (id, algorithm).
pub(crate) fn archive_id(name: &str) -> Option<(String, Algorithm)> {
    [Algorithm::Zstd, Algorithm::Gzip, Algorithm::None]
        .into_iter()
        .find_map(|a| {
            name.strip_suffix(&format!(".{}", a.extension()))
                .map(|id| (id.to_string(), a))
        })
}

pub(crate) fn leftover(name: &str) -> bool {
    (name.starts_with(".abssctl-") && name.ends_with(".partial"))
        || name.starts_with(".abssctl-staging-")
}

pub fn reconcile(ctx: &mut Ctx, instance: Option<&str>, all: bool) -> Result<ReconcileResult> {
    ctx.require_root()?;
    let only = match (instance, all) {
        (Some(n), false) => Some(validate::instance_name(n)?.as_str().to_string()),
        (None, true) => None,
        _ => {
            return Err(
                Failure::validation("name one instance with --instance, or say --all")
                    .hint("abssctl backup reconcile --instance <name> | --all")
                    .into(),
            );
        }
    };
    let idx = super::load_index(ctx)?;
    let root = ctx.layout.backups_root.clone();
    let mut r = ReconcileResult {
        dry_run: ctx.globals.dry_run,
        ..ReconcileResult::default()
    };
    let mut names: Vec<String> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) && validate::instance_name(&n).is_ok() {
                names.push(n);
            }
        }
    }
    for e in &idx.backups {
        names.push(e.instance.clone());
    }
    names.sort();
    names.dedup();
    if let Some(n) = &only {
        names.retain(|x| x == n);
    }
    let mut new_entries: Vec<Entry> = Vec::new();
    for name in &names {
        let dir = root.join(name);
        // The instance's lock: no create of it is writing here while we look.
        let lock = if ctx.globals.dry_run {
            None
        } else {
            Some(ctx.lock_instance(name)?)
        };
        scan_dir(ctx, &dir, name, &idx, &mut r, &mut new_entries)?;
        drop(lock);
        for e in idx.of(Some(name)) {
            if e.status != Status::Missing && !e.archive_path.exists() {
                r.marked_missing.push(e.id.clone());
            }
        }
    }
    for id in &r.added {
        ctx.op.planned.push(PlannedAction {
            action: "index_add".into(),
            description: format!("add backup {id} to the index"),
            irreversible: false,
        });
    }
    for id in &r.marked_missing {
        ctx.op.planned.push(PlannedAction {
            action: "index_mark_missing".into(),
            description: format!("mark backup {id} missing"),
            irreversible: false,
        });
    }
    if ctx.globals.dry_run || (new_entries.is_empty() && r.marked_missing.is_empty()) {
        return Ok(r);
    }
    let global = ctx.lock_global()?;
    let now = time::OffsetDateTime::now_utc();
    let missing = r.marked_missing.clone();
    super::update_index(ctx, &global, |idx| {
        for e in new_entries {
            // Added meanwhile (a create that finished): nothing to add.
            if idx.get(&e.id).is_none() {
                idx.add(e)?;
            }
        }
        for id in &missing {
            if idx.get(id).is_some_and(|e| !e.archive_path.exists()) {
                idx.set_status(id, Status::Missing, now);
            }
        }
        Ok(())
    })?;
    Ok(r)
}

fn scan_dir(
    ctx: &Ctx,
    dir: &Path,
    name: &str,
    idx: &bk::Index,
    r: &mut ReconcileResult,
    new_entries: &mut Vec<Entry>,
) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut files: Vec<_> = rd.flatten().collect();
    files.sort_by_key(|e| e.file_name());
    for e in files {
        let fname = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let left = |why: &str| Left {
            path: path.clone(),
            why: why.to_string(),
        };
        if leftover(&fname) {
            if !ctx.globals.dry_run {
                if path.is_dir() {
                    sys::instdir::remove_tree(&path)?;
                } else {
                    sys::fs::remove_file_if_exists(&path)?;
                }
            }
            r.removed.push(path);
            continue;
        }
        if let Some(base) = fname.strip_suffix(".sha256") {
            if !dir.join(base).exists() {
                r.left_alone
                    .push(left("a checksum file without its archive"));
            }
            continue;
        }
        let Some((id, alg)) = archive_id(&fname) else {
            r.left_alone.push(left("not a file backup create writes"));
            continue;
        };
        if idx.get(&id).is_some() {
            continue;
        }
        match sys::unpack::read_manifest(&path, alg) {
            Err(err) => r.left_alone.push(Left {
                path: path.clone(),
                why: format!(
                    "an archive with no index entry whose manifest cannot be read: {err:#}"
                ),
            }),
            Ok((m, _, _)) if m.id != id || m.instance != name => {
                r.left_alone.push(left(&format!(
                    "its manifest says backup {} of '{}', not what its name and directory say",
                    m.id, m.instance
                )));
            }
            Ok((m, sha, size)) => {
                let sums = bk::checksum_path(&path);
                if !ctx.globals.dry_run && !sums.exists() {
                    sys::fs::write_atomic(
                        &sums,
                        bk::sha256sum_line(&sha, &path).as_bytes(),
                        bk::FILE_MODE,
                    )?;
                }
                new_entries.push(Entry {
                    id: m.id.clone(),
                    instance: m.instance,
                    created_at: m.created_at,
                    created_by: "unknown".into(),
                    reason: "reconciled".into(),
                    message: "added by backup reconcile from the archive's manifest".into(),
                    labels: Vec::new(),
                    kind: bk::TYPE_FULL.into(),
                    archive_path: path.clone(),
                    size_bytes: size,
                    checksum_sha256: sha,
                    algorithm: alg,
                    instance_version: m.instance_version,
                    version_binding: m.version_binding,
                    domain: m.domain,
                    port: m.port,
                    includes: m.includes,
                    status: Status::Present,
                    verified_at: None,
                });
                r.added.push(m.id);
            }
        }
    }
    Ok(())
}
