//! A live database opened by SQLite under a name that only root controls.
//!
//! SQLite opens a database by path, and resolves every symlink in that path itself (the
//! unix VFS reads each component's link), so no path into the instance's data directory
//! (not even `/proc/self/fd/N/name` on the held directory) makes it open the inode the
//! walk saw: the instance's user could swap a directory on the way for a link to another
//! instance's `account.sqlite`. Instead the file is hard-linked, from the directory the
//! walk held, into a private directory of root's in the instance directory (root-owned,
//! on the same filesystem), checked to be the same inode, and SQLite opens that link.
//! POSIX locks belong to the inode, not the name, and SQLite keys its own lock table by
//! device and inode too: the read lock taken through the link keeps the live server's
//! writers out exactly as one taken through the original name.
//!
//! The connection is READ-ONLY (it used to be read-write, so that SQLite rolled a hot
//! journal back itself). Root must never write into the user's database through a name
//! it does not control, and the journal cannot come along: a `-journal` linked beside
//! the database and then deleted by a writer committing would look hot to this
//! connection, and rolling it back would write old pages into the LIVE database. So no
//! journal is ever linked, SQLite sees none, and [`journal_is_hot`] looks for a hot one
//! itself once the read lock is held: a database with one is refused, not backed up.

use super::At;
use super::stage::locked_too_long;
use crate::error::Failure;
use anyhow::{Context, Result};
use nix::fcntl::{AtFlags, FcntlArg};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const LINK_DIR_PREFIX: &str = ".abssctl-links-";

/// Remove the link directories a crashed `backup create` left in `instance_dir` (checked
/// to be root's and writable by no one else). The caller holds the instance's lock, so
/// no other create is using one; what they hold is only second names of databases.
fn remove_stale(instance_dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(instance_dir)
        .with_context(|| format!("reading {}", instance_dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading {}", instance_dir.display()))?;
        let stale = e.file_name().to_string_lossy().starts_with(LINK_DIR_PREFIX)
            && e.file_type().is_ok_and(|t| t.is_dir());
        if stale {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing the leftover {}", e.path().display()))?;
            tracing::info!(
                "removed {}, left by an interrupted backup",
                e.path().display()
            );
        }
    }
    Ok(())
}

/// A private (0700) directory of root's beside the data directory, for the databases'
/// second names; removed with everything in it when dropped.
#[derive(Debug)]
pub struct LinkDir {
    fd: Arc<OwnedFd>,
    pub(super) dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl LinkDir {
    /// The directory, made in `instance_dir` (the data directory's parent). That must be a
    /// directory of ours (root's) that no one else may write: else the instance's user
    /// could rename the private directory's name away and put another in its place.
    pub fn new(instance_dir: &Path) -> Result<LinkDir> {
        let parent = crate::sys::fdwalk::open_dir(instance_dir)?;
        let st = nix::sys::stat::fstat(&parent)
            .with_context(|| format!("reading the metadata of {}", instance_dir.display()))?;
        if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_mode & 0o022 != 0 {
            return Err(Failure::environment(format!(
                "{} must be owned by root and writable by no one else for a safe online backup \
                 (it is owned by uid {} with mode {:o})",
                instance_dir.display(),
                st.st_uid,
                st.st_mode & 0o7777
            ))
            .hint("chown root: and chmod go-w that directory, then back up again")
            .into());
        }
        remove_stale(instance_dir)?;
        let dir = tempfile::Builder::new()
            .prefix(LINK_DIR_PREFIX)
            .tempdir_in(instance_dir)
            .with_context(|| {
                format!("creating a private directory in {}", instance_dir.display())
            })?;
        let fd = Arc::new(crate::sys::fdwalk::open_dir(dir.path())?);
        Ok(LinkDir {
            fd,
            dir,
            next: AtomicUsize::new(0),
        })
    }

    /// A second name for `src`, which must be the file `before` describes (same device and
    /// inode; a symlink is linked as itself and so never matches).
    pub fn link(&self, src: &At, before: &std::fs::Metadata) -> Result<Link> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = CString::new(format!("db-{n}.sqlite")).context("a link name")?;
        let path = self.dir.path().join(format!("db-{n}.sqlite"));
        match nix::unistd::linkat(
            &*src.dir,
            src.name.as_c_str(),
            &*self.fd,
            name.as_c_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => {}
            Err(nix::errno::Errno::EXDEV) => {
                return Err(Failure::environment(format!(
                    "{} is on another filesystem than {}: a safe online backup needs the data \
                     directory on the filesystem of its instance directory",
                    src.path.display(),
                    self.dir
                        .path()
                        .parent()
                        .unwrap_or(self.dir.path())
                        .display()
                ))
                .hint("mount that filesystem at the instance directory instead of at data/")
                .into());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("linking {}", src.path.display()));
            }
        }
        let link = Link {
            dir: self.fd.clone(),
            name,
            path,
        };
        // fstatat, not an open and fstat: closing a descriptor of the database would drop
        // this process's locks on it (none are held yet, but nothing here should rely on it).
        let st = nix::sys::stat::fstatat(
            &*link.dir,
            link.name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("reading the metadata of {}", link.path.display()))?;
        let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
        if !regular || (st.st_dev, st.st_ino) != (before.dev(), before.ino()) {
            anyhow::bail!("{} was replaced while it was archived", src.path.display());
        }
        Ok(link)
    }
}

/// One database's second name, removed when dropped (the error paths too).
#[derive(Debug)]
pub struct Link {
    dir: Arc<OwnedFd>,
    name: CString,
    pub path: PathBuf,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Gone already only if the whole directory went first; nothing else to do.
        let _ = nix::unistd::unlinkat(
            &*self.dir,
            self.name.as_c_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// A database opened through its [`Link`]. The field order is the drop order: the
/// connection closes first, then `file` (a descriptor of the database: closing it drops
/// every POSIX lock this process holds on the file, so never while the connection reads),
/// then the link.
#[derive(Debug)]
pub(super) struct Linked {
    pub conn: rusqlite::Connection,
    /// The database, opened from the held directory (the same inode as the link).
    pub file: File,
    pub link: Link,
}

/// Open `src` for reading as the walk found it (see the module doc), waiting up to
/// `timeout` for a writer's lock. A WAL database is refused: Actual never uses WAL, and
/// its `-wal` and `-shm` would have to be linked too, each another name that could go
/// stale under a live checkpoint; nothing is worth that for a mode no instance uses.
pub(super) fn open_linked(src: &At, links: &LinkDir, timeout: Duration) -> Result<Linked> {
    use rusqlite::{Connection, OpenFlags};
    let (before, _) = super::stage::regular_file(src)?;
    let file = super::stream::open_same(src, &before)?;
    // The header's file format versions (bytes 18, 19): 2 is WAL, 1 rollback journal.
    let mut header = [0u8; 20];
    if file.read_exact_at(&mut header, 0).is_ok() && (header[18] == 2 || header[19] == 2) {
        return Err(Failure::environment(format!(
            "{} is in WAL mode, which abssctl does not back up online",
            src.path.display()
        ))
        .hint("Actual does not use WAL: stop the instance, run sqlite3 on it with PRAGMA journal_mode=DELETE, start it")
        .into());
    }
    let link = links.link(src, &before)?;
    let conn = Connection::open_with_flags(
        &link.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .with_context(|| format!("opening {}", src.path.display()))?;
    conn.busy_timeout(timeout)
        .with_context(|| format!("reading {}", src.path.display()))?;
    Ok(Linked { conn, file, link })
}

/// An error of a statement on `src`: a lock kept too long is [`locked_too_long`].
pub(super) fn sql_error(src: &At, timeout: Duration) -> impl Fn(rusqlite::Error) -> anyhow::Error {
    move |e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            locked_too_long(&src.path, timeout)
        } else {
            anyhow::Error::new(e).context(format!("reading {}", src.path.display()))
        }
    }
}

/// Begin a read transaction on `db` and take its SHARED lock (BEGIN takes none; the first
/// read does, waiting for a writer up to the busy timeout, and the transaction keeps it),
/// then refuse the database if its journal is hot (see [`journal_is_hot`]).
pub(super) fn begin_read(db: &Linked, src: &At, timeout: Duration) -> Result<()> {
    let err = sql_error(src, timeout);
    db.conn.execute_batch("BEGIN").map_err(&err)?;
    db.conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(&err)?;
    if journal_is_hot(src, &db.file)? {
        return Err(Failure::environment(format!(
            "{} has a journal left by a writer that stopped mid-commit: open that budget in \
             Actual once so it is rolled back, then back up again",
            src.path.display()
        ))
        .into());
    }
    Ok(())
}

/// SQLite's RESERVED lock: one byte after PENDING_BYTE (0x40000000), held by a writer from
/// its first change until its commit ends (os_unix.c).
const RESERVED_BYTE: i64 = 0x4000_0001;

/// Whether `src` (whose SHARED lock this process holds, `db` one of its descriptors) has a
/// hot journal, by SQLite's own rule (pager.c, hasHotJournal): `<name>-journal` exists in
/// the held directory, is not empty, no process holds RESERVED on the database (else it is
/// a live writer's journal), and its first byte is not zero (a finished or persisted
/// journal has its header zeroed). Such a journal means the file holds part of an
/// unfinished commit: what a reader would roll back, and this READ-ONLY connection cannot.
///
/// A writer cannot start a commit of its own while SHARED is held here, so the answer
/// stays true for the whole read. F_GETLK sees other processes' locks only: no connection
/// of this process writes an instance's database.
pub(super) fn journal_is_hot(src: &At, db: &File) -> Result<bool> {
    let journal = src.with_suffix("-journal");
    let Some(meta) = journal.stat_opt()? else {
        return Ok(false);
    };
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: RESERVED_BYTE,
        l_len: 1,
        l_pid: 0,
    };
    nix::fcntl::fcntl(db, FcntlArg::F_GETLK(&mut lock))
        .with_context(|| format!("reading the locks of {}", src.path.display()))?;
    if lock.l_type != libc::F_UNLCK as i16 {
        return Ok(false);
    }
    // A journal that is a link or a FIFO fails here: refused, as it is no journal of SQLite's.
    let mut first = [0u8; 1];
    let n = journal
        .open()?
        .read(&mut first)
        .with_context(|| format!("reading {}", journal.path.display()))?;
    Ok(n == 1 && first[0] != 0)
}
