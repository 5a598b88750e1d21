//! Reading a backup archive back, trusting nothing in it (`backup restore`).
//!
//! An archive in the backup directory may have been replaced, edited or crafted: root
//! extracts it, so every member is checked BEFORE a byte of it is written:
//! - only the layout `backup create` writes: the manifest, a few known `meta/` files (kept
//!   in memory, never written), and `data/...`; names are relative, plain components
//!   (no `/` at the start, no `..`, no `.`, no NUL), at most [`MAX_DEPTH`] deep;
//! - only regular files and directories: symlinks, hard links, devices, FIFOs and sparse
//!   or unknown entry types are refused, and so are setuid, setgid and sticky bits;
//! - sizes from the header are checked against the limits (one file, the whole archive,
//!   the free space of the staging filesystem) before the member is read;
//! - each name is made once: a second member with the same name is refused.
//!
//! Everything is written into a fresh staging directory (0700, root) that nobody else can
//! enter, with `O_CREAT|O_EXCL|O_NOFOLLOW` files and `mkdir` directories, owner-only modes.
//! The SHA-256 of the archive file is computed in the same pass (over every byte read,
//! trailing blocks included) and compared at the end: a mismatch discards the staging
//! dir, so a damaged archive is refused before anything outside staging changes, without
//! reading a 500 MB archive twice.

use crate::domain::backup::{self as bk, Algorithm, Manifest};
use crate::error::Failure;
use crate::sys::fs::read_full;
use crate::sys::writeback::Writeback;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Files from this size on are synced in the background as soon as they are written
/// (sys::writeback); smaller ones by the final syncfs.
pub const WRITEBACK_MIN: u64 = 1024 * 1024;
/// How deep a data member may be below `data/` (Actual writes `user-files/<file>`).
pub const MAX_DEPTH: usize = 4;
/// A `meta/` member or the manifest: small text, kept in memory.
pub const MAX_META_BYTES: u64 = 1024 * 1024;
/// The `meta/` files `backup create` writes.
pub const META_FILES: [&str; 4] = [
    "registry-entry.json",
    "unit-dropin.conf",
    "vhost.conf",
    "version.json",
];

/// What one archive may hold at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of all data members together.
    pub total_bytes: u64,
    /// Bytes of one member.
    pub file_bytes: u64,
    /// Members.
    pub entries: u64,
    /// Bytes that must stay free on the staging filesystem after extraction.
    pub reserve_bytes: u64,
}

impl Default for Limits {
    /// 8 GiB: a household's budgets are megabytes; anything near this is not a backup
    /// `backup create` made (a sparse or zero-filled bomb).
    fn default() -> Self {
        Limits {
            total_bytes: 8 << 30,
            file_bytes: 8 << 30,
            entries: 200_000,
            reserve_bytes: 64 << 20,
        }
    }
}

/// An archive extracted into staging.
/// The archive's bytes are not the ones the index recorded: the cause under the
/// environment failure of [`unpack`], typed, so a caller marks the backup corrupt on this
/// and only this (not on a refusal or a full disk).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its SHA-256 is {actual}, the index says {expected}")]
pub struct Corrupt {
    pub actual: String,
    pub expected: String,
}

#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    /// `meta/<name>` -> bytes.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The extracted data directory (inside staging).
    pub data_dir: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// SHA-256 of the archive file, computed while extracting.
    pub sha256: String,
}

/// A reader that hashes every byte it hands out.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Chunks the reading thread hands over, at most this many in flight (4 MiB of memory).
const CHUNKS_IN_FLIGHT: usize = 4;
const CHUNK: usize = 1 << 20;

/// The archive read (and hashed) on a thread of its own, handed over in chunks: the
/// SHA-256 is computed in the same single pass over the file, without costing the
/// decoding and writing thread any time (a restore is measured against `zstd -d | tar -x`,
/// which does not hash at all). [`ThreadedHash::finish`] gives the sum of the whole file.
struct ThreadedHash {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl ThreadedHash {
    fn start(mut file: File) -> ThreadedHash {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let worker = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                hasher.update(&buf);
                // The reader is gone (an error ended the extraction): stop reading.
                if tx.send(Ok(buf)).is_err() {
                    break;
                }
            }
            hasher
        });
        ThreadedHash {
            rx,
            chunk: Vec::new(),
            pos: 0,
            worker: Some(worker),
        }
    }

    /// Read the rest of the file (what a decoder left unread goes into the sum too) and
    /// return its SHA-256.
    fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("finished twice"))?;
        let hasher = worker
            .join()
            .map_err(|_| io::Error::other("the archive reading thread panicked"))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

impl Read for ThreadedHash {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended: the file is read to its end.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Refuse a crafted or damaged archive: exit 2 (the archive given is not one to restore).
fn refused(archive: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    Failure::validation(format!("refusing to restore {}: {why}", archive.display()))
        .hint("this is not an archive abssctl made, or it was changed; nothing was restored")
        .into()
}

/// Where a member goes.
enum Member {
    Manifest,
    Meta(String),
    /// Relative path below `data/` (empty: `data` itself).
    Data(PathBuf),
}

/// Check a member's raw name against the layout. The raw bytes, not `Path::components`,
/// which quietly drops `.` and doubled slashes: a name must be exactly the plain form
/// `backup create` writes (one trailing `/` is allowed on a directory).
fn classify(raw: &[u8]) -> std::result::Result<Member, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "a name that is not UTF-8".to_string())?;
    if name.starts_with('/') {
        return Err(format!("'{name}' is an absolute path"));
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let mut parts = Vec::new();
    for p in trimmed.split('/') {
        match p {
            "" => return Err(format!("'{name}' has an empty component")),
            "." => return Err(format!("'{name}' has a '.' component")),
            ".." => return Err(format!("'{name}' climbs out with '..'")),
            p if p.contains('\0') => return Err("a name with a NUL byte".into()),
            p => parts.push(p.to_string()),
        }
    }
    match parts.as_slice() {
        [m] if m == bk::MANIFEST_NAME => Ok(Member::Manifest),
        [d, f] if d == bk::META_PREFIX && META_FILES.contains(&f.as_str()) => {
            Ok(Member::Meta(f.clone()))
        }
        [d, rest @ ..] if d == bk::DATA_PREFIX && rest.len() <= MAX_DEPTH => {
            Ok(Member::Data(rest.iter().collect()))
        }
        [d, ..] if d == bk::DATA_PREFIX => Err(format!(
            "'{name}' is deeper than {MAX_DEPTH} levels below data/"
        )),
        _ => Err(format!("'{name}' is not part of a backup's layout")),
    }
}

fn decoder<'a>(alg: Algorithm, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(match alg {
        Algorithm::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        Algorithm::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
        Algorithm::None => Box::new(r),
    })
}

fn no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Bytes free for root's use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("reading the free space of {}", dir.display()))?;
    Ok(s.blocks_free() as u64 * s.fragment_size() as u64)
}

/// Extract `archive` (compressed with `alg`) into `staging` (an empty private directory),
/// checking every member (see the module doc) and the archive's SHA-256 against
/// `expected_sha256`.
pub fn unpack(
    archive: &Path,
    alg: Algorithm,
    expected_sha256: &str,
    staging: &Path,
    limits: &Limits,
) -> Result<Unpacked> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut hashing = ThreadedHash::start(file);
    let wb = Writeback::start().context("starting the writeback thread")?;
    let result = extract(archive, decoder(alg, &mut hashing)?, staging, limits, &wb);
    // The rest of the file (tar's trailing blocks, or what a decode error left unread)
    // goes into the checksum too: the sum is over the whole file, as in the index.
    let sha256 = hashing
        .finish()
        .with_context(|| format!("reading {}", archive.display()))?;
    if sha256 != expected_sha256 {
        let why = Corrupt {
            actual: sha256,
            expected: expected_sha256.to_string(),
        };
        return Err(anyhow::Error::new(why).context(
            Failure::environment(format!("{} is corrupt", archive.display()))
                .hint("nothing was restored; restore another backup (abssctl backup list)"),
        ));
    }
    let (manifest, meta, files, bytes) = result?;
    // Durable before anyone swaps it in: the large files' background syncs (started while
    // the rest was decoded), then ONE syncfs for every other file and directory written,
    // not an fsync per file in line (which waited for each file's writeback before
    // decoding the next). A late write error (delayed allocation, ENOSPC) surfaces here.
    let dir = File::open(staging).with_context(|| format!("opening {}", staging.display()))?;
    wb.finish()
        .and_then(|()| nix::unistd::syncfs(&dir).map_err(io::Error::from))
        .map_err(|e| {
            if no_space(&e) {
                anyhow::Error::from(
                    Failure::environment(format!(
                        "writing {}: no space left on the device",
                        staging.display()
                    ))
                    .hint("free space on that filesystem and run it again; nothing was restored"),
                )
            } else {
                anyhow::Error::new(e).context(format!("syncing {} to disk", staging.display()))
            }
        })?;
    Ok(Unpacked {
        manifest,
        meta,
        data_dir: staging.join(bk::DATA_PREFIX),
        files,
        bytes,
        sha256,
    })
}

/// The manifest of an archive and the archive's SHA-256 and size (`backup reconcile`,
/// adding an archive the index lost). Reads the whole file for the checksum, writes
/// nothing; the manifest must be the first member, as `backup create` writes it.
pub fn read_manifest(archive: &Path, alg: Algorithm) -> Result<(Manifest, String, u64)> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading {}", archive.display()))?
        .len();
    let mut hashing = HashingReader {
        inner: io::BufReader::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
    };
    let manifest = {
        let mut tar = tar::Archive::new(decoder(alg, &mut hashing)?);
        let mut members = tar
            .entries()
            .map_err(|err| refused(archive, format!("it is not a readable tar ({err})")))?;
        let mut first = members
            .next()
            .ok_or_else(|| refused(archive, "it is empty"))?
            .map_err(|err| refused(archive, format!("it is not a readable tar ({err})")))?;
        if first.path_bytes().as_ref() != bk::MANIFEST_NAME.as_bytes()
            || first.header().size().unwrap_or(u64::MAX) > MAX_META_BYTES
        {
            return Err(refused(
                archive,
                format!("its first member is not {}", bk::MANIFEST_NAME),
            ));
        }
        let mut buf = Vec::new();
        first.read_to_end(&mut buf)?;
        serde_json::from_slice::<Manifest>(&buf)
            .map_err(|err| refused(archive, format!("its manifest does not parse ({err})")))?
    };
    io::copy(&mut hashing, &mut io::sink())
        .with_context(|| format!("reading {}", archive.display()))?;
    Ok((manifest, hex::encode(hashing.hasher.finalize()), size))
}

type Extracted = (Manifest, BTreeMap<String, Vec<u8>>, u64, u64);

fn extract(
    archive: &Path,
    input: impl Read,
    staging: &Path,
    limits: &Limits,
    wb: &Writeback,
) -> Result<Extracted> {
    let mut tar = tar::Archive::new(input);
    let free = free_bytes(staging)?;
    let mut manifest = None;
    let mut meta = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    let data_root = staging.join(bk::DATA_PREFIX);
    let members = tar
        .entries()
        .map_err(|err| refused(archive, format!("it is not a readable tar ({err})")))?;
    for e in members {
        let mut e =
            e.map_err(|err| refused(archive, format!("it is not a readable tar ({err})")))?;
        entries += 1;
        if entries > limits.entries {
            return Err(refused(
                archive,
                format!("more than {} members", limits.entries),
            ));
        }
        let raw_name = e.path_bytes().into_owned();
        let name = PathBuf::from(String::from_utf8_lossy(&raw_name).into_owned());
        let kind = e.header().entry_type();
        let mode = e.header().mode().unwrap_or(0);
        if mode & 0o7000 != 0 {
            return Err(refused(
                archive,
                format!("'{}' has a setuid, setgid or sticky bit", name.display()),
            ));
        }
        let is_dir = kind.is_dir();
        if !(kind.is_file() || is_dir) {
            return Err(refused(
                archive,
                format!(
                    "'{}' is a {} (only files and directories are restored)",
                    name.display(),
                    kind_name(kind)
                ),
            ));
        }
        let member = classify(&raw_name).map_err(|why| refused(archive, why))?;
        if !seen.insert(name.clone()) {
            return Err(refused(
                archive,
                format!("'{}' is in it twice", name.display()),
            ));
        }
        let size = e.header().size().map_err(|err| {
            refused(
                archive,
                format!("'{}' has a bad size ({err})", name.display()),
            )
        })?;
        match member {
            Member::Data(rel) => {
                let dest = data_root.join(&rel);
                if is_dir {
                    make_dir(&data_root, &dest)?;
                    continue;
                }
                if rel.as_os_str().is_empty() {
                    return Err(refused(archive, "data/ is not a directory"));
                }
                if size > limits.file_bytes {
                    return Err(refused(
                        archive,
                        format!(
                            "'{}' claims {size} bytes (limit {})",
                            name.display(),
                            limits.file_bytes
                        ),
                    ));
                }
                if bytes + size > limits.total_bytes {
                    return Err(refused(
                        archive,
                        format!("its data is over the limit of {} bytes", limits.total_bytes),
                    ));
                }
                if bytes + size + limits.reserve_bytes > free {
                    return Err(Failure::environment(format!(
                        "restoring {} needs more than the {free} bytes free in {}",
                        archive.display(),
                        staging.display()
                    ))
                    .hint("free space on that filesystem and run it again; nothing was restored")
                    .into());
                }
                if let Some(parent) = dest.parent() {
                    make_dir(&data_root, parent)?;
                }
                let f = write_file(&mut e, &dest, size)?;
                // Large files are written back while the next members are decoded; the
                // small ones go with the one syncfs at the end (a sync each would cost a
                // journal commit each).
                if size >= WRITEBACK_MIN {
                    wb.push(f);
                }
                files += 1;
                bytes += size;
            }
            Member::Manifest | Member::Meta(_) if is_dir => {
                return Err(refused(
                    archive,
                    format!("'{}' is a directory", name.display()),
                ));
            }
            Member::Manifest | Member::Meta(_) if size > MAX_META_BYTES => {
                return Err(refused(
                    archive,
                    format!("'{}' is too large", name.display()),
                ));
            }
            Member::Manifest => {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf)?;
                let m: Manifest = serde_json::from_slice(&buf).map_err(|err| {
                    refused(archive, format!("its manifest does not parse ({err})"))
                })?;
                if m.format != bk::ARCHIVE_FORMAT {
                    return Err(refused(
                        archive,
                        format!("archive format {} is unknown", m.format),
                    ));
                }
                manifest = Some(m);
            }
            Member::Meta(n) => {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf)?;
                meta.insert(n, buf);
            }
        }
    }
    let manifest =
        manifest.ok_or_else(|| refused(archive, format!("it has no {}", bk::MANIFEST_NAME)))?;
    if !data_root.is_dir() {
        return Err(refused(archive, "it has no data/ directory"));
    }
    Ok((manifest, meta, files, bytes))
}

fn kind_name(k: tar::EntryType) -> &'static str {
    use tar::EntryType as T;
    match k {
        T::Symlink => "symlink",
        T::Link => "hard link",
        T::Char => "character device",
        T::Block => "block device",
        T::Fifo => "FIFO",
        T::GNUSparse => "sparse file",
        _ => "member of an unsupported type",
    }
}

/// mkdir -p below `root` (inside staging, where only this process writes: no name in it
/// can be a link), 0700.
fn make_dir(root: &Path, dir: &Path) -> Result<()> {
    if !dir.starts_with(root) {
        anyhow::bail!("internal: {} is outside {}", dir.display(), root.display());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Write exactly `size` bytes of `r` to a new file `dest` (0600), returned for its
/// writeback; `unpack` makes it durable.
fn write_file(r: &mut impl Read, dest: &Path, size: u64) -> Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .with_context(|| format!("creating {}", dest.display()))?;
    let map = |e: io::Error| -> anyhow::Error {
        if no_space(&e) {
            Failure::environment(format!(
                "writing {}: no space left on the device",
                dest.display()
            ))
            .hint("free space on that filesystem and run it again; nothing was restored")
            .into()
        } else {
            anyhow::Error::new(e).context(format!("writing {}", dest.display()))
        }
    };
    let n = io::copy(&mut r.take(size), &mut f).map_err(map)?;
    if n != size {
        anyhow::bail!(
            "the archive ended inside {} ({n} of {size} bytes)",
            dest.display()
        );
    }
    f.flush().map_err(map)?;
    // Made durable with the rest of the tree by one syncfs at the end (see `unpack`).
    Ok(f)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
