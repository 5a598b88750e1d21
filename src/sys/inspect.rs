//! Machine facts the doctor reads (and the few safe repairs it makes): file modes and
//! owners, group/world-writable entries under a tree, free space and inodes, whether a pid
//! is alive, a process's parent, tools on PATH. Everything here is best effort and bounded:
//! a probe must never hang on a huge tree.

use anyhow::{Context, Result};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode and owner of one path (the link itself for a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
    pub is_symlink: bool,
}

/// `lstat`: None when the path does not exist or cannot be read.
pub fn meta(p: &Path) -> Option<Meta> {
    let m = std::fs::symlink_metadata(p).ok()?;
    Some(Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        is_dir: m.is_dir(),
        is_symlink: m.file_type().is_symlink(),
    })
}

/// Entries under `root` (itself included) whose mode lets group or others write, symlinks
/// skipped (their mode means nothing) and never followed. At most `limit` entries are
/// looked at, so a huge tree costs a bounded time; the bool says whether it was cut short.
pub fn writable_entries(root: &Path, limit: usize) -> (Vec<PathBuf>, bool) {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > limit {
            return (found, true);
        }
        let Some(m) = meta(&p) else { continue };
        if m.is_symlink {
            continue;
        }
        if m.mode & 0o022 != 0 && m.mode & 0o1000 == 0 {
            found.push(p.clone());
        }
        if m.is_dir
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    found.sort();
    (found, false)
}

/// Set the permission bits of `p` (the doctor's mode repairs).
pub fn chmod(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, p.display()))
}

/// Free and total space and inodes of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_inodes: u64,
    pub total_inodes: u64,
    /// The filesystem id, to report a filesystem once when several paths share it.
    pub fsid: u64,
}

/// statvfs of `p`, or of its nearest existing ancestor (a backups dir not made yet lives
/// on its parent's filesystem). Space counts what an unprivileged writer may use.
pub fn space(p: &Path) -> Option<Space> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if let Ok(s) = nix::sys::statvfs::statvfs(c) {
            let frag = s.fragment_size();
            return Some(Space {
                free_bytes: s.blocks_available().saturating_mul(frag),
                total_bytes: s.blocks().saturating_mul(frag),
                free_inodes: s.files_available(),
                total_inodes: s.files(),
                fsid: s.filesystem_id(),
            });
        }
        cur = c.parent();
    }
    None
}

/// Is there a process with this pid? (`/proc/<pid>`; a zombie counts as gone.)
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The parent pid of a process, if it is still there.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parens, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn parse_stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// The first `name` in PATH that is a file.
pub fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Names in a directory (None: it does not exist or cannot be read).
pub fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

/// Remove a leftover file or directory tree (the doctor's staging clean-up).
pub fn remove_any(p: &Path) -> Result<()> {
    let r = match meta(p) {
        None => return Ok(()),
        Some(m) if m.is_dir => std::fs::remove_dir_all(p),
        Some(_) => std::fs::remove_file(p),
    };
    r.with_context(|| format!("removing {}", p.display()))
}

/// Read a small text file (None when absent or unreadable).
pub fn read_text(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_and_parent() {
        assert_eq!(parse_stat_state("12 (a b) c) S 1 2"), Some('S'));
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(parent_pid(std::process::id()).is_some());
    }

    #[test]
    fn finds_world_writable_entries_but_not_sticky_or_links() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o750).unwrap();
        let f = d.join("f");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o666).unwrap();
        let s = d.join("sticky");
        std::fs::create_dir(&s).unwrap();
        chmod(&s, 0o1777).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("l")).unwrap();
        let (found, cut) = writable_entries(&d, 100);
        assert_eq!(found, vec![f]);
        assert!(!cut);
        assert!(writable_entries(&d, 1).1);
    }
}
