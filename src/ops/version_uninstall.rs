//! `version uninstall`: refused while a version is current, bound in the registry, or run
//! by a drop-in on disk; every tree it frees is moved aside first and removed only when all
//! steps succeeded.

use crate::domain::txn::{self, Plan};
use crate::domain::versions::Manifest;
use crate::error::Failure;
use crate::ops::version::remove_tree;
use crate::ops::version_manage::{bindings, current, installed, require_installed};
use crate::ops::{Ctx, Report};
use crate::sys::{self, build};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `version uninstall X.Y.Z`: refused while current or bound; frees unused runtimes.
pub fn uninstall(ctx: &mut Ctx, arg: &str) -> Result<Report> {
    let m = require_installed(ctx, arg)?;
    // Checked before root (refusals need no privilege) and again under the lock.
    refuse_if_used(ctx, &m)?;
    ctx.require_root()?;
    // The build lock first: a build in progress may be using the runtime freed here.
    let _b = ctx.lock_build()?;
    let _g = ctx.lock_global()?;
    refuse_if_used(ctx, &m)?;
    if !ctx.globals.yes
        && !ctx.globals.dry_run
        && !ctx.ui.confirm(&format!("remove Actual {}?", m.version))?
    {
        return Err(Failure::validation("not confirmed")
            .hint("pass --yes to skip the question")
            .into());
    }
    let others: Vec<Manifest> = installed(ctx)?
        .into_iter()
        .filter(|o| o.version != m.version)
        .collect();
    let used_nodes: BTreeSet<PathBuf> = others.iter().map(|o| o.runtime.node.clone()).collect();
    let used_npm: BTreeSet<String> = others.iter().map(|o| o.npm_version.clone()).collect();
    let layout = ctx.layout.clone();
    let vdir = layout.version_dir(&m.version);
    let mut freed = Vec::new();
    // Each tree is first moved aside (one rename, undone by renaming it back), and only
    // removed once every step has succeeded: a failure half-way leaves what was there.
    let aside_dir = layout.staging_dir.clone();
    let mut trees = vec![("remove-version", vdir.clone())];
    if m.runtime.kind == "managed" && !used_nodes.contains(&m.runtime.node) {
        let rdir = layout.runtime_dir(&m.runtime.version);
        freed.push(rdir.display().to_string());
        trees.push(("remove-runtime", rdir));
    }
    if !used_npm.contains(&m.npm_version) {
        let ndir = layout.npm_dir(&m.npm_version);
        freed.push(ndir.display().to_string());
        trees.push(("remove-npm", ndir));
    }
    let mut aside = Vec::new();
    let mut plan = Plan::new();
    for (action, tree) in trees {
        let name = tree
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let moved = aside_dir.join(format!("uninstall-{name}"));
        aside.push(moved.clone());
        let aside_dir = aside_dir.clone();
        plan.step(action, format!("remove {}", tree.display()), move || {
            build::ensure_dir_mode(&aside_dir, 0o711)?;
            remove_tree(&moved)?;
            std::fs::rename(&tree, &moved)
                .with_context(|| format!("moving {} aside", tree.display()))?;
            sys::fs::sync_parent(&tree)?;
            txn::undo(move || {
                std::fs::rename(&moved, &tree)
                    .with_context(|| format!("putting {} back", tree.display()))?;
                sys::fs::sync_parent(&tree)?;
                sys::instdir::remove_dir_if_empty(&aside_dir).map(drop)
            })
        });
    }
    ctx.record_plan(plan.planned_actions());
    plan.run(ctx.globals.dry_run)?;
    for t in &aside {
        remove_tree(t)?;
    }
    if !ctx.globals.dry_run {
        remove_tree(&aside_dir)?;
    }
    let human = format!(
        "{}removed {}{}",
        if ctx.globals.dry_run {
            "dry run: would have "
        } else {
            ""
        },
        m.version,
        if freed.is_empty() {
            String::new()
        } else {
            format!(" and {}", freed.join(", "))
        }
    );
    Report::new(
        &serde_json::json!({"removed": m.version, "freed": freed, "planned": ctx.op.planned}),
        human,
    )
    .map(|r| r.changed(!ctx.globals.dry_run))
}

/// Refuse to remove the current version or one an instance runs (names them).
fn refuse_if_used(ctx: &Ctx, m: &Manifest) -> Result<()> {
    let cur = current(ctx)?;
    if cur.as_deref() == Some(m.version.as_str()) {
        return Err(
            Failure::validation(format!("{} is the current version", m.version))
                .hint("switch to another version first: abssctl version switch <X.Y.Z>")
                .into(),
        );
    }
    // What runs matters, not only what the registry says: a drop-in on disk that still
    // starts this tree (drifted, or left by hand) would fail at its next restart.
    let users = dropins_using(ctx, &ctx.layout.version_dir(&m.version))?;
    if !users.is_empty() {
        return Err(Failure::validation(format!(
            "{} is still run by the unit drop-in(s) {}",
            m.version,
            users.join(", ")
        ))
        .hint("re-render them first: abssctl instance set-version <name> current (or an installed X.Y.Z)")
        .into());
    }
    if let Some(names) = bindings(ctx, cur.as_deref())?.get(&m.version) {
        return Err(Failure::validation(format!(
            "{} is used by instance(s) {}",
            m.version,
            names.join(", ")
        ))
        .hint("move those instances to another version first")
        .into());
    }
    Ok(())
}

/// The instance drop-ins on disk (`actual-sync@*.service.d/*.conf`) that name `vdir`.
fn dropins_using(ctx: &Ctx, vdir: &std::path::Path) -> Result<Vec<String>> {
    let dir = &ctx.layout.systemd_unit_dir;
    let prefix = format!("{}@", crate::domain::layout::UNIT_PREFIX);
    let needle = format!("{}/", vdir.display());
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".service.d")) {
            continue;
        }
        for f in std::fs::read_dir(e.path()).with_context(|| format!("listing {name}"))? {
            let f = f.with_context(|| format!("listing {name}"))?.path();
            if f.extension().is_some_and(|x| x == "conf")
                && sys::fs::read_optional(&f)?.is_some_and(|t| t.contains(&needle))
            {
                out.push(f.display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}
