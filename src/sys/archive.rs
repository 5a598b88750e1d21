//! Backup archives: a tar stream compressed on the fly (zstd, gzip or none) with its
//! SHA-256 computed in the same pass, written to a temp file in the backup directory and
//! renamed when complete; SQLite snapshots through the online backup API; and copies of
//! plain files (blobs, `.migrate`) checked unchanged across the copy.
//!
//! Nothing here keeps a second copy of the whole archive: bytes go tar -> compressor ->
//! [`HashingWriter`] -> file. Only the database snapshots (which must be files for SQLite
//! to write them) and blobs too large to hold in memory go through a private staging dir.

use crate::domain::backup::Algorithm;
use crate::error::Failure;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// A writer that hashes and counts every byte that reaches the inner writer.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// The inner writer, the lowercase hex SHA-256 and the byte count of what it got.
    pub fn into_parts(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor between tar and the hashing writer.
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<File>>),
    Gzip(flate2::write::GzEncoder<HashingWriter<File>>),
    Plain(HashingWriter<File>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Zstd(_) => "Encoder::Zstd",
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Plain(_) => "Encoder::Plain",
        })
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Plain(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Plain(e) => e.flush(),
        }
    }
}

impl Encoder {
    fn new(out: HashingWriter<File>, alg: Algorithm, level: i32) -> io::Result<Encoder> {
        Ok(match alg {
            Algorithm::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // A frame checksum: `zstd -t` (and restore) catch a damaged archive even
                // without the index.
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.clamp(1, 9) as u32),
            )),
            Algorithm::None => Encoder::Plain(out),
        })
    }
    fn finish(self) -> io::Result<HashingWriter<File>> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Plain(e) => Ok(e),
        }
    }
}

/// A finished archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// An archive being written. Dropped without [`ArchiveWriter::finish`] (an error, a
/// panic), its temp file is removed: no partial archive is ever left under its final name.
pub struct ArchiveWriter {
    tar: tar::Builder<Encoder>,
    tmp: tempfile::TempPath,
    dest: PathBuf,
    /// Bytes of member content appended so far (before compression), for progress.
    pub input_bytes: u64,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("dest", &self.dest)
            .field("input_bytes", &self.input_bytes)
            .finish()
    }
}

fn io_context(e: io::Error, what: impl FnOnce() -> String) -> anyhow::Error {
    // A full disk is the machine's problem (exit 3), with the way out in the hint.
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        return anyhow::Error::from(
            Failure::environment(format!("{}: no space left on the device", what()))
                .hint("free space in the backup directory (or choose another with --out-dir) and run it again"),
        );
    }
    anyhow::Error::new(e).context(what())
}

impl ArchiveWriter {
    /// Start `dest` (its directory must exist): a temp file beside it, mode `mode` before
    /// any byte is written.
    pub fn create(dest: &Path, alg: Algorithm, level: i32, mode: u32) -> Result<ArchiveWriter> {
        let dir = dest
            .parent()
            .with_context(|| format!("{} has no directory", dest.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".abssctl-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| io_context(e, || format!("creating a temp file in {}", dir.display())))?;
        let (file, tmp) = tmp.into_parts();
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
        let enc = Encoder::new(HashingWriter::new(file), alg, level)
            .map_err(|e| io_context(e, || "starting the compressor".into()))?;
        let mut tar = tar::Builder::new(enc);
        tar.mode(tar::HeaderMode::Complete);
        Ok(ArchiveWriter {
            tar,
            tmp,
            dest: dest.to_path_buf(),
            input_bytes: 0,
        })
    }

    fn err(&self, e: io::Error, member: &str) -> anyhow::Error {
        io_context(e, || {
            format!("writing {member} into {}", self.dest.display())
        })
    }

    /// A member from bytes in memory (root-owned, `mode`, mtime `mtime`).
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8], mode: u32, mtime: u64) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(|e| self.err(e, name))?;
        self.input_bytes += bytes.len() as u64;
        Ok(())
    }

    /// A directory member with the owner, mode and mtime of `meta`.
    pub fn add_dir(&mut self, name: &str, meta: &Metadata) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(|e| self.err(e, name))
    }

    /// A file member: owner, mode and mtime from `meta` (the original file), content of
    /// exactly `size` bytes from `data`. A reader that gives fewer bytes is an error (tar
    /// would otherwise write a member shorter than its header says).
    pub fn add_file(
        &mut self,
        name: &str,
        meta: &Metadata,
        size: u64,
        data: impl Read,
    ) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        let mut exact = ExactReader {
            inner: data.take(size),
            left: size,
        };
        self.tar
            .append_data(&mut h, name, &mut exact)
            .map_err(|e| self.err(e, name))?;
        self.input_bytes += size;
        Ok(())
    }

    /// Close the tar stream and the compressor, fsync, rename to the final name (never
    /// over an existing file), fsync the directory.
    pub fn finish(self) -> Result<Written> {
        let dest = self.dest.clone();
        let what = || format!("finishing {}", dest.display());
        let enc = self.tar.into_inner().map_err(|e| io_context(e, what))?;
        let out = enc.finish().map_err(|e| io_context(e, what))?;
        let (file, sha256, size) = out.into_parts();
        file.sync_all().map_err(|e| io_context(e, what))?;
        drop(file);
        self.tmp
            .persist_noclobber(&dest)
            .map_err(|e| anyhow::Error::new(e.error))
            .with_context(|| format!("renaming the finished archive to {}", dest.display()))?;
        crate::sys::fs::sync_parent(&dest)?;
        Ok(Written {
            path: dest,
            size,
            sha256,
        })
    }
}

/// A reader that fails if its source ends before `left` bytes.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// How long a database lock may keep a snapshot waiting (a writer holding it that long
/// is stuck; Actual's own writes take milliseconds).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Snapshot the SQLite database `src` into the new file `dst` with the online backup API,
/// then check the copy (`PRAGMA integrity_check`).
///
/// The whole database is copied in ONE backup step (`sqlite3_backup_step(-1)`): the step
/// holds a read lock on the source for the copy, so the snapshot is one committed state
/// and never restarts because a writer committed midway (which a page-by-page backup does
/// after every write of another process). A writer waits the few milliseconds the copy
/// takes (Actual's busy timeout absorbs it). The source is opened read-write without
/// create: a hot journal left by a crashed writer is rolled back, as any reader would.
pub fn sqlite_snapshot(src: &Path, dst: &Path, timeout: Duration) -> Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    let what = || format!("snapshot of {}", src.display());
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", src.display()))?;
    from.busy_timeout(timeout).with_context(what)?;
    let mut to = Connection::open(dst).with_context(|| format!("creating {}", dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", dst.display()))?;
    let started = Instant::now();
    {
        let backup = Backup::new(&from, &mut to).with_context(what)?;
        loop {
            match backup.step(-1).with_context(what)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy, Locked (the enum is non-exhaustive: anything else is waited on too).
                _ => {
                    if started.elapsed() > timeout {
                        return Err(Failure::environment(format!(
                            "{} stayed locked for {}s",
                            src.display(),
                            timeout.as_secs()
                        ))
                        .hint("a writer holds the database; try again, or stop the instance first")
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let check: String = to
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("checking the snapshot of {}", src.display()))?;
    if check != "ok" {
        return Err(Failure::environment(format!(
            "the snapshot of {} fails SQLite's integrity check: {check}",
            src.display()
        ))
        .hint("the database itself may be damaged: check it with sqlite3 PRAGMA integrity_check")
        .into());
    }
    to.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", dst.display()))?;
    Ok(())
}

/// Files up to this size are held in memory while checked; larger ones are staged on disk
/// (peak memory stays small whatever the blob sizes).
pub const MEMORY_COPY_MAX: u64 = 8 * 1024 * 1024;
/// How many times a file that changed during its copy is copied again.
pub const COPY_ATTEMPTS: u32 = 5;
/// A file modified this recently may be in the middle of a write: wait until it is older.
pub const QUIET_PERIOD: Duration = Duration::from_millis(1000);

/// A copy of a plain file known to be one whole version of it.
#[derive(Debug)]
pub enum StableCopy {
    Memory(Vec<u8>),
    Staged(PathBuf),
}

/// What identifies one version of a file: any write or replacement changes it.
fn stamp(m: &Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    (
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut w).with_context(|| format!("reading {}", path.display()))?;
    let (_, h, n) = w.into_parts();
    Ok((h, n))
}

/// Copy `src` so that the copy is one whole version of it, never one torn by a write in
/// progress (Actual uploads overwrite blobs in place).
///
/// Each attempt: wait until the file has been quiet for `quiet` ([`QUIET_PERIOD`]); stat; copy it
/// (into memory, or into `staging/<stage_name>` when large) hashing the bytes; stat again;
/// read it once more and hash. The copy counts only if size, mtime, ctime and inode are
/// unchanged across the whole attempt AND both reads hash the same; otherwise it is
/// retried ([`COPY_ATTEMPTS`] times, then an error). Returns the copy and the metadata of
/// the version copied.
///
/// Chosen over holding the instance still: stopping the unit cuts off a client syncing at
/// that moment (and its start can fail), and freezing its cgroup does not help at all, as
/// a freeze can land in the middle of a blob write just as well. Checking costs clients
/// nothing; its price is reading each file twice, from the page cache the first read
/// filled.
pub fn copy_stable(
    src: &Path,
    staging: &Path,
    stage_name: &str,
    quiet: Duration,
) -> Result<(StableCopy, Metadata)> {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=COPY_ATTEMPTS {
        let before = std::fs::symlink_metadata(src)
            .with_context(|| format!("reading the metadata of {}", src.display()))?;
        if !before.file_type().is_file() {
            anyhow::bail!("{} is not a regular file", src.display());
        }
        let age = before
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or(quiet);
        if age < quiet {
            // Every attempt counts, the waits for a quiet file too.
            std::thread::sleep(quiet - age);
            continue;
        }
        let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
        let (copy, first) = if before.len() <= MEMORY_COPY_MAX {
            let mut buf = Vec::with_capacity(before.len() as usize);
            f.read_to_end(&mut buf)
                .with_context(|| format!("reading {}", src.display()))?;
            let h = hex::encode(Sha256::digest(&buf));
            (StableCopy::Memory(buf), h)
        } else {
            let dst = staging.join(stage_name);
            let out = File::create(&dst).with_context(|| format!("creating {}", dst.display()))?;
            let mut w = HashingWriter::new(io::BufWriter::new(out));
            io::copy(&mut f, &mut w)
                .map_err(|e| io_context(e, || format!("copying {}", src.display())))?;
            let (out, h, _) = w.into_parts();
            out.into_inner()
                .map_err(|e| io_context(e.into_error(), || format!("writing {}", dst.display())))?;
            (StableCopy::Staged(dst), h)
        };
        drop(f);
        let after = std::fs::symlink_metadata(src)
            .with_context(|| format!("reading the metadata of {}", src.display()))?;
        let copied = match &copy {
            StableCopy::Memory(b) => b.len() as u64,
            StableCopy::Staged(p) => std::fs::metadata(p)
                .with_context(|| format!("reading {}", p.display()))?
                .len(),
        };
        if stamp(&before) == stamp(&after) && copied == before.len() {
            let (second, n) = hash_file(src)?;
            let last = std::fs::symlink_metadata(src)
                .with_context(|| format!("reading the metadata of {}", src.display()))?;
            if second == first && n == copied && stamp(&last) == stamp(&before) {
                return Ok((copy, before));
            }
        }
        tracing::info!(
            file = %src.display(),
            attempt,
            "changed while being copied; copying it again"
        );
        std::thread::sleep(pause);
        pause *= 2;
    }
    Err(Failure::environment(format!(
        "{} kept changing while it was copied ({COPY_ATTEMPTS} attempts)",
        src.display()
    ))
    .hint("something writes it continuously; run the backup again in a quieter moment")
    .into())
}

/// One entry under a data directory, as found by [`walk`].
#[derive(Debug)]
pub struct Found {
    /// Relative to the walked directory, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub meta: Metadata,
}

/// Every directory and regular file under `dir` (depth first, sorted by name, the
/// directories before their content). Symlinks and special files are left out (an
/// instance's data has none; following one could leave the data directory).
pub fn walk(dir: &Path) -> Result<(Vec<Found>, Vec<PathBuf>)> {
    fn go(dir: &Path, rel: &str, out: &mut Vec<Found>, skipped: &mut Vec<PathBuf>) -> Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("reading the metadata of {}", path.display()))?;
            let r = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if meta.file_type().is_dir() {
                out.push(Found {
                    rel: r.clone(),
                    path: path.clone(),
                    meta,
                });
                go(&path, &r, out, skipped)?;
            } else if meta.file_type().is_file() {
                out.push(Found { rel: r, path, meta });
            } else {
                skipped.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    go(dir, "", &mut out, &mut skipped)?;
    Ok((out, skipped))
}

/// mkdir -p `dir`, and make it (the last component) mode `mode` even if it existed.
pub fn private_dir(dir: &Path, mode: u32) -> Result<()> {
    crate::sys::fs::create_dir_all_mode(dir, mode)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// A private (0700) staging directory inside `dir`, removed when dropped.
pub fn staging_dir(dir: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".abssctl-staging-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a staging directory in {}", dir.display()))
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
