//! `abssctl doctor --fix`: only the safe repairs of ADR-029, found by the same scans as
//! the probes that report them: write the absent default config, create missing managed
//! directories, remove extra permission bits, clear locks left by dead processes, remove
//! leftovers of crashed builds and backups while no operation holds their lock. Never a
//! restart, a port change, an nginx reload or a package install. Idempotent: what it
//! repaired is no longer found, so a second run plans nothing.

use super::fs::{self as scan, Guard};
use crate::domain::doctor::Finding;
use crate::ops::Ctx;
use crate::sys;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// The shipped configuration (every setting commented), written when there is none.
const DEFAULT_CONFIG: &str = include_str!("../../../debian/config.yml");

/// One repair (`--json`: `fixes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// The probe whose finding it repairs.
    pub probe: String,
    /// What it does, in words.
    pub action: String,
    pub path: PathBuf,
    /// Set after applying: did it work, and if not, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    WriteConfig,
    MakeDir,
    Chmod(u32),
    ClearLock,
    Remove(Guard),
}

fn fix(probe: &str, action: String, path: PathBuf, kind: Kind) -> Fix {
    Fix {
        probe: probe.into(),
        action,
        path,
        error: None,
        kind,
    }
}

/// The repairs for what the machine shows now (the findings only decide which probes
/// ran: `--only` limits the fixes too).
pub fn plan(ctx: &Ctx, findings: &[Finding]) -> Vec<Fix> {
    let ran = |id: &str| findings.iter().any(|f| f.id == id);
    let facts = super::Facts {
        layout: ctx.layout.clone(),
        state: crate::domain::state::State::load(&ctx.layout)
            .map_err(|e| crate::error::classify(&e).1),
        live: Err("not asked".into()),
        timeout: None,
        retries: 0,
    };
    let l = &facts.layout;
    let mut out = Vec::new();
    if ran("config.parse") && !sys::instdir::exists(&l.config_file) {
        out.push(fix(
            "config.parse",
            "write the default configuration".into(),
            l.config_file.clone(),
            Kind::WriteConfig,
        ));
    }
    if ran("fs.perms") {
        for d in scan::missing_dirs(l) {
            out.push(fix(
                "fs.perms",
                "create (root, 0750)".into(),
                d,
                Kind::MakeDir,
            ));
        }
        for b in scan::bad_modes(&facts).0 {
            out.push(fix(
                "fs.perms",
                format!("chmod {:o} -> {:o} ({})", b.mode, b.want, b.why),
                b.path,
                Kind::Chmod(b.want),
            ));
        }
    }
    if ran("locks.stale") {
        for s in scan::stale_locks(l) {
            out.push(fix(
                "locks.stale",
                format!("clear the holder line of {}", s.holder.describe()),
                s.path,
                Kind::ClearLock,
            ));
        }
    }
    if ran("staging.leftover") {
        let names: Vec<String> = facts.instances().iter().map(|e| e.name.clone()).collect();
        for x in scan::leftovers(l, &names)
            .into_iter()
            .filter(|x| x.removable)
        {
            out.push(fix(
                "staging.leftover",
                "remove the leftover".into(),
                x.path,
                Kind::Remove(x.guard),
            ));
        }
    }
    out
}

/// The prompt before applying.
pub fn question(planned: &[Fix]) -> String {
    let lines: Vec<String> = planned
        .iter()
        .map(|f| format!("  - {}: {} {}", f.probe, f.action, f.path.display()))
        .collect();
    format!("apply these repairs?\n{}\n", lines.join("\n"))
}

/// Apply every repair under the global lock; one that fails is reported with its error
/// and does not stop the others (each is independent and safe to retry).
pub fn apply(ctx: &mut Ctx, planned: Vec<Fix>) -> Result<Vec<Fix>> {
    let _global = ctx.lock_global()?;
    let mut done = Vec::with_capacity(planned.len());
    for mut f in planned {
        if let Err(e) = apply_one(ctx, &f) {
            f.error = Some(format!("{e:#}"));
        }
        tracing::info!(probe = f.probe.as_str(), path = %f.path.display(), ok = f.error.is_none(), "doctor fix: {}", f.action);
        done.push(f);
    }
    Ok(done)
}

/// A lock taken without waiting: held by a running operation means "not now".
fn try_lock(path: &std::path::Path) -> Result<sys::lock::LockGuard> {
    Ok(sys::lock::acquire(path, Duration::ZERO, "doctor --fix")?.0)
}

fn apply_one(ctx: &Ctx, f: &Fix) -> Result<()> {
    let l = &ctx.layout;
    match &f.kind {
        Kind::WriteConfig => {
            if !sys::instdir::exists(&f.path) {
                sys::fs::write_atomic(&f.path, DEFAULT_CONFIG.as_bytes(), 0o644)?;
            }
        }
        Kind::MakeDir => sys::fs::create_dir_all_mode(&f.path, sys::fs::DIR_MODE)?,
        Kind::Chmod(mode) => sys::inspect::chmod(&f.path, *mode)?,
        // The global lock is held by this command already: taking it wrote this process
        // as its holder, and releasing it at the end clears the line.
        Kind::ClearLock if f.path == l.global_lock() => {}
        // Taking and releasing a free lock clears its holder line.
        Kind::ClearLock => drop(try_lock(&f.path)?),
        Kind::Remove(guard) => {
            let lock = match guard {
                Guard::Build => l.build_lock(),
                Guard::Instance(name) => l.instance_lock(name),
            };
            let _held = try_lock(&lock)?;
            sys::inspect::remove_any(&f.path)?;
        }
    }
    Ok(())
}
