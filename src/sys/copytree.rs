//! An exact copy of a data directory, made by root from a tree another account owns (the
//! instance's data, before an upgrade lets a new server version migrate it).
//!
//! The source is read fd-relative and never through a link: each directory is opened with
//! `O_NOFOLLOW | O_DIRECTORY` relative to its parent, each file with `O_NOFOLLOW`, and a
//! symlink is copied as a link (its target text), never followed; anything that is not a
//! directory, regular file or symlink (a fifo, a device) is refused. The copy keeps each
//! entry's mode, owner and modification time, so swapping it back in one rename gives the
//! instance exactly the data it had. The destination is created fresh (it must not exist)
//! inside a directory only root can write. One `syncfs` makes the whole copy durable.

use crate::error::Failure;
use crate::sys::fdwalk::{DIR_FLAGS, open_dir};
use anyhow::{Context, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// What was copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

/// Copy the tree at `src` to the new path `dst` (see the module doc).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<Copied> {
    let fd = open_dir(src)?;
    let mut n = Copied::default();
    copy_dir(&fd, src, dst, &mut n)?;
    let top = open_dir(dst)?;
    nix::unistd::syncfs(&top).with_context(|| format!("syncing {}", dst.display()))?;
    Ok(n)
}

fn copy_dir(fd: &OwnedFd, path: &Path, dst: &Path, n: &mut Copied) -> Result<()> {
    let st =
        nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("stat {}", path.display()))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    for name in crate::sys::fdwalk::names(fd, path)? {
        let rel = std::ffi::OsStr::from_bytes(name.as_bytes());
        let (child, to) = (path.join(rel), dst.join(rel));
        match nix::fcntl::openat(fd, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(sub) => copy_dir(&sub, &child, &to, n)?,
            // Not a directory, or a link (which of the two errors depends on the kernel's
            // order of checks): the file open below tells them apart.
            Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => {
                copy_file(fd, &name, &child, &to, n)?
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", child.display())),
        }
    }
    keep_meta(dst, &st)
}

fn copy_file(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    path: &Path,
    to: &Path,
    n: &mut Copied,
) -> Result<()> {
    // O_NONBLOCK: a fifo planted in the data must not hang the copy (it is refused below).
    let fd = match nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP) => return copy_link(dir, name, path, to),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let st =
        nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("stat {}", path.display()))?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFREG {
        return Err(Failure::environment(format!(
            "{} is not a regular file, a directory or a link",
            path.display()
        ))
        .hint("an instance's data holds only files and directories: move that entry away, then try again")
        .into());
    }
    let mut src = std::fs::File::from(fd);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let bytes = std::io::copy(&mut src, &mut out)
        .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
    out.flush()?;
    drop(out);
    n.files += 1;
    n.bytes += bytes;
    keep_meta(to, &st)
}

fn copy_link(dir: &OwnedFd, name: &std::ffi::CStr, path: &Path, to: &Path) -> Result<()> {
    let target = nix::fcntl::readlinkat(dir, name)
        .with_context(|| format!("reading the link {}", path.display()))?;
    std::os::unix::fs::symlink(&target, to)
        .with_context(|| format!("creating the link {}", to.display()))?;
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .with_context(|| format!("stat {}", path.display()))?;
    std::os::unix::fs::lchown(to, Some(st.st_uid), Some(st.st_gid))
        .with_context(|| format!("chown {}", to.display()))
}

/// Owner, mode and modification time of `st` onto `to` (a file or directory we made).
fn keep_meta(to: &Path, st: &nix::sys::stat::FileStat) -> Result<()> {
    std::os::unix::fs::chown(to, Some(st.st_uid), Some(st.st_gid))
        .with_context(|| format!("chown {}", to.display()))?;
    std::fs::set_permissions(
        to,
        std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777),
    )
    .with_context(|| format!("chmod {}", to.display()))?;
    let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("setting the times of {}", to.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copies_files_dirs_and_links_exactly() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("data");
        std::fs::create_dir_all(src.join("user-files")).unwrap();
        std::fs::write(src.join(".migrate"), b"{}").unwrap();
        std::fs::write(src.join("user-files/file-a.blob"), vec![7u8; 100_000]).unwrap();
        std::fs::set_permissions(
            src.join("user-files/file-a.blob"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("evil")).unwrap();
        let dst = d.path().join("copy");
        let n = copy_tree(&src, &dst).unwrap();
        assert_eq!(
            n,
            Copied {
                files: 2,
                bytes: 100_002
            }
        );
        assert_eq!(
            std::fs::read(dst.join("user-files/file-a.blob")).unwrap(),
            vec![7u8; 100_000]
        );
        let (a, b) = (
            std::fs::metadata(src.join("user-files/file-a.blob")).unwrap(),
            std::fs::metadata(dst.join("user-files/file-a.blob")).unwrap(),
        );
        assert_eq!(
            (a.mode(), a.uid(), a.mtime()),
            (b.mode(), b.uid(), b.mtime())
        );
        // The link is a link, not a copy of what it points to.
        assert_eq!(
            std::fs::read_link(dst.join("evil")).unwrap(),
            Path::new("/etc/shadow")
        );
        // The destination must be new.
        assert!(copy_tree(&src, &dst).is_err());
    }

    #[test]
    fn refuses_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("data");
        std::fs::create_dir(&src).unwrap();
        nix::unistd::mkfifo(&src.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        let e = copy_tree(&src, &d.path().join("copy")).unwrap_err();
        assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
    }
}
