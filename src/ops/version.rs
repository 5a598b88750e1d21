//! `version install`: resolve in the registry (read-only), build under the build lock
//! (`version_build.rs`), then commit under the global lock: one rename into place, and
//! with `--set-current` the `version switch` path (followers re-rendered, restarted,
//! health-gated, rolled back on failure). Listing, switching and removal are in
//! `version_manage.rs`.

use crate::domain::layout::Layout;
use crate::domain::txn::{self, Plan};
use crate::domain::validate;
use crate::domain::versions::{self, Manifest};
use crate::ops::Ctx;
use crate::ops::Report;
use crate::ops::backup::safety::{self, Offer};
use crate::ops::version_build::{self as vb, Staged};
use crate::sys;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Arguments of `version install`.
#[derive(Debug, Clone)]
pub struct InstallOpts {
    pub version: String,
    pub set_current: bool,
    pub include_prerelease: bool,
    /// Rebuild an installed version from its lockfile and the npm cache, no registry.
    pub offline: bool,
    /// With `set_current`: the backup offered of the instances that follow `current`.
    pub offer: Offer,
}

/// The backup offered before `current` moves to `vs` (as `version switch` offers it),
/// taken before the global lock (the backup takes the locks itself).
fn offer_before_switch(ctx: &mut Ctx, vs: &str, offer: Offer) -> Result<()> {
    let followers = crate::ops::version_manage::switch_followers(ctx, vs)?;
    safety::before(
        ctx,
        &followers,
        "switch-version",
        &format!("switch current to Actual {vs}"),
        offer,
    )
    .map(drop)
}

/// The manifest of an installed version (`None`: not installed, or half there).
pub fn read_manifest(vdir: &Path) -> Result<Option<Manifest>> {
    let path = vdir.join(versions::MANIFEST_FILE);
    match sys::fs::read_optional(&path)? {
        None => Ok(None),
        Some(t) => versions::parse_manifest(&t)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
    }
}

/// `version install <X.Y.Z|latest>`.
pub fn install(ctx: &mut Ctx, o: &InstallOpts) -> Result<Report> {
    let spec = validate::version(&o.version)?;
    if o.offline {
        if o.set_current {
            // Refused now, not after the rebuild (as below for a fresh install).
            let vs = spec.to_string();
            let followers = crate::ops::version_manage::switch_followers(ctx, &vs)?;
            safety::check(
                ctx,
                &followers,
                &format!("switch current to Actual {vs}"),
                o.offer,
            )?;
        }
        let mut report = reinstall(ctx, &o.version)?;
        if o.set_current {
            let vs = spec.to_string();
            offer_before_switch(ctx, &vs, o.offer)?;
            let _g = ctx.lock_global()?;
            let sw = crate::ops::version_manage::switch_locked(ctx, &vs)?;
            report.human.push_str(&format!("; {}", sw.human));
        }
        return Ok(report);
    }
    // Read-only first, so bad input is exit 2 for anyone; then root and the locks.
    let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
    if let validate::VersionSpec::Exact(v) = &spec {
        // Installed already: no registry needed to say so (or to switch to it).
        if let Some(m) = read_manifest(&ctx.layout.version_dir(&v.to_string()))? {
            progress.finish();
            return already_installed(ctx, m, o);
        }
    }
    let res = vb::resolve(ctx, &spec, o.include_prerelease, progress.as_ref())?;
    let vs = res.version.to_string();
    if let Some(m) = read_manifest(&ctx.layout.version_dir(&vs))? {
        progress.finish();
        return already_installed(ctx, m, o);
    }
    if o.set_current {
        // A script that did not say --backup/--no-backup is refused now, not after the build.
        let followers = crate::ops::version_manage::switch_followers(ctx, &vs)?;
        safety::check(
            ctx,
            &followers,
            &format!("switch current to Actual {vs}"),
            o.offer,
        )?;
    }
    ctx.require_root()?;
    let build_lock = ctx.lock_build()?;
    // Another install may have finished it while we waited for the build lock.
    if let Some(m) = read_manifest(&ctx.layout.version_dir(&vs))? {
        progress.finish();
        drop(build_lock);
        return already_installed(ctx, m, o);
    }
    let staged = vb::build(ctx, &res, progress.as_ref());
    progress.finish();
    let staged = staged?;
    // The offered backup just before the switch (a dry run built nothing to switch to).
    if o.set_current && staged.manifest.is_some() {
        offer_before_switch(ctx, &vs, o.offer)?;
    }
    let global = ctx.lock_global()?;
    let mut plan = Plan::new();
    plan_activate(&mut plan, &ctx.layout, &staged);
    ctx.record_plan(plan.planned_actions());
    let planned = ctx.op.planned.clone();
    let dry = ctx.globals.dry_run;
    let outcome = plan.run(dry);
    if !dry {
        let cleanup = remove_tree(&ctx.layout.staging_dir);
        outcome?;
        cleanup?;
    } else {
        outcome?;
    }
    let vdir = ctx.layout.version_dir(&vs);
    let mut human = match &staged.manifest {
        Some(m) => format!(
            "installed {} {vs} in {} (Node {} {}, {} MB)",
            m.package,
            vdir.display(),
            m.runtime.version,
            m.runtime.kind,
            m.size_bytes / 1_000_000
        ),
        None => format!(
            "dry run: would install {vs}:\n{}",
            planned
                .iter()
                .map(|p| format!("  - {}", p.description))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let mut switched = serde_json::Value::Null;
    if o.set_current && staged.manifest.is_none() {
        // A dry run built nothing to switch to: followers cannot be rendered for it yet.
        human.push_str("\n  - then move current to it as `version switch` does");
    } else if o.set_current {
        // The switch path: followers re-rendered, restarted, health-gated, rolled back.
        let sw = crate::ops::version_manage::switch_locked(ctx, &vs)?;
        human.push_str(&format!("; {}", sw.human));
        switched = sw.json;
    }
    drop(global);
    drop(build_lock);
    Report::new(
        &serde_json::json!({"installed": staged.manifest, "changed": !dry, "planned": planned,
            "dry_run": dry, "switch": switched}),
        human,
    )
    .map(|r| r.changed(!dry))
}

/// The answer when the version is there: nothing to build; `--set-current` still switches.
fn already_installed(ctx: &mut Ctx, m: Manifest, o: &InstallOpts) -> Result<Report> {
    let mut human = format!(
        "{} {} is already installed (Node {})",
        m.package, m.version, m.runtime.version
    );
    let mut changed = false;
    let mut switched = serde_json::Value::Null;
    if o.set_current {
        ctx.require_root()?;
        offer_before_switch(ctx, &m.version, o.offer)?;
        let _g = ctx.lock_global()?;
        let sw = crate::ops::version_manage::switch_locked(ctx, &m.version)?;
        changed = sw.changed;
        human.push_str(&format!("; {}", sw.human));
        switched = sw.json;
    }
    Report::new(
        &serde_json::json!({"installed": m, "changed": changed, "dry_run": ctx.globals.dry_run,
            "planned": ctx.op.planned, "switch": switched}),
        human,
    )
    .map(|r| r.changed(changed))
}

/// The commit of a staged build, as a plan step (the caller holds the global lock): one
/// rename into place, parent fsynced; its undo removes the tree again.
pub fn plan_activate<'a>(plan: &mut Plan<'a>, layout: &Layout, staged: &Staged) {
    let (build_dir, vdir) = (staged.dir.clone(), layout.version_dir(&staged.version));
    let root = layout.install_root.clone();
    plan.step(
        "activate",
        format!("move the build to {}", vdir.display()),
        move || {
            std::fs::rename(&build_dir, &vdir)
                .with_context(|| format!("moving {} to {}", build_dir.display(), vdir.display()))?;
            sys::fs::sync_dir(&root)?;
            txn::undo(move || {
                remove_tree(&vdir)?;
                sys::fs::sync_dir(&root)
            })
        },
    );
}

/// Point a `current` that does not exist yet at `vs` (first install on a box): nothing can
/// follow a missing `current`, so there is nothing to re-render. Moving an existing
/// `current` is `version_manage::switch_locked`'s alone.
pub fn plan_first_current<'a>(plan: &mut Plan<'a>, layout: &Layout, vs: &str) {
    let target = PathBuf::from(format!("v{vs}"));
    let link = layout.current_link.clone();
    plan.step(
        "set-current",
        format!("point {} at {}", link.display(), target.display()),
        move || {
            if let Some(old) = sys::instdir::read_link(&link)? {
                anyhow::bail!(
                    "{} appeared meanwhile (-> {}); not moving it",
                    link.display(),
                    old.display()
                );
            }
            sys::fs::symlink_atomic(&target, &link)?;
            txn::undo(move || sys::fs::remove_file_if_exists(&link).map(|_| ()))
        },
    );
}

/// rm -rf that tolerates absence.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        // Durably gone: a crash after this must not bring the name back.
        Ok(()) => sys::fs::sync_parent(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// `version reinstall X.Y.Z` (= `install X.Y.Z --offline`): rebuild an installed version
/// from its recorded lockfile and the npm cache with `npm ci --offline`, no registry.
pub fn reinstall(ctx: &mut Ctx, version: &str) -> Result<Report> {
    crate::ops::version_manage::reinstall(ctx, version)
}
