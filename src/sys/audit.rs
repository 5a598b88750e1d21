//! Appends operation records to operations.jsonl (one line each, O_APPEND so concurrent
//! writers never interleave inside a line: each record is written with one write(2)),
//! fsynced before the command exits when the command planned or made a change.

use crate::domain::audit::AuditRecord;
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Append `record`; `durable`: fsync it (and, for a new file, its directory) first.
pub fn append(path: &Path, record: &AuditRecord, durable: bool) -> Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    if let Some(dir) = path.parent() {
        crate::sys::fs::create_dir_all_mode(dir, 0o750)?;
    }
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(&line)
        .with_context(|| format!("appending to {}", path.display()))?;
    // The record is the trail of what a command did to the machine: it must survive a
    // power cut that the command's own (fsynced) changes survive. A command that planned
    // and made no change (a read: list, status, show) has no such changes; its fsync
    // only cost it 3-4 ms on a real disk (benches/list.sh), a third of a list's budget.
    if !durable {
        return Ok(());
    }
    f.sync_data()
        .with_context(|| format!("syncing {}", path.display()))?;
    if new {
        crate::sys::fs::sync_parent(path)?;
    }
    Ok(())
}
