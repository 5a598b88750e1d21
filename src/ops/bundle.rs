//! `abssctl support-bundle`: one archive an operator can send for help (docs/support-bundle.md).
//!
//! It gathers what a helper asks for first (the config, the registry, the last doctor
//! report, the installed versions, what abssctl rendered for systemd and nginx, the
//! operations log with its rotated files, the recent journal, package and OS versions) and
//! redacts every text through `domain::redact` unless `--no-redact`. TLS private keys are
//! never gathered in a redacted bundle, not even redacted. Nothing is followed through a
//! symlink (`sys::bundle::read_file`); what is left out is listed in the MANIFEST with why.

use crate::domain::layout::{Layout, rooted};
use crate::domain::redact::{self, Redactor, Tally};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::sys::bundle as sb;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[path = "bundle_gather.rs"]
mod gather;
pub use gather::key_paths;
use gather::{Gather, gather};

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

/// `support-bundle`: gather, redact, write (or, with `--dry-run`, only list).
pub fn run(ctx: &mut Ctx, o: &Options) -> Result<BundleResult> {
    // Not `require_root`'s wording: the bundle changes nothing, but what it reads (the
    // registry, the journal, the drop-ins) is root's, and a bundle without them is no help.
    if !ctx.globals.dry_run && !crate::sys::privilege::is_root() {
        return Err(Failure::environment(
            "'abssctl support-bundle' reads root-only files (the registry, the journal) and must run as root",
        )
        .hint("run it with sudo: sudo abssctl support-bundle")
        .into());
    }
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
    format!(
        "abssctl-support-{host}-{}.tar.gz",
        crate::ops::tls::stamp(now)
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
