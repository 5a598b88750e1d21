#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use crate::domain::backup::{Algorithm, INCLUDE_DATA, REASON_MANUAL, TYPE_FULL};
use std::path::PathBuf;
use time::macros::datetime;

fn entry(id: &str, at: OffsetDateTime) -> Entry {
    Entry {
        id: id.into(),
        instance: "b".into(),
        created_at: at,
        created_by: "root".into(),
        reason: REASON_MANUAL.into(),
        message: String::new(),
        labels: vec![],
        kind: TYPE_FULL.into(),
        archive_path: PathBuf::from(format!("/srv/backups/b/{id}.tar.zst")),
        size_bytes: 10,
        checksum_sha256: "00".into(),
        algorithm: Algorithm::Zstd,
        instance_version: None,
        version_binding: "current".into(),
        domain: "b.example.org".into(),
        port: 5000,
        includes: vec![INCLUDE_DATA.into()],
        status: Status::Present,
        verified_at: None,
    }
}

fn kept(entries: &[Entry], p: &Policy, now: OffsetDateTime) -> Vec<String> {
    let refs: Vec<&Entry> = entries.iter().collect();
    select(&refs, p, now)
        .into_iter()
        .filter(|d| d.keep)
        .map(|d| d.id)
        .collect()
}

const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);

#[test]
fn daily_keeps_the_newest_of_each_of_the_last_n_days_with_backups() {
    let e = vec![
        entry("d3-late", datetime!(2026-12-03 09:00 UTC)),
        entry("d3-early", datetime!(2026-12-03 01:00 UTC)),
        entry("d2", datetime!(2026-12-02 10:00 UTC)),
        // A gap: Nov 30 and Dec 1 have none; the third day with backups is Nov 29.
        entry("d29", datetime!(2026-11-29 10:00 UTC)),
        entry("d28", datetime!(2026-11-28 10:00 UTC)),
    ];
    let p = Policy {
        keep_daily: Some(3),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["d3-late", "d2", "d29"]);
}

#[test]
fn days_are_utc_days_whatever_offset_a_time_was_written_with() {
    // 23:30 at -02:00 is 01:30 UTC the next day: same UTC day as the 09:00 one.
    let e = vec![
        entry("a", datetime!(2026-12-03 09:00 UTC)),
        entry("b", datetime!(2026-12-02 23:30 -02:00)),
        entry("c", datetime!(2026-12-02 20:00 UTC)),
    ];
    let p = Policy {
        keep_daily: Some(2),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["a", "c"]);
}

#[test]
fn weekly_and_monthly_buckets_and_any_rule_keeps() {
    let e = vec![
        entry("w49", datetime!(2026-12-02 10:00 UTC)), // ISO 2026-W49, December
        entry("w48", datetime!(2026-11-26 10:00 UTC)), // W48, November
        entry("w48-old", datetime!(2026-11-23 10:00 UTC)), // W48 too
        entry("oct", datetime!(2026-10-15 10:00 UTC)),
        entry("sep", datetime!(2026-09-15 10:00 UTC)),
    ];
    let p = Policy {
        keep_weekly: Some(2),
        keep_monthly: Some(3),
        ..Policy::default()
    };
    // weekly: w49, w48; monthly: Dec (w49), Nov (w48), Oct.
    assert_eq!(kept(&e, &p, NOW), ["w49", "w48", "oct"]);
    let reasons = select(&e.iter().collect::<Vec<_>>(), &p, NOW);
    assert!(reasons[0].reasons.contains(&"weekly 2026-W49".to_string()));
    assert!(reasons[0].reasons.contains(&"monthly 2026-12".to_string()));
}

#[test]
fn the_newest_present_backup_is_kept_whatever_the_rules() {
    let mut e = vec![
        entry("new-corrupt", datetime!(2026-12-03 09:00 UTC)),
        entry("good", datetime!(2026-01-01 09:00 UTC)),
    ];
    e[0].status = Status::Corrupt;
    let p = Policy {
        older_than: Some(Duration::hours(1)),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["good"]);
}

#[test]
fn a_corrupt_backup_does_not_take_a_good_ones_slot() {
    let mut e = vec![
        entry("bad", datetime!(2026-12-03 09:00 UTC)),
        entry("ok", datetime!(2026-12-03 08:00 UTC)),
    ];
    e[0].status = Status::Missing;
    let p = Policy {
        keep_daily: Some(1),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["ok"]);
}

#[test]
fn keep_last_and_older_than() {
    let e: Vec<Entry> = (0..5)
        .map(|i| entry(&format!("e{i}"), NOW - Duration::days(i * 10)))
        .collect();
    let p = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["e0", "e1"]);
    // Only older than 25 days are candidates: e0 (0 d), e1 (10 d), e2 (20 d) stay.
    let p = Policy {
        older_than: Some(Duration::days(25)),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["e0", "e1", "e2"]);
    // Both: old AND not among the last 1.
    let p = Policy {
        keep_last: Some(1),
        older_than: Some(Duration::days(5)),
        ..Policy::default()
    };
    assert_eq!(kept(&e, &p, NOW), ["e0"]);
}

#[test]
fn ages_parse_with_units_and_refuse_the_rest() {
    assert_eq!(parse_age("30d").unwrap(), Duration::days(30));
    assert_eq!(parse_age("12h").unwrap(), Duration::hours(12));
    assert_eq!(parse_age("2w").unwrap(), Duration::weeks(2));
    assert_eq!(parse_age("90m").unwrap(), Duration::minutes(90));
    assert_eq!(parse_age("7").unwrap(), Duration::days(7));
    for bad in ["", "0d", "-3d", "3y", "d", "1.5d", "3 days"] {
        assert!(parse_age(bad).is_err(), "{bad}");
    }
}
