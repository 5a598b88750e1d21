//! flock-based locks (ADR-027) with a timeout and the holder's identity in the lock file.
//!
//! Locks live on separate `.lock` files, never on the data files: an atomic write renames a
//! new inode over the data file, which would silently drop a lock held on the old one.
//! flock is released by the kernel when the holder dies, so a crash never leaves a lock
//! held; the holder line left in the file then tells `doctor` who crashed.

use crate::error::Failure;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// First pause between attempts; doubles up to [`MAX_BACKOFF`] so a short wait is noticed
/// quickly while a long one does not spin.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Who holds a lock: one line of JSON written into the lock file by the holder, readable
/// by anyone who has to wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// UTC RFC 3339 time the lock was taken.
    pub since: String,
}

impl Holder {
    /// "pid 123 (ports reserve) since 2026-…".
    pub fn describe(&self) -> String {
        format!("pid {} ({}) since {}", self.pid, self.command, self.since)
    }
}

/// A held lock; released on drop (the holder line is cleared first, so a lock file with a
/// holder line and no flock on it means its holder died).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file this guard holds (lets state writers check they hold the right lock).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!(lock = %self.path.display(), "could not clear the lock holder line: {e}");
        }
        // Closing the file releases the flock.
    }
}

/// Read the holder line of a lock file (best effort: an empty or foreign file gives None).
pub fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().next()?).ok()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown time".into())
}

fn write_holder(file: &mut File, command: &str) -> Result<()> {
    let holder = Holder {
        pid: std::process::id(),
        command: command.to_string(),
        since: now_rfc3339(),
    };
    let mut line = serde_json::to_string(&holder)?;
    line.push('\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// Take an exclusive flock on `path`, waiting up to `timeout` with backoff. Returns the
/// guard and how long it waited (for lock_wait_ms). On timeout: an environment error
/// naming the holder (pid, command, since when) and how to proceed.
pub fn acquire(path: &Path, timeout: Duration, command: &str) -> Result<(LockGuard, Duration)> {
    if let Some(d) = path.parent() {
        crate::sys::fs::create_dir_all_mode(d, crate::sys::fs::DIR_MODE)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::sys::fs::FILE_MODE)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let started = Instant::now();
    let mut pause = FIRST_BACKOFF;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(timeout_error(path, &mut file, timeout).into());
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(MAX_BACKOFF);
    }
    let waited = started.elapsed();
    write_holder(&mut file, command)
        .with_context(|| format!("writing the holder line of {}", path.display()))?;
    Ok((
        LockGuard {
            file,
            path: path.to_path_buf(),
        },
        waited,
    ))
}

fn timeout_error(path: &Path, file: &mut File, timeout: Duration) -> Failure {
    let mut text = String::new();
    let holder = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text))
        .ok()
        .and_then(|_| serde_json::from_str::<Holder>(text.lines().next()?).ok());
    let secs = timeout.as_secs_f64();
    match holder {
        Some(h) => Failure::environment(format!(
            "gave up after {secs}s waiting for lock {}: held by {}",
            path.display(),
            h.describe()
        ))
        .hint(format!(
            "wait for that command to finish (check it with: ps -p {}), or wait longer with --lock-timeout SECS",
            h.pid
        )),
        None => Failure::environment(format!(
            "gave up after {secs}s waiting for lock {}: held by a process that did not record itself",
            path.display()
        ))
        .hint(format!(
            "find the holder with: fuser -v {}, or wait longer with --lock-timeout SECS",
            path.display()
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn holder_is_recorded_then_cleared_and_second_taker_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("locks/global.lock");
        let (guard, waited) = acquire(&path, Duration::from_secs(1), "ports reserve").unwrap();
        assert!(waited < Duration::from_secs(1));
        let h = read_holder(&path).unwrap();
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.command, "ports reserve");

        // flock locks belong to the open file description, so a second open in the same
        // process conflicts exactly like another process would.
        let started = Instant::now();
        let err = acquire(&path, Duration::from_millis(100), "other").unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100));
        let (kind, msg, hint) = crate::error::classify(&err);
        assert_eq!(kind, crate::error::Kind::Environment);
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("(ports reserve)"), "{msg}");
        assert!(hint.unwrap().contains("--lock-timeout"));

        drop(guard);
        assert_eq!(read_holder(&path), None);
        let (_g, _) = acquire(&path, Duration::ZERO, "again").unwrap();
        assert_eq!(read_holder(&path).unwrap().command, "again");
    }

    #[test]
    fn waiter_gets_the_lock_when_holder_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let (guard, _) = acquire(&path, Duration::ZERO, "first").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(guard);
        });
        let (_g, waited) = acquire(&path, Duration::from_secs(5), "second").unwrap();
        releaser.join().unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
    }
}
