//! The system accounts of instances (`actual-<name>`, see `domain::instance::service_user`),
//! and handing a data tree from one account to another.
//!
//! Why real accounts made with `useradd`, not `DynamicUser=yes`: the data lives under
//! `/srv/<name>/data` (next to the instance's other files, where backups and restores find
//! it), not in a `StateDirectory=` under `/var/lib/private`, which is the only place systemd
//! keeps a dynamic uid's files owned; and dynamic uids are recycled, so a file left behind
//! would belong to whichever unit gets the uid next. A static account owns its data between
//! runs, keeps its uid across a rename (`usermod --login`), and nothing else gets that uid
//! while the account exists. Why not a generated sysusers.d file: systemd-sysusers only ever
//! adds accounts (it cannot rename or remove one), and a rename must keep the uid.
//!
//! The account files are read directly (`<root>/etc/passwd`, `<root>/etc/group`) and the
//! shadow tools get `--prefix <root>` when abssctl's root is relocated, so everything here
//! acts on the same tree as the rest of the layout.

use crate::error::Failure;
use anyhow::{Context, Result};
use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The login shell of every instance account: none.
const NOLOGIN: &str = "/usr/sbin/nologin";
/// Their home: none either (the data dir is not a home; nothing reads `$HOME`).
const NO_HOME: &str = "/nonexistent";

/// One account as `/etc/passwd` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
}

/// The account database of one root (`/` on the machine, a temp dir in tests).
#[derive(Debug, Clone)]
pub struct Accounts {
    root: PathBuf,
}

impl Accounts {
    /// `root` is the layout's root (empty: the machine itself).
    pub fn new(root: &Path) -> Accounts {
        Accounts {
            root: root.to_path_buf(),
        }
    }

    fn etc(&self, file: &str) -> PathBuf {
        crate::domain::layout::rooted(&self.root, &Path::new("/etc").join(file))
    }

    /// One of the account files; absent (a relocated root without `/etc`) reads as empty.
    fn read_etc(&self, file: &str) -> Result<String> {
        let path = self.etc(file);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The account named `name`, if `/etc/passwd` has it.
    pub fn lookup(&self, name: &str) -> Result<Option<Account>> {
        let text = self.read_etc("passwd")?;
        Ok(text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 || f[0] != name {
                return None;
            }
            Some(Account {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                comment: f[4].to_string(),
            })
        }))
    }

    /// Whether `/etc/group` has a group named `name`.
    pub fn group_exists(&self, name: &str) -> Result<bool> {
        let text = self.read_etc("group")?;
        Ok(text.lines().any(|l| l.split(':').next() == Some(name)))
    }

    /// Run one of the shadow tools (`useradd`, `usermod`, ...) on this root.
    fn tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new(tool);
        if !self.root.as_os_str().is_empty() {
            cmd.arg("--prefix").arg(&self.root);
        }
        cmd.args(args);
        let out = cmd.output().map_err(|e| {
            anyhow::Error::from(
                Failure::environment(format!("cannot run {tool}: {e}"))
                    .hint("install the passwd package (it ships useradd, usermod and userdel)"),
            )
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(Failure::environment(format!(
            "{tool} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .hint("see /etc/passwd and /etc/group; `abssctl doctor` checks the instance accounts")
        .into())
    }

    /// Create a system account and its group of the same name: no password (locked), no
    /// login shell, no home. `ids` recreates an account with the uid and gid it had (the undo
    /// of [`Accounts::remove`]); `None` lets the tools pick free system ids.
    pub fn create(&self, name: &str, comment: &str, ids: Option<(u32, u32)>) -> Result<Account> {
        let (uid, gid) = ids.map_or((String::new(), String::new()), |(u, g)| {
            (u.to_string(), g.to_string())
        });
        let mut gargs = vec!["--system"];
        if ids.is_some() {
            gargs.extend(["--gid", &gid]);
        }
        gargs.push(name);
        self.tool("groupadd", &gargs)?;
        let mut uargs = vec![
            "--system",
            "--gid",
            name,
            "--no-create-home",
            "--home-dir",
            NO_HOME,
            "--shell",
            NOLOGIN,
            "--comment",
            comment,
        ];
        if ids.is_some() {
            uargs.extend(["--uid", &uid]);
        }
        uargs.push(name);
        if let Err(e) = self.tool("useradd", &uargs) {
            return Err(match self.tool("groupdel", &[name]) {
                Ok(()) => e,
                Err(g) => e.context(format!("and removing the group again failed: {g:#}")),
            });
        }
        self.lookup(name)?
            .with_context(|| format!("useradd succeeded but {name} is not in /etc/passwd"))
    }

    /// Rename an account and its group, keeping uid and gid (so the files it owns stay its).
    pub fn rename(&self, from: &str, to: &str, comment: &str) -> Result<()> {
        self.tool("usermod", &["--login", to, "--comment", comment, from])?;
        if let Err(e) = self.tool("groupmod", &["--new-name", to, from]) {
            let old_comment = self.lookup(to)?.map(|a| a.comment).unwrap_or_default();
            return Err(
                match self.tool("usermod", &["--login", from, "--comment", &old_comment, to]) {
                    Ok(()) => e,
                    Err(u) => e.context(format!("and renaming the account back failed: {u:#}")),
                },
            );
        }
        Ok(())
    }

    /// Remove an account and its group. Returns what it was, so an undo can recreate it
    /// with the same ids.
    pub fn remove(&self, name: &str) -> Result<Option<Account>> {
        let Some(acct) = self.lookup(name)? else {
            return Ok(None);
        };
        self.tool("userdel", &[name])?;
        // userdel removes the group itself only when login.defs says USERGROUPS_ENAB.
        if self.group_exists(name)? {
            self.tool("groupdel", &[name])?;
        }
        Ok(Some(acct))
    }
}

/// Owner (uid, gid) of a path itself (a link is not followed); `None` when absent.
pub fn owner(p: &Path) -> Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some((m.uid(), m.gid()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the owner of {}", p.display())),
    }
}

/// Give every entry of the tree `dir` (itself included) owned by uid `from` to `to`
/// (uid, gid); others are left alone. Returns how many entries changed owner.
///
/// The walk is fd-relative and never follows a link: each entry is opened with `O_NOFOLLOW`
/// (directories to descend, anything else as an `O_PATH` handle), checked on that handle and
/// chowned through it, so a symlink planted in the tree, or a name swapped for one during
/// the walk, changes only the link itself. A regular file with several hard links is
/// refused: it may be another family's file linked in (under the old shared account any
/// instance could link any other's files), and chowning it would hand that file over.
pub fn chown_tree(dir: &Path, from: u32, to: (u32, u32)) -> Result<u64> {
    let mut n = 0;
    crate::sys::fdwalk::walk(crate::sys::fdwalk::open_dir(dir)?, dir, &mut |fd, path| {
        chown_fd(fd, path, from, to, &mut n)
    })?;
    Ok(n)
}

fn chown_fd(fd: &OwnedFd, path: &Path, from: u32, to: (u32, u32), n: &mut u64) -> Result<()> {
    let st =
        nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("stat {}", path.display()))?;
    if st.st_uid != from {
        return Ok(());
    }
    let is_file = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if is_file && st.st_nlink > 1 {
        return Err(Failure::environment(format!(
            "{} has {} hard links: refusing to give it to uid {}",
            path.display(),
            st.st_nlink,
            to.0
        ))
        .hint("a data file with several links may be another instance's file; find the other links (find / -samefile), remove them, and run the command again")
        .into());
    }
    nix::unistd::fchownat(
        fd.as_fd(),
        "",
        Some(Uid::from_raw(to.0)),
        Some(Gid::from_raw(to.1)),
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("giving {} to uid {}", path.display(), to.0))?;
    *n += 1;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// These tests change owners and run the shadow tools: they need root (CI runs as root).
    /// Not root is a failure, not a silent pass.
    fn require_root() {
        assert!(
            crate::sys::privilege::is_root(),
            "sys::users tests need root (they chown files and run useradd on a temp root): \
             run them as root, e.g. `sudo cargo test --lib sys::users`"
        );
    }

    /// A root with just enough of /etc for the shadow tools.
    fn temp_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        for (f, text, mode) in [
            ("passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
            ("group", "root:x:0:\n", 0o644),
            ("shadow", "root:*:20000:0:99999:7:::\n", 0o640),
            ("gshadow", "root:*::\n", 0o640),
        ] {
            std::fs::write(etc.join(f), text).unwrap();
            std::fs::set_permissions(
                etc.join(f),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
        t
    }

    #[test]
    fn accounts_are_created_renamed_and_removed_with_their_ids() {
        require_root();
        let t = temp_root();
        let a = Accounts::new(t.path());
        assert_eq!(a.lookup("actual-budget").unwrap(), None);
        let made = a
            .create(
                "actual-budget",
                "Actual Budget instance budget (abssctl)",
                None,
            )
            .unwrap();
        assert_eq!(made.comment, "Actual Budget instance budget (abssctl)");
        assert!(made.uid > 0 && made.uid < 1000, "a system uid: {made:?}");
        assert!(a.group_exists("actual-budget").unwrap());
        let passwd = std::fs::read_to_string(t.path().join("etc/passwd")).unwrap();
        assert!(
            passwd.contains(":/nonexistent:/usr/sbin/nologin"),
            "{passwd}"
        );
        let shadow = std::fs::read_to_string(t.path().join("etc/shadow")).unwrap();
        let pw = shadow
            .lines()
            .find(|l| l.starts_with("actual-budget:"))
            .unwrap();
        assert!(
            pw.split(':').nth(1).unwrap().starts_with(['!', '*']),
            "locked: {pw}"
        );
        // The same name again is refused by the tools (we never take over an account).
        assert!(a.create("actual-budget", "x", None).is_err());

        a.rename(
            "actual-budget",
            "actual-wallet",
            "Actual Budget instance wallet (abssctl)",
        )
        .unwrap();
        assert_eq!(a.lookup("actual-budget").unwrap(), None);
        assert!(!a.group_exists("actual-budget").unwrap());
        let moved = a.lookup("actual-wallet").unwrap().unwrap();
        assert_eq!((moved.uid, moved.gid), (made.uid, made.gid));
        assert_eq!(moved.comment, "Actual Budget instance wallet (abssctl)");

        let gone = a.remove("actual-wallet").unwrap().unwrap();
        assert_eq!(gone, moved);
        assert_eq!(a.lookup("actual-wallet").unwrap(), None);
        assert!(!a.group_exists("actual-wallet").unwrap());
        assert_eq!(a.remove("actual-wallet").unwrap(), None);
        // The undo of a removal gets the very same ids back.
        let back = a
            .create("actual-wallet", &gone.comment, Some((gone.uid, gone.gid)))
            .unwrap();
        assert_eq!(back, gone);
    }

    #[test]
    fn chown_tree_hands_over_only_the_old_owners_entries_and_follows_no_link() {
        require_root();
        let t = tempfile::tempdir().unwrap();
        let (old, new) = (4242_u32, (4343_u32, 4344_u32));
        let data = t.path().join("data");
        let sub = data.join("server-files");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("account.sqlite"), "x").unwrap();
        // Someone else's file outside, reachable by links planted in the tree.
        let outside = t.path().join("other-family.sqlite");
        std::fs::write(&outside, "secret").unwrap();
        let outside_dir = t.path().join("other-dir");
        std::fs::create_dir(&outside_dir).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link-to-file")).unwrap();
        std::os::unix::fs::symlink(&outside_dir, data.join("link-to-dir")).unwrap();
        std::fs::write(data.join("root-owned"), "r").unwrap();
        for p in [
            &data,
            &sub,
            &sub.join("account.sqlite"),
            &outside,
            &outside_dir,
        ] {
            std::os::unix::fs::chown(p, Some(old), Some(old)).unwrap();
        }
        for p in [data.join("link-to-file"), data.join("link-to-dir")] {
            std::os::unix::fs::lchown(&p, Some(old), Some(old)).unwrap();
        }
        let n = chown_tree(&data, old, new).unwrap();
        assert_eq!(n, 5, "data, server-files, account.sqlite and the two links");
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&data), new);
        assert_eq!(owner(&sub.join("account.sqlite")), new);
        assert_eq!(owner(&data.join("link-to-file")), new, "the link itself");
        assert_eq!(
            owner(&outside),
            (old, old),
            "a link's target is never touched"
        );
        assert_eq!(owner(&outside_dir), (old, old));
        assert_eq!(owner(&data.join("root-owned")), (0, 0), "other owners stay");
        // Idempotent: nothing left to hand over.
        assert_eq!(chown_tree(&data, old, new).unwrap(), 0);
        // Back again (the undo).
        assert_eq!(chown_tree(&data, new.0, (old, old)).unwrap(), 5);
        assert_eq!(owner(&sub.join("account.sqlite")), (old, old));

        // A hard link to a file outside the tree is refused, and the file keeps its owner.
        std::fs::hard_link(&outside, sub.join("planted.sqlite")).unwrap();
        let err = format!("{:#}", chown_tree(&data, old, new).unwrap_err());
        assert!(err.contains("hard links"), "{err}");
        assert_eq!(owner(&outside), (old, old));
        // The tree's root itself must not be a link.
        let link_root = t.path().join("data-link");
        std::os::unix::fs::symlink(&data, &link_root).unwrap();
        assert!(chown_tree(&link_root, old, new).is_err());
    }
}
