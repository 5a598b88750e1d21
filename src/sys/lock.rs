//! flock-based locks with a timeout and the holder's identity in the lock file.

use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// Held lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: std::fs::File,
}

/// PLACEHOLDER until the locks work lands.
pub fn acquire(path: &Path, _timeout: Duration, _command: &str) -> Result<(LockGuard, Duration)> {
    if let Some(d) = path.parent() {
        crate::sys::fs::create_dir_all_mode(d, 0o750)?;
    }
    let f = std::fs::File::create(path)?;
    f.lock()?;
    Ok((LockGuard { _file: f }, Duration::ZERO))
}
