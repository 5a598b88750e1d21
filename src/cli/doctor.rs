//! `abssctl doctor`: what is wrong, how bad, and the next step (ADR-029; docs/doctor.md).

use crate::cli::Report;
use crate::domain::doctor::{self as model, Category};
use crate::error::Failure;
use crate::ops::doctor::{self, DoctorResult, Options};
use crate::ops::{self, Ctx};
use clap::Args;
use std::time::Duration;

/// Check the machine, the registry and every instance; exit with the worst finding's
/// code (0 when nothing is red).
#[derive(Debug, Args)]
pub struct DoctorCli {
    /// Only these categories, comma-separated (env, config, state, fs, ports, systemd,
    /// nginx, tls, app, disk, backups, updates, locks, staging).
    #[arg(long, value_name = "CATEGORIES")]
    only: Option<String>,
    /// Repair what is safe to repair (modes, missing dirs, stale locks, leftovers, the
    /// default config); asks first unless --yes; --dry-run lists the repairs.
    #[arg(long)]
    fix: bool,
    /// Every probe's timeout in milliseconds (default: 5 s, app health 3 s).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Retries of each app health probe (default 2).
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
}

fn options(c: &DoctorCli) -> anyhow::Result<Options> {
    let only = match &c.only {
        None => Vec::new(),
        Some(text) => model::parse_only(text).map_err(|w| {
            let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            Failure::validation(format!("unknown doctor category '{w}'"))
                .hint(format!("use some of: {}", names.join(", ")))
        })?,
    };
    if c.timeout_ms == Some(0) {
        return Err(Failure::validation("--timeout-ms must be at least 1")
            .hint("for example --timeout-ms 2000")
            .into());
    }
    Ok(Options {
        only,
        fix: c.fix,
        timeout: c.timeout_ms.map(Duration::from_millis),
        retries: c.retries,
    })
}

fn human(r: &DoctorResult) -> String {
    let mut out = Vec::new();
    if let Some(fixes) = &r.fixes {
        if fixes.is_empty() {
            out.push("nothing to fix".to_string());
        } else {
            out.push(
                if r.dry_run {
                    "dry run, would fix:"
                } else {
                    "fixed:"
                }
                .to_string(),
            );
            for f in fixes {
                let err = f
                    .error
                    .as_deref()
                    .map(|e| format!("  FAILED: {e}"))
                    .unwrap_or_default();
                out.push(format!(
                    "  - {}: {} {}{err}",
                    f.probe,
                    f.action,
                    f.path.display()
                ));
            }
        }
        out.push(String::new());
    }
    out.push(model::human(&r.report));
    out.join("\n")
}

pub fn run(ctx: &mut Ctx, c: &DoctorCli) -> anyhow::Result<Report> {
    let opts = options(c)?;
    let r = ops::doctor::run(ctx, &opts)?;
    doctor::into_report(&r, human(&r))
}
