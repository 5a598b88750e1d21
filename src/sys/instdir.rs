//! An instance's directories on disk: created with their modes and the service user as
//! owner, moved on rename, removed on purge. Each change of a directory entry is followed
//! by an fsync of its parent, so a provisioned or removed tree survives a power cut as
//! reported. (Atomic file writes live in `sys::fs`.)

use crate::error::Failure;
use crate::sys::fs::sync_parent;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// uid and gid of the service account (`actual-sync`).
pub fn service_ids(user: &str) -> Result<(u32, u32)> {
    let found = nix::unistd::User::from_name(user)
        .with_context(|| format!("looking up the user {user}"))?;
    match found {
        Some(u) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        None => Err(Failure::environment(format!("the service user '{user}' does not exist"))
            .hint("create it: systemd-sysusers (the abssctl package ships it), or `abssctl doctor --fix`")
            .into()),
    }
}

/// Create `dir` (one level; its parent must exist) with `mode` and owner, durably (its
/// parent is fsynced). Returns whether it was created, so an undo removes only what this
/// run made. An existing directory gets the mode and owner again (idempotent repair). A
/// directory made here whose mode or owner cannot be set is removed again: the caller
/// gets an error and no half-made directory (wrong mode, root-owned) is left behind.
pub fn ensure_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<bool> {
    let created = match std::fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => false,
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    };
    let settled = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", dir.display()))
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to uid {uid}", dir.display())),
            None => Ok(()),
        });
    if let Err(e) = settled {
        if !created {
            return Err(e);
        }
        return Err(match std::fs::remove_dir(dir) {
            Ok(()) => e,
            Err(r) => e.context(format!("and removing {} again failed: {r}", dir.display())),
        });
    }
    if created {
        sync_parent(dir)?;
    }
    Ok(created)
}

/// Remove an empty directory this run created (undo of [`ensure_dir`]), durably.
pub fn remove_empty_dir(dir: &Path) -> Result<()> {
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    sync_parent(dir)
}

/// Remove a directory only when it is empty (absent or non-empty: `false`), durably.
pub fn remove_dir_if_empty(dir: &Path) -> Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => sync_parent(dir).map(|()| true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Remove a directory tree; absent is fine. Returns whether something was removed. The
/// parent is fsynced, so the removal (a purge) is not undone by a power cut.
pub fn remove_tree(dir: &Path) -> Result<bool> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => sync_parent(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Move a directory (same filesystem: instance dirs live side by side under one root).
pub fn rename_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Err(
            Failure::validation(format!("{} already exists", to.display()))
                .hint("move it away first; abssctl never merges directories")
                .into(),
        );
    }
    std::fs::rename(from, to)
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    // Durable: both directory entries changed (one fsync when they share a parent).
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Does a path exist (a directory or anything else)?
pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// The link target of a symlink (`current` -> `v26.9.0`); `None` when absent.
pub fn read_link(p: &Path) -> Result<Option<std::path::PathBuf>> {
    match std::fs::read_link(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the link {}", p.display())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn ensure_dir_is_idempotent_and_sets_mode() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        assert!(ensure_dir(&d, 0o700, None).unwrap());
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ensure_dir(&d, 0o700, None).unwrap());
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let to = t.path().join("moved");
        rename_dir(&d, &to).unwrap();
        assert!(!exists(&d) && exists(&to));
        std::fs::create_dir(&d).unwrap();
        assert!(rename_dir(&d, &to).is_err());
        assert!(remove_tree(&to).unwrap());
        assert!(!remove_tree(&to).unwrap());
        assert!(service_ids("no-such-user-abssctl").is_err());
    }
}
