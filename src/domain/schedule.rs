//! Scheduled backups (issue 9 item 4): the per-instance policy kept in the registry, and
//! what it becomes for systemd.
//!
//! The package ships a template pair, `abssctl-backup@.timer` and `.service`. The timer
//! of instance `n` is `abssctl-backup@n.timer`; its calendar comes from a drop-in
//! rendered here from the registry (the registry is the one source: `backup schedule`
//! changes it and re-renders the drop-in). The service runs `backup create n --reason
//! scheduled` and then `backup prune --instance n --policy`, which reads the retention
//! from this same registry entry, so a policy change never needs the unit touched.

use crate::domain::layout::Layout;
use crate::domain::retention;
use crate::error::Failure;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The template's name prefix: `abssctl-backup@<instance>.timer` / `.service`.
pub const UNIT_PREFIX: &str = "abssctl-backup@";
/// File name of the rendered timer drop-in.
pub const DROPIN_FILE: &str = "50-abssctl.conf";
/// The `reason` a scheduled backup records in the index.
pub const REASON: &str = "scheduled";
/// Longest OnCalendar= expression accepted (systemd has no limit; a sane one is short).
const CALENDAR_MAX: usize = 200;

/// An instance's backup schedule (the `schedule` of its registry entry; absent: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// systemd OnCalendar= expression (`daily`, `*-*-* 03:00`, `Mon..Fri 22:30`).
    pub on_calendar: String,
    /// systemd RandomizedDelaySec= (`0`, `30min`, `1h`): spreads the instances' runs.
    pub randomized_delay: String,
    /// Retention after each run (the `backup prune` rules; none given keeps everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
}

impl Schedule {
    /// The retention rules for `backup prune --policy`.
    pub fn retention(&self) -> retention::Policy {
        retention::Policy {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            older_than: None,
        }
    }

    /// "daily, keep 7 daily, 4 weekly, 6 monthly" (for tables and prompts).
    pub fn describe_retention(&self) -> String {
        let parts: Vec<String> = [
            (self.keep_last, "last"),
            (self.keep_daily, "daily"),
            (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly"),
        ]
        .iter()
        .filter_map(|(n, what)| n.map(|n| format!("{n} {what}")))
        .collect();
        if parts.is_empty() {
            "keep all".into()
        } else {
            format!("keep {}", parts.join(", "))
        }
    }
}

/// `abssctl-backup@<name>.timer`.
pub fn timer_unit(name: &str) -> String {
    format!("{UNIT_PREFIX}{name}.timer")
}

/// `abssctl-backup@<name>.service`.
pub fn service_unit(name: &str) -> String {
    format!("{UNIT_PREFIX}{name}.service")
}

/// Where the timer's drop-in of instance `name` lives.
pub fn dropin_path(layout: &Layout, name: &str) -> PathBuf {
    layout
        .systemd_unit_dir
        .join(format!("{}.d", timer_unit(name)))
        .join(DROPIN_FILE)
}

/// The timer drop-in. `OnCalendar=` is emptied first: the template's own `daily` would
/// otherwise stay as a second trigger (OnCalendar= adds up, an empty one resets).
pub fn render_dropin(s: &Schedule) -> String {
    format!(
        "# Written by abssctl from its registry (abssctl backup schedule); edits here are\n\
         # replaced. Change the schedule with: abssctl backup schedule <instance> ...\n\
         [Timer]\nOnCalendar=\nOnCalendar={}\nRandomizedDelaySec={}\n",
        s.on_calendar, s.randomized_delay
    )
}

/// The shape of an OnCalendar= expression before systemd judges it (`systemd-analyze
/// calendar`, in sys): one line of printable ASCII, so nothing can be smuggled into the
/// drop-in as a second setting.
pub fn check_calendar_text(spec: &str) -> Result<(), Failure> {
    let ok = !spec.trim().is_empty()
        && spec.len() <= CALENDAR_MAX
        && spec.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if ok {
        Ok(())
    } else {
        Err(Failure::validation(format!(
            "'{}' is not a calendar expression",
            spec.escape_default()
        ))
        .hint("give a systemd OnCalendar= value, e.g. daily, '*-*-* 03:00' or 'Sun 04:00' (man systemd.time)"))
    }
}

/// Most backups one retention rule may keep (the same bound as the `backups.retention.*`
/// configuration keys).
pub const COUNT_MAX: u32 = 10_000;

/// A retention count given as `flag`: 0 (rule off) to [`COUNT_MAX`].
pub fn check_count(flag: &str, n: u32) -> Result<(), Failure> {
    if n <= COUNT_MAX {
        return Ok(());
    }
    Err(
        Failure::validation(format!("{flag} {n} is more than {COUNT_MAX}"))
            .hint("give how many backups that rule keeps, 0 to 10000 (0: the rule is not used)"),
    )
}

/// A systemd time span as RandomizedDelaySec= takes it, in the plain forms: `0`, `90`,
/// `30s`, `15min`, `2h`, `1h 30min`.
pub fn check_delay(spec: &str) -> Result<(), Failure> {
    const UNITS: &[&str] = &["", "s", "sec", "m", "min", "h", "hr", "hour", "hours"];
    let ok = !spec.trim().is_empty()
        && spec.len() <= 40
        && spec.split(' ').filter(|p| !p.is_empty()).all(|part| {
            let digits = part.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && UNITS.contains(&&part[digits..])
        });
    if ok {
        Ok(())
    } else {
        Err(
            Failure::validation(format!("'{}' is not a time span", spec.escape_default()))
                .hint("give seconds, or a span such as 30min, 1h or 1h 30min (0: no delay)"),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    fn sched() -> Schedule {
        Schedule {
            on_calendar: "*-*-* 03:00".into(),
            randomized_delay: "30min".into(),
            keep_last: None,
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: None,
        }
    }

    #[test]
    fn the_dropin_resets_the_templates_calendar_then_sets_the_instances() {
        let text = render_dropin(&sched());
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "[Timer]",
                "OnCalendar=",
                "OnCalendar=*-*-* 03:00",
                "RandomizedDelaySec=30min"
            ]
        );
    }

    #[test]
    fn retention_is_the_prune_policy_of_the_same_rules() {
        let p = sched().retention();
        assert_eq!(
            (p.keep_last, p.keep_daily, p.keep_weekly, p.keep_monthly),
            (None, Some(7), Some(4), None)
        );
        assert!(p.older_than.is_none());
        assert_eq!(sched().describe_retention(), "keep 7 daily, 4 weekly");
        let none = Schedule {
            keep_daily: None,
            keep_weekly: None,
            ..sched()
        };
        assert!(none.retention().is_empty());
        assert_eq!(none.describe_retention(), "keep all");
    }

    #[test]
    fn calendar_text_is_one_printable_line() {
        for good in ["daily", "*-*-* 03:00", "Mon..Fri 22:30", "weekly"] {
            check_calendar_text(good).unwrap();
        }
        for bad in [
            "",
            "  ",
            "daily\nExecStart=/bin/sh",
            "daily\r",
            "dé",
            &"x".repeat(201),
        ] {
            let e = check_calendar_text(bad).unwrap_err();
            assert!(
                e.message.contains("is not a calendar expression"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn delays_are_plain_spans() {
        for good in ["0", "90", "30s", "15min", "2h", "1h 30min"] {
            check_delay(good).unwrap();
        }
        for bad in ["", "h", "-5", "1d", "5 min\n", "1h;x", "1.5h"] {
            assert!(check_delay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unit_names_and_dropin_path() {
        assert_eq!(timer_unit("budget"), "abssctl-backup@budget.timer");
        assert_eq!(service_unit("budget"), "abssctl-backup@budget.service");
        let layout = Layout::new(
            &crate::domain::config::Config::default(),
            std::path::Path::new("/etc/abssctl/config.yml"),
        );
        assert_eq!(
            dropin_path(&layout, "budget"),
            PathBuf::from("/etc/systemd/system/abssctl-backup@budget.timer.d/50-abssctl.conf")
        );
    }
}
