//! A large plain file (a blob over [`super::MEMORY_COPY_MAX`]) read straight into the
//! archive, then checked unchanged, instead of staged on disk first.
//!
//! Staging a blob costs a write of the whole file and two more reads of it (compare,
//! archive); on a budget whose blobs are 40% of its bytes that was most of what `backup
//! create` spent over `tar | zstd`. Streaming reads it once into the archive and once more
//! to check it (both from the page cache, with a CRC-32 that costs far less than the
//! compression). The price is that a blob found changed AFTER its bytes went into the
//! archive cannot be taken back out of a compressed stream: the caller then starts the
//! archive again with every large blob staged ([`super::copy_stable`], which retries a
//! single file). An upload during a backup is rare; the restart keeps it correct.

use super::stage::{regular_file, stamp};
use super::{At, QUIET_PERIOD, READ_BUF};
use crate::sys::fs::read_full;
use anyhow::{Context, Result};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// How streaming one file ended.
#[derive(Debug)]
pub enum Streamed {
    /// The archive holds one whole version of the file (the metadata the sink was given).
    Whole,
    /// It was modified less than the quiet period ago: nothing was read or written;
    /// copy it the checked way instead.
    NotQuiet,
    /// It changed while it was read: the bytes in the archive may be torn.
    Changed,
}

/// The error that makes a caller start its archive again with large files staged: a
/// streamed file changed after its bytes had gone into the archive.
#[derive(Debug)]
pub struct ChangedWhileArchived(pub PathBuf);

impl std::fmt::Display for ChangedWhileArchived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changed while it was archived", self.0.display())
    }
}

impl std::error::Error for ChangedWhileArchived {}

/// Open `src` for reading only if it is still the file `before` describes: relative to
/// the directory the walk held ([`super::At`]), never through a symlink, never blocking
/// on a FIFO, and the same inode as the one checked. The data directory belongs to the
/// instance's user; a blob swapped for a link to a file of root's between the check and
/// the open must not be read (the checks after the read would throw those bytes away,
/// but they should never reach the archive's stream).
pub(super) fn open_same(src: &At, before: &Metadata) -> Result<File> {
    let f = src.open()?;
    let now = f
        .metadata()
        .with_context(|| format!("reading the metadata of {}", src.path.display()))?;
    if (now.dev(), now.ino()) != (before.dev(), before.ino()) || !now.file_type().is_file() {
        anyhow::bail!("{} was replaced while it was archived", src.path.display());
    }
    Ok(f)
}

/// A reader that keeps the CRC-32 of every byte it gives.
struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// The CRC-32 and length of what `path` holds now (still the file `before` describes).
fn crc_of(src: &At, before: &Metadata) -> Result<(u32, u64)> {
    let mut f = open_same(src, before)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0; READ_BUF];
    let mut len = 0u64;
    loop {
        let n = read_full(&mut f, &mut buf)
            .with_context(|| format!("reading {}", src.path.display()))?;
        if n == 0 {
            return Ok((crc.finalize(), len));
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
}

/// Stream the plain file `src` into `sink` (which gets the open file, with the metadata
/// its header must carry) if it has been quiet for `quiet`, then check it is still the
/// version that was read: stat unchanged (inode, size, mtime, ctime) across the read,
/// and a second read with the same CRC-32 as the bytes the sink took.
///
/// An error of the sink counts as [`Streamed::Changed`] when the file changed under it
/// (a blob truncated during the read makes the archive's exact-size read fail: that is
/// a change, not a broken archive); any other sink error is returned as it is.
pub fn stream_stable(
    src: &At,
    quiet: Duration,
    sink: impl FnOnce(&mut dyn Read, &Metadata) -> Result<()>,
) -> Result<Streamed> {
    let (before, age) = regular_file(src)?;
    let age = age.unwrap_or_default();
    // Streaming has no second attempt (the bytes are in the archive): only a file past
    // the full quiet period, whose next write surely gets a new mtime, is streamed.
    if age < quiet.max(QUIET_PERIOD) {
        return Ok(Streamed::NotQuiet);
    }
    let file = open_same(src, &before)?;
    let mut reader = CrcReader {
        inner: file,
        crc: crc32fast::Hasher::new(),
    };
    let sunk = sink(&mut reader, &before);
    let changed = || -> Result<bool> {
        if stamp(&src.stat()?) != stamp(&before) {
            return Ok(true);
        }
        let (crc, len) = crc_of(src, &before)?;
        Ok(len != before.len()
            || crc != reader.crc.clone().finalize()
            || stamp(&src.stat()?) != stamp(&before))
    };
    match sunk {
        Ok(()) if changed()? => Ok(Streamed::Changed),
        Ok(()) => Ok(Streamed::Whole),
        Err(_) if stamp(&src.stat()?) != stamp(&before) => Ok(Streamed::Changed),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::time::SystemTime;

    /// A file of `len` bytes last modified an hour ago (past any quiet period).
    fn old_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let p = dir.join(name);
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        (p, bytes)
    }

    #[test]
    fn a_quiet_file_is_streamed_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, bytes) = old_file(tmp.path(), "blob", 3 * READ_BUF + 17);
        let mut got = Vec::new();
        let r = stream_stable(&At::of(&p).unwrap(), QUIET_PERIOD, |r, m| {
            assert_eq!(m.len(), bytes.len() as u64);
            r.read_to_end(&mut got)?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(r, Streamed::Whole), "{r:?}");
        assert_eq!(got, bytes);
    }

    #[test]
    fn a_fresh_file_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("blob");
        std::fs::write(&p, b"just written").unwrap();
        let r = stream_stable(&At::of(&p).unwrap(), Duration::ZERO, |_, _| {
            panic!("a fresh file was read")
        });
        assert!(matches!(r.unwrap(), Streamed::NotQuiet));
    }

    #[test]
    fn a_file_overwritten_after_its_read_is_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, bytes) = old_file(tmp.path(), "blob", 100_000);
        let r = stream_stable(&At::of(&p).unwrap(), QUIET_PERIOD, |r, _| {
            io::copy(r, &mut io::sink())?;
            // An upload rewrites it in place, same size, after the archive took it.
            let mut f = File::options().write(true).open(&p)?;
            f.write_all(&vec![b'x'; bytes.len()])?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(r, Streamed::Changed), "{r:?}");
    }

    #[test]
    fn a_file_truncated_during_its_read_is_changed_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, bytes) = old_file(tmp.path(), "blob", 100_000);
        let r = stream_stable(&At::of(&p).unwrap(), QUIET_PERIOD, |r, m| {
            let mut half = vec![0; bytes.len() / 2];
            r.read_exact(&mut half)?;
            File::options().write(true).open(&p)?.set_len(10)?;
            // The archive wants the size its header said: the short read is its error.
            let mut rest = vec![0; (m.len() as usize) - half.len()];
            r.read_exact(&mut rest)?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(r, Streamed::Changed), "{r:?}");
    }

    #[test]
    fn an_error_of_the_sink_on_an_unchanged_file_is_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, _) = old_file(tmp.path(), "blob", 1000);
        let err = stream_stable(&At::of(&p).unwrap(), QUIET_PERIOD, |_, _| {
            anyhow::bail!("no space left")
        })
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "no space left");
    }

    #[test]
    fn a_partial_read_is_changed_so_nothing_short_passes_as_whole() {
        // A sink that took only part of the file has a CRC unlike the file's.
        let tmp = tempfile::tempdir().unwrap();
        let (p, _) = old_file(tmp.path(), "blob", 10_000);
        let r = stream_stable(&At::of(&p).unwrap(), QUIET_PERIOD, |r, _| {
            r.read_exact(&mut [0; 100])?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(r, Streamed::Changed), "{r:?}");
    }

    #[test]
    fn a_file_swapped_for_a_symlink_is_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, _) = old_file(tmp.path(), "blob", 1000);
        let before = std::fs::symlink_metadata(&p).unwrap();
        // Made while the blob still exists, so never with its inode number.
        let (other, _) = old_file(tmp.path(), "other", 1000);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        std::fs::rename(&link, &p).unwrap();
        assert!(open_same(&At::of(&p).unwrap(), &before).is_err());
        // And another file renamed over it is not the one that was checked.
        std::fs::rename(&other, &p).unwrap();
        let err = open_same(&At::of(&p).unwrap(), &before).unwrap_err();
        assert!(format!("{err:#}").contains("was replaced"), "{err:#}");
    }

    #[test]
    fn only_regular_files_are_streamed() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("l")).unwrap();
        let err = stream_stable(
            &At::of(&tmp.path().join("l")).unwrap(),
            QUIET_PERIOD,
            |_, _| panic!("a symlink was followed"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }
}
