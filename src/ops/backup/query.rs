//! `backup list`, `backup show`, `backup verify`.

use crate::domain::backup::{Entry, Status};
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::sys;
use anyhow::Result;
use serde::Serialize;

/// `backup list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub backups: Vec<Entry>,
}

/// The index entries (of one instance), oldest first. No lock: the index is replaced by
/// rename.
pub fn list(ctx: &Ctx, instance: Option<&str>) -> Result<ListResult> {
    if let Some(i) = instance {
        validate::instance_name(i)?;
    }
    let idx = super::load_index(ctx)?;
    Ok(ListResult {
        backups: idx.of(instance).into_iter().cloned().collect(),
    })
}

/// One entry; an unknown id is exit 2.
pub fn show(ctx: &Ctx, id: &str) -> Result<Entry> {
    Ok(super::load_index(ctx)?.find(id)?.clone())
}

/// One verified backup.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub id: String,
    pub archive_path: std::path::PathBuf,
    pub status: Status,
    /// The status the index had before this check.
    pub previous: Status,
    pub detail: String,
}

/// `backup verify --json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub dry_run: bool,
    pub verified: Vec<Verified>,
}

/// Recompute each archive's SHA-256 and compare it (and the size) with the index; record
/// present / missing / corrupt in the index (under the global lock, unless a dry run).
/// Any backup that is not present fails the command with exit 3 (environment: the
/// machine lacks a sound archive; 2 stays "you asked for something wrong", e.g. an
/// unknown id, and 4 is systemd/nginx only), after the index has been updated.
pub fn verify(ctx: &mut Ctx, id: Option<&str>, all: bool) -> Result<VerifyResult> {
    ctx.require_root()?;
    let idx = super::load_index(ctx)?;
    let entries: Vec<Entry> = match (id, all) {
        (Some(id), false) => vec![idx.find(id)?.clone()],
        (None, true) => idx.of(None).into_iter().cloned().collect(),
        _ => {
            return Err(Failure::validation("name one backup id, or say --all")
                .hint("abssctl backup verify <id> | --all")
                .into());
        }
    };
    let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
    let mut verified = Vec::new();
    for e in &entries {
        progress.step(&format!("verifying {}", e.id));
        let (status, detail) = match std::fs::metadata(&e.archive_path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                (Status::Missing, "the archive file is gone".to_string())
            }
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context(format!("reading {}", e.archive_path.display())));
            }
            Ok(m) if m.len() != e.size_bytes => (
                Status::Corrupt,
                format!("{} bytes, the index says {}", m.len(), e.size_bytes),
            ),
            Ok(_) => {
                let sum = sys::fs::sha256_file(&e.archive_path)?;
                if sum == e.checksum_sha256 {
                    (Status::Present, "checksum matches".to_string())
                } else {
                    (Status::Corrupt, format!("checksum is {sum}"))
                }
            }
        };
        verified.push(Verified {
            id: e.id.clone(),
            archive_path: e.archive_path.clone(),
            status,
            previous: e.status,
            detail,
        });
    }
    progress.finish();
    if !ctx.globals.dry_run {
        let global = ctx.lock_global()?;
        let now = time::OffsetDateTime::now_utc();
        super::update_index(ctx, &global, |idx| {
            for v in &verified {
                idx.set_status(&v.id, v.status, now);
            }
            Ok(())
        })?;
    }
    let bad: Vec<String> = verified
        .iter()
        .filter(|v| v.status != Status::Present)
        .map(|v| format!("{} ({}: {})", v.id, v.status.as_str(), v.detail))
        .collect();
    if !bad.is_empty() {
        return Err(Failure::environment(format!(
            "{} of {} backups failed verification: {}",
            bad.len(),
            verified.len(),
            bad.join("; ")
        ))
        .hint("take a new backup (abssctl backup create <instance>); the index marks these")
        .into());
    }
    Ok(VerifyResult {
        dry_run: ctx.globals.dry_run,
        verified,
    })
}
