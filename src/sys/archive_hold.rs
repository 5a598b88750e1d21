//! A live SQLite database read straight into the archive, held still by a read transaction.
//!
//! Why not always the online backup API ([`super::sqlite_snapshot`]): it writes the whole
//! database into a staging file one page per `pwrite`, the check reads it back one page per
//! `pread`, and the archive reads it a third time. Measured on `benches/backup.sh 500`
//! (300 MB of databases), that staging was the whole difference between `backup create`
//! and `tar | zstd`: the same user CPU (1.3 s), 0.9 s of system CPU against 0.55 s.
//!
//! Actual runs SQLite in rollback-journal mode (never WAL). In that mode the database FILE
//! changes only under an EXCLUSIVE lock, which no writer can take while any connection
//! holds a SHARED one: a read transaction makes the file itself one committed state for
//! as long as it stays open. So the file is streamed byte for byte into the archive while
//! `PRAGMA quick_check` runs in the same transaction on another thread, and the
//! transaction ends after the last byte and the check. A writer waits for that (Actual's
//! SQLite driver, better-sqlite3, waits up to 5 s by default; the hold lasts the
//! compression of that one file, the check alongside it). A database in WAL mode, whose
//! file does not hold the committed state on its own, is refused (see
//! `sys::archive_link`, which also says why the connection goes through a link).

use super::{At, LinkDir, link, stage};
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::fs::File;
use std::time::Duration;

/// A database under a read transaction, and a descriptor to read its file from.
///
/// The field order is the drop order, and it matters: closing ANY descriptor of a file
/// drops every POSIX lock this process holds on it (fcntl semantics), SQLite's read lock
/// included. So `file` must close after `conn` has ended its transaction, never before.
#[derive(Debug)]
pub struct HeldDatabase {
    conn: Option<Connection>,
    file: File,
    len: u64,
    path: std::path::PathBuf,
    /// The database's root-owned second name, removed after the connection closes.
    _link: link::Link,
}

impl HeldDatabase {
    /// Read the file with `read` (given the file and its length) while `PRAGMA
    /// quick_check` runs over the same held state on another thread, then release.
    ///
    /// The check cannot run before the read without lengthening the hold and the backup by
    /// its time (0.07 s per 96 MB, one core), while the read feeds compression workers that
    /// leave that core idle. A damaged database fails here, after its bytes were read: the
    /// caller's archive is then abandoned, as on any error.
    pub fn read_checked<T>(mut self, read: impl FnOnce(&File, u64) -> Result<T>) -> Result<T> {
        let conn = self
            .conn
            .take()
            .context("the database was already released")?;
        let (file, len) = (&self.file, self.len);
        let (joined, out) = std::thread::scope(|s| {
            let checker = s.spawn(move || {
                let check = conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0));
                (conn, check)
            });
            let out = read(file, len);
            (checker.join(), out)
        });
        let Ok((conn, check)) = joined else {
            anyhow::bail!("the integrity check of {} panicked", self.path.display());
        };
        self.conn = Some(conn);
        let what = self.path.display().to_string();
        // A page damaged badly enough makes the check fail as a statement: the same error.
        let check = check.map_err(|e| stage::damaged(&what, &e.to_string()))?;
        if check != "ok" {
            return Err(stage::damaged(&what, &check));
        }
        let out = out?;
        self.release()?;
        Ok(out)
    }

    /// End the read transaction (writers may go on), then close the file.
    fn release(mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            conn.execute_batch("COMMIT")
                .context("ending the read transaction")?;
            conn.close()
                .map_err(|(_, e)| e)
                .context("closing the database")?;
        }
        Ok(())
    }
}

/// Hold the database `src` still for reading (its check comes with the read:
/// [`HeldDatabase::read_checked`]), opened read-only through a root-owned link to the
/// inode the walk saw (`links`, see [`super::LinkDir`]); the bytes are read from a
/// descriptor opened in the held directory and checked to be that inode. A hot journal is
/// refused ([`super::journal_is_hot`]), a WAL database too.
/// `Ok(None)`: its file is not exactly its pages, so it cannot be read as a file: take a
/// [`super::sqlite_snapshot`] instead.
pub fn hold_sqlite(src: &At, links: &LinkDir, timeout: Duration) -> Result<Option<HeldDatabase>> {
    let db = link::open_linked(src, links, timeout)?;
    link::begin_read(&db, src, timeout)?;
    let err = link::sql_error(src, timeout);
    let pages: i64 = db
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(&err)?;
    let page_size: i64 = db
        .conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(&err)?;
    // Its length now, under the lock (the walk's may be older).
    let len = db
        .file
        .metadata()
        .with_context(|| format!("reading {}", src.path.display()))?
        .len();
    let link::Linked { conn, file, link } = db;
    let held = HeldDatabase {
        conn: Some(conn),
        file,
        len,
        path: src.path.clone(),
        _link: link,
    };
    if i64::try_from(len).ok() != pages.checked_mul(page_size) {
        // Not the plain file of its pages (a VFS or mode this code does not know): the
        // backup API copies it correctly whatever it is.
        held.release()?;
        return Ok(None);
    }
    Ok(Some(held))
}
