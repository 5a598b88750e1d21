//! `abssctl backup schedule ...`: an instance's backup timer (set, `--off`, `--list`).

use crate::cli::Report;
use crate::cli::output::table;
use crate::ops::Ctx;
use crate::ops::backup::schedule::{self, SetArgs};
use clap::Args;

#[derive(Debug, Args)]
pub struct ScheduleCli {
    /// The instance whose schedule to set (with --list: only this one).
    #[arg(required_unless_present = "list")]
    pub instance: Option<String>,
    /// When it runs: a systemd OnCalendar= expression (daily, '*-*-* 03:00', 'Sun 04:00').
    #[arg(long, value_name = "SPEC")]
    pub on_calendar: Option<String>,
    /// Spread the runs by up to this much (RandomizedDelaySec=: 0, 30min, 1h).
    #[arg(long, value_name = "SPAN")]
    pub randomized_delay: Option<String>,
    /// After each run keep the N newest (0: rule off).
    #[arg(long = "keep", value_name = "N")]
    pub keep_last: Option<u32>,
    /// After each run keep one per day for the last N days (0: rule off).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// After each run keep one per ISO week for the last N weeks (0: rule off).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// After each run keep one per month for the last N months (0: rule off).
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// No more scheduled backups for the instance (its backups stay).
    #[arg(long, conflicts_with_all = ["on_calendar", "randomized_delay", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "list"])]
    pub off: bool,
    /// Every instance's schedule, its next run and how the last one ended.
    #[arg(long, conflicts_with_all = ["on_calendar", "randomized_delay", "keep_last", "keep_daily", "keep_weekly", "keep_monthly"])]
    pub list: bool,
}

impl ScheduleCli {
    /// The operation name in the audit log.
    pub fn name(&self) -> &'static str {
        if self.list {
            "schedule-list"
        } else {
            "schedule"
        }
    }
}

pub fn run(ctx: &mut Ctx, c: &ScheduleCli) -> anyhow::Result<Report> {
    if c.list {
        let l = schedule::list(ctx, c.instance.as_deref())?;
        for w in &l.warnings {
            eprintln!("warning: {w}");
        }
        let rows: Vec<Vec<String>> = l
            .schedules
            .iter()
            .map(|r| {
                let (when, keep) = match &r.schedule {
                    Some(s) => (s.on_calendar.clone(), s.describe_retention()),
                    None => ("off".into(), "-".into()),
                };
                let timer = r.status.as_ref().map_or("?".to_string(), |s| {
                    format!("{}/{}", s.active_state, s.unit_file_state)
                });
                vec![
                    r.instance.clone(),
                    when,
                    keep,
                    timer,
                    r.next_run.clone().unwrap_or_else(|| "-".into()),
                    r.last_run.clone().unwrap_or_else(|| "-".into()),
                    r.last_result.clone(),
                ]
            })
            .collect();
        let human = if rows.is_empty() {
            "no instances".to_string()
        } else {
            table(
                &[
                    "INSTANCE",
                    "SCHEDULE",
                    "RETENTION",
                    "TIMER",
                    "NEXT",
                    "LAST",
                    "RESULT",
                ],
                &rows,
            )
        };
        return Report::new(&l, human);
    }
    let name = c.instance.as_deref().unwrap_or_default();
    let r = if c.off {
        schedule::off(ctx, name)?
    } else {
        schedule::set(
            ctx,
            name,
            &SetArgs {
                on_calendar: c.on_calendar.clone(),
                randomized_delay: c.randomized_delay.clone(),
                keep_last: c.keep_last,
                keep_daily: c.keep_daily,
                keep_weekly: c.keep_weekly,
                keep_monthly: c.keep_monthly,
            },
        )?
    };
    let what = match &r.schedule {
        Some(s) => format!(
            "backups of '{}' run {} ({}), delay up to {}, {}",
            r.instance,
            s.on_calendar,
            r.normalized_calendar.as_deref().unwrap_or("?"),
            s.randomized_delay,
            s.describe_retention()
        ),
        None => format!("no scheduled backups for '{}'", r.instance),
    };
    let human = if r.dry_run {
        let steps = r
            .planned_actions
            .iter()
            .map(|a| format!("  - {}", a.description))
            .collect::<Vec<_>>()
            .join("\n");
        format!("dry run, {what}; would:\n{steps}")
    } else if r.changed {
        format!("{what} ({})", r.timer)
    } else {
        format!("{what} (already so, nothing changed)")
    };
    Ok(Report::new(&r, human)?.changed(r.changed))
}
