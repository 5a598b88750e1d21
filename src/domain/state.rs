//! Typed, versioned registry state (registry.yml; schema 1 was instances.yml + ports.yml)
//! and port allocation.
//!
//! Pure: the caller hands in file text and gets back text to write; reading and the atomic
//! write live in `sys::statefile` (`State::load` / `State::save`, the latter only callable
//! with the global lock guard in hand). Every file carries `schema_version`; every struct
//! denies unknown fields, because a misspelt key silently dropped on the next save is data
//! loss. A file that does not parse is reported with its path and line and is never
//! rewritten (the load fails before any write can happen).

use crate::domain::validate;
use crate::error::Failure;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The registry format this build reads and writes (registry.yml).
pub const SCHEMA_VERSION: u32 = 2;
/// The first format: instances.yml + ports.yml, read only to upconvert them.
pub const LEGACY_SCHEMA_VERSION: u32 = 1;

/// Which Actual version an instance runs: whatever `current` points to, or one exact release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionBinding {
    Current,
    Exact(semver::Version),
}

impl fmt::Display for VersionBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionBinding::Current => f.write_str("current"),
            VersionBinding::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for VersionBinding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionBinding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "current" {
            return Ok(VersionBinding::Current);
        }
        semver::Version::parse(&s)
            .map(VersionBinding::Exact)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "version_binding '{s}' is neither 'current' nor a version X.Y.Z"
                ))
            })
    }
}

/// Where an instance's certificate comes from (ADR-031 order when `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsSource {
    Auto,
    System,
    Letsencrypt,
    Custom,
}

/// One instance (the `instances` list of the registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    pub name: String,
    pub domain: String,
    pub port: u16,
    pub version_binding: VersionBinding,
    pub data_dir: PathBuf,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_changed: OffsetDateTime,
    #[serde(default)]
    pub notes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_source: Option<TlsSource>,
    /// Certificate and key paths when `tls_source` is `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// A dedicated HTTPS port (also reserved in `ports`) instead of the shared 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
    /// Its backup timer's policy (`backup schedule`); absent: no scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::domain::schedule::Schedule>,
}

/// One port reservation (the `ports` list of the registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortReservation {
    pub port: u16,
    pub instance: String,
    #[serde(with = "time::serde::rfc3339")]
    pub reserved_at: OffsetDateTime,
}

/// registry.yml (schema 2): the whole registry in one file, so one rename changes the
/// instances and their port reservations together (see docs/state.md, "One file").
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    schema_version: u32,
    #[serde(default)]
    instances: Vec<InstanceEntry>,
    #[serde(default)]
    ports: Vec<PortReservation>,
}

/// instances.yml of schema 1 (read only, to upconvert; bootupd's `model_legacy` idea:
/// the old shape keeps its own type instead of optional fields in the new one).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyInstancesFile {
    schema_version: u32,
    #[serde(default)]
    instances: Vec<InstanceEntry>,
}

/// ports.yml of schema 1 (read only, to upconvert).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyPortsFile {
    schema_version: u32,
    #[serde(default)]
    ports: Vec<PortReservation>,
}

/// Only the version, read leniently first so that a file from another schema is reported
/// as such instead of as a pile of unknown fields.
#[derive(Debug, Deserialize)]
struct Header {
    schema_version: Option<u32>,
}

/// The whole registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub instances: Vec<InstanceEntry>,
    pub ports: Vec<PortReservation>,
}

/// Is a TCP port in use on this machine, and by whom (real probe: `sys::net`).
pub trait PortProbe {
    fn in_use(&self, port: u16) -> bool;
    /// A description of the process listening on `port` ("pid 42 (node)"), best effort.
    fn holder(&self, port: u16) -> Option<String>;
}

const BROKEN_HINT: &str = "fix the file by hand (or restore it from a backup); abssctl never rewrites a registry file it cannot read";

/// A validation failure pointing at a file and (when known) a line.
fn file_error(path: &Path, line: Option<u64>, msg: impl fmt::Display) -> Failure {
    file_error_at(path, line, None, msg)
}

fn file_error_at(
    path: &Path,
    line: Option<u64>,
    column: Option<u64>,
    msg: impl fmt::Display,
) -> Failure {
    let at = match (line, column) {
        (Some(l), Some(c)) => format!("{} line {l} column {c}", path.display()),
        (Some(l), None) => format!("{} line {l}", path.display()),
        _ => path.display().to_string(),
    };
    Failure::validation(format!("invalid registry file {at}: {msg}")).hint(BROKEN_HINT)
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Failure {
    let loc = e.location().filter(|l| l.line() > 0);
    // serde-saphyr's text carries the position as a prefix or a suffix ("... at line L,
    // column C"); the position is ours to place, so keep only the reason.
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("unreadable YAML");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let reason = match first.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest,
        _ => first,
    };
    let reason = match reason.rfind(" at line ") {
        Some(i) => &reason[..i],
        None => reason,
    };
    let line = loc.map(|l| l.line());
    let column = loc.map(|l| l.column()).filter(|c| *c > 0);
    file_error_at(path, line, column, reason)
}

/// 1-based line of the `nth` (0-based) line containing `needle` inside the top-level
/// `section` (`instances:` / `ports:`), to point at a semantic error that serde cannot
/// locate (a duplicate, an out-of-range value). Scoped because both sections of
/// registry.yml have `port: N` lines.
fn line_of(text: &str, section: &str, needle: &str, nth: usize) -> Option<u64> {
    let key = format!("{section}:");
    let mut inside = false;
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            // A top-level key starts in column 0 with a letter; list items ("- ") and
            // comments do not end a section.
            if l.starts_with(|c: char| c.is_ascii_alphabetic()) {
                inside = l.starts_with(&key);
            }
            inside
        })
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i as u64 + 1)
}

/// A registry file's top level: it knows its own schema version.
trait Versioned: serde::de::DeserializeOwned {
    fn schema_version(&self) -> u32;
}

impl Versioned for RegistryFile {
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl Versioned for LegacyInstancesFile {
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl Versioned for LegacyPortsFile {
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

/// Parse strictly as schema `expected`; only when that fails or finds another version is
/// the header read again to say why (one YAML parse on the common path: `ports list` is
/// meant to be instant). `newest`: `expected` is this build's format, so a higher version
/// was written by a newer abssctl (for a legacy file it is simply not a format).
fn parse_versioned<T: Versioned>(
    path: &Path,
    text: &str,
    expected: u32,
    newest: bool,
) -> Result<T, Failure> {
    if text.trim().is_empty() {
        return Err(file_error(
            path,
            None,
            format!("the file is empty (expected schema_version: {expected})"),
        ));
    }
    let strict = serde_saphyr::from_str::<T>(text);
    if let Ok(file) = &strict
        && file.schema_version() == expected
    {
        return strict.map_err(|e| yaml_error(path, &e));
    }
    let header: Header = serde_saphyr::from_str(text).map_err(|e| yaml_error(path, &e))?;
    match header.schema_version {
        None => Err(file_error(
            path,
            None,
            format!("schema_version is missing (expected schema_version: {expected})"),
        )),
        Some(v) if v == expected => strict.map_err(|e| yaml_error(path, &e)),
        Some(v) if v > expected && newest => Err(Failure::validation(format!(
            "registry file {} was written by a newer abssctl (schema_version {v}; this one reads {expected})",
            path.display()
        ))
        .hint("upgrade abssctl to the version that wrote this file")),
        Some(v) => Err(file_error(
            path,
            line_of(text, "schema_version", "schema_version", 0),
            format!("schema_version {v} is not a format abssctl has ever written for this file"),
        )),
    }
}

fn check_port(path: &Path, text: &str, section: &str, port: u16) -> Result<(), Failure> {
    validate::port(i64::from(port)).map(|_| ()).map_err(|f| {
        file_error(
            path,
            line_of(text, section, &port.to_string(), 0),
            f.message,
        )
    })
}

fn check_name(path: &Path, text: &str, section: &str, name: &str) -> Result<(), Failure> {
    validate::instance_name(name)
        .map(|_| ())
        .map_err(|f| file_error(path, line_of(text, section, name, 0), f.message))
}

fn check_instances(path: &Path, text: &str, list: &[InstanceEntry]) -> Result<(), Failure> {
    let mut names = BTreeSet::new();
    for i in list {
        check_name(path, text, "instances", &i.name)?;
        check_port(path, text, "instances", i.port)?;
        if let Some(p) = i.https_port {
            check_port(path, text, "instances", p)?;
        }
        if !names.insert(i.name.as_str()) {
            let needle = format!("name: {}", i.name);
            return Err(file_error(
                path,
                line_of(text, "instances", &needle, 1),
                format!("instance '{}' is listed twice", i.name),
            ));
        }
    }
    Ok(())
}

fn check_ports(path: &Path, text: &str, list: &[PortReservation]) -> Result<(), Failure> {
    let mut seen = BTreeSet::new();
    for r in list {
        check_name(path, text, "ports", &r.instance)?;
        check_port(path, text, "ports", r.port)?;
        if !seen.insert(r.port) {
            return Err(file_error(
                path,
                line_of(text, "ports", &format!("port: {}", r.port), 1),
                format!("port {} is reserved twice", r.port),
            ));
        }
    }
    Ok(())
}

/// Parse registry.yml (schema 2).
pub fn parse_registry(path: &Path, text: &str) -> Result<State, Failure> {
    let file: RegistryFile = parse_versioned(path, text, SCHEMA_VERSION, true)?;
    check_instances(path, text, &file.instances)?;
    check_ports(path, text, &file.ports)?;
    Ok(State {
        instances: file.instances,
        ports: file.ports,
    })
}

/// Parse a schema-1 instances.yml (`None`: the file does not exist = no instances).
pub fn parse_instances(path: &Path, text: Option<&str>) -> Result<Vec<InstanceEntry>, Failure> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let file: LegacyInstancesFile = parse_versioned(path, text, LEGACY_SCHEMA_VERSION, false)?;
    check_instances(path, text, &file.instances)?;
    Ok(file.instances)
}

/// Parse a schema-1 ports.yml (`None`: the file does not exist = no reservations).
pub fn parse_ports(path: &Path, text: Option<&str>) -> Result<Vec<PortReservation>, Failure> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let file: LegacyPortsFile = parse_versioned(path, text, LEGACY_SCHEMA_VERSION, false)?;
    check_ports(path, text, &file.ports)?;
    Ok(file.ports)
}

/// The explicit upconvert 1 -> 2: the two schema-1 files (each `(path, text)`, text `None`
/// when absent) become one registry. Either broken is an error naming it; nothing is
/// written here (the caller writes registry.yml, then removes the legacy pair).
pub fn upconvert_v1(
    instances: (&Path, Option<&str>),
    ports: (&Path, Option<&str>),
) -> Result<State, Failure> {
    Ok(State {
        instances: parse_instances(instances.0, instances.1)?,
        ports: parse_ports(ports.0, ports.1)?,
    })
}

fn to_yaml<T: Serialize>(value: &T, what: &str) -> anyhow::Result<String> {
    serde_saphyr::to_string(value)
        .map_err(|e| anyhow::anyhow!("internal: cannot serialize {what}: {e}"))
}

/// What `reserve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// A new reservation was added.
    New(PortReservation),
    /// The instance already held this port; nothing changed.
    Existing(PortReservation),
}

impl State {
    /// Text of registry.yml for this state.
    pub fn render(&self) -> anyhow::Result<String> {
        to_yaml(
            &RegistryFile {
                schema_version: SCHEMA_VERSION,
                instances: self.instances.clone(),
                ports: self.ports.clone(),
            },
            "registry.yml",
        )
    }

    /// Ports reserved for `instance`, in file order.
    pub fn ports_of(&self, instance: &str) -> Vec<&PortReservation> {
        self.ports
            .iter()
            .filter(|r| r.instance == instance)
            .collect()
    }

    /// Every port the registry claims: reservations plus the ports instances record
    /// (defensive: a hand-edited `instances` list must not lead to a double allocation).
    fn claimed(&self) -> BTreeSet<u16> {
        let mut set: BTreeSet<u16> = self.ports.iter().map(|r| r.port).collect();
        for i in &self.instances {
            set.insert(i.port);
            set.extend(i.https_port);
        }
        set
    }

    /// Reserve a port for `instance`: the given one, or the first free port from `base`
    /// upwards. Without `port`, an instance that already holds a port keeps it (idempotent).
    pub fn reserve(
        &mut self,
        instance: &str,
        port: Option<u16>,
        base: u16,
        probe: &dyn PortProbe,
        now: OffsetDateTime,
    ) -> Result<Reserved, Failure> {
        let owned = self.ports_of(instance);
        let existing = match port {
            None => owned.first().copied(),
            Some(p) => owned.into_iter().find(|r| r.port == p),
        };
        if let Some(r) = existing {
            return Ok(Reserved::Existing(r.clone()));
        }
        let port = match port {
            Some(p) => {
                validate::port(i64::from(p))?;
                if let Some(other) = self.ports.iter().find(|r| r.port == p) {
                    return Err(Failure::validation(format!(
                        "port {p} is already reserved for instance '{}'",
                        other.instance
                    ))
                    .hint("pick another port, or omit --port to take the next free one"));
                }
                if probe.in_use(p) {
                    let by = probe
                        .holder(p)
                        .map(|h| format!(" by {h}"))
                        .unwrap_or_default();
                    return Err(Failure::environment(format!("port {p} is in use{by}"))
                        .hint("stop that process, or omit --port to take the next free port"));
                }
                p
            }
            None => next_free_port(&self.claimed(), base, probe)?,
        };
        let r = PortReservation {
            port,
            instance: instance.to_string(),
            reserved_at: now,
        };
        self.ports.push(r.clone());
        Ok(Reserved::New(r))
    }

    /// Drop every reservation of `instance`; refused while the registry still lists the instance
    /// (its service would keep listening on a port the allocator hands out again).
    pub fn release(&mut self, instance: &str) -> Result<Vec<PortReservation>, Failure> {
        if self.instances.iter().any(|i| i.name == instance) {
            return Err(Failure::validation(format!(
                "instance '{instance}' exists and uses its port"
            ))
            .hint(format!(
                "delete the instance instead: abssctl instance delete {instance}"
            )));
        }
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.ports.drain(..).partition(|r| r.instance == instance);
        self.ports = kept;
        if gone.is_empty() {
            return Err(
                Failure::validation(format!("no port is reserved for '{instance}'"))
                    .hint("see the reservations with: abssctl ports list"),
            );
        }
        Ok(gone)
    }
}

/// First port >= `base` (and >= the lowest allowed port) that is neither claimed in the
/// registry nor in use by any process. Sequential on purpose (ADR-015): ports stay
/// predictable and easy to read in firewall rules.
pub fn next_free_port(
    claimed: &BTreeSet<u16>,
    base: u16,
    probe: &dyn PortProbe,
) -> Result<u16, Failure> {
    let start = base.max(validate::PORT_MIN);
    (start..=validate::PORT_MAX)
        .find(|p| !claimed.contains(p) && !probe.in_use(*p))
        .ok_or_else(|| {
            Failure::environment(format!(
                "no free port left between {start} and {}",
                validate::PORT_MAX
            ))
            .hint("release unused reservations (abssctl ports list / ports release) or lower ports.base")
        })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
