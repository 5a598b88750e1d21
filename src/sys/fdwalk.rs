//! The fd-relative tree walk that root uses on trees another account could write (a build
//! dir, an instance's data): every entry is opened relative to its parent's handle with
//! `O_NOFOLLOW` (directories to descend, anything else as an `O_PATH` handle) and handed
//! to the visitor as that handle, so a name swapped for a symlink can never lead root
//! elsewhere. Used by `sys::seal` (sealing a build) and `sys::users::chown_tree` (handing
//! a data dir to another account).

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a walk calls for every entry: its handle and its path (for messages only).
pub type Visit<'a> = dyn FnMut(&OwnedFd, &Path) -> Result<()> + 'a;

/// A directory's open in these walks: read only, never through a link.
pub const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Open the top of a walk: a directory, never a link to one.
pub fn open_dir(dir: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(dir, DIR_FLAGS, Mode::empty())
        .with_context(|| format!("opening {} (a directory, not a link)", dir.display()))
}

/// The names in the directory `fd` (`path` for messages), without `.` and `..`, in the
/// order the directory gives them.
pub fn names(fd: &OwnedFd, path: &Path) -> Result<Vec<std::ffi::CString>> {
    let dup = fd.try_clone().context("duplicating a directory handle")?;
    let mut d =
        nix::dir::Dir::from_fd(dup).with_context(|| format!("listing {}", path.display()))?;
    Ok(d.iter()
        .map(|e| e.map(|e| e.file_name().to_owned()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("listing {}", path.display()))?
        .into_iter()
        .filter(|c| c.as_bytes() != b"." && c.as_bytes() != b"..")
        .collect())
}

/// Visit every entry under `fd` (children before their directory, the directory itself
/// last). An entry gone between the listing and its open (a server deleting a temp file)
/// is skipped: there is nothing left to change.
pub fn walk(fd: OwnedFd, path: &Path, visit: &mut Visit<'_>) -> Result<()> {
    for name in names(&fd, path)? {
        let child = path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        match nix::fcntl::openat(&fd, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(sub) => walk(sub, &child, visit)?,
            // Not a directory (or a link to one): a handle on the entry itself.
            Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => {
                match nix::fcntl::openat(
                    &fd,
                    name.as_c_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(h) => visit(&h, &child)?,
                    Err(nix::errno::Errno::ENOENT) => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("opening {}", child.display()));
                    }
                }
            }
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("opening {}", child.display())),
        }
    }
    visit(&fd, path)
}
