//! The members of a backup archive before they go in: SQLite snapshots through the online
//! backup API (for a database that cannot be held as a file, see [`super::hold_sqlite`]),
//! copies of plain files checked unchanged across the copy, and the thread that prepares
//! them ahead of the archive.

use super::{At, READ_BUF, io_context};
use crate::error::Failure;
use crate::sys::fs::read_full;
use anyhow::{Context, Result};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long a database lock may keep a snapshot waiting (a writer holding it that long
/// is stuck; Actual's own writes take milliseconds).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Snapshot the SQLite database `src` into the new file `dst` with the online backup API,
/// then check the copy (`PRAGMA quick_check`). The source is opened read-only through a
/// root-owned link to the inode the walk saw (`links`, see [`super::LinkDir`]).
///
/// The whole database is copied in ONE backup step (`sqlite3_backup_step(-1)`) inside a
/// read transaction of ours: the SHARED lock it holds keeps the snapshot one committed
/// state (it never restarts because a writer committed midway, which a page-by-page
/// backup does after every write of another process), and lets the hot-journal check run
/// before the copy ([`super::journal_is_hot`]: a read-only source cannot roll one back).
/// A writer waits the few milliseconds the copy takes (Actual's busy timeout absorbs it).
///
/// The check is `quick_check`, not `integrity_check`: it reads every page once and finds
/// what a bad copy would show (malformed or torn pages, broken b-trees, freelist damage).
/// What it leaves out, that each index holds exactly its table's rows, cannot be made by
/// the backup API, which copies pages verbatim: such a mismatch would be in the live
/// database already. Measured on a 97 MB Actual-like database (messages_binary with its
/// timestamp index): integrity_check 0.17-0.32 s, quick_check 0.07 s; a budget has
/// several such files and the backup is measured against plain `tar | zstd`.
pub fn sqlite_snapshot(
    src: &At,
    links: &super::LinkDir,
    dst: &Path,
    timeout: Duration,
) -> Result<()> {
    use rusqlite::Connection;
    use rusqlite::backup::{Backup, StepResult};
    let what = || format!("snapshot of {}", src.path.display());
    let from = super::link::open_linked(src, links, timeout)?;
    super::link::begin_read(&from, src, timeout)?;
    let mut to = Connection::open(dst).with_context(|| format!("creating {}", dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", dst.display()))?;
    // The copy is a staging file, read into the archive and removed: no journal and no
    // fsync (the archive itself is fsynced). A crash leaves only a staging file behind.
    to.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .with_context(|| format!("setting up {}", dst.display()))?;
    let started = Instant::now();
    {
        let backup = Backup::new(&from.conn, &mut to).with_context(what)?;
        loop {
            match backup.step(-1).with_context(what)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy, Locked (the enum is non-exhaustive: anything else is waited on too).
                _ => {
                    if started.elapsed() > timeout {
                        return Err(locked_too_long(&src.path, timeout));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    from.conn
        .execute_batch("COMMIT")
        .context("ending the read transaction")?;
    drop(from);
    let check: String = to
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .with_context(|| format!("checking the snapshot of {}", src.path.display()))?;
    if check != "ok" {
        return Err(damaged(
            &format!("the snapshot of {}", src.path.display()),
            &check,
        ));
    }
    to.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", dst.display()))?;
    Ok(())
}

/// The error of a database a writer kept locked for longer than `timeout` (exit 3).
pub(super) fn locked_too_long(src: &Path, timeout: Duration) -> anyhow::Error {
    Failure::environment(format!(
        "{} stayed locked for {}s",
        src.display(),
        timeout.as_secs()
    ))
    .hint("a writer holds the database; try again, or stop the instance first")
    .into()
}

/// The error of a database `what` whose `quick_check` found `found` (exit 3).
pub(super) fn damaged(what: &str, found: &str) -> anyhow::Error {
    Failure::environment(format!("{what} fails SQLite's integrity check: {found}"))
        .hint("the database itself is damaged: check it with sqlite3 PRAGMA integrity_check")
        .into()
}

/// Files up to this size are held in memory while checked; larger ones are staged on disk
/// (peak memory stays small whatever the blob sizes).
pub const MEMORY_COPY_MAX: u64 = 8 * 1024 * 1024;
/// How many times a file that changed during its copy is copied again.
pub const COPY_ATTEMPTS: u32 = 5;
/// A file modified this recently may be in the middle of a write: wait until it is older.
pub const QUIET_PERIOD: Duration = Duration::from_millis(1000);
/// The shortest check of a file modified within [`QUIET_PERIOD`] (see [`copy_stable`]).
const CHECK_WINDOW: Duration = Duration::from_millis(20);

/// A copy of a plain file known to be one whole version of it.
#[derive(Debug)]
pub enum StableCopy {
    Memory(Vec<u8>),
    Staged(PathBuf),
}

/// `src`'s metadata, when it is a regular file, and how long ago it was last modified
/// (`None`: a modification time in the future).
pub(super) fn regular_file(src: &At) -> Result<(Metadata, Option<Duration>)> {
    let m = src.stat()?;
    if !m.file_type().is_file() {
        anyhow::bail!("{} is not a regular file", src.path.display());
    }
    let age = m
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    Ok((m, age))
}

/// What identifies one version of a file: any write or replacement changes it.
pub(super) fn stamp(m: &Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    (
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Whether the file `at` now holds exactly the bytes of `copy` (compared byte for byte,
/// a chunk at a time: cheaper than hashing both, and exact).
fn same_content(at: &At, before: &Metadata, copy: &StableCopy) -> Result<bool> {
    let open = |p: &Path| File::open(p).with_context(|| format!("opening {}", p.display()));
    let reading = |p: &Path| format!("reading {}", p.display());
    let path = at.path.as_path();
    let mut src = super::stream::open_same(at, before)?;
    match copy {
        StableCopy::Memory(b) => {
            let mut buf = vec![0; READ_BUF.min(b.len() + 1)];
            let mut rest = &b[..];
            loop {
                let n = read_full(&mut src, &mut buf).with_context(|| reading(path))?;
                if n == 0 {
                    return Ok(rest.is_empty());
                }
                if n > rest.len() || buf[..n] != rest[..n] {
                    return Ok(false);
                }
                rest = &rest[n..];
            }
        }
        StableCopy::Staged(p) => {
            let mut staged = open(p)?;
            let (mut a, mut b) = (vec![0; READ_BUF], vec![0; READ_BUF]);
            loop {
                let n = read_full(&mut src, &mut a).with_context(|| reading(path))?;
                let m = read_full(&mut staged, &mut b).with_context(|| reading(p))?;
                if n != m || a[..n] != b[..m] {
                    return Ok(false);
                }
                if n == 0 {
                    return Ok(true);
                }
            }
        }
    }
}

/// Copy `src` so that the copy is one whole version of it, never one torn by a write in
/// progress (Actual uploads overwrite blobs in place).
///
/// Each attempt: wait until the file has been quiet for `quiet` ([`QUIET_PERIOD`]); stat;
/// copy it (into memory, or into `staging/<stage_name>` when large); stat again; read it
/// once more and compare it with the copy byte for byte. The copy counts only if size,
/// mtime, ctime and inode are unchanged across the whole attempt AND the second read
/// equals the copy; otherwise it is retried ([`COPY_ATTEMPTS`] times, then an error).
/// A file modified less than [`QUIET_PERIOD`] ago (only with a shorter `quiet`) is watched
/// for at least [`CHECK_WINDOW`], so a writer pausing between two writes is still seen.
/// Returns the copy and the metadata of the version copied.
///
/// Chosen over holding the instance still: stopping the unit cuts off a client syncing at
/// that moment (and its start can fail), and freezing its cgroup does not help at all, as
/// a freeze can land in the middle of a blob write just as well. Checking costs clients
/// nothing; its price is reading each file twice, from the page cache the first read
/// filled.
pub fn copy_stable(
    src: &At,
    staging: &Path,
    stage_name: &str,
    quiet: Duration,
) -> Result<(StableCopy, Metadata)> {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=COPY_ATTEMPTS {
        let (before, age) = regular_file(src)?;
        let age = age.unwrap_or(quiet);
        if age < quiet {
            // Every attempt counts, the waits for a quiet file too.
            std::thread::sleep(quiet - age);
            continue;
        }
        let started = Instant::now();
        let mut f = super::stream::open_same(src, &before)?;
        let copy = if before.len() <= MEMORY_COPY_MAX {
            let mut buf = Vec::with_capacity(before.len() as usize);
            f.read_to_end(&mut buf)
                .with_context(|| format!("reading {}", src.path.display()))?;
            StableCopy::Memory(buf)
        } else {
            let dst = staging.join(stage_name);
            let mut out =
                File::create(&dst).with_context(|| format!("creating {}", dst.display()))?;
            io::copy(&mut f, &mut out)
                .map_err(|e| io_context(e, || format!("copying {}", src.path.display())))?;
            StableCopy::Staged(dst)
        };
        drop(f);
        if age < QUIET_PERIOD {
            // Written moments ago (a caller that waits less than QUIET_PERIOD): the
            // writer may only be pausing. Keep the check open long enough to see its
            // next write; a copy and compare of a small file take far less.
            std::thread::sleep(CHECK_WINDOW.saturating_sub(started.elapsed()));
        }
        let after = src.stat()?;
        let copied = match &copy {
            StableCopy::Memory(b) => b.len() as u64,
            StableCopy::Staged(p) => std::fs::symlink_metadata(p)
                .with_context(|| format!("reading the metadata of {}", p.display()))?
                .len(),
        };
        if stamp(&before) == stamp(&after)
            && copied == before.len()
            && same_content(src, &before, &copy)?
            && stamp(&src.stat()?) == stamp(&before)
        {
            return Ok((copy, before));
        }
        tracing::info!(
            file = %src.path.display(),
            attempt,
            "changed while being copied; copying it again"
        );
        std::thread::sleep(pause);
        pause *= 2;
    }
    Err(Failure::environment(format!(
        "{} kept changing while it was copied ({COPY_ATTEMPTS} attempts)",
        src.path.display()
    ))
    .hint("something writes it continuously; run the backup again in a quieter moment")
    .into())
}

/// How far the preparation of members (snapshots, copies) may run ahead of the archive:
/// bytes prepared and not yet archived, staged on disk or held in memory.
pub const AHEAD_BYTES: u64 = 128 * 1024 * 1024;
/// Of those, bytes held in memory (files up to [`MEMORY_COPY_MAX`]).
pub const AHEAD_MEMORY: u64 = 2 * MEMORY_COPY_MAX;

/// What is prepared and not yet archived.
#[derive(Default)]
struct Ahead {
    items: usize,
    bytes: u64,
    memory: u64,
    /// The consumer has stopped: prepare nothing more.
    stopped: bool,
}

impl Ahead {
    /// Whether an item of `n` bytes may be prepared now: always the one after the item
    /// being archived (so a snapshot is made while the previous one is compressed), more
    /// while less than the budget is ahead (a large snapshot then starts while the small
    /// files before it are still being compressed).
    fn room_for(&self, n: u64) -> bool {
        self.items <= 1
            || (self.bytes < AHEAD_BYTES
                && (n > MEMORY_COPY_MAX || self.memory + n <= AHEAD_MEMORY))
    }
    fn add(&mut self, n: u64, sign: bool) {
        let apply = |v: &mut u64| *v = if sign { *v + n } else { *v - n };
        apply(&mut self.bytes);
        if n <= MEMORY_COPY_MAX {
            apply(&mut self.memory);
        }
        self.items = if sign { self.items + 1 } else { self.items - 1 };
    }
}

struct Budget {
    state: std::sync::Mutex<Ahead>,
    cv: std::sync::Condvar,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ahead> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn release(&self, n: u64) {
        self.lock().add(n, false);
        self.cv.notify_all();
    }
}

/// Wakes a producer waiting for room once the consumer ends, however it ends.
struct Stopped<'a>(&'a Budget);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.cv.notify_all();
    }
}

/// Run `prepare` over `items` on a second thread, ahead of `consume` on this one: the
/// next files' snapshots and copies are made while the current one is compressed (else
/// the compressor waits for every snapshot). `size` is an item's expected bytes; the
/// producer starts another item while less than [`AHEAD_BYTES`] are ahead (so at most
/// that plus one item are staged), and holds at most [`AHEAD_MEMORY`] in memory; the item
/// after the one being archived it prepares whatever its size. The first error of either side stops both (an item prepared
/// but never consumed is dropped; its staging file goes with the staging dir).
pub fn prepare_ahead<X: Sync, T: Send>(
    items: &[X],
    size: impl Fn(&X) -> u64 + Send,
    prepare: impl Fn(usize, &X) -> Result<T> + Send,
    mut consume: impl FnMut(&X, T) -> Result<()>,
) -> Result<()> {
    let budget = Budget {
        state: std::sync::Mutex::new(Ahead::default()),
        cv: std::sync::Condvar::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, u64, Result<T>)>();
    std::thread::scope(|s| {
        let b = &budget;
        s.spawn(move || {
            for (i, x) in items.iter().enumerate() {
                let n = size(x);
                {
                    let mut st = b.lock();
                    while !st.stopped && !st.room_for(n) {
                        st =
                            b.cv.wait(st)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    if st.stopped {
                        return;
                    }
                    st.add(n, true);
                }
                let r = prepare(i, x);
                let failed = r.is_err();
                // A send fails once the consumer has stopped.
                if tx.send((i, n, r)).is_err() || failed {
                    return;
                }
            }
        });
        // However this ends (an early return too), the producer is told and stops.
        let _stopped = Stopped(b);
        for (i, n, r) in rx {
            consume(&items[i], r?)?;
            b.release(n);
        }
        Ok(())
    })
}
