//! `abssctl support-bundle`: one archive an operator can send for help (docs/support-bundle.md).
//!
//! It gathers what a helper asks for first (the config, the registry, the last doctor
//! report, the installed versions, what abssctl rendered for systemd and nginx, the
//! operations log with its rotated files, the recent journal, package and OS versions) and
//! redacts every text through `domain::redact` unless `--no-redact`. TLS private keys are
//! never gathered in a redacted bundle, not even redacted. Nothing is followed through a
//! symlink (`sys::bundle::read_file`); what is left out is listed in the MANIFEST with why.

use crate::domain::layout::{Layout, rooted};
use crate::domain::redact::{self, Format, Redactor, Tally};
use crate::domain::state::{self, InstanceEntry};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::sys::bundle::{self as sb, Got};
use crate::sys::journal;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Largest share of one file in the bundle (a log keeps its newest part).
const FILE_CAP: u64 = 16 * 1024 * 1024;
/// Journal lines per unit, and how far back.
const JOURNAL_LINES: usize = 2000;
const JOURNAL_SINCE: &str = "7 days ago";
/// Where the bundle goes without `--out`: root's home, where an operator logged in as
/// root (TurnKey's default) finds it with `ls` and copies it off with scp.
const DEFAULT_DIR: &str = "/root";

/// What the command was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub out: Option<PathBuf>,
    pub no_redact: bool,
}

/// One member of the bundle (the `--json` `files` list and the MANIFEST).
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Path inside the bundle, below its top directory.
    pub name: String,
    /// Where it came from (a file, or the command that produced it).
    pub source: String,
    /// Bytes in the bundle (after redaction).
    pub size: u64,
    /// What was removed: kind -> count.
    pub redactions: Tally,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip)]
    text: String,
}

/// Something looked for and not included, with why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub source: String,
    pub reason: String,
}

/// The `--json` contract (docs/support-bundle.md).
#[derive(Debug, Clone, Serialize)]
pub struct BundleResult {
    pub path: PathBuf,
    pub dry_run: bool,
    /// Bytes and SHA-256 of the written file (`None` in a dry run).
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub redacted: bool,
    pub files: Vec<Member>,
    pub left_out: Vec<LeftOut>,
    /// Values removed in all files.
    pub redactions: usize,
}

/// The members being gathered, redacted as they come in.
struct Gather {
    redactor: Option<Redactor>,
    members: Vec<Member>,
    left_out: Vec<LeftOut>,
}

impl Gather {
    fn text(&mut self, name: &str, source: &str, text: &str, f: Format, note: Option<String>) {
        let (text, redactions) = match &mut self.redactor {
            Some(r) => r.redact(text, f),
            None => (text.to_string(), Tally::new()),
        };
        self.members.push(Member {
            name: name.to_string(),
            source: source.to_string(),
            size: text.len() as u64,
            redactions,
            note,
            text,
        });
    }

    fn leave_out(&mut self, source: &Path, reason: impl Into<String>) {
        self.left_out.push(LeftOut {
            source: source.display().to_string(),
            reason: reason.into(),
        });
    }

    /// A file, when it is there (`optional`: its absence is not worth a line).
    fn file(&mut self, name: &str, path: &Path, f: Format, optional: bool) -> Option<String> {
        match sb::read_file(path, FILE_CAP) {
            Got::Text { text, truncated } => {
                let note = truncated.then(|| format!("only its last {FILE_CAP} bytes"));
                self.text(name, &path.display().to_string(), &text, f, note);
                Some(text)
            }
            Got::Absent if optional => None,
            Got::Absent => {
                self.leave_out(path, "absent");
                None
            }
            Got::Symlink(t) => {
                self.leave_out(path, format!("a symlink to {}, not followed", t.display()));
                None
            }
            Got::NotRegular => {
                self.leave_out(path, "not a regular file");
                None
            }
            Got::Unreadable(e) => {
                self.leave_out(path, format!("unreadable: {e}"));
                None
            }
        }
    }
}

/// `support-bundle`: gather, redact, write (or, with `--dry-run`, only list).
pub fn run(ctx: &mut Ctx, o: &Options) -> Result<BundleResult> {
    ctx.require_root()?;
    let now = time::OffsetDateTime::now_utc();
    let dest = destination(&ctx.layout, o.out.as_deref(), now)?;
    if o.no_redact && !ctx.globals.dry_run {
        crate::ops::instance::lifecycle::confirm(
            ctx,
            "The bundle will NOT be redacted: it will hold passwords, tokens, environment \
             values and the TLS private keys of the instances. Write it?",
            "an unredacted support bundle",
        )?;
    }
    let top = top_dir(&dest);
    let mut g = Gather {
        redactor: (!o.no_redact).then(Redactor::new),
        members: Vec::new(),
        left_out: Vec::new(),
    };
    gather(ctx, &mut g, o.no_redact, now);
    let mut files = g.members;
    let manifest = manifest(&files, &g.left_out, !o.no_redact, now);
    files.insert(0, manifest);
    let redactions = files.iter().map(|m| redact::total(&m.redactions)).sum();
    let mut result = BundleResult {
        path: dest.clone(),
        dry_run: ctx.globals.dry_run,
        size: None,
        sha256: None,
        redacted: !o.no_redact,
        files,
        left_out: g.left_out,
        redactions,
    };
    if ctx.globals.dry_run {
        return Ok(result);
    }
    let json = serde_json::to_string_pretty(&result)?;
    let written = write(&dest, &top, &result.files, &json, now)?;
    result.size = Some(written.size);
    result.sha256 = Some(written.sha256);
    Ok(result)
}

/// The bundle's path: `--out` (a new file in an existing directory), else
/// `/root/abssctl-support-<host>-<UTC>.tar.gz`. Checked before anything is gathered.
fn destination(l: &Layout, out: Option<&Path>, now: time::OffsetDateTime) -> Result<PathBuf> {
    let dest = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = rooted(&l.root, Path::new(DEFAULT_DIR));
            if !sb::is_dir(&dir) {
                return Err(Failure::environment(format!(
                    "{} does not exist, so the bundle has no default place",
                    dir.display()
                ))
                .hint("say where with --out PATH")
                .into());
            }
            dir.join(default_name(&sb::hostname(), now))
        }
    };
    if sb::exists(&dest) {
        return Err(Failure::validation(format!(
            "{} already exists; nothing was written",
            dest.display()
        ))
        .hint("give --out a new file name (abssctl never replaces a file with a bundle)")
        .into());
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !sb::is_dir(parent) {
        return Err(Failure::validation(format!(
            "the directory {} does not exist; nothing was written",
            parent.display()
        ))
        .hint("create it first, or give --out a path in an existing directory")
        .into());
    }
    Ok(dest)
}

/// `abssctl-support-<host>-<YYYYMMDDTHHMMSSZ>.tar.gz`, the host name made file-safe.
pub fn default_name(host: &str, now: time::OffsetDateTime) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    format!("abssctl-support-{host}-{}.tar.gz", stamp(now))
}

fn stamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The directory every member is under (the file name without its archive suffix), so
/// unpacking the bundle never spills into the current directory.
fn top_dir(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "abssctl-support".into());
    for suffix in [".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar"] {
        if let Some(s) = name.strip_suffix(suffix) {
            return s.to_string();
        }
    }
    name
}

fn gather(ctx: &Ctx, g: &mut Gather, no_redact: bool, now: time::OffsetDateTime) {
    let l = ctx.layout.clone();
    // Config: the file as written, and what abssctl resolved from it (env overrides too).
    g.file("config/config.yml", &l.config_file, Format::Yaml, false);
    match serde_json::to_string_pretty(&crate::ops::config_show::show(ctx)) {
        Ok(j) => g.text(
            "config/resolved.json",
            "abssctl config show",
            &j,
            Format::Json,
            None,
        ),
        Err(e) => g.leave_out(Path::new("abssctl config show"), e.to_string()),
    }
    // State: the registry (and a schema-1 pair not yet upconverted), the last doctor report
    // and update check.
    let mut instances: BTreeSet<String> = BTreeSet::new();
    if let Some(t) = g.file("state/registry.yml", &l.registry_file, Format::Yaml, false) {
        // A registry that does not parse is still included as it is (that may be the
        // problem); the instances are then known from their drop-in directories.
        if let Ok(s) = state::parse_registry(&l.registry_file, &t) {
            instances.extend(s.instances.iter().map(|i| i.name.clone()));
        }
    }
    for legacy in [&l.legacy_instances_file, &l.legacy_ports_file] {
        let name = format!("state/{}", file_name(legacy));
        if let Some(t) = g.file(&name, legacy, Format::Yaml, true) {
            let parsed: Vec<InstanceEntry> =
                state::parse_instances(legacy, Some(&t)).unwrap_or_default();
            instances.extend(parsed.into_iter().map(|i| i.name));
        }
    }
    // The doctor's last report: `Layout::doctor_report()` once the doctor lands (same path).
    g.file(
        "state/doctor.json",
        &l.state_dir.join("doctor.json"),
        Format::Json,
        false,
    );
    g.file("state/updates.json", &l.updates_file, Format::Json, true);
    versions(g, &l);
    units(g, &l, &mut instances);
    let keys = vhosts(g, &l);
    if no_redact {
        for (vhost, key) in keys {
            let name = format!("tls/{vhost}/{}", file_name(&key));
            g.file(&name, &key, Format::Text, false);
        }
    }
    logs(g, &l);
    journals(g, &instances);
    about(g, &l, now);
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The manifest of every installed version, and where `current` points.
fn versions(g: &mut Gather, l: &Layout) {
    let Ok(Some(entries)) = sb::list(&l.install_root) else {
        return;
    };
    for (name, is_dir) in entries {
        let versioned = name
            .strip_prefix('v')
            .is_some_and(|v| semver::Version::parse(v).is_ok());
        if is_dir && versioned {
            let path = l
                .install_root
                .join(&name)
                .join(crate::domain::versions::MANIFEST_FILE);
            g.file(
                &format!("versions/{name}/manifest.json"),
                &path,
                Format::Json,
                false,
            );
        }
    }
}

/// The drop-ins abssctl renders (instances and their backup timers), operator drop-ins
/// beside them, and a local override of the template unit.
fn units(g: &mut Gather, l: &Layout, instances: &mut BTreeSet<String>) {
    let Ok(Some(entries)) = sb::list(&l.systemd_unit_dir) else {
        return;
    };
    let prefix = format!("{}@", crate::domain::layout::UNIT_PREFIX);
    for (name, is_dir) in entries {
        let ours = name.starts_with(&prefix) || name.starts_with("abssctl-");
        if !ours {
            continue;
        }
        let path = l.systemd_unit_dir.join(&name);
        if !is_dir {
            g.file(&format!("systemd/{name}"), &path, Format::Systemd, false);
            continue;
        }
        if let Some(i) = name
            .strip_prefix(&prefix)
            .and_then(|n| n.strip_suffix(".service.d"))
        {
            instances.insert(i.to_string());
        }
        if let Ok(Some(files)) = sb::list(&path) {
            for (f, sub_dir) in files {
                if sub_dir {
                    g.leave_out(&path.join(&f), "a directory inside a drop-in directory");
                } else {
                    g.file(
                        &format!("systemd/{name}/{f}"),
                        &path.join(&f),
                        Format::Systemd,
                        false,
                    );
                }
            }
        }
    }
}

/// abssctl's vhosts (sites-available) and how sites-enabled links them; returns the TLS
/// key each vhost names (gathered only into an unredacted bundle).
fn vhosts(g: &mut Gather, l: &Layout) -> Vec<(String, PathBuf)> {
    let mut keys = Vec::new();
    let ours = |n: &str| n.starts_with("abssctl-") && n.ends_with(".conf");
    if let Ok(Some(entries)) = sb::list(&l.nginx_sites_available) {
        for (name, _) in entries.into_iter().filter(|(n, _)| ours(n)) {
            let path = l.nginx_sites_available.join(&name);
            let member = format!("nginx/sites-available/{name}");
            if let Some(text) = g.file(&member, &path, Format::Nginx, false) {
                let stem = name.trim_end_matches(".conf").to_string();
                keys.extend(key_paths(&text).into_iter().map(|k| (stem.clone(), k)));
            }
        }
    }
    if let Ok(Some(entries)) = sb::list(&l.nginx_sites_enabled) {
        let mut lines = Vec::new();
        for (name, _) in entries.into_iter().filter(|(n, _)| ours(n)) {
            let path = l.nginx_sites_enabled.join(&name);
            match sb::link_target(&path) {
                Some(t) => lines.push(format!("{name} -> {}", t.display())),
                None => lines.push(format!("{name} (not a symlink)")),
            }
        }
        let listing = format!("{}\n", lines.join("\n"));
        let src = l.nginx_sites_enabled.display().to_string();
        g.text(
            "nginx/sites-enabled.txt",
            &src,
            &listing,
            Format::Text,
            None,
        );
    }
    keys
}

/// The `ssl_certificate_key` paths of an nginx config (distinct, in order).
pub fn key_paths(conf: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in conf.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("ssl_certificate_key") {
            let p = rest.trim().trim_end_matches(';').trim().trim_matches('"');
            if !p.is_empty() && !out.iter().any(|o| o == Path::new(p)) {
                out.push(PathBuf::from(p));
            }
        }
    }
    out
}

/// operations.jsonl and its rotated siblings (`.1`, `.2.gz`, `-20261201.zst`), unpacked so
/// they can be redacted; other compressions are left out (they could not be).
fn logs(g: &mut Gather, l: &Layout) {
    let base = file_name(&l.operations_log);
    let Ok(Some(entries)) = sb::list(&l.logs_dir) else {
        return;
    };
    for (name, is_dir) in entries {
        if is_dir || !name.starts_with(&base) {
            continue;
        }
        let path = l.logs_dir.join(&name);
        let zstd = name.ends_with(".zst");
        if let Some(plain) = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
        {
            match sb::read_bytes(&path, FILE_CAP)
                .and_then(|b| sb::decompress(&b, zstd, FILE_CAP).map_err(|e| format!("{e:#}")))
            {
                Ok(text) => {
                    let note = Some(format!("unpacked from {name}"));
                    g.text(
                        &format!("logs/{plain}"),
                        &path.display().to_string(),
                        &text,
                        Format::Json,
                        note,
                    );
                }
                Err(e) => g.leave_out(&path, format!("could not be unpacked: {e}")),
            }
        } else if [".xz", ".bz2", ".lz4", ".Z"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            g.leave_out(
                &path,
                "compressed in a format abssctl cannot unpack to redact",
            );
        } else {
            g.file(&format!("logs/{name}"), &path, Format::Json, false);
        }
    }
}

/// The recent journal of abssctl (its own lines, its units) and of every instance unit. A
/// journal that cannot be read (no journalctl) is a note in the bundle, not a failure.
fn journals(g: &mut Gather, instances: &BTreeSet<String>) {
    let mut reads: Vec<(String, String, Result<Vec<String>>)> = vec![(
        "journal/abssctl.log".into(),
        "journalctl -t abssctl".into(),
        journal::read_identifier("abssctl", JOURNAL_LINES, JOURNAL_SINCE),
    )];
    // abssctl's own units: the update check, the doctor, each instance's backups.
    let mut own: Vec<String> = ["abssctl-update-check.service", "abssctl-doctor.service"]
        .map(String::from)
        .to_vec();
    own.extend(
        instances
            .iter()
            .map(|i| format!("abssctl-backup@{i}.service")),
    );
    reads.push((
        "journal/abssctl-units.log".into(),
        format!("journalctl -u {}", own.join(" -u ")),
        journal::read_units(&own, JOURNAL_LINES, JOURNAL_SINCE),
    ));
    for unit in instances.iter().map(|i| Layout::unit_name(i)) {
        let r = journal::read_units(std::slice::from_ref(&unit), JOURNAL_LINES, JOURNAL_SINCE);
        reads.push((
            format!("journal/{unit}.log"),
            format!("journalctl -u {unit}"),
            r,
        ));
    }
    for (name, source, r) in reads {
        match r {
            Ok(lines) => {
                let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
                g.text(&name, &source, &text, Format::Text, None);
            }
            Err(e) => {
                let note = format!("no journal: {e:#}");
                g.text(
                    &name,
                    &source,
                    &format!("({note})\n"),
                    Format::Text,
                    Some(note),
                );
            }
        }
    }
}

/// Versions of abssctl (binary and package) and of the OS.
fn about(g: &mut Gather, l: &Layout, now: time::OffsetDateTime) {
    let package = sb::package_version("abssctl").unwrap_or_else(|e| format!("unknown ({e})"));
    let current = sb::link_target(&l.current_link)
        .map_or_else(|| "none".to_string(), |t| t.display().to_string());
    let text = format!(
        "abssctl binary: {}\nabssctl package (dpkg-query): {package}\ncurrent Actual version: {current}\nbundle made: {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::domain::tls::rfc3339(now.replace_nanosecond(0).unwrap_or(now))
    );
    g.text(
        "version.txt",
        "abssctl --version, dpkg-query -W abssctl",
        &text,
        Format::Text,
        None,
    );
    // /etc/os-release is a symlink into /usr/lib on Debian: the fixed file it names is read
    // instead of following the link.
    let etc = rooted(&l.root, Path::new("/etc/os-release"));
    let usr = rooted(&l.root, Path::new("/usr/lib/os-release"));
    let path = if sb::link_target(&etc).is_some() {
        usr
    } else {
        etc
    };
    g.file("os-release", &path, Format::Text, false);
}

/// The MANIFEST: every member with where it came from and what was removed, then what was
/// left out and why.
fn manifest(
    files: &[Member],
    left_out: &[LeftOut],
    redacted: bool,
    now: time::OffsetDateTime,
) -> Member {
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|m| {
            let what = if m.redactions.is_empty() {
                "-".to_string()
            } else {
                m.redactions
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let note = m
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            vec![m.name.clone(), format!("{}{note}", m.source), what]
        })
        .collect();
    let mut s = format!(
        "abssctl support bundle, made {} by abssctl {}\n{}\n\n",
        crate::domain::tls::rfc3339(now.replace_nanosecond(0).unwrap_or(now)),
        env!("CARGO_PKG_VERSION"),
        if redacted {
            "Redacted: private keys, passwords, tokens, session ids and environment values are removed (REDACTED column: what, and how many)."
        } else {
            "NOT REDACTED (--no-redact): this bundle holds passwords, tokens and TLS private keys. Share it only over a private channel and delete it after."
        }
    );
    s.push_str(&crate::ops::report::table(
        &["FILE", "SOURCE", "REDACTED"],
        &rows,
    ));
    s.push('\n');
    if !left_out.is_empty() {
        s.push_str("\nLeft out:\n");
        for lo in left_out {
            s.push_str(&format!("  {}: {}\n", lo.source, lo.reason));
        }
    }
    Member {
        name: "MANIFEST".into(),
        source: "abssctl support-bundle".into(),
        size: s.len() as u64,
        redactions: Tally::new(),
        note: None,
        text: s,
    }
}

/// Write the members (MANIFEST first, MANIFEST.json last) as a gzip (or, for a `.zst`
/// name, zstd) tar, mode 0600 from the file's creation, renamed into place when complete.
fn write(
    dest: &Path,
    top: &str,
    files: &[Member],
    json: &str,
    now: time::OffsetDateTime,
) -> Result<crate::sys::archive::Written> {
    use crate::domain::backup::Algorithm;
    let zstd =
        dest.to_string_lossy().ends_with(".zst") || dest.to_string_lossy().ends_with(".tzst");
    let (alg, level) = if zstd {
        (Algorithm::Zstd, 3)
    } else {
        (Algorithm::Gzip, 6)
    };
    let mtime = now.unix_timestamp().max(0) as u64;
    let mut w = crate::sys::archive::ArchiveWriter::create(dest, alg, level, 0o600)?;
    for m in files {
        w.add_bytes(
            &format!("{top}/{}", m.name),
            m.text.as_bytes(),
            0o600,
            mtime,
        )?;
    }
    w.add_bytes(
        &format!("{top}/MANIFEST.json"),
        json.as_bytes(),
        0o600,
        mtime,
    )?;
    w.finish().map_err(|e| {
        let exists = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
        });
        if exists {
            Failure::validation(format!(
                "{} appeared while the bundle was written; nothing was replaced",
                dest.display()
            ))
            .hint("run it again with another --out")
            .into()
        } else {
            e
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn default_name_is_file_safe_and_utc() {
        let t = time::macros::datetime!(2026-12-03 17:22:38 UTC);
        assert_eq!(
            default_name("box one/x", t),
            "abssctl-support-box_one_x-20261203T172238Z.tar.gz"
        );
        assert_eq!(
            default_name("", t),
            "abssctl-support-localhost-20261203T172238Z.tar.gz"
        );
        assert_eq!(
            top_dir(Path::new("/root/abssctl-support-b-20261203T172238Z.tar.gz")),
            "abssctl-support-b-20261203T172238Z"
        );
        assert_eq!(top_dir(Path::new("x.tar.zst")), "x");
    }

    #[test]
    fn key_paths_of_a_vhost() {
        let conf = "  ssl_certificate /a/cert.pem;\n  ssl_certificate_key /a/key.pem;\n  ssl_certificate_key \"/b/k.pem\";\n  ssl_certificate_key /a/key.pem;\n";
        assert_eq!(
            key_paths(conf),
            [PathBuf::from("/a/key.pem"), PathBuf::from("/b/k.pem")]
        );
    }
}
