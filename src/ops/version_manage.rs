//! `version list | check | switch | uninstall | reinstall`: everything about installed
//! versions except the registry install itself (`version.rs`).

use crate::domain::state::{State, VersionBinding};
use crate::domain::txn::{self, Plan};
use crate::domain::validate::{self, VersionSpec};
use crate::domain::versions::{self, Manifest, RuntimeChoice, RuntimePolicy};
use crate::error::{self, Failure};
use crate::ops::Report;
use crate::ops::backup::safety::{self, Offer};
use crate::ops::version::{read_manifest, remove_tree};
use crate::ops::{Ctx, instance};
use crate::sys::{self, build, npm};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Installed versions (those with a manifest), newest first.
pub fn installed(ctx: &Ctx) -> Result<Vec<Manifest>> {
    let root = &ctx.layout.install_root;
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("listing {}", root.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(v) = name.strip_prefix('v') else {
            continue;
        };
        if semver::Version::parse(v).is_err() {
            continue;
        }
        if let Some(m) = read_manifest(&e.path())? {
            out.push(m);
        }
    }
    out.sort_by_key(|m| std::cmp::Reverse(semver::Version::parse(&m.version).ok()));
    Ok(out)
}

/// The version `current` points to (`None`: no link). An unreadable link is an error,
/// not "no current": taking it for absent would let `uninstall` remove what it points to.
pub fn current(ctx: &Ctx) -> Result<Option<String>> {
    let Some(target) = sys::instdir::read_link(&ctx.layout.current_link)? else {
        return Ok(None);
    };
    Ok(target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| n.strip_prefix('v').map(str::to_string)))
}

/// Instance names by the version they run (an instance bound to `current` counts for it).
pub(crate) fn bindings(ctx: &Ctx, current: Option<&str>) -> Result<BTreeMap<String, Vec<String>>> {
    let state = State::load(&ctx.layout)?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in state.instances {
        let v = match &i.version_binding {
            VersionBinding::Exact(v) => Some(v.to_string()),
            VersionBinding::Current => current.map(str::to_string),
        };
        if let Some(v) = v {
            map.entry(v).or_default().push(i.name);
        }
    }
    Ok(map)
}

/// One row of `version list`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub version: String,
    pub installed: bool,
    pub current: bool,
    pub instances: Vec<String>,
    pub engines_node: Option<String>,
    /// The runtime an installed version is built for.
    pub runtime: Option<versions::RuntimeRecord>,
    /// For registry versions not installed: the runtime an install would use, or why none.
    pub runtime_available: Option<String>,
    pub size_bytes: Option<u64>,
    pub installed_at: Option<String>,
}

/// `version list [--remote] [--latest N] [--include-prerelease]`.
pub fn list(
    ctx: &mut Ctx,
    remote: bool,
    latest: usize,
    include_prerelease: bool,
) -> Result<Report> {
    let inst = installed(ctx)?;
    let cur = current(ctx)?;
    let bound = bindings(ctx, cur.as_deref())?;
    let mut rows: BTreeMap<semver::Version, Row> = BTreeMap::new();
    for m in &inst {
        let v = semver::Version::parse(&m.version)?;
        rows.insert(
            v,
            Row {
                current: cur.as_deref() == Some(&m.version),
                instances: bound.get(&m.version).cloned().unwrap_or_default(),
                version: m.version.clone(),
                installed: true,
                engines_node: m.engines_node.clone(),
                runtime: Some(m.runtime.clone()),
                runtime_available: None,
                size_bytes: Some(m.size_bytes),
                installed_at: Some(m.installed_at.clone()),
            },
        );
    }
    let mut registry = None;
    if remote {
        let cfg = ctx.cfg().clone();
        let machine = npm::machine_npm();
        let url = npm::resolve_registry(&cfg.npm_registry, &machine)?;
        let reg = npm::Registry::new(&url)?;
        let pk = reg.packument(&cfg.npm_package_name)?;
        let policy = RuntimePolicy::parse(&cfg.runtime)?;
        let local = match &policy {
            RuntimePolicy::Path(p) => build::local_node(Some(p)),
            _ => build::local_node(None),
        };
        // Without the runtime packument the list still shows the releases, but says why
        // their runtime column is incomplete instead of hiding the failure.
        let node_pk = match versions::managed_runtime_package(std::env::consts::ARCH)
            .map_err(anyhow::Error::from)
            .and_then(|n| reg.packument(n))
        {
            Ok(p) => Some(p),
            Err(e) => {
                let w = format!("managed Node runtimes unknown: {e:#}");
                tracing::warn!("{w}");
                ctx.op.warnings.push(w);
                None
            }
        };
        let avail = node_pk.map(|p| p.releases(false)).unwrap_or_default();
        for v in pk.releases(include_prerelease).into_iter().take(latest) {
            let Some(pv) = pk.get(&v) else { continue };
            if rows.contains_key(&v) {
                continue;
            }
            let choice = versions::choose_runtime(&versions::ChoiceInput {
                engines: pv.engines_node(),
                deps: &pv.dependencies,
                policy: &policy,
                local: local.clone(),
                managed_available: &avail,
            });
            let runtime_available = Some(match choice {
                Ok(RuntimeChoice::Local { path, version }) => {
                    format!("node {version} at {}", path.display())
                }
                Ok(RuntimeChoice::Managed { version }) => {
                    let there = ctx
                        .layout
                        .runtime_dir(&version.to_string())
                        .join("bin/node")
                        .exists();
                    format!(
                        "managed node {version} ({})",
                        if there { "installed" } else { "provisionable" }
                    )
                }
                Err(f) => format!("none: {}", f.message),
            });
            rows.insert(
                v.clone(),
                Row {
                    version: v.to_string(),
                    installed: false,
                    current: false,
                    instances: Vec::new(),
                    engines_node: pv.engines_node().map(str::to_string),
                    runtime: None,
                    runtime_available,
                    size_bytes: None,
                    installed_at: None,
                },
            );
        }
        registry = Some(url);
    }
    let rows: Vec<Row> = rows.into_values().rev().collect();
    let table = crate::ops::report::table(
        &["VERSION", "STATE", "NODE", "RUNTIME", "INSTANCES"],
        &rows
            .iter()
            .map(|r| {
                vec![
                    r.version.clone(),
                    match (r.installed, r.current) {
                        (true, true) => "current".into(),
                        (true, false) => "installed".into(),
                        _ => "available".into(),
                    },
                    r.engines_node.clone().unwrap_or_else(|| "-".into()),
                    r.runtime
                        .as_ref()
                        .map(|rt| format!("node {} ({})", rt.version, rt.kind))
                        .or_else(|| r.runtime_available.clone())
                        .unwrap_or_default(),
                    r.instances.join(","),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let human = if rows.is_empty() {
        "no version installed (see: abssctl version list --remote)".to_string()
    } else {
        table
    };
    let warnings = ctx.op.warnings.clone();
    let human = warnings
        .iter()
        .fold(human, |h, w| format!("{h}\nwarning: {w}"));
    Report::new(
        &serde_json::json!({"versions": rows, "registry": registry, "warnings": warnings}),
        human,
    )
}

/// The installed version an argument names, or a validation failure listing what is there.
pub(crate) fn require_installed(ctx: &Ctx, arg: &str) -> Result<Manifest> {
    let vs = match validate::version(arg)? {
        VersionSpec::Exact(v) => v.to_string(),
        other => {
            return Err(error::validation(format!(
                "'{other}' is not an exact version X.Y.Z"
            )));
        }
    };
    if let Some(m) = read_manifest(&ctx.layout.version_dir(&vs))? {
        return Ok(m);
    }
    let inst: Vec<String> = installed(ctx)?.into_iter().map(|m| m.version).collect();
    Err(
        Failure::validation(format!("version {vs} is not installed"))
            .hint(if inst.is_empty() {
                format!("install it first: abssctl version install {vs}")
            } else {
                format!("installed: {}", inst.join(", "))
            })
            .into(),
    )
}

/// The instances whose version changes when `current` moves to `vs`: those that follow
/// `current`, unless it is `vs` already. They are offered a backup first.
pub fn switch_followers(ctx: &Ctx, vs: &str) -> Result<Vec<String>> {
    if current(ctx)?.as_deref() == Some(vs) {
        return Ok(Vec::new());
    }
    Ok(State::load(&ctx.layout)?
        .instances
        .into_iter()
        .filter(|i| i.version_binding == VersionBinding::Current)
        .map(|i| i.name)
        .collect())
}

/// `version switch X.Y.Z`. The instances that follow `current` change version with it: a
/// backup of them is offered (`offer`) after the checks and before the global lock (the
/// backup takes the locks itself); a switch to the version already current asks nothing.
pub fn switch(ctx: &mut Ctx, arg: &str, offer: Offer) -> Result<Report> {
    let m = require_installed(ctx, arg)?;
    ctx.require_root()?;
    let followers = switch_followers(ctx, &m.version)?;
    // The restart question first, then the backup one (as restore asks them): the running
    // followers, read without the lock (a dry run or --yes asks nothing, so reads nothing).
    let mut asked = false;
    if !followers.is_empty() && !ctx.globals.yes && !ctx.globals.dry_run {
        let sd = sys::systemd::LazySystemd::new();
        let units: Vec<String> = followers
            .iter()
            .map(|n| crate::domain::layout::Layout::unit_name(n))
            .collect();
        let status = sys::systemd::Systemd::unit_status(&sd, &units)?;
        let running: Vec<&str> = followers
            .iter()
            .filter(|n| {
                let unit = crate::domain::layout::Layout::unit_name(n);
                status
                    .iter()
                    .any(|s| s.unit == unit && s.active_state == "active")
            })
            .map(String::as_str)
            .collect();
        if !running.is_empty() {
            confirm_switch(ctx, &m.version, &running)?;
            asked = true;
        }
    }
    let first = ctx.op.planned.len();
    safety::before(
        ctx,
        &followers,
        "switch-version",
        &format!("switch current to Actual {}", m.version),
        offer,
    )?;
    let backups: Vec<_> = ctx.op.planned[first..].to_vec();
    let _g = ctx.lock_global()?;
    let mut sw = switch_locked_asked(ctx, &m.version, asked)?;
    // The planned backups come first in the result too.
    if let Some(serde_json::Value::Array(planned)) = sw.json.get_mut("planned_actions") {
        let mut all = serde_json::to_value(&backups)?
            .as_array()
            .cloned()
            .unwrap_or_default();
        all.append(planned);
        *planned = all;
    }
    sw.json["backups"] = serde_json::json!(ctx.op.backups);
    for id in &ctx.op.backups {
        sw.human.push_str(&format!(
            "\nbacked up first: {id} (abssctl backup restore {id})"
        ));
    }
    let changed = sw.changed && !ctx.globals.dry_run;
    Report::new(&sw.json, sw.human).map(|r| r.changed(changed))
}

/// What a switch did.
#[derive(Debug)]
pub struct Switched {
    pub changed: bool,
    pub human: String,
    pub json: serde_json::Value,
}

/// Point `current` at the installed version `vs`, the one way `current` ever moves
/// (`version switch`, `version install --set-current`): instances bound to `current`
/// are re-rendered and the running ones restarted and health-gated, and any failure puts
/// the link and every follower back. The caller holds the global lock.
pub fn switch_locked(ctx: &mut Ctx, vs: &str) -> Result<Switched> {
    switch_locked_asked(ctx, vs, false)
}

/// Ask before restarting `running` for a switch to `vs`.
fn confirm_switch(ctx: &Ctx, vs: &str, running: &[&str]) -> Result<()> {
    instance::lifecycle::confirm(
        ctx,
        &format!(
            "switch current to Actual {vs} (restarts {}; data migrates one way)?",
            running.join(", ")
        ),
        "version switch",
    )
}

/// [`switch_locked`]; `asked`: the caller has asked the restart question already.
fn switch_locked_asked(ctx: &mut Ctx, vs: &str, asked: bool) -> Result<Switched> {
    let link = ctx.layout.current_link.clone();
    let already = current(ctx)?.as_deref() == Some(vs);
    let sd = sys::systemd::LazySystemd::new();
    // Instances bound to `current` follow it: re-rendered, restarted when running.
    let followers = if already {
        Vec::new()
    } else {
        instance::follow::prepare(ctx, &sd, vs)?
    };
    let running: Vec<&str> = followers
        .iter()
        .filter(|f| f.was_active)
        .map(|f| f.name.as_str())
        .collect();
    if !running.is_empty() && !asked {
        confirm_switch(ctx, vs, &running)?;
    }
    let layout = ctx.layout.clone();
    let mut plan = Plan::new();
    if !already {
        instance::follow::plan_keep_running(&mut plan, &sd, &followers, ctx.globals.dry_run);
        let target = PathBuf::from(format!("v{vs}"));
        let old = sys::instdir::read_link(&link)?;
        plan.step(
            "switch-current",
            format!("point {} at {}", link.display(), target.display()),
            move || {
                sys::fs::symlink_atomic(&target, &link)?;
                txn::undo(move || match old {
                    Some(o) => sys::fs::symlink_atomic(&o, &link),
                    None => sys::fs::remove_file_if_exists(&link).map(|_| ()),
                })
            },
        );
        instance::follow::plan_follow(&mut plan, &layout, &sd, &followers, ctx.globals.dry_run);
    }
    let planned = plan.planned_actions();
    ctx.record_plan(planned.clone());
    if let Err(e) = plan.run(ctx.globals.dry_run) {
        let kept = instance::follow::kept(&followers);
        return Err(if kept.is_empty() {
            e
        } else {
            e.context(kept.join("; "))
        });
    }
    let left = instance::follow::finish(&followers);
    ctx.op.warnings.extend(left);
    let names: Vec<&str> = followers.iter().map(|f| f.name.as_str()).collect();
    let human = if already {
        format!("current already is {vs}")
    } else if names.is_empty() {
        format!("current now points to {vs}")
    } else {
        format!(
            "current now points to {vs}; instances following it: {} (running ones restarted healthy: {})",
            names.join(", "),
            if running.is_empty() {
                "none".to_string()
            } else {
                running.join(", ")
            }
        )
    };
    Ok(Switched {
        changed: !already,
        human,
        json: serde_json::json!({
            "current": vs,
            "changed": !already,
            "instances_following": names,
            "instances_restarted": running,
            "dry_run": ctx.globals.dry_run,
            "planned_actions": planned,
        }),
    })
}

/// `version reinstall X.Y.Z`: `npm ci --offline` from the recorded lockfile under the build
/// lock (instances stay manageable meanwhile), then, under the global lock, the rebuilt
/// tree and the installed one swap places in one step (RENAME_EXCHANGE: running instances
/// keep their open files, a crash leaves one whole tree in place) and the old one is removed.
pub fn reinstall(ctx: &mut Ctx, arg: &str) -> Result<Report> {
    let m = require_installed(ctx, arg)?;
    ctx.require_root()?;
    let _build = ctx.lock_build()?;
    let layout = ctx.layout.clone();
    let vdir = layout.version_dir(&m.version);
    let build_dir = layout.staging_dir.join(format!("v{}", m.version));
    let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
    let dry = ctx.globals.dry_run;
    let fresh = std::cell::RefCell::new(None);
    let mut build = Plan::new();
    {
        let (ctx_ref, fresh, progress, build_dir, m): (&Ctx, _, _, _, _) =
            (ctx, &fresh, &progress, &build_dir, &m);
        build.step(
            "build-offline",
            format!("rebuild {} offline from its lockfile", m.version),
            move || {
                progress.step(&format!(
                    "rebuilding {} offline (npm ci --offline)",
                    m.version
                ));
                *fresh.borrow_mut() = Some(crate::ops::version_build::offline_build(
                    ctx_ref, build_dir, m,
                )?);
                txn::no_undo()
            },
        );
    }
    let planned = build.planned_actions();
    let outcome = build.run(dry);
    progress.finish();
    ctx.record_plan(planned);
    if let Err(e) = outcome {
        remove_tree(&layout.staging_dir)?;
        return Err(e);
    }
    let _g = ctx.lock_global()?;
    let mut swap = Plan::new();
    {
        let (build_dir, vdir) = (build_dir.clone(), vdir.clone());
        swap.step(
            "swap",
            format!("exchange {} with the rebuilt tree", vdir.display()),
            move || {
                sys::fs::exchange(&build_dir, &vdir)?;
                txn::undo(move || sys::fs::exchange(&build_dir, &vdir))
            },
        );
    }
    ctx.record_plan(swap.planned_actions());
    let outcome = swap.run(dry);
    // Staging holds the old tree now (or the unused rebuild): gone either way.
    if !dry {
        let cleanup = remove_tree(&layout.staging_dir);
        outcome?;
        cleanup?;
    } else {
        outcome?;
    }
    let fresh = fresh.into_inner();
    let human = match &fresh {
        Some(f) => format!(
            "rebuilt {} offline with Node {}",
            f.version, f.runtime.version
        ),
        None => format!("dry run: would rebuild {} offline", m.version),
    };
    Report::new(&serde_json::json!({"reinstalled": fresh}), human).map(|r| r.changed(!dry))
}
