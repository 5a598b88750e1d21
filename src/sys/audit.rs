//! Appends operation records to operations.jsonl (one line each, O_APPEND so concurrent
//! writers never interleave inside a line: each record is written with one write(2)),
//! fsynced before the command exits.

use crate::domain::audit::AuditRecord;
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub fn append(path: &Path, record: &AuditRecord) -> Result<()> {
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
    // power cut that the command's own (fsynced) changes survive.
    f.sync_data()
        .with_context(|| format!("syncing {}", path.display()))?;
    if new {
        crate::sys::fs::sync_parent(path)?;
    }
    Ok(())
}
