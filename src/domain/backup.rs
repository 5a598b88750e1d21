//! Backups: the index (`backups.json`), backup ids, the archive layout and the choice of
//! compression. Pure: `sys::archive` writes archives, `ops::backup` reads and writes the
//! index file with the global lock held.
//!
//! The index is JSON with `schema_version`; every entry carries the fields of the spec
//! ("Backups"). Unknown fields are refused, like in the registry: a field silently dropped
//! by the next rewrite is data loss. Encryption is deferred: a later schema adds its field.

use crate::error::Failure;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The index format this build reads and writes.
pub const INDEX_SCHEMA_VERSION: u32 = 1;
/// Version of the archive layout (in the archive's own manifest).
pub const ARCHIVE_FORMAT: u32 = 1;
/// The archive's manifest, its first member.
pub const MANIFEST_NAME: &str = "abssctl-backup.json";
/// Members under this prefix are the instance's data directory.
pub const DATA_PREFIX: &str = "data";
/// Members under this prefix are abssctl's own metadata about the instance.
pub const META_PREFIX: &str = "meta";
/// Mode of archives, their `.sha256` and the index.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the backup directories.
pub const DIR_MODE: u32 = 0o700;
/// What a backup contains today (`includes` of an entry, in this order).
pub const INCLUDE_DATA: &str = "data";
pub const INCLUDE_REGISTRY: &str = "registry_entry";
pub const INCLUDE_DROPIN: &str = "unit_dropin";
pub const INCLUDE_VHOST: &str = "vhost";
pub const INCLUDE_VERSION: &str = "version";
/// The only backup type so far (a full copy of one instance).
pub const TYPE_FULL: &str = "full";
/// `--reason` when none is given.
pub const REASON_MANUAL: &str = "manual";

/// Where an index entry's archive stands, as last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Present,
    Missing,
    Corrupt,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Missing => "missing",
            Status::Corrupt => "corrupt",
        }
    }
}

/// Compression of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Zstd,
    Gzip,
    None,
}

impl Algorithm {
    /// File name extension of an archive.
    pub fn extension(self) -> &'static str {
        match self {
            Algorithm::Zstd => "tar.zst",
            Algorithm::Gzip => "tar.gz",
            Algorithm::None => "tar",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
            Algorithm::None => "none",
        }
    }
}

/// Resolve `--compression` / `backups.compression.algorithm` and the level. `auto` is zstd:
/// the encoder is built into abssctl, so it is always available here (the `zstd` package
/// the .deb recommends is only needed to open an archive by hand). The level is checked
/// against the algorithm (zstd 1-19, gzip 1-9, none takes no level).
pub fn resolve_compression(name: &str, level: i32) -> Result<(Algorithm, i32), Failure> {
    let alg = match name {
        "auto" | "zstd" => Algorithm::Zstd,
        "gzip" => Algorithm::Gzip,
        "none" => Algorithm::None,
        other => {
            return Err(
                Failure::validation(format!("unknown compression '{other}'"))
                    .hint("use one of: auto, zstd, gzip, none"),
            );
        }
    };
    let max = match alg {
        Algorithm::Zstd => 19,
        Algorithm::Gzip => 9,
        Algorithm::None => return Ok((alg, 0)),
    };
    if !(1..=max).contains(&level) {
        return Err(Failure::validation(format!(
            "compression level {level} is out of range for {}",
            alg.as_str()
        ))
        .hint(format!("use a level from 1 to {max} with {}", alg.as_str())));
    }
    Ok((alg, level))
}

/// One backup in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub instance: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub archive_path: PathBuf,
    pub size_bytes: u64,
    pub checksum_sha256: String,
    pub algorithm: Algorithm,
    /// The Actual version the instance ran (resolved), if it could be read.
    pub instance_version: Option<String>,
    /// The binding in the registry (`current` or X.Y.Z).
    #[serde(default)]
    pub version_binding: String,
    pub domain: String,
    pub port: u16,
    pub includes: Vec<String>,
    pub status: Status,
    /// When `status` was last established by a verify (absent: only at creation).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub verified_at: Option<OffsetDateTime>,
}

/// The whole index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub backups: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    schema_version: u32,
    #[serde(default)]
    backups: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Header {
    schema_version: Option<u32>,
}

const BROKEN_HINT: &str = "fix the file by hand (abssctl never rewrites an index it cannot read)";

fn broken(path: &Path, e: &serde_json::Error) -> Failure {
    Failure::validation(format!(
        "invalid backup index {} at line {} column {}: {e}",
        path.display(),
        e.line(),
        e.column()
    ))
    .hint(BROKEN_HINT)
}

/// Parse the index text read from `path` (errors name the file, line and column).
pub fn parse_index(path: &Path, text: &str) -> Result<Index, Failure> {
    let header: Header = serde_json::from_str(text).map_err(|e| broken(path, &e))?;
    match header.schema_version {
        Some(INDEX_SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(Failure::validation(format!(
                "backup index {} has schema_version {v}; this abssctl reads {INDEX_SCHEMA_VERSION}",
                path.display()
            ))
            .hint("use the abssctl release that wrote it"));
        }
        None => {
            return Err(Failure::validation(format!(
                "backup index {} has no schema_version",
                path.display()
            ))
            .hint(BROKEN_HINT));
        }
    }
    let file: IndexFile = serde_json::from_str(text).map_err(|e| broken(path, &e))?;
    let mut seen = std::collections::BTreeSet::new();
    for b in &file.backups {
        if !seen.insert(b.id.as_str()) {
            return Err(Failure::validation(format!(
                "backup index {}: id {} appears twice",
                path.display(),
                b.id
            ))
            .hint(BROKEN_HINT));
        }
    }
    Ok(Index {
        backups: file.backups,
    })
}

impl Index {
    /// The index as the text to write.
    pub fn render(&self) -> String {
        let file = IndexFile {
            schema_version: INDEX_SCHEMA_VERSION,
            backups: self.backups.clone(),
        };
        // Serializing plain data with string keys cannot fail.
        let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.backups.iter().find(|b| b.id == id)
    }

    /// The entry with this id, or exit 2 pointing at `backup list`.
    pub fn find(&self, id: &str) -> Result<&Entry, Failure> {
        self.get(id).ok_or_else(|| {
            Failure::validation(format!("no backup with id '{id}'"))
                .hint("see the backups with: abssctl backup list")
        })
    }

    /// Entries of one instance (all with `None`), oldest first.
    pub fn of(&self, instance: Option<&str>) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self
            .backups
            .iter()
            .filter(|b| instance.is_none_or(|i| b.instance == i))
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    /// Add a new entry (ids are unique: a clash is an internal error of the caller).
    pub fn add(&mut self, entry: Entry) -> Result<(), Failure> {
        if self.get(&entry.id).is_some() {
            return Err(Failure::validation(format!(
                "a backup with id {} is already in the index",
                entry.id
            )));
        }
        self.backups.push(entry);
        Ok(())
    }

    /// Take the entry `id` out of the index.
    pub fn remove(&mut self, id: &str) -> Option<Entry> {
        let i = self.backups.iter().position(|b| b.id == id)?;
        Some(self.backups.remove(i))
    }

    /// Set the status of `id` (returns whether it changed).
    pub fn set_status(&mut self, id: &str, status: Status, at: OffsetDateTime) -> bool {
        match self.backups.iter_mut().find(|b| b.id == id) {
            Some(b) => {
                let changed = b.status != status;
                b.status = status;
                b.verified_at = Some(at);
                changed
            }
            None => false,
        }
    }
}

/// A backup id: `YYYYMMDD-HHMMSS-<instance>-<shortid>` (UTC), `shortid` 6 lowercase hex
/// digits (from the op id: unique even for two backups in one second).
pub fn new_id(at: OffsetDateTime, instance: &str, short: &str) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{instance}-{short}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The short id of a backup from a uuid (its last 6 hex digits: the random part of a v7).
pub fn short_id(uuid: &uuid::Uuid) -> String {
    let s = uuid.simple().to_string();
    s[s.len() - 6..].to_string()
}

/// File name of the archive of `id`.
pub fn archive_name(id: &str, alg: Algorithm) -> String {
    format!("{id}.{}", alg.extension())
}

/// The `.sha256` beside an archive.
pub fn checksum_path(archive: &Path) -> PathBuf {
    let mut s = archive.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// One line in `sha256sum` format for the archive's file name (so `sha256sum -c` works
/// from the archive's directory).
pub fn sha256sum_line(hex: &str, archive: &Path) -> String {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{hex}  {name}\n")
}

/// How one file of the data directory goes into the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// A SQLite database: snapshot through the online backup API.
    Sqlite,
    /// A transient SQLite side file (rollback journal, WAL index): left out, the snapshot
    /// of its database already has what it protects.
    Skip,
    /// Anything else (`.migrate`, blobs): copied, and verified unchanged across the copy.
    Copy,
}

/// Classify a data-directory file by its name.
pub fn data_kind(file_name: &str) -> DataKind {
    if file_name.ends_with(".sqlite") {
        DataKind::Sqlite
    } else if ["-journal", "-wal", "-shm"]
        .iter()
        .any(|s| file_name.ends_with(&format!(".sqlite{s}")))
    {
        DataKind::Skip
    } else {
        DataKind::Copy
    }
}

/// The archive's own manifest (`abssctl-backup.json`): enough to restore without the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub instance: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub version_binding: String,
    pub instance_version: Option<String>,
    pub domain: String,
    pub port: u16,
    pub includes: Vec<String>,
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
