//! `backup schedule`: an instance's backup timer (issue 9 item 4; `domain::schedule` says
//! how the pieces fit). Setting a schedule writes the registry entry and the timer's
//! drop-in and enables and starts `abssctl-backup@<name>.timer`; `--off` stops and
//! disables it and removes the drop-in; `--list` reads each timer over D-Bus.
//!
//! The same steps run inside `instance create` (a new instance gets the configured
//! default schedule), `delete` and `rename`, so a timer never outlives or misses its
//! instance, and each is undone with the rest of its transaction.

use crate::domain::backup::Status;
use crate::domain::config::Config;
use crate::domain::layout::Layout;
use crate::domain::schedule::{self as sch, Schedule};
use crate::domain::state::State;
use crate::domain::txn::{self, Plan, PlannedAction};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::{self as oi, JOB_TIMEOUT};
use crate::sys;
use crate::sys::systemd::{LazySystemd, Systemd, TimerStatus};
use anyhow::Result;
use serde::Serialize;

/// What `backup schedule <instance> ...` was asked to change (None: keep as is, or the
/// configured default for a new schedule). A count of 0 turns that rule off.
#[derive(Debug, Clone, Default)]
pub struct SetArgs {
    pub on_calendar: Option<String>,
    pub randomized_delay: Option<String>,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

/// `backup schedule <instance> ...` / `--off`.
#[derive(Debug, Clone, Serialize)]
pub struct SetResult {
    pub instance: String,
    pub timer: String,
    /// The schedule now (None after --off).
    pub schedule: Option<Schedule>,
    /// systemd's normalized form of the calendar expression.
    pub normalized_calendar: Option<String>,
    pub changed: bool,
    pub dry_run: bool,
    pub planned_actions: Vec<PlannedAction>,
}

impl SetResult {
    fn new(
        instance: String,
        timer: String,
        schedule: Option<Schedule>,
        normalized_calendar: Option<String>,
    ) -> SetResult {
        SetResult {
            instance,
            timer,
            schedule,
            normalized_calendar,
            changed: false,
            dry_run: false,
            planned_actions: Vec::new(),
        }
    }

    /// Record the plan for the audit, run it (or only show it: --dry-run), say what it did.
    fn run(mut self, ctx: &mut Ctx, plan: Plan<'_>) -> Result<SetResult> {
        self.planned_actions = plan.planned_actions();
        ctx.record_plan(self.planned_actions.clone());
        self.dry_run = ctx.globals.dry_run;
        self.changed = !plan.is_empty() && !self.dry_run;
        plan.run(self.dry_run)?;
        Ok(self)
    }
}

/// One row of `backup schedule --list`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub instance: String,
    pub schedule: Option<Schedule>,
    pub timer: String,
    /// The timer as systemd has it (None when systemd could not be asked).
    pub status: Option<TimerStatus>,
    /// RFC 3339 UTC of the next planned run / the last one.
    pub next_run: Option<String>,
    pub last_run: Option<String>,
    /// How the last run ended: success, failed (<Result>, exit N), or never.
    pub last_result: String,
    /// The newest backup a scheduled run made that is in the index.
    pub last_scheduled_backup: Option<String>,
}

/// `backup schedule --list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub schedules: Vec<Row>,
    /// Why live fields are missing (systemd unreachable): one line, not one per row.
    pub warnings: Vec<String>,
}

/// 0 means "rule not used".
fn count(n: u32) -> Option<u32> {
    (n > 0).then_some(n)
}

/// The schedule the configuration describes (`backups.schedule.*`, `backups.retention.*`).
pub fn from_config(cfg: &Config) -> Schedule {
    Schedule {
        on_calendar: cfg.backups_schedule_on_calendar.clone(),
        randomized_delay: cfg.backups_schedule_randomized_delay.clone(),
        keep_last: None,
        keep_daily: count(cfg.backups_retention_keep_daily),
        keep_weekly: count(cfg.backups_retention_keep_weekly),
        keep_monthly: count(cfg.backups_retention_keep_monthly),
    }
}

/// The schedule a new instance gets, or None when `backups.schedule.enabled` is false.
/// Its calendar is checked by systemd's parser first.
pub fn default_for(cfg: &Config) -> Result<Option<Schedule>> {
    if !cfg.backups_schedule_enabled {
        return Ok(None);
    }
    sys::systemd::check_calendar(&cfg.backups_schedule_on_calendar).map_err(|e| {
        e.context("backups.schedule.on_calendar of the configuration (abssctl config show)")
    })?;
    Ok(Some(from_config(cfg)))
}

/// Steps: write the timer drop-in, then (when `enable`) enable and start the timer. The
/// drop-in step reloads systemd itself only when no enable follows (EnableUnitFiles
/// reloads). A start that fails after the enable disables it again before the error goes
/// up, so the step leaves nothing half done.
pub fn plan_on<'a>(
    plan: &mut Plan<'a>,
    sd: &'a dyn Systemd,
    layout: &Layout,
    name: &str,
    s: &Schedule,
    enable: bool,
) {
    oi::step_dropin_as(
        plan,
        sd,
        "timer_dropin",
        sch::dropin_path(layout, name),
        Some(sch::render_dropin(s)),
        !enable,
    );
    if !enable {
        return;
    }
    let timer = sch::timer_unit(name);
    plan.step(
        "timer_enable",
        format!(
            "enable and start {timer} ({}, {})",
            s.on_calendar,
            s.describe_retention()
        ),
        move || {
            let units = vec![timer.clone()];
            sd.enable_units(&units)?;
            if let Err(e) = sd.start_unit(&timer, JOB_TIMEOUT) {
                return Err(match sd.disable_units(&units) {
                    Ok(()) => e,
                    Err(d) => e.context(format!("and disabling it again failed: {d:#}")),
                });
            }
            txn::undo(move || {
                sd.stop_unit(&timer, JOB_TIMEOUT)?;
                sd.disable_units(&units)
            })
        },
    );
}

/// Steps: stop and disable the timer, then remove its drop-in (and reload). A run of the
/// backup service already under way finishes (it holds the instance lock).
pub fn plan_off<'a>(plan: &mut Plan<'a>, sd: &'a dyn Systemd, layout: &Layout, name: &str) {
    let timer = sch::timer_unit(name);
    plan.step(
        "timer_disable",
        format!("stop and disable {timer}"),
        move || {
            let units = vec![timer.clone()];
            sd.stop_unit(&timer, JOB_TIMEOUT)?;
            if let Err(e) = sd.disable_units(&units) {
                return Err(match sd.start_unit(&timer, JOB_TIMEOUT) {
                    Ok(()) => e,
                    Err(s) => e.context(format!("and starting it again failed: {s:#}")),
                });
            }
            txn::undo(move || {
                sd.enable_units(&units)?;
                sd.start_unit(&timer, JOB_TIMEOUT)
            })
        },
    );
    oi::step_dropin_as(
        plan,
        sd,
        "timer_dropin",
        sch::dropin_path(layout, name),
        None,
        true,
    );
}

/// Does this instance have anything of a timer to take down (a schedule in the registry,
/// or a drop-in left by hand or by an interrupted run)?
pub fn has_timer(layout: &Layout, entry: &crate::domain::state::InstanceEntry) -> bool {
    entry.schedule.is_some() || sys::instdir::exists(&sch::dropin_path(layout, &entry.name))
}

/// Validate the flags before anything else (text, then systemd's own parser).
fn check_args(a: &SetArgs) -> Result<Option<String>> {
    for (flag, n) in [
        ("--keep", a.keep_last),
        ("--keep-daily", a.keep_daily),
        ("--keep-weekly", a.keep_weekly),
        ("--keep-monthly", a.keep_monthly),
    ] {
        if let Some(n) = n {
            sch::check_count(flag, n)?;
        }
    }
    if let Some(d) = &a.randomized_delay {
        sch::check_delay(d)?;
    }
    match &a.on_calendar {
        Some(c) => {
            sch::check_calendar_text(c)?;
            Ok(Some(sys::systemd::check_calendar(c)?))
        }
        None => Ok(None),
    }
}

/// `backup schedule <instance> [--on-calendar ..] [--keep-* N]`: set (or create) the
/// instance's schedule and make sure its timer is enabled and running.
pub fn set(ctx: &mut Ctx, name: &str, a: &SetArgs) -> Result<SetResult> {
    crate::domain::validate::instance_name(name)?;
    let mut normalized = check_args(a)?;
    let (name, locks) = oi::begin(ctx, name)?;
    let before = State::load(&ctx.layout)?;
    let e = oi::find(&before, name.as_str())?.clone();
    let base = e.schedule.clone().unwrap_or_else(|| from_config(ctx.cfg()));
    let mut s = base;
    if let Some(c) = &a.on_calendar {
        s.on_calendar = c.clone();
    }
    if let Some(d) = &a.randomized_delay {
        s.randomized_delay = d.clone();
    }
    for (flag, slot) in [
        (a.keep_last, &mut s.keep_last),
        (a.keep_daily, &mut s.keep_daily),
        (a.keep_weekly, &mut s.keep_weekly),
        (a.keep_monthly, &mut s.keep_monthly),
    ] {
        if let Some(n) = flag {
            *slot = count(n);
        }
    }
    if normalized.is_none() {
        normalized = Some(sys::systemd::check_calendar(&s.on_calendar)?);
    }
    let timer = sch::timer_unit(&e.name);
    let sd = LazySystemd::new();
    // Is the timer already enabled and running? (A dry run asks no bus: it plans both.)
    let live_ok = !ctx.globals.dry_run && {
        let st = sd.timer_status(std::slice::from_ref(&timer))?;
        st.first()
            .is_some_and(|t| t.unit_file_state == "enabled" && t.active_state == "active")
    };
    let dropin_ok = sys::fs::read_optional(&sch::dropin_path(&ctx.layout, &e.name))?.as_deref()
        == Some(sch::render_dropin(&s).as_str());
    let layout = ctx.layout.clone();
    let mut after = before.clone();
    let record = e.schedule.as_ref() != Some(&s);
    if let Some(x) = after.instances.iter_mut().find(|i| i.name == e.name) {
        x.schedule = Some(s.clone());
        x.last_changed = time::OffsetDateTime::now_utc();
    }
    let mut plan = Plan::new();
    if record {
        oi::step_save_state(
            &mut plan,
            &layout,
            &locks,
            &before,
            &after,
            format!("record the backup schedule of '{}' in the registry", e.name),
        );
    }
    if !(dropin_ok && live_ok) {
        plan_on(&mut plan, &sd, &layout, &e.name, &s, !live_ok);
    }
    let result = SetResult::new(e.name, timer, Some(s), normalized);
    result.run(ctx, plan)
}

/// `backup schedule <instance> --off`: no more scheduled backups (the existing backups
/// stay; nothing is pruned).
pub fn off(ctx: &mut Ctx, name: &str) -> Result<SetResult> {
    let (name, locks) = oi::begin(ctx, name)?;
    let before = State::load(&ctx.layout)?;
    let e = oi::find(&before, name.as_str())?.clone();
    let timer = sch::timer_unit(&e.name);
    let sd = LazySystemd::new();
    let live_on = !ctx.globals.dry_run && {
        let st = sd.timer_status(std::slice::from_ref(&timer))?;
        st.first()
            .is_some_and(|t| t.unit_file_state == "enabled" || t.active_state == "active")
    };
    let layout = ctx.layout.clone();
    let mut after = before.clone();
    if let Some(x) = after.instances.iter_mut().find(|i| i.name == e.name) {
        x.schedule = None;
        x.last_changed = time::OffsetDateTime::now_utc();
    }
    let mut plan = Plan::new();
    if e.schedule.is_some() {
        oi::step_save_state(
            &mut plan,
            &layout,
            &locks,
            &before,
            &after,
            format!(
                "remove the backup schedule of '{}' from the registry",
                e.name
            ),
        );
    }
    if live_on || has_timer(&layout, &e) {
        plan_off(&mut plan, &sd, &layout, &e.name);
    }
    SetResult::new(e.name, timer, None, None).run(ctx, plan)
}

fn rfc3339_usec(usec: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(usec) * 1000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// How the last run of a timer's service ended, in words.
fn last_result(st: Option<&TimerStatus>) -> String {
    let Some(st) = st else {
        return "unknown (systemd not reachable)".into();
    };
    match (st.service_ended_usec, st.service_result.as_str()) {
        _ if st.service_active_state == "activating" => "running".into(),
        (None, _) => "never".into(),
        (Some(_), "success") => "success".into(),
        (Some(_), r) => format!(
            "failed ({r}, exit {})",
            st.service_exit_status.unwrap_or_default()
        ),
    }
}

/// `backup schedule --list [<instance>]`: every instance, its schedule and its timer.
pub fn list(ctx: &mut Ctx, only: Option<&str>) -> Result<ListResult> {
    let state = State::load(&ctx.layout)?;
    let entries: Vec<_> = match only {
        Some(n) => {
            vec![oi::find(&state, crate::domain::validate::instance_name(n)?.as_str())?.clone()]
        }
        None => state.instances.clone(),
    };
    let timers: Vec<String> = entries.iter().map(|e| sch::timer_unit(&e.name)).collect();
    let mut warnings = Vec::new();
    let live = match LazySystemd::new().timer_status(&timers) {
        Ok(l) => Some(l),
        Err(e) => {
            warnings.push(format!(
                "systemd could not be asked about the timers: {e:#}"
            ));
            None
        }
    };
    ctx.op.warnings.extend(warnings.clone());
    let idx = super::load_index(ctx)?;
    let rows = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let st = live.as_ref().and_then(|l| l.get(i)).cloned();
            let last_backup = idx
                .of(Some(&e.name))
                .into_iter()
                .filter(|b| b.reason == sch::REASON && b.status == Status::Present)
                .max_by_key(|b| b.created_at)
                .map(|b| b.id.clone());
            Row {
                instance: e.name.clone(),
                timer: sch::timer_unit(&e.name),
                next_run: st
                    .as_ref()
                    .and_then(|s| s.next_elapse_usec)
                    .and_then(rfc3339_usec),
                last_run: st
                    .as_ref()
                    .and_then(|s| s.last_trigger_usec)
                    .and_then(rfc3339_usec),
                last_result: last_result(st.as_ref()),
                status: st,
                schedule: e.schedule,
                last_scheduled_backup: last_backup,
            }
        })
        .collect();
    Ok(ListResult {
        schedules: rows,
        warnings,
    })
}

/// The retention of `name`'s schedule, for `backup prune --policy` (None: no schedule).
/// A schedule that keeps everything gives an empty policy: nothing is pruned.
pub fn policy_of(state: &State, name: &str) -> Option<crate::domain::retention::Policy> {
    state
        .instances
        .iter()
        .find(|i| i.name == name)
        .and_then(|i| i.schedule.as_ref())
        .map(Schedule::retention)
}

/// The error of `prune --policy --instance N` when N has no retention to apply.
pub fn no_policy(name: &str) -> anyhow::Error {
    Failure::validation(format!("instance '{name}' has no backup schedule to take a retention from"))
        .hint(format!(
            "set one: abssctl backup schedule {name} --keep-daily 7 (or prune with explicit --keep-* flags)"
        ))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(active: &str, ended: Option<u64>, result: &str, status: Option<i32>) -> TimerStatus {
        TimerStatus {
            service_active_state: active.into(),
            service_ended_usec: ended,
            service_result: result.into(),
            service_exit_status: status,
            ..TimerStatus::default()
        }
    }

    #[test]
    fn the_last_result_reads_as_the_operator_needs_it() {
        assert_eq!(last_result(None), "unknown (systemd not reachable)");
        assert_eq!(
            last_result(Some(&st("inactive", None, "success", None))),
            "never"
        );
        assert_eq!(
            last_result(Some(&st("activating", Some(1), "success", Some(0)))),
            "running"
        );
        assert_eq!(
            last_result(Some(&st("inactive", Some(1), "success", Some(0)))),
            "success"
        );
        assert_eq!(
            last_result(Some(&st("failed", Some(1), "exit-code", Some(2)))),
            "failed (exit-code, exit 2)"
        );
    }

    #[test]
    fn systemd_microseconds_become_rfc3339_utc() {
        assert_eq!(
            rfc3339_usec(1_764_720_000_000_000).as_deref(),
            Some("2025-12-03T00:00:00Z")
        );
    }
}
