//! Backup use cases: create (`create.rs`), list / show / verify (`query.rs`), the backup
//! offered before a risky change (`safety.rs`). Shared here:
//! reading and writing the index.
//!
//! The index is read without a lock (it is replaced by rename: a reader sees a whole
//! file) and written only under the global lock, after reading it again: an index that
//! does not parse stops the command with exit 2 and is never overwritten.

use crate::domain::backup::{self, Index};
use crate::ops::Ctx;
use crate::sys;
use crate::sys::lock::LockGuard;
use anyhow::{Result, bail};

pub mod create;
pub mod delete;
pub mod prune;
pub mod query;
pub mod reconcile;
pub mod restore;
pub mod restore_as;
pub mod safety;
pub mod schedule;

/// The index as it is on disk (absent: empty).
pub fn load_index(ctx: &Ctx) -> Result<Index> {
    let path = &ctx.layout.backups_index;
    match sys::fs::read_optional(path)? {
        Some(text) => Ok(backup::parse_index(path, &text)?),
        None => Ok(Index::default()),
    }
}

/// Read the index again under the global lock, change it with `f`, write it atomically
/// (0600) if `f` changed it. Returns what `f` returned.
pub fn update_index<T>(
    ctx: &Ctx,
    global: &LockGuard,
    f: impl FnOnce(&mut Index) -> Result<T>,
) -> Result<T> {
    if global.path() != ctx.layout.global_lock() {
        bail!("internal: backup index write attempted without the global lock");
    }
    let mut idx = load_index(ctx)?;
    let before = idx.clone();
    let out = f(&mut idx)?;
    if idx != before {
        let path = &ctx.layout.backups_index;
        if let Some(dir) = path.parent() {
            sys::archive::private_dir(dir, backup::DIR_MODE)?;
        }
        sys::fs::write_atomic(path, idx.render().as_bytes(), backup::FILE_MODE)?;
    }
    Ok(out)
}
