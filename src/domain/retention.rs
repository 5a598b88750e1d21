//! Which backups `backup prune` keeps: pure, so every rule is pinned by unit tests.
//!
//! The rules are the usual grandfather-father-son ones (restic's and borg's `--keep-*`
//! meaning), per instance, in UTC: `keep_last` keeps the N newest; `keep_daily` keeps the
//! newest backup of each of the N newest days that have one (weekly: ISO weeks; monthly:
//! calendar months). A backup is kept if ANY rule keeps it. `older_than` narrows the
//! candidates: a backup newer than that is kept whatever the other rules say.
//!
//! Only a sound backup fills a slot: a corrupt or missing one protects nothing, so it
//! never takes the place of a good one in a daily/weekly/monthly bucket and it is a
//! candidate like any other. And whatever the flags, the newest present backup of an
//! instance is kept: a prune must never leave an instance with no backup.

use crate::domain::backup::{Entry, Status};
use crate::error::Failure;
use serde::Serialize;
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};

/// The rules asked for (each `None`: not asked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub older_than: Option<Duration>,
}

impl Policy {
    /// Does it say anything about what to keep? (A prune without a rule is refused:
    /// deleting by an implicit policy is not a thing to do to families' backups.)
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.older_than.is_none()
    }
}

/// One backup's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Why it is kept (empty when it goes).
    pub reasons: Vec<String>,
}

/// The bucket a backup's (UTC) time falls in, for one GFS rule.
type BucketKey = fn(OffsetDateTime) -> String;

/// Decide for the backups of ONE instance (any order in; newest first out).
pub fn select(entries: &[&Entry], policy: &Policy, now: OffsetDateTime) -> Vec<Decision> {
    let mut sorted: Vec<&Entry> = entries.to_vec();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut out: Vec<Decision> = sorted
        .iter()
        .map(|e| Decision {
            id: e.id.clone(),
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let sound = |e: &Entry| e.status == Status::Present;
    if let Some(i) = sorted.iter().position(|e| sound(e)) {
        out[i].reasons.push("newest present backup".into());
    }
    if let Some(n) = policy.keep_last {
        for d in out.iter_mut().take(n as usize) {
            d.reasons.push(format!("one of the last {n}"));
        }
    }
    let buckets: [(Option<u32>, &str, BucketKey); 3] = [
        (policy.keep_daily, "daily", |t| {
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        }),
        (policy.keep_weekly, "weekly", |t| {
            let (y, w, _) = t.to_iso_week_date();
            format!("{y:04}-W{w:02}")
        }),
        (policy.keep_monthly, "monthly", |t| {
            format!("{:04}-{:02}", t.year(), u8::from(t.month()))
        }),
    ];
    for (n, word, key) in buckets {
        let Some(n) = n else { continue };
        let mut seen = BTreeSet::new();
        for (i, e) in sorted.iter().enumerate() {
            if seen.len() >= n as usize {
                break;
            }
            if !sound(e) {
                continue;
            }
            let k = key(e.created_at.to_offset(time::UtcOffset::UTC));
            if seen.insert(k.clone()) {
                out[i].reasons.push(format!("{word} {k}"));
            }
        }
    }
    if let Some(age) = policy.older_than {
        for (i, e) in sorted.iter().enumerate() {
            if e.created_at > now - age {
                out[i].reasons.push(format!("newer than {}", human(age)));
            }
        }
    } else if policy.keep_last.is_none()
        && policy.keep_daily.is_none()
        && policy.keep_weekly.is_none()
        && policy.keep_monthly.is_none()
    {
        // No rule at all keeps everything (the CLI refuses this case before).
        for d in &mut out {
            d.reasons.push("no rule given".into());
        }
    }
    // With only --older-than, the old ones go; with keep rules too, old ones not kept by
    // a rule go.
    for d in &mut out {
        d.keep = !d.reasons.is_empty();
    }
    out
}

/// `30d`, `12h`, `2w`, `90m` (minutes), or a plain number of days.
pub fn parse_age(s: &str) -> Result<Duration, Failure> {
    let bad = || {
        Failure::validation(format!("'{s}' is not an age"))
            .hint("give a number with a unit: 90m, 12h, 30d or 2w")
    };
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "d"),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    Ok(match unit {
        "m" | "min" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(bad()),
    })
}

fn human(d: Duration) -> String {
    if d.whole_days() >= 1 && d == Duration::days(d.whole_days()) {
        format!("{}d", d.whole_days())
    } else if d == Duration::hours(d.whole_hours()) {
        format!("{}h", d.whole_hours())
    } else {
        format!("{}m", d.whole_minutes())
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
