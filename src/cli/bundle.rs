//! `abssctl support-bundle`: one redacted archive to send when asking for help
//! (docs/support-bundle.md).

use crate::cli::Report;
use crate::ops::Ctx;
use crate::ops::bundle::{self, BundleResult, Options};
use clap::Args;
use std::path::PathBuf;

/// `support-bundle [--out PATH] [--no-redact]`.
#[derive(Debug, Args)]
pub struct BundleCli {
    /// Write the bundle to this new file (never replaced; `.tar.zst` for zstd, else gzip)
    /// instead of /root/abssctl-support-<host>-<UTC time>.tar.gz.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Leave every secret in: passwords, tokens, environment values AND the instances' TLS
    /// private keys. Asks first unless --yes; send such a bundle only over a private channel.
    #[arg(long)]
    no_redact: bool,
}

pub fn run(ctx: &mut Ctx, c: &BundleCli) -> anyhow::Result<Report> {
    let r = bundle::run(
        ctx,
        &Options {
            out: c.out.clone(),
            no_redact: c.no_redact,
        },
    )?;
    let changed = !r.dry_run;
    Ok(Report::new(&r, human(&r))?.changed(changed))
}

fn human(r: &BundleResult) -> String {
    let mut lines = Vec::new();
    if r.dry_run {
        lines.push(format!(
            "dry run: would write {} with {} files ({} values redacted):",
            r.path.display(),
            r.files.len() + 1,
            r.redactions
        ));
        for f in &r.files {
            lines.push(format!("  {}  <- {}", f.name, f.source));
        }
        lines.push("  MANIFEST.json".into());
    } else {
        lines.push(format!(
            "support bundle: {} ({} bytes, {} files, {} values redacted)",
            r.path.display(),
            r.size.unwrap_or(0),
            r.files.len() + 1,
            r.redactions
        ));
        if let Some(h) = &r.sha256 {
            lines.push(format!("sha256: {h}"));
        }
    }
    for lo in &r.left_out {
        lines.push(format!("left out: {}: {}", lo.source, lo.reason));
    }
    if r.redacted {
        lines.push("Its MANIFEST lists every file and what was removed from it.".into());
    } else {
        lines.push(
            "WARNING: NOT REDACTED. It holds passwords, tokens and TLS private keys: share it only over a private channel, and delete it after."
                .into(),
        );
    }
    lines.join("\n")
}
