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
//! compression of that one file, the check alongside it). A database in WAL mode, whose file does not hold the
//! committed state on its own, is not held: the caller takes the backup-API snapshot
//! instead.

use super::stage;
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::fs::File;
use std::path::Path;
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
/// [`HeldDatabase::read_checked`]).
/// `Ok(None)`: the database is not in rollback-journal mode (or its file is not exactly
/// its pages), so it cannot be read as a file: take a [`super::sqlite_snapshot`] instead.
/// It is opened as the backup API's source is ([`stage::open_source`]).
pub fn hold_sqlite(src: &Path, timeout: Duration) -> Result<Option<HeldDatabase>> {
    let what = || format!("reading {}", src.display());
    let conn = stage::open_source(src, timeout)?;
    let busy = |e: rusqlite::Error| -> anyhow::Error {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            stage::locked_too_long(src, timeout)
        } else {
            anyhow::Error::new(e).context(what())
        }
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(busy)?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(None);
    }
    // BEGIN takes no lock; the first read (the schema's page) takes SHARED, waiting for a
    // writer up to the busy timeout, and the open transaction keeps it until `release`.
    conn.execute_batch("BEGIN").map_err(busy)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(busy)?;
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(busy)?;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(busy)?;
    let file = File::open(src).with_context(what)?;
    let len = file.metadata().with_context(what)?.len();
    let held = HeldDatabase {
        conn: Some(conn),
        file,
        len,
        path: src.to_path_buf(),
    };
    if i64::try_from(len).ok() != pages.checked_mul(page_size) {
        // Not the plain file of its pages (a VFS or mode this code does not know): the
        // backup API copies it correctly whatever it is.
        held.release()?;
        return Ok(None);
    }
    Ok(Some(held))
}
