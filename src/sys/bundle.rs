//! The machine side of the support bundle: reading the files it gathers without following
//! a symlink out of abssctl's trees, the package version, the host name, and unpacking a
//! rotated log. Writing the bundle is `sys::archive::ArchiveWriter`'s (0600 from its
//! creation, temp name, rename without replacing).

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What reading one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// Its text (lossy UTF-8); `truncated`: only its last `cap` bytes.
    Text {
        text: String,
        truncated: bool,
    },
    Absent,
    /// A symlink, not followed (its target, for the MANIFEST).
    Symlink(PathBuf),
    /// A directory, fifo, socket or device: never read.
    NotRegular,
    /// Could not be read (permission, I/O), in words.
    Unreadable(String),
}

/// Read a regular file, at most its last `cap` bytes. The last component is opened with
/// O_NOFOLLOW (a symlink planted in a log or drop-in directory cannot pull /etc/shadow into
/// the bundle) and O_NONBLOCK (a fifo in its place cannot hang the command); its type is
/// checked on the open descriptor, so nothing can be swapped in between.
pub fn read_file(path: &Path, cap: u64) -> Got {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let mut f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Got::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Got::Symlink(std::fs::read_link(path).unwrap_or_default());
        }
        Err(e) => return Got::Unreadable(e.to_string()),
    };
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => return Got::Unreadable(e.to_string()),
    };
    if !meta.file_type().is_file() {
        return Got::NotRegular;
    }
    let truncated = meta.len() > cap;
    if truncated {
        use std::io::Seek;
        if let Err(e) = f.seek(std::io::SeekFrom::Start(meta.len() - cap)) {
            return Got::Unreadable(e.to_string());
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = f.take(cap).read_to_end(&mut bytes) {
        return Got::Unreadable(e.to_string());
    }
    Got::Text {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        truncated,
    }
}

/// The entries of a directory (sorted; `None`: absent), each with whether it is a
/// directory (by lstat: a symlink to a directory is not one).
pub fn list(dir: &Path) -> Result<Option<Vec<(String, bool)>>> {
    let Some(names) = crate::sys::fs::list_names(dir)? else {
        return Ok(None);
    };
    Ok(Some(
        names
            .into_iter()
            .map(|n| {
                let is_dir =
                    std::fs::symlink_metadata(dir.join(&n)).is_ok_and(|m| m.file_type().is_dir());
                (n, is_dir)
            })
            .collect(),
    ))
}

/// Where a symlink points (`None`: not a symlink, or absent).
pub fn link_target(path: &Path) -> Option<PathBuf> {
    std::fs::read_link(path).ok()
}

/// Does anything (a file, a dangling symlink) exist at `path`?
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Is `path` an existing directory?
pub fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// The installed package's version as dpkg knows it, or why there is none.
pub fn package_version(package: &str) -> std::result::Result<String, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("dpkg-query is not installed (not a Debian system?)".into())
        }
        Err(e) => Err(format!("running dpkg-query: {e}")),
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        Ok(o) => Err(format!(
            "dpkg-query: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("the package is not installed")
        )),
    }
}

/// The kernel's host name (for the bundle's default name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The text of a compressed rotated log (`.gz`, `.zst`), at most `cap` bytes of it.
pub fn decompress(bytes: &[u8], zstd: bool, cap: u64) -> Result<String> {
    let mut out = Vec::new();
    if zstd {
        zstd::stream::read::Decoder::new(bytes)
            .context("starting zstd")?
            .take(cap)
            .read_to_end(&mut out)
            .context("unpacking zstd")?;
    } else {
        flate2::read::MultiGzDecoder::new(bytes)
            .take(cap)
            .read_to_end(&mut out)
            .context("unpacking gzip")?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A compressed file's raw bytes (O_NOFOLLOW as [`read_file`]), at most `cap` of them.
pub fn read_bytes(path: &Path, cap: u64) -> std::result::Result<Vec<u8>, String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !f
        .metadata()
        .map_err(|e| e.to_string())?
        .file_type()
        .is_file()
    {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_fifos_are_not_read() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("shadow");
        std::fs::write(&secret, "root:$6$hash").unwrap();
        let link = t.path().join("operations.jsonl.1");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(read_file(&link, 100), Got::Symlink(secret.clone()));
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_file(&fifo, 100), Got::NotRegular);
        assert_eq!(read_file(&t.path().join("none"), 100), Got::Absent);
        assert!(read_bytes(&link, 100).is_err());
    }

    #[test]
    fn a_large_file_keeps_its_tail() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("log");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(
            read_file(&f, 4),
            Got::Text {
                text: "6789".into(),
                truncated: true
            }
        );
    }

    #[test]
    fn rotated_logs_unpack() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"line\n").unwrap();
        assert_eq!(
            decompress(&gz.finish().unwrap(), false, 100).unwrap(),
            "line\n"
        );
        let zs = zstd::encode_all(&b"zline\n"[..], 3).unwrap();
        assert_eq!(decompress(&zs, true, 100).unwrap(), "zline\n");
    }
}
