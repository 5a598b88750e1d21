//! Certificate files on this machine: whether one is there and can be opened by us (abssctl
//! runs as root, like nginx's master process, so "we can read it" is "nginx can read it"),
//! reading them for `domain::tls`, putting an instance's own files in place (with the
//! previous ones kept), and making the self-signed fallback. What the bytes mean is
//! `domain::tls`'s business.

use crate::error::Failure;
use crate::sys::fs;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Mode of private keys: root only (ADR-010; nginx's master reads them as root).
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and chains: public.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the directories abssctl keeps key files in.
pub const DIR_MODE: u32 = 0o700;
/// How long the self-signed fallback is valid (as long as TurnKey's own, 10 years: it is a
/// placeholder until a real certificate is installed, not something to renew).
pub const SELF_SIGNED_DAYS: i64 = 3650;

/// The bytes of a TLS file. Missing or unreadable is the machine's problem (exit 3), with
/// the next step in the hint; the text itself is never put in a message.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "run it as root (keys are readable by root only)"
            }
            std::io::ErrorKind::NotFound => "check the path",
            _ => "check that it is a readable file",
        };
        Failure::environment(format!("cannot read TLS file {}: {e}", path.display()))
            .hint(hint)
            .into()
    })
}

/// One file to put in place: where, what, which mode.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// What [`place`] did to one file, enough to put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// It did not exist: the undo removes it.
    Created(PathBuf),
    /// Its previous bytes are in this timestamped copy (kept after success too).
    Replaced { path: PathBuf, backup: PathBuf },
}

/// Write `files` (directories made root-only), keeping a changed file's previous bytes as
/// `<file>.bak-<stamp>` first (durably, before the new bytes replace it). Identical files
/// are left alone. On a failure half way, what was done is put back before the error.
pub fn place(files: &[NewFile], stamp: &str) -> Result<Vec<Placed>> {
    let mut done = Vec::new();
    for f in files {
        match place_one(f, stamp) {
            Ok(Some(p)) => done.push(p),
            Ok(None) => {}
            Err(e) => {
                return Err(match unplace(&done) {
                    Ok(()) => e,
                    Err(u) => {
                        e.context(format!("and putting the previous files back failed: {u:#}"))
                    }
                });
            }
        }
    }
    Ok(done)
}

fn place_one(f: &NewFile, stamp: &str) -> Result<Option<Placed>> {
    if let Some(dir) = f.path.parent() {
        fs::create_dir_all_mode(dir, DIR_MODE)?;
    }
    let old = match std::fs::read(&f.path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", f.path.display())),
    };
    let placed = match old {
        Some(b) if b == f.bytes => return Ok(None),
        Some(_) => {
            let mut backup = f.path.clone().into_os_string();
            backup.push(format!(".bak-{stamp}"));
            let backup = PathBuf::from(backup);
            fs::copy_durable(&f.path, &backup)?;
            Placed::Replaced {
                path: f.path.clone(),
                backup,
            }
        }
        None => Placed::Created(f.path.clone()),
    };
    fs::write_atomic(&f.path, &f.bytes, f.mode)?;
    Ok(Some(placed))
}

/// Undo [`place`]: created files removed, replaced ones back from their copies (a rename:
/// the very bytes and mode), in reverse order.
pub fn unplace(done: &[Placed]) -> Result<()> {
    for p in done.iter().rev() {
        match p {
            Placed::Created(path) => {
                fs::remove_file_if_exists(path)?;
                fs::sync_parent(path)?;
            }
            Placed::Replaced { path, backup } => {
                std::fs::rename(backup, path).with_context(|| {
                    format!("restoring {} from {}", path.display(), backup.display())
                })?;
                fs::sync_parent(path)?;
            }
        }
    }
    Ok(())
}

/// A new self-signed certificate for `domain` (SAN and CN) with a fresh ECDSA P-256 key,
/// in pure Rust (rcgen over ring): (certificate PEM, key PEM). The key never leaves this
/// process until it is written 0600.
pub fn make_self_signed(domain: &str) -> Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .with_context(|| format!("a certificate for {domain}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the self-signed certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

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

    #[test]
    fn place_keeps_the_previous_bytes_and_unplace_puts_them_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tls/a/privkey.pem");
        let crt = dir.path().join("tls/a/fullchain.pem");
        let files = |k: &str, c: &str| {
            vec![
                NewFile {
                    path: key.clone(),
                    bytes: k.into(),
                    mode: KEY_MODE,
                },
                NewFile {
                    path: crt.clone(),
                    bytes: c.into(),
                    mode: CERT_MODE,
                },
            ]
        };
        let first = place(&files("k1", "c1"), "s1").unwrap();
        assert_eq!(
            first,
            [Placed::Created(key.clone()), Placed::Created(crt.clone())]
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&key), mode(&crt)), (0o600, 0o644));
        assert_eq!(mode(key.parent().unwrap()), 0o700);
        // Same key, new certificate: only the certificate is replaced, its old bytes kept.
        let second = place(&files("k1", "c2"), "s2").unwrap();
        let bak = dir.path().join("tls/a/fullchain.pem.bak-s2");
        assert_eq!(
            second,
            [Placed::Replaced {
                path: crt.clone(),
                backup: bak.clone()
            }]
        );
        assert_eq!(std::fs::read(&bak).unwrap(), b"c1");
        unplace(&second).unwrap();
        assert_eq!(std::fs::read(&crt).unwrap(), b"c1");
        assert!(!bak.exists());
        unplace(&first).unwrap();
        assert!(!key.exists() && !crt.exists());
    }

    #[test]
    fn the_self_signed_fallback_is_for_its_domain_and_its_key() {
        let (cert, key) = make_self_signed("budget.example.org").unwrap();
        let v = crate::domain::tls::verify(
            crate::domain::tls::Inputs {
                cert: cert.as_bytes(),
                key: Some(key.as_bytes()),
                chain: None,
                domain: Some("budget.example.org"),
            },
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert!(v.ok(), "{:?}", v.problems);
        assert!(v.days_left > 3000 && v.certificate.self_signed);
        assert_eq!(v.key_type, Some(crate::domain::tls::KeyType::EcdsaP256));
    }

    #[test]
    fn read_says_which_file_and_exits_3() {
        let e = read(Path::new("/nonexistent/cert.pem")).unwrap_err();
        let (kind, msg, hint) = crate::error::classify(&e);
        assert_eq!(kind.exit_code(), 3);
        assert!(
            msg.contains("/nonexistent/cert.pem") && hint.is_some(),
            "{msg}"
        );
    }
}
