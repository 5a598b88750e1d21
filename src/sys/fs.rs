//! Filesystem access: atomic durable writes, directories with modes, reads, checksums.
//!
//! Every write that replaces a file goes through [`write_atomic`]: a reader (or a crash)
//! sees either the old content or the new, never a torn file, and the new file never
//! exists, even briefly, with wider permissions than asked for.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Default mode of directories abssctl creates (owner rwx, group rx).
pub const DIR_MODE: u32 = 0o750;
/// Default mode of files abssctl writes (owner rw, group r).
pub const FILE_MODE: u32 = 0o640;

/// Read a file that may be absent (`None`), with context on any other error.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Not a bug in abssctl: the operator lacks the rights (exit 3, with the next step).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(crate::error::Failure::environment(format!(
                "cannot read {}: permission denied",
                path.display()
            ))
            .hint("run it with sudo, or make the file readable by this user")
            .into())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The names of the entries of a directory that may be absent (`None`), sorted.
pub fn list_names(dir: &Path) -> Result<Option<Vec<String>>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(Some(out))
}

/// mkdir -p with the given mode for created directories.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The directory a path lives in (`.` for a bare file name), for temp files and dir fsync.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so a rename or new entry in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// fsync the directory `path` is in (after creating, renaming or removing `path`).
pub fn sync_parent(path: &Path) -> Result<()> {
    sync_dir(parent_of(path))
}

/// mkdir -p with [`DIR_MODE`], durably: the parent of every directory it made is fsynced,
/// so a file written into a new directory does not vanish with it at a power cut.
fn create_dirs_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && d.symlink_metadata().is_err() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    create_dir_all_mode(dir, DIR_MODE)?;
    // Outermost first, as they were made.
    for made in missing.into_iter().rev() {
        sync_parent(made)?;
    }
    Ok(())
}

/// Copy a file and make the copy durable (its bytes and its directory entry) before the
/// caller relies on it, e.g. replaces the original.
pub fn copy_durable(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", to.display()))?;
    sync_parent(to)
}

/// Replace `path` with `bytes` atomically and durably: temp file in the same directory
/// (so the rename cannot cross filesystems), mode set before any byte is written, fsync of
/// the file, rename over the target, fsync of the directory. Missing parent directories are
/// created with [`DIR_MODE`], and durably too.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    create_dirs_durable(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".abssctl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let what = || format!("writing {}", path.display());
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(what)?;
    tmp.write_all(bytes).with_context(what)?;
    tmp.as_file().sync_all().with_context(what)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming a temporary file over {}", path.display()))?;
    sync_dir(dir)
}

/// Remove a file; an absent file is not an error (returns whether something was removed).
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Point the symlink `link` at `target` atomically: a temporary link in the same directory
/// renamed over `link`, so there is no moment without a link (used for `current`).
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let dir = parent_of(link);
    create_dir_all_mode(dir, DIR_MODE)?;
    let name = link
        .file_name()
        .with_context(|| format!("{} has no file name", link.display()))?;
    let tmp = dir.join(format!(
        ".{}.abssctl-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    remove_file_if_exists(&tmp)?;
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("creating symlink {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, link) {
        let err = anyhow::Error::new(e).context(format!("replacing symlink {}", link.display()));
        return Err(match remove_file_if_exists(&tmp) {
            Ok(_) => err,
            Err(c) => err.context(format!("also left {} behind: {c:#}", tmp.display())),
        });
    }
    sync_dir(dir)
}

/// Lowercase hex SHA-256 of a file's content, streamed (archives can be large).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Swap two paths in one step (renameat2 RENAME_EXCHANGE), then fsync their parent: there
/// is no moment when neither exists, and after a crash one of the two trees is at each
/// name. Both must exist and share a parent directory's filesystem.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        a,
        nix::fcntl::AT_FDCWD,
        b,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .with_context(|| format!("exchanging {} and {}", a.display(), b.display()))?;
    sync_parent(a)?;
    if a.parent() != b.parent() {
        sync_parent(b)?;
    }
    Ok(())
}

/// Read until `buf` is full or the reader ends (a short count only at its end); EINTR
/// is retried.
pub fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_sets_mode_creates_dirs_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/file.yml");
        write_atomic(&path, b"one", FILE_MODE).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(tmp.path().join("a")).unwrap().mode() & 0o777;
        // The process umask may remove bits, never add them.
        assert_eq!(dir_mode & !DIR_MODE, 0);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.yml")]);
    }

    #[test]
    fn remove_and_symlink_and_sha256() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        assert!(!remove_file_if_exists(&f).unwrap());
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let link = tmp.path().join("current");
        symlink_atomic(Path::new("v1"), &link).unwrap();
        symlink_atomic(Path::new("v2"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("v2"));
        assert!(remove_file_if_exists(&f).unwrap());
        assert!(!f.exists());
    }

    #[test]
    fn read_optional_distinguishes_absent() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&tmp.path().join("none")).unwrap(), None);
    }
}
