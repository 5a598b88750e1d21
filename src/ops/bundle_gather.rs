//! The gathering half of `support-bundle`: what goes in, read through `sys::bundle` (no
//! symlink followed) and redacted as it comes in.

use super::{FILE_CAP, JOURNAL_LINES, JOURNAL_SINCE, LeftOut, Member};
use crate::domain::layout::{Layout, rooted};
use crate::domain::redact::{self, Format, Redactor, Tally};
use crate::domain::state::{self, InstanceEntry};
use crate::ops::Ctx;
use crate::sys::bundle::{self as sb, Got};
use crate::sys::journal;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// journalctl processes at once.
const JOURNAL_PARALLEL: usize = 4;

/// The members being gathered, redacted as they come in.
pub(super) struct Gather {
    pub(super) redactor: Option<Redactor>,
    pub(super) members: Vec<Member>,
    pub(super) left_out: Vec<LeftOut>,
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
            Got::Text { text, .. } if self.redactor.is_some() && redact::is_key_file(&text) => {
                self.leave_out(path, "a private key file: never in a redacted bundle");
                None
            }
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

pub(super) fn gather(ctx: &Ctx, g: &mut Gather, no_redact: bool, now: time::OffsetDateTime) {
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
        let text = g.file(&name, legacy, Format::Yaml, true);
        if let (Some(t), true) = (text, *legacy == l.legacy_instances_file) {
            let parsed: Vec<InstanceEntry> =
                state::parse_instances(legacy, Some(&t)).unwrap_or_default();
            instances.extend(parsed.into_iter().map(|i| i.name));
        }
    }
    // The doctor's last report (`abssctl doctor` writes it on every run).
    g.file("state/doctor.json", &l.doctor_report(), Format::Json, false);
    g.file("state/updates.json", &l.updates_file, Format::Json, true);
    // The backup index (ids, sizes, checksums, results: no data), and any template an
    // operator overrides (what the drop-ins and vhosts were rendered from).
    g.file("state/backups.json", &l.backups_index, Format::Json, true);
    if let Ok(Some(entries)) = sb::list(&l.templates_dir) {
        for (name, _) in entries.into_iter().filter(|(_, is_dir)| !is_dir) {
            let f = if name.contains("nginx") {
                Format::Nginx
            } else {
                Format::Systemd
            };
            g.file(
                &format!("templates/{name}"),
                &l.templates_dir.join(&name),
                f,
                false,
            );
        }
    }
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
    // abssctl's own units: the update check, the doctor, each instance's backups.
    let mut own: Vec<String> = ["abssctl-update-check.service", "abssctl-doctor.service"]
        .map(String::from)
        .to_vec();
    own.extend(
        instances
            .iter()
            .map(|i| format!("abssctl-backup@{i}.service")),
    );
    // (member, source, units; none: abssctl's own lines, by identifier)
    let mut jobs: Vec<(String, String, Option<Vec<String>>)> = vec![
        (
            "journal/abssctl.log".into(),
            "journalctl -t abssctl".into(),
            None,
        ),
        (
            "journal/abssctl-units.log".into(),
            format!("journalctl -u {}", own.join(" -u ")),
            Some(own),
        ),
    ];
    for unit in instances.iter().map(|i| Layout::unit_name(i)) {
        let name = format!("journal/{unit}.log");
        jobs.push((name, format!("journalctl -u {unit}"), Some(vec![unit])));
    }
    let read = |units: &Option<Vec<String>>| match units {
        None => journal::read_identifier("abssctl", JOURNAL_LINES, JOURNAL_SINCE),
        Some(u) => journal::read_units(u, JOURNAL_LINES, JOURNAL_SINCE),
    };
    // A few journalctl at once (each mostly waits on the journal files): a box with 50
    // instances is not 52 reads in a row. Results keep the jobs' order.
    let mut results: Vec<Result<Vec<String>>> = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(JOURNAL_PARALLEL) {
        let batch: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(_, _, units)| s.spawn(|| read(units)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the journal reader panicked")))
                })
                .collect()
        });
        results.extend(batch);
    }
    let reads = jobs
        .into_iter()
        .zip(results)
        .map(|((name, source, _), r)| (name, source, r));
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
