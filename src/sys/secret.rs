//! Reading a secret (the server password) from a file or stdin. The value never goes to
//! logs, the operations log or error messages.

use crate::error::Failure;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

fn clean(raw: String, from: &str) -> Result<String> {
    let s = raw.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(
            Failure::validation(format!("the password from {from} is empty"))
                .hint("put the password on the first line")
                .into(),
        );
    }
    Ok(s)
}

/// The first line of a file (trailing newline removed).
pub fn from_file(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        anyhow::Error::from(
            Failure::validation(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
            .hint("give a readable file whose first line is the password"),
        )
    })?;
    let first = raw.lines().next().unwrap_or_default().to_string();
    clean(first, &path.display().to_string())
}

/// Everything on stdin (trailing newline removed).
pub fn from_stdin() -> Result<String> {
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("reading the password from stdin")?;
    clean(raw, "stdin")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn first_line_without_newline() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), "s3cret\nrest\n").unwrap();
        assert_eq!(from_file(t.path()).unwrap(), "s3cret");
        std::fs::write(t.path(), "\n").unwrap();
        assert!(from_file(t.path()).is_err());
        assert!(from_file(Path::new("/nonexistent/pw")).is_err());
    }
}
