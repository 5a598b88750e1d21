//! The record of the last update check (`<state_dir>/updates.json`): what the registry
//! offered, what is installed and which instances are behind. Written by `version check
//! --record` (the weekly abssctl-update-check.timer), read by `instance list` (and the
//! doctor and the confconsole menu), which never ask the network themselves.
//!
//! A failed check does not wipe what the last good one found: it records its error and
//! time and keeps the last good fields, with `last_good_at` saying how old they are.

use crate::domain::layout::Layout;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use time::OffsetDateTime;

/// The schema of updates.json this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The shipped timer (systemd/abssctl-update-check.timer) and the service it starts.
pub const TIMER_UNIT: &str = "abssctl-update-check.timer";
/// The calendar the shipped timer has: with `upgrades.check_on_calendar` at this value
/// no drop-in is needed.
pub const SHIPPED_CALENDAR: &str = "weekly";

/// Where abssctl writes the timer's window when `upgrades.check_on_calendar` is not the
/// shipped one (an operator's own `systemctl edit` override sorts after it and wins).
pub fn dropin_path(layout: &Layout) -> PathBuf {
    layout
        .systemd_unit_dir
        .join(format!("{TIMER_UNIT}.d"))
        .join(crate::domain::schedule::DROPIN_FILE)
}

/// The timer drop-in for `on_calendar`, or None for the shipped calendar (no drop-in).
/// `OnCalendar=` is emptied first, or the shipped `weekly` would stay a second trigger.
pub fn render_dropin(on_calendar: &str) -> Option<String> {
    (on_calendar != SHIPPED_CALENDAR).then(|| {
        format!(
            "# Written by abssctl from upgrades.check_on_calendar (abssctl config show);\n\
             # edits here are replaced by the next `abssctl version check --record`.\n\
             [Timer]\nOnCalendar=\nOnCalendar={on_calendar}\n"
        )
    })
}

/// One instance at the time of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceUpdate {
    pub name: String,
    /// The version the instance runs (its binding resolved); None: `current` is not set.
    pub version: Option<String>,
    /// The newer stable release it could move to; None: up to date (or version unknown).
    pub update_available: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesRecord {
    pub schema_version: u32,
    /// The last attempt, good or failed.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// Why the last attempt failed; None: it succeeded (the fields below are from it).
    #[serde(default)]
    pub error: Option<String>,
    /// When the fields below were found (None: no check has succeeded yet).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_good_at: Option<OffsetDateTime>,
    /// The newest stable release.
    #[serde(default)]
    pub latest: Option<String>,
    /// Installed versions, newest first.
    #[serde(default)]
    pub installed: Vec<String>,
    /// Where `current` points.
    #[serde(default)]
    pub current: Option<String>,
    /// The newest installed version is older than `latest` (or nothing is installed).
    #[serde(default)]
    pub update_available: Option<bool>,
    #[serde(default)]
    pub instances: Vec<InstanceUpdate>,
}

/// `latest` when `running` is an older version; None otherwise (also when unknown).
pub fn newer_than(latest: &semver::Version, running: Option<&str>) -> Option<String> {
    let running = semver::Version::parse(running?).ok()?;
    (running < *latest).then(|| latest.to_string())
}

impl UpdatesRecord {
    /// The record of a good check at `now`.
    pub fn good(
        now: OffsetDateTime,
        latest: &semver::Version,
        installed: Vec<String>,
        current: Option<String>,
        instances: Vec<(String, Option<String>)>,
    ) -> UpdatesRecord {
        let newest = installed
            .iter()
            .filter_map(|v| semver::Version::parse(v).ok())
            .max();
        UpdatesRecord {
            schema_version: SCHEMA_VERSION,
            checked_at: now,
            error: None,
            last_good_at: Some(now),
            latest: Some(latest.to_string()),
            update_available: Some(newest.as_ref().is_none_or(|v| v < latest)),
            installed,
            current,
            instances: instances
                .into_iter()
                .map(|(name, version)| InstanceUpdate {
                    update_available: newer_than(latest, version.as_deref()),
                    name,
                    version,
                })
                .collect(),
        }
    }

    /// The record of a check that failed at `now` with `error`: the previous record's
    /// findings stay (with their own `last_good_at`), only the attempt and its error change.
    pub fn failed(
        prev: Option<UpdatesRecord>,
        now: OffsetDateTime,
        error: String,
    ) -> UpdatesRecord {
        let mut r = prev.unwrap_or(UpdatesRecord {
            schema_version: SCHEMA_VERSION,
            checked_at: now,
            error: None,
            last_good_at: None,
            latest: None,
            installed: Vec::new(),
            current: None,
            update_available: None,
            instances: Vec::new(),
        });
        r.schema_version = SCHEMA_VERSION;
        r.checked_at = now;
        r.error = Some(error);
        r
    }

    /// Read the file's text. Unknown fields and a newer schema are refused (the caller
    /// decides whether that is an error or "no record").
    pub fn parse(text: &str) -> Result<UpdatesRecord, String> {
        let r: UpdatesRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if r.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} (this abssctl reads {SCHEMA_VERSION})",
                r.schema_version
            ));
        }
        Ok(r)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The release an instance running `version` could move to, by the last good check's
    /// `latest` (so an instance upgraded or created since the check is judged by what it
    /// runs now, not by what it ran then).
    pub fn update_for(&self, version: Option<&str>) -> Option<String> {
        let latest = semver::Version::parse(self.latest.as_deref()?).ok()?;
        newer_than(&latest, version)
    }
}

/// How long ago `then` was, in words ("3 days", "5 hours", "12 minutes").
pub fn age(now: OffsetDateTime, then: OffsetDateTime) -> String {
    let secs = (now - then).whole_seconds().max(0);
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3_600 => (s / 3_600, "hours"),
        s => (s / 60, "minutes"),
    };
    format!("{n} {unit}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use time::macros::datetime;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    fn good() -> UpdatesRecord {
        UpdatesRecord::good(
            datetime!(2026-11-26 08:00 UTC),
            &v("26.10.0"),
            vec!["26.9.0".into(), "26.8.1".into()],
            Some("26.9.0".into()),
            vec![
                ("budget".into(), Some("26.9.0".into())),
                ("fresh".into(), Some("26.10.0".into())),
                ("orphan".into(), None),
            ],
        )
    }

    #[test]
    fn a_good_check_says_which_instances_are_behind() {
        let r = good();
        assert_eq!(r.update_available, Some(true));
        assert_eq!(r.last_good_at, Some(r.checked_at));
        let ups: Vec<_> = r
            .instances
            .iter()
            .map(|i| i.update_available.clone())
            .collect();
        assert_eq!(ups, [Some("26.10.0".into()), None, None]);
        // The newest installed is the latest: no update, whatever the order of the list.
        let r = UpdatesRecord::good(
            datetime!(2026-11-26 08:00 UTC),
            &v("26.10.0"),
            vec!["26.8.1".into(), "26.10.0".into()],
            None,
            vec![],
        );
        assert_eq!(r.update_available, Some(false));
    }

    #[test]
    fn a_failed_check_keeps_the_last_good_fields_and_adds_its_error() {
        let prev = good();
        let now = datetime!(2026-12-03 08:00 UTC);
        let r = UpdatesRecord::failed(Some(prev.clone()), now, "registry unreachable".into());
        assert_eq!(r.checked_at, now);
        assert_eq!(r.error.as_deref(), Some("registry unreachable"));
        assert_eq!(r.last_good_at, prev.last_good_at);
        assert_eq!(r.latest, prev.latest);
        assert_eq!(r.instances, prev.instances);
        assert_eq!(age(now, r.last_good_at.unwrap()), "7 days");
        // Without a previous record: the error alone, nothing claimed about versions.
        let r = UpdatesRecord::failed(None, now, "x".into());
        assert_eq!(
            (r.latest, r.update_available, r.last_good_at),
            (None, None, None)
        );
        // A good check after a failed one clears the error.
        assert_eq!(good().error, None);
    }

    #[test]
    fn the_file_round_trips_and_refuses_what_it_does_not_know() {
        let r = good();
        assert_eq!(UpdatesRecord::parse(&r.render()).unwrap(), r);
        let text = r.render().replace("\"latest\"", "\"latestt\"");
        assert!(UpdatesRecord::parse(&text).is_err());
        let text = r
            .render()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        assert!(
            UpdatesRecord::parse(&text)
                .unwrap_err()
                .contains("schema_version 2")
        );
        // The shape a failed first check writes is readable too.
        let f = UpdatesRecord::failed(None, datetime!(2026-12-03 08:00 UTC), "x".into());
        assert_eq!(UpdatesRecord::parse(&f.render()).unwrap(), f);
    }

    #[test]
    fn update_for_judges_the_version_run_now() {
        let r = good();
        assert_eq!(r.update_for(Some("26.9.0")).as_deref(), Some("26.10.0"));
        assert_eq!(r.update_for(Some("26.10.0")), None);
        assert_eq!(r.update_for(Some("27.0.0")), None);
        assert_eq!(r.update_for(None), None);
        let never = UpdatesRecord::failed(None, datetime!(2026-12-03 08:00 UTC), "x".into());
        assert_eq!(never.update_for(Some("1.0.0")), None);
    }

    #[test]
    fn the_window_dropin_resets_the_shipped_calendar_and_is_absent_for_it() {
        assert_eq!(render_dropin("weekly"), None);
        let d = render_dropin("Sun 04:00").unwrap();
        assert!(
            d.ends_with("[Timer]\nOnCalendar=\nOnCalendar=Sun 04:00\n"),
            "{d}"
        );
        let l = Layout::new(
            &crate::domain::config::Config::default(),
            std::path::Path::new("/etc/abssctl/config.yml"),
        );
        assert_eq!(
            dropin_path(&l),
            std::path::Path::new(
                "/etc/systemd/system/abssctl-update-check.timer.d/50-abssctl.conf"
            )
        );
    }

    #[test]
    fn age_picks_a_readable_unit() {
        let t = datetime!(2026-12-03 08:00 UTC);
        assert_eq!(age(t, t), "0 minutes");
        assert_eq!(age(t, datetime!(2026-12-03 07:15 UTC)), "45 minutes");
        assert_eq!(age(t, datetime!(2026-12-03 03:00 UTC)), "5 hours");
        assert_eq!(age(t, datetime!(2026-11-30 08:00 UTC)), "3 days");
    }
}
