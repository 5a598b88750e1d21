//! Sealing a tree that an unprivileged user wrote (an npm build) or that root unpacked (a
//! runtime tarball): afterwards root owns every entry, nothing is writable by anyone else,
//! no setuid/setgid/sticky bit is left, and nothing but directories, regular files and
//! symlinks is in it.
//!
//! The walk is fd-relative and never follows a link: each directory is opened with
//! `O_NOFOLLOW | O_DIRECTORY` relative to its parent's handle, every other entry is taken as
//! an `O_PATH | O_NOFOLLOW` handle, checked with `fstat` on that handle and changed through
//! it (`fchownat(AT_EMPTY_PATH)`, `fchmod` on a real fd for files and dirs). So a name that
//! the build user swapped for a symlink (to /etc/shadow, to another family's data) changes
//! only the link itself; root never resolves a path the build user controls. It runs only
//! after the build unit has ended and every process of the build user is gone
//! ([`end_processes_of`]), so nothing changes under it either way.

use crate::error::Failure;
use crate::sys::fdwalk::{open_dir, walk};
use anyhow::{Context, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// What a seal did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub entries: u64,
    /// Entries whose mode lost a setuid, setgid, sticky or group/other write bit.
    pub bits_cleared: u64,
}

/// Seal `dir`: every entry must be owned by one of `owners` (root and the build user)
/// and becomes root:root; dirs 0755, files 0755 when the owner could execute them else
/// 0644, symlinks keep their (meaningless) mode. Refused, before anything changes: a
/// regular file with a hard link OUTSIDE the tree (it may be someone else's file linked
/// in; links inside it are normal: node-gyp links build/Release to obj.target), a device,
/// a FIFO or a socket (no business in an application tree).
pub fn seal_tree(dir: &Path, owners: &[u32]) -> Result<Sealed> {
    // Pass 1, read-only: owners, types, and every hard link accounted for in the tree.
    let mut links: HashMap<(u64, u64), (u64, u64, std::path::PathBuf)> = HashMap::new();
    walk(open_dir(dir)?, dir, &mut |fd, path| {
        let st = nix::sys::stat::fstat(fd.as_fd())
            .with_context(|| format!("stat {}", path.display()))?;
        check_entry(&st, path, owners)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_nlink > 1 {
            let e =
                links
                    .entry((st.st_dev, st.st_ino))
                    .or_insert((st.st_nlink, 0, path.to_path_buf()));
            e.1 += 1;
        }
        Ok(())
    })?;
    if let Some((nlink, seen, path)) = links.values().find(|(n, seen, _)| seen < n) {
        return Err(refuse(
            path,
            &format!(
                "has {nlink} hard links, only {seen} of them in the tree (may be a file from elsewhere)"
            ),
        ));
    }
    // Pass 2: hand everything to root and settle the modes, through the same handles.
    let mut s = Sealed::default();
    walk(open_dir(dir)?, dir, &mut |fd, path| {
        seal_entry(fd, path, owners, &mut s)
    })?;
    Ok(s)
}

/// Seal a tree this process unpacked itself (a verified runtime or npm tarball).
pub fn seal_unpacked(dir: &Path) -> Result<Sealed> {
    seal_tree(dir, &[nix::unistd::geteuid().as_raw()])
}

/// Owner and type rules of a sealable entry.
fn check_entry(st: &libc::stat, path: &Path, owners: &[u32]) -> Result<()> {
    if !owners.contains(&st.st_uid) {
        return Err(refuse(
            path,
            &format!("belongs to uid {} (not the build's)", st.st_uid),
        ));
    }
    match SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) {
        SFlag::S_IFDIR | SFlag::S_IFLNK | SFlag::S_IFREG => Ok(()),
        _ => Err(refuse(path, "is not a file, directory or symlink")),
    }
}

/// The mode an entry gets: dirs 0755; files 0755 if the owner could run them, else 0644.
pub fn sealed_mode(is_dir: bool, mode: u32) -> u32 {
    if is_dir || mode & 0o100 != 0 {
        0o755
    } else {
        0o644
    }
}

fn refuse(path: &Path, why: &str) -> anyhow::Error {
    Failure::environment(format!(
        "the build left {} which {why}: refusing to install this tree",
        path.display()
    ))
    .hint("nothing was installed; report the package version, or run the install again")
    .into()
}

fn seal_entry(fd: &OwnedFd, path: &Path, owners: &[u32], s: &mut Sealed) -> Result<()> {
    let st =
        nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("stat {}", path.display()))?;
    // Checked again on this handle: pass 1 saw the same tree, and nothing runs as the
    // build user any more, but the check costs nothing.
    check_entry(&st, path, owners)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let mode = st.st_mode & 0o7777;
    nix::unistd::fchownat(
        fd.as_fd(),
        "",
        Some(Uid::from_raw(0)),
        Some(Gid::from_raw(0)),
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("giving {} to root", path.display()))?;
    s.entries += 1;
    if kind == SFlag::S_IFLNK {
        return Ok(());
    }
    let want = sealed_mode(kind == SFlag::S_IFDIR, mode);
    if mode & !want & 0o7777 != 0 {
        s.bits_cleared += 1;
    }
    if mode != want {
        chmod_handle(fd, kind, want)
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// fchmod needs a real fd: an O_PATH handle of a regular file is reopened through
/// /proc/self/fd (the same inode, no path lookup the build user could influence).
fn chmod_handle(fd: &OwnedFd, kind: SFlag, mode: u32) -> Result<()> {
    let m = Mode::from_bits_truncate(mode);
    if kind == SFlag::S_IFDIR {
        return nix::sys::stat::fchmod(fd.as_fd(), m).context("fchmod");
    }
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let real = nix::fcntl::open(
        proc.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .context("reopening the file handle")?;
    let (a, b) = (
        nix::sys::stat::fstat(fd.as_fd()).context("stat")?,
        nix::sys::stat::fstat(real.as_fd()).context("stat")?,
    );
    anyhow::ensure!(
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        "the file changed while it was sealed"
    );
    nix::sys::stat::fchmod(real.as_fd(), m).context("fchmod")
}

/// Kill every process of `uid` (SIGKILL) and wait until none is left, so that nothing the
/// build started (a daemonised child, a lingering node-gyp) can change the tree while or
/// after it is sealed. Only for the dedicated build user: no one else runs as it.
pub fn end_processes_of(uid: u32) -> Result<usize> {
    let mut killed = 0;
    for round in 0..50 {
        let pids = processes_of(uid)?;
        if pids.is_empty() {
            return Ok(killed);
        }
        for pid in &pids {
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            ) {
                Ok(()) => killed += 1,
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e).with_context(|| format!("killing process {pid}")),
            }
        }
        std::thread::sleep(Duration::from_millis(20 * (round + 1).min(10)));
    }
    Err(Failure::environment(format!(
        "processes of uid {uid} survive SIGKILL: {:?}",
        processes_of(uid)?
    ))
    .hint("stop them (ps -u <build user>) and run the install again")
    .into())
}

/// Pids whose real or effective uid is `uid` (zombies count until reaped: they cannot
/// write, but their parent might still be alive and is itself in the list).
fn processes_of(uid: u32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").context("listing /proc")? {
        let e = e.context("listing /proc")?;
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // A process may end between the listing and the read: absent is not an error.
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        if status_uids(&status).is_some_and(|(r, eff)| r == uid || eff == uid)
            && !status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
        {
            out.push(pid);
        }
    }
    Ok(out)
}

/// Real and effective uid from a /proc/<pid>/status text.
fn status_uids(status: &str) -> Option<(u32, u32)> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut f = line.split_whitespace().skip(1).map(|x| x.parse::<u32>());
    Some((f.next()?.ok()?, f.next()?.ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn root_only() {
        assert!(
            crate::sys::privilege::is_root(),
            "sys::seal tests change owners: run them as root (CI does)"
        );
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn status_uids_reads_real_and_effective() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(status_uids(s), Some((1000, 0)));
        assert_eq!(status_uids("Name: x\n"), None);
    }

    #[test]
    fn modes_lose_setuid_and_foreign_write() {
        assert_eq!(sealed_mode(false, 0o4777), 0o755);
        assert_eq!(sealed_mode(false, 0o666), 0o644);
        assert_eq!(sealed_mode(true, 0o1777), 0o755);
    }

    #[test]
    fn a_built_tree_becomes_roots_and_loses_dangerous_bits() {
        root_only();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/x"), b"12345").unwrap();
        std::fs::write(d.join("f"), b"1").unwrap();
        std::fs::set_permissions(d.join("bin/x"), std::fs::Permissions::from_mode(0o4777)).unwrap();
        std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(d.join("bin"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let builder = 4242;
        crate::sys::users::chown_tree(&d, 0, (builder, builder)).unwrap();
        let s = seal_tree(&d, &[0, builder]).unwrap();
        assert_eq!(s.entries, 4);
        assert_eq!(s.bits_cleared, 3);
        assert_eq!(
            (
                mode(&d.join("bin/x")),
                mode(&d.join("f")),
                mode(&d.join("bin"))
            ),
            (0o755, 0o644, 0o755)
        );
        assert_eq!(std::fs::metadata(d.join("bin/x")).unwrap().uid(), 0);
    }

    /// The sealer must not follow a link the build user planted: the target keeps its
    /// owner and mode, and only the link becomes root's.
    #[test]
    fn a_planted_symlink_changes_only_the_link() {
        root_only();
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        std::os::unix::fs::chown(&victim, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let vdir = tmp.path().join("victim-dir");
        std::fs::create_dir(&vdir).unwrap();
        std::os::unix::fs::chown(&vdir, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("evil")).unwrap();
        std::os::unix::fs::symlink(&vdir, d.join("evil-dir")).unwrap();
        let builder = 4242;
        crate::sys::users::chown_tree(&d, 0, (builder, builder)).unwrap();
        seal_tree(&d, &[0, builder]).unwrap();
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (1234, 0o600));
        let m = std::fs::metadata(&vdir).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (1234, 0o700));
        assert_eq!(std::fs::symlink_metadata(d.join("evil")).unwrap().uid(), 0);
    }

    #[test]
    fn strangers_files_hard_links_and_fifos_are_refused() {
        root_only();
        let builder = 4242;
        let tmp = tempfile::tempdir().unwrap();
        let mk = |n: &str| {
            let d = tmp.path().join(n);
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(builder), Some(builder)).unwrap();
            d
        };
        let a = mk("stranger");
        std::fs::write(a.join("x"), b"").unwrap();
        std::os::unix::fs::chown(a.join("x"), Some(1234), Some(1234)).unwrap();
        let err = seal_tree(&a, &[0, builder]).unwrap_err();
        assert!(format!("{err:#}").contains("uid 1234"), "{err:#}");
        assert_eq!(std::fs::metadata(a.join("x")).unwrap().uid(), 1234);

        let b = mk("hardlink");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        std::os::unix::fs::chown(&outside, Some(builder), Some(builder)).unwrap();
        std::fs::hard_link(&outside, b.join("x")).unwrap();
        let err = seal_tree(&b, &[0, builder]).unwrap_err();
        assert!(format!("{err:#}").contains("hard links"), "{err:#}");

        // Both links inside the tree (node-gyp does this): sealed like any file.
        let inside = mk("inside");
        std::fs::write(inside.join("a"), b"x").unwrap();
        std::os::unix::fs::chown(inside.join("a"), Some(builder), Some(builder)).unwrap();
        std::fs::hard_link(inside.join("a"), inside.join("b")).unwrap();
        seal_tree(&inside, &[0, builder]).unwrap();
        assert_eq!(std::fs::metadata(inside.join("b")).unwrap().uid(), 0);

        let c = mk("fifo");
        nix::unistd::mkfifo(&c.join("p"), Mode::from_bits_truncate(0o644)).unwrap();
        let err = seal_tree(&c, &[0, builder]).unwrap_err();
        assert!(format!("{err:#}").contains("not a file"), "{err:#}");
    }

    #[test]
    fn processes_of_a_user_are_ended() {
        root_only();
        let uid = 4243;
        let child = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "4243",
                "--regid",
                "4243",
                "--clear-groups",
                "sleep",
                "30",
            ])
            .spawn()
            .unwrap();
        // Wait until the child runs as uid (setpriv has switched).
        for _ in 0..100 {
            if !processes_of(uid).unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut child = child;
        let killed = end_processes_of(uid).unwrap();
        assert!(killed >= 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(processes_of(uid).unwrap().is_empty());
    }
}
