//! Facts about certificate files on this machine. Kept to what choosing a TLS source needs:
//! whether a file is there and can be opened by us (abssctl runs as root, like nginx's
//! master process, so "we can read it" is "nginx can read it"). Expiry and key matching are
//! doctor's business and arrive with it.

use anyhow::{Context, Result};
use std::path::Path;

/// True when `path` (following symlinks, as certbot's live/ dir is made of them) is a
/// regular file that can be opened for reading.
pub fn is_readable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && std::fs::File::open(path).is_ok()
}

/// Like [`is_readable_file`] but says why not, for error messages and `doctor`.
pub fn check_readable_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("TLS file {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "TLS file {} is not a regular file",
        path.display()
    );
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("opening TLS file {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn readable_file_facts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cert.pem");
        assert!(!is_readable_file(&f));
        assert!(check_readable_file(&f).is_err());
        std::fs::write(&f, "x").unwrap();
        assert!(is_readable_file(&f));
        check_readable_file(&f).unwrap();
        // A directory is not a certificate.
        assert!(!is_readable_file(dir.path()));
        // A symlink to a file counts (certbot's live/ layout).
        let link = dir.path().join("fullchain.pem");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(is_readable_file(&link));
    }
}
