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
use crate::sys::fdwalk::{DIR_FLAGS, open_dir};
use crate::sys::writeback::FlushingFile;
use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Bytes read at a time from a member's source (tar's own copy uses 8 KiB reads).
const READ_BUF: usize = 1024 * 1024;
/// Input per zstd job (see [`Encoder::new`]).
const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;
/// zstd worker threads: one per core available to us, at most 4 (each adds ~5 MiB).
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

/// The compressor between tar and the hashing writer.
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<FlushingFile>>),
    Gzip(flate2::write::GzEncoder<HashingWriter<FlushingFile>>),
    Plain(HashingWriter<FlushingFile>),
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
    fn new(out: HashingWriter<FlushingFile>, alg: Algorithm, level: i32) -> io::Result<Encoder> {
        Ok(match alg {
            Algorithm::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // A frame checksum: `zstd -t` (and restore) catch a damaged archive even
                // without the index.
                e.include_checksum(true)?;
                // Worker threads, as `zstd -T0` has, but with small jobs: zstd's default
                // job (4x the window, 8 MiB at level 3) buffers several jobs per worker
                // and took peak memory past 64 MiB; 2 MiB jobs keep it near 40 MiB and
                // cost nothing measurable in ratio or speed.
                e.multithread(zstd_workers())?;
                e.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Encoder::Zstd(e)
            }
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.clamp(1, 9) as u32),
            )),
            Algorithm::None => Encoder::Plain(out),
        })
    }
    fn finish(self) -> io::Result<HashingWriter<FlushingFile>> {
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
        // Its writeback starts while the rest is still being compressed (sys::writeback).
        let file = FlushingFile::new(file)
            .map_err(|e| io_context(e, || "starting the writeback thread".into()))?;
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
            inner: io::BufReader::with_capacity(READ_BUF.min(size as usize), data.take(size)),
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
        let file = file.finish().map_err(|e| io_context(e, what))?;
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

#[path = "archive_stage.rs"]
mod stage;
pub use stage::*;
#[path = "archive_hold.rs"]
mod hold;
pub use hold::*;
#[path = "archive_stream.rs"]
mod stream;
pub use stream::*;
#[path = "archive_link.rs"]
mod link;
pub use link::*;

/// An entry named in a directory held open: how root reaches a file of a tree that
/// another account writes (an instance's data). The name is resolved in that directory,
/// the one the walk listed, and never through a symlink (`O_NOFOLLOW`). A path is not
/// enough: `O_NOFOLLOW` guards only its last component, so an instance's user who swaps
/// a directory on the way (`user-files`, `server-files`) for a link to elsewhere would
/// have root read, and archive, any file root can read (another instance's
/// `account.sqlite`), and a later restore hand those bytes to that user.
#[derive(Debug, Clone)]
pub struct At {
    pub dir: Arc<OwnedFd>,
    pub name: CString,
    /// For messages only: nothing is opened by it.
    pub path: PathBuf,
}

/// A data file's open: read only, never through a link, never blocking on a FIFO.
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

impl At {
    /// `path` in its parent directory, opened here (tests; the backup walks instead).
    #[cfg(test)]
    pub fn of(path: &Path) -> Result<At> {
        use std::os::unix::ffi::OsStrExt;
        let parent = path.parent().context("a path without a directory")?;
        let name = path.file_name().context("a path without a name")?;
        Ok(At {
            dir: Arc::new(open_dir(parent)?),
            name: CString::new(name.as_bytes())?,
            path: path.to_path_buf(),
        })
    }

    /// The entry named `<name><suffix>` in the same directory (a database's journal).
    pub fn with_suffix(&self, suffix: &str) -> At {
        let mut name = self.name.as_bytes().to_vec();
        name.extend_from_slice(suffix.as_bytes());
        let mut path = self.path.clone().into_os_string();
        path.push(suffix);
        At {
            dir: self.dir.clone(),
            // A suffix of ours has no NUL, nor had the name.
            name: CString::new(name).unwrap_or_default(),
            path: path.into(),
        }
    }

    /// The metadata of the entry itself (a symlink is not followed), `None` when there is
    /// none. Through an `O_PATH` handle, whose close (unlike any other descriptor's)
    /// drops none of this process's POSIX locks on the file (a held database's).
    pub fn stat_opt(&self) -> Result<Option<Metadata>> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(&*self.dir, self.name.as_c_str(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd)
                .metadata()
                .map(Some)
                .with_context(|| format!("reading the metadata of {}", self.path.display())),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("reading the metadata of {}", self.path.display()))
            }
        }
    }

    /// [`At::stat_opt`] of an entry that must exist.
    pub fn stat(&self) -> Result<Metadata> {
        self.stat_opt()?
            .with_context(|| format!("{} is gone", self.path.display()))
    }

    /// Open the file for reading (see [`FILE_FLAGS`]).
    pub fn open(&self) -> Result<File> {
        nix::fcntl::openat(&*self.dir, self.name.as_c_str(), FILE_FLAGS, Mode::empty())
            .map(File::from)
            .with_context(|| format!("opening {}", self.path.display()))
    }
}

/// One entry under a data directory, as found by [`walk`].
#[derive(Debug)]
pub struct Found {
    /// Relative to the walked directory, `/`-separated.
    pub rel: String,
    /// Where it is: its name in its directory, held open since the walk listed it.
    pub at: At,
    pub meta: Metadata,
}

/// Every directory and regular file under `dir` (depth first, sorted by name, the
/// directories before their content). Symlinks and special files are left out (an
/// instance's data has none; following one could leave the data directory).
///
/// By handle, not by path: `dir` is opened as a directory and never a link, each
/// subdirectory relative to its parent with `O_NOFOLLOW`, and every entry comes with its
/// parent's handle ([`At`]), so the readers after it open exactly the directories listed
/// here, whatever the names on the way point at by then. One descriptor stays open per
/// directory that holds an entry, until the entries are dropped.
pub fn walk(dir: &Path) -> Result<(Vec<Found>, Vec<PathBuf>)> {
    use std::os::unix::ffi::OsStrExt;
    fn go(
        fd: Arc<OwnedFd>,
        dir: &Path,
        rel: &str,
        out: &mut Vec<Found>,
        skipped: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let mut names = crate::sys::fdwalk::names(&fd, dir)?;
        names.sort();
        for name in names {
            let os = std::ffi::OsStr::from_bytes(name.as_bytes());
            let r = if rel.is_empty() {
                os.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", os.to_string_lossy())
            };
            let at = At {
                dir: fd.clone(),
                path: dir.join(os),
                name,
            };
            let meta = at.stat()?;
            if meta.file_type().is_dir() {
                let sub = nix::fcntl::openat(&*fd, at.name.as_c_str(), DIR_FLAGS, Mode::empty())
                    .with_context(|| format!("opening {}", at.path.display()))?;
                let st = nix::sys::stat::fstat(&sub)
                    .with_context(|| format!("reading the metadata of {}", at.path.display()))?;
                if (st.st_dev, st.st_ino) != (meta.dev(), meta.ino()) {
                    anyhow::bail!("{} was replaced while it was read", at.path.display());
                }
                let path = at.path.clone();
                out.push(Found {
                    rel: r.clone(),
                    at,
                    meta,
                });
                go(Arc::new(sub), &path, &r, out, skipped)?;
            } else if meta.file_type().is_file() {
                out.push(Found { rel: r, at, meta });
            } else {
                skipped.push(at.path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    go(Arc::new(open_dir(dir)?), dir, "", &mut out, &mut skipped)?;
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
#[path = "archive_swap_tests.rs"]
mod swap_tests;
#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
