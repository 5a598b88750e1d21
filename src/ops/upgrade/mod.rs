//! `abssctl upgrade`, `instance set-version` to another version, and `instance rollback`:
//! moving an instance's data to another Actual version without ever leaving it broken.
//!
//! The per-instance transaction is in `one.rs` (snapshot while stopped, rebind, start,
//! health gate, automatic rollback); the refusal of a downgrade below the data's migrations
//! in `downgrade.rs`. Here: choosing the target (installing it with its runtime when
//! missing) and the rolling order, which stops at the first instance that does not end on
//! the target, so the instances after it are never touched.

pub mod downgrade;
pub mod one;
pub mod rollback;

use crate::domain::state::{State, VersionBinding};
use crate::domain::txn::Rollback;
use crate::domain::validate::{self, VersionSpec};
use crate::error::{Failure, Kind};
use crate::ops::instance::lifecycle::confirm;
use crate::ops::instance::{find, resolve_version};
use crate::ops::{Ctx, Report};
use crate::sys::npm;
use anyhow::Result;
use one::{Outcome, Status};
use serde::Serialize;
use std::time::Duration;

/// What `upgrade` was asked.
#[derive(Debug, Clone, Default)]
pub struct UpgradeArgs {
    pub instances: Vec<String>,
    pub all: bool,
    /// X.Y.Z or `latest` (the default).
    pub to: Option<String>,
}

/// `upgrade --json`.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeResult {
    pub target: String,
    /// The target was installed by this run (with its runtime).
    pub installed: bool,
    pub mode: &'static str,
    /// Every instance ended on the target (or already was there).
    pub ok: bool,
    pub instances: Vec<Outcome>,
    /// What the operator must know (a copy kept, a leftover found).
    pub warnings: Vec<String>,
    pub dry_run: bool,
    pub planned_actions: Vec<crate::domain::txn::PlannedAction>,
}

/// How long the health gate waits for an upgraded (or rolled back) server.
pub fn gate_timeout(ctx: &Ctx) -> Duration {
    Duration::from_secs(ctx.cfg().upgrades_health_timeout)
}

/// `abssctl upgrade` (see the module doc).
pub fn upgrade(ctx: &mut Ctx, args: &UpgradeArgs) -> Result<Report> {
    ctx.require_root()?;
    let state = State::load(&ctx.layout)?;
    let names: Vec<String> = match (args.instances.is_empty(), args.all) {
        (false, false) => {
            let mut v = Vec::new();
            for n in &args.instances {
                let n = validate::instance_name(n)?;
                find(&state, n.as_str())?;
                if !v.contains(&n.as_str().to_string()) {
                    v.push(n.as_str().to_string());
                }
            }
            v
        }
        (true, true) => {
            let mut v: Vec<String> = state.instances.iter().map(|i| i.name.clone()).collect();
            v.sort();
            v
        }
        _ => {
            return Err(
                Failure::validation("name the instances to upgrade, or say --all")
                    .hint("abssctl upgrade <instance>... | --all [--to X.Y.Z]")
                    .into(),
            );
        }
    };
    if names.is_empty() {
        return Err(Failure::validation("there are no instances to upgrade")
            .hint("create one with: abssctl instance create")
            .into());
    }
    if let [one] = names.as_slice() {
        crate::sys::logging::set_instance(one);
        ctx.op.target = Some(crate::domain::audit::Target {
            kind: "instance".into(),
            name: one.clone(),
        });
    }
    let target = target_version(ctx, args.to.as_deref())?;
    confirm(
        ctx,
        &format!(
            "upgrade {} to Actual {target}, one after the other (each is stopped, snapshotted, restarted and checked; a failure rolls it back)?",
            names.join(", ")
        ),
        "upgrade",
    )?;
    let installed = ensure_target(ctx, &target)?;
    let timeout = gate_timeout(ctx);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut stop: Option<(Kind, String, Option<Rollback>)> = None;
    for name in &names {
        if stop.is_some() {
            outcomes.push(Outcome::new(name, Status::NotAttempted, &target));
            continue;
        }
        let state = State::load(&ctx.layout)?;
        let old = find(&state, name)?.clone();
        if ctx.globals.dry_run && installed {
            // The target is not there yet: its install is planned; each instance's steps
            // are those of a set-version (see its dry run once the version is installed).
            let mut o = Outcome::new(name, Status::Planned, &target);
            o.from = resolve_version(&ctx.layout, &old.version_binding)
                .ok()
                .map(|r| r.version);
            outcomes.push(o);
            continue;
        }
        let binding = one::binding_for(&ctx.layout, &old.version_binding, &target)?;
        match one::upgrade(ctx, name, &binding, timeout) {
            Ok(o) => {
                if !o.ok() {
                    let (kind, rb) = o.failure.clone().unwrap_or((Kind::Provider, None));
                    stop = Some((
                        kind,
                        format!(
                            "the upgrade of '{name}' to Actual {target} failed{}",
                            why(&o)
                        ),
                        rb,
                    ));
                }
                outcomes.push(o);
            }
            Err(e) => {
                let (kind, message, _) = crate::error::classify(&e);
                let mut o = Outcome::new(name, Status::Refused, &target);
                o.from = resolve_version(&ctx.layout, &old.version_binding)
                    .ok()
                    .map(|r| r.version);
                o.error = Some(message.clone());
                outcomes.push(o);
                stop = Some((kind, format!("'{name}' was not upgraded: {message}"), None));
            }
        }
    }
    let dry_run = ctx.globals.dry_run;
    let result = UpgradeResult {
        target: target.clone(),
        installed,
        mode: "rolling",
        ok: stop.is_none(),
        instances: outcomes,
        warnings: ctx.op.warnings.clone(),
        dry_run,
        planned_actions: ctx.op.planned.clone(),
    };
    // As for any failed transaction: a complete rollback changed nothing (the snapshot it
    // took stays, as the backups offered before other commands do).
    let changed = !dry_run && (installed || result.instances.iter().any(Outcome::changed));
    let human = human(&result);
    let report = Report::new(&result, human)?.changed(changed);
    Ok(match stop {
        Some((kind, message, rb)) => report.failed(kind, message, rb),
        None => report,
    })
}

/// The version to go to: X.Y.Z as given, or the newest stable release (`latest`).
fn target_version(ctx: &Ctx, to: Option<&str>) -> Result<String> {
    match validate::version(to.unwrap_or("latest"))? {
        VersionSpec::Exact(v) => Ok(v.to_string()),
        VersionSpec::Latest => {
            let cfg = ctx.cfg().clone();
            let url = npm::resolve_registry(&cfg.npm_registry, &npm::machine_npm())?;
            let pk = npm::Registry::new(&url)?.packument(&cfg.npm_package_name)?;
            let latest = pk.latest_stable().ok_or_else(|| {
                Failure::environment(format!("{} has no stable release", cfg.npm_package_name))
            })?;
            Ok(latest.to_string())
        }
        VersionSpec::Current => Err(Failure::validation(
            "'current' is not a version to upgrade to",
        )
        .hint("give --to X.Y.Z or --to latest; to follow current, use abssctl version switch")
        .into()),
    }
}

/// Install the target (and its runtime) when it is missing; true when this run did.
fn ensure_target(ctx: &mut Ctx, target: &str) -> Result<bool> {
    let binding = VersionBinding::Exact(semver::Version::parse(target)?);
    if resolve_version(&ctx.layout, &binding).is_ok() {
        return Ok(false);
    }
    if ctx.globals.dry_run {
        ctx.op.planned.push(crate::domain::txn::PlannedAction {
            action: "version_install".into(),
            description: format!("install Actual {target} and the Node runtime it needs"),
            irreversible: false,
        });
        return Ok(true);
    }
    let opts = crate::ops::version::InstallOpts {
        version: target.to_string(),
        set_current: false,
        include_prerelease: false,
        offline: false,
        offer: crate::ops::backup::safety::Offer::Skip,
    };
    crate::ops::version::install(ctx, &opts)?;
    Ok(true)
}

/// ": <error>" (which says "rolled back" or "rollback incomplete (...)" itself), and where
/// the data from before is when the rollback stopped.
fn why(o: &Outcome) -> String {
    let mut s = format!(": {}", o.error.as_deref().unwrap_or("unknown error"));
    if let Some(k) = &o.kept_copy {
        s.push_str(&format!(
            "; the data from before the upgrade is kept in {}",
            k.display()
        ));
    }
    s
}

fn human(r: &UpgradeResult) -> String {
    let rows: Vec<Vec<String>> = r
        .instances
        .iter()
        .map(|o| {
            vec![
                o.instance.clone(),
                o.from.clone().unwrap_or_else(|| "-".into()),
                o.to.clone(),
                serde_json::to_value(&o.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                o.downtime_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                o.snapshot.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = String::new();
    if r.installed {
        out.push_str(&format!("installed Actual {}\n", r.target));
    }
    out.push_str(&crate::ops::report::table(
        &["INSTANCE", "FROM", "TO", "RESULT", "DOWNTIME", "SNAPSHOT"],
        &rows,
    ));
    for o in &r.instances {
        if let Some(e) = &o.error {
            out.push_str(&format!("\n{}: {e}", o.instance));
        }
    }
    for w in &r.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    out
}

/// What `instance set-version` did: the upgrade transaction (another version), or a
/// binding change that keeps the version its server runs.
#[derive(Debug)]
pub enum SetVersion {
    Upgrade(Report),
    Binding(crate::ops::instance::lifecycle::ActionResult),
}

/// `instance set-version <name> <X.Y.Z|current>`: when the server would run another
/// version, the same path as `upgrade` (snapshot while stopped, gate on the new version,
/// automatic rollback, downgrade refusal); otherwise the plain setting change.
pub fn set_version(
    ctx: &mut Ctx,
    name: &str,
    version: &str,
    offer: crate::ops::backup::safety::Offer,
) -> Result<SetVersion> {
    use crate::ops::instance::lifecycle::{self, Change};
    let spec = validate::version(version)?;
    let checked = crate::ops::instance::check(ctx, name)?;
    let state = State::load(&ctx.layout)?;
    let old = find(&state, checked.as_str())?.clone();
    let binding = match spec {
        VersionSpec::Current => VersionBinding::Current,
        VersionSpec::Exact(x) => VersionBinding::Exact(x),
        VersionSpec::Latest => {
            return Err(Failure::validation("'latest' is not an installed version")
                .hint("give an installed version X.Y.Z or 'current'; to install and move to the newest: abssctl upgrade <name>")
                .into());
        }
    };
    let to = resolve_version(&ctx.layout, &binding)?;
    let running = resolve_version(&ctx.layout, &old.version_binding).ok();
    if running.is_some_and(|r| r.version == to.version) {
        return lifecycle::set(ctx, name, &Change::Version(version.to_string(), offer))
            .map(SetVersion::Binding);
    }
    confirm(
        ctx,
        &format!(
            "switch '{}' to Actual {} (stops it, snapshots its data, restarts it; a failure rolls it back)?",
            old.name, to.version
        ),
        "set-version",
    )?;
    let timeout = gate_timeout(ctx);
    let o = one::upgrade(ctx, checked.as_str(), &binding, timeout)?;
    let dry_run = ctx.globals.dry_run;
    let ok = o.ok();
    let failure = (!ok).then(|| {
        let (kind, rb) = o.failure.clone().unwrap_or((Kind::Provider, None));
        let message = format!(
            "'{}' did not move to Actual {}{}",
            o.instance,
            to.version,
            why(&o)
        );
        (kind, message, rb)
    });
    let result = UpgradeResult {
        target: to.version.clone(),
        installed: false,
        mode: "single",
        ok,
        instances: vec![o],
        warnings: ctx.op.warnings.clone(),
        dry_run,
        planned_actions: ctx.op.planned.clone(),
    };
    let human = human(&result);
    let changed = !dry_run && result.instances.iter().any(Outcome::changed);
    let report = Report::new(&result, human)?.changed(changed);
    Ok(SetVersion::Upgrade(match failure {
        Some((kind, message, rb)) => report.failed(kind, message, rb),
        None => report,
    }))
}
