//! Filesystem access: atomic durable writes, directories with modes, reads.

use anyhow::{Context, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Read a file that may be absent (`None`), with context on any other error.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// mkdir -p with the given mode for created directories.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}
