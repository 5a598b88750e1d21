//! `version check [--record [--auto-upgrade]]`: installed versions against the newest
//! stable release. With `--record` the result goes to `<state_dir>/updates.json` (what
//! `instance list` shows, without asking the network); the weekly
//! abssctl-update-check.timer runs it with `--auto-upgrade`, which upgrades only when the
//! operator turned `upgrades.auto_upgrade` on.

use crate::domain::state::{State, VersionBinding};
use crate::domain::txn::Plan;
use crate::domain::updates::{self, UpdatesRecord};
use crate::error;
use crate::ops::instance::step_dropin_as;
use crate::ops::version_manage::{current, installed};
use crate::ops::{Ctx, Report};
use crate::sys::{self, npm};
use anyhow::Result;
use time::OffsetDateTime;

/// What `version check` was asked to do besides comparing.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOpts {
    /// Write the result (or the failure) to the updates file.
    pub record: bool,
    /// Upgrade every instance when `upgrades.auto_upgrade` is on and one is behind.
    pub auto_upgrade: bool,
}

/// `version check`. A failed check (registry unreachable) keeps its exit code; with
/// `record` it is written down first, beside the last good result.
pub fn check(ctx: &mut Ctx, opts: CheckOpts) -> Result<Report> {
    let mut window = None;
    if opts.record {
        ctx.require_root()?;
        // Before the network: a window systemd refuses is the operator's to fix (exit 2),
        // whether or not the registry answers.
        window = keep_window(ctx)?;
    }
    let now = OffsetDateTime::now_utc();
    let rec = match find(ctx, now) {
        Ok(r) => r,
        Err(e) if opts.record => {
            // The check's own failure is the result (exit 3 when unreachable); a record
            // that cannot be written on top of it is only a warning.
            if let Err(w) = record_failure(ctx, now, &e) {
                tracing::warn!("could not record the failed check: {w:#}");
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let latest = rec.latest.clone().unwrap_or_default();
    let update = rec.update_available == Some(true);
    let command = format!("sudo abssctl version install {latest} --set-current");
    let mut human = if update {
        format!(
            "newest release: {latest}; installed: {}\nto upgrade: {command}",
            if rec.installed.is_empty() {
                "none".to_string()
            } else {
                rec.installed.join(", ")
            }
        )
    } else {
        format!("up to date: {latest} is installed")
    };
    let behind: Vec<String> = rec
        .instances
        .iter()
        .filter(|i| i.update_available.is_some())
        .map(|i| format!("{} ({})", i.name, i.version.as_deref().unwrap_or("?")))
        .collect();
    if !behind.is_empty() {
        human.push_str(&format!(
            "\ninstances behind {latest}: {}",
            behind.join(", ")
        ));
    }
    let path = ctx.layout.updates_file.clone();
    let recorded = opts.record && !ctx.globals.dry_run;
    if recorded {
        sys::fs::write_atomic(&path, rec.render().as_bytes(), RECORD_MODE)?;
        human.push_str(&format!("\nrecorded in {}", path.display()));
    } else if opts.record {
        human.push_str(&format!("\ndry run: would record in {}", path.display()));
    }
    if let Some(w) = &window {
        human.push_str(&format!(
            "\n{}update-check window: {w} ({})",
            if ctx.globals.dry_run {
                "dry run: would set the "
            } else {
                ""
            },
            updates::TIMER_UNIT
        ));
    }
    let auto = if opts.auto_upgrade {
        let a = auto_upgrade(ctx, &latest, !behind.is_empty())?;
        human.push_str(&format!("\nauto_upgrade: {a}"));
        Some(a)
    } else {
        None
    };
    Report::new(
        &serde_json::json!({"latest": latest, "installed": rec.installed, "current": rec.current,
            "update_available": update, "command": update.then_some(command),
            "instances": rec.instances, "checked_at": updates_time(now),
            "recorded": recorded.then_some(path), "auto_upgrade": auto,
            "window_changed": window}),
        human,
    )
    .map(|r| r.changed(recorded || (window.is_some() && !ctx.globals.dry_run)))
}

/// Keep the timer's window in step with `upgrades.check_on_calendar`: a drop-in when it
/// is not the shipped calendar, none when it is. Checked by systemd's own parser first;
/// nothing changed (the usual case) needs no systemd at all.
/// Returns the new window when the drop-in changed.
fn keep_window(ctx: &mut Ctx) -> Result<Option<String>> {
    let cal = ctx.cfg().upgrades_check_on_calendar.clone();
    let text = updates::render_dropin(&cal);
    if text.is_some() {
        sys::systemd::check_calendar(&cal).map_err(|e| {
            e.context("upgrades.check_on_calendar of the configuration (abssctl config show)")
        })?;
    }
    let path = updates::dropin_path(&ctx.layout);
    if sys::fs::read_optional(&path)?.as_deref() == text.as_deref() {
        return Ok(None);
    }
    // A unit file change, like the backup timers' drop-ins: under the global lock (only
    // when there is one to make, so a routine check never waits for a long operation).
    let _g = ctx.lock_global()?;
    let sd = sys::systemd::LazySystemd::new();
    let mut plan = Plan::new();
    step_dropin_as(&mut plan, &sd, "update_check_window", path, text, true);
    ctx.record_plan(plan.planned_actions());
    plan.run(ctx.globals.dry_run)?;
    Ok(Some(cal))
}

/// The updates file is not secret (versions and instance names, as `instance list`
/// shows them), so it is readable by all, like the config file.
const RECORD_MODE: u32 = 0o644;

fn updates_time(t: OffsetDateTime) -> String {
    crate::domain::audit::rfc3339(t)
}

/// Ask the registry and compare: the record of a good check.
fn find(ctx: &Ctx, now: OffsetDateTime) -> Result<UpdatesRecord> {
    let cfg = ctx.cfg().clone();
    let url = npm::resolve_registry(&cfg.npm_registry, &npm::machine_npm())?;
    let pk = npm::Registry::new(&url)?.packument(&cfg.npm_package_name)?;
    let latest = pk.latest_stable().ok_or_else(|| {
        error::environment(format!("{} has no stable release", cfg.npm_package_name))
    })?;
    let inst: Vec<String> = installed(ctx)?.into_iter().map(|m| m.version).collect();
    let cur = current(ctx)?;
    let mut instances: Vec<(String, Option<String>)> = State::load(&ctx.layout)?
        .instances
        .into_iter()
        .map(|i| {
            let v = match i.version_binding {
                VersionBinding::Exact(v) => Some(v.to_string()),
                VersionBinding::Current => cur.clone(),
            };
            (i.name, v)
        })
        .collect();
    instances.sort();
    Ok(UpdatesRecord::good(now, &latest, inst, cur, instances))
}

/// The previous record, if there is a readable one (a broken file is replaced, with a
/// warning: it only held the last check's findings).
pub fn read_record(ctx: &Ctx) -> Option<UpdatesRecord> {
    let path = &ctx.layout.updates_file;
    match sys::fs::read_optional(path) {
        Ok(Some(text)) => match UpdatesRecord::parse(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("no update record: {e:#}");
            None
        }
    }
}

/// Write down a failed check: its time and error, beside the last good findings.
fn record_failure(ctx: &Ctx, now: OffsetDateTime, e: &anyhow::Error) -> Result<()> {
    let (_, message, _) = error::classify(e);
    let rec = UpdatesRecord::failed(read_record(ctx), now, message);
    match rec.last_good_at {
        Some(t) => tracing::warn!(
            "update check failed; the last good one is {} old ({}): latest {}",
            updates::age(now, t),
            updates_time(t),
            rec.latest.as_deref().unwrap_or("?")
        ),
        None => tracing::warn!("update check failed; no check has succeeded yet"),
    }
    if ctx.globals.dry_run {
        return Ok(());
    }
    sys::fs::write_atomic(
        &ctx.layout.updates_file,
        rec.render().as_bytes(),
        RECORD_MODE,
    )
}

/// `--auto-upgrade`: what was done, in one word for the result. Upgrades only when the
/// operator turned `upgrades.auto_upgrade` on and an instance runs an older version.
fn auto_upgrade(ctx: &mut Ctx, latest: &str, behind: bool) -> Result<&'static str> {
    if !ctx.cfg().upgrades_auto_upgrade {
        tracing::info!("auto_upgrade is off: not upgrading");
        return Ok("off");
    }
    if !behind {
        tracing::info!("auto_upgrade: every instance runs {latest} already");
        return Ok("up_to_date");
    }
    tracing::info!("auto_upgrade: upgrading every instance to {latest} (rolling)");
    run_auto_upgrade(ctx, latest)?;
    Ok("upgraded")
}

/// The rolling upgrade of all instances to `latest`, as `abssctl upgrade --all --rolling
/// --to <latest>` does it, unattended: the operator's `upgrades.auto_upgrade: true` is the
/// consent, so the upgrade's own question is answered (the timer has no terminal), and a
/// report marked failed (an instance rolled back) becomes this function's error, so the
/// unit shows as failed and the journal says why.
fn run_auto_upgrade(ctx: &mut Ctx, latest: &str) -> Result<()> {
    ctx.globals.yes = true;
    let report = crate::ops::upgrade::upgrade(
        ctx,
        &crate::ops::upgrade::UpgradeArgs {
            instances: Vec::new(),
            all: true,
            to: Some(latest.to_string()),
        },
    )?;
    match report.failed {
        None => Ok(()),
        Some(f) => Err(error::Failure::of_kind(f.kind, f.message)
            .hint("see: abssctl instance list; each failed instance was rolled back")
            .into()),
    }
}
