//! `abssctl backup schedule` and `backup prune --policy` on the real binary against a temp
//! root, without systemd: bad input is exit 2 and changes nothing, dry runs plan the timer
//! steps, `--list` degrades to the registry with one warning, and the scheduled prune
//! applies each instance's own retention. Enabling a timer for real is scenario 62's.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{
    abssctl, action_names, json_ok, machine, registry_file, registry_with_budget, run,
    without_systemd,
};
use std::path::Path;

/// `budget` with a schedule: daily at 03:00, keep 2 daily.
fn scheduled_budget(root: &Path) {
    registry_with_budget(root);
    let f = registry_file(root);
    let text = std::fs::read_to_string(&f).unwrap().replace(
        "    notes: \"\"\n",
        "    notes: \"\"\n    schedule:\n      on_calendar: '*-*-* 03:00'\n      randomized_delay: 1h\n      keep_daily: 2\n",
    );
    std::fs::write(&f, text).unwrap();
}

#[test]
fn bad_schedules_are_exit_2_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    scheduled_budget(root);
    let before = std::fs::read(registry_file(root)).unwrap();
    for (args, says) in [
        (
            &["backup", "schedule", "budget", "--on-calendar", "bogus x"][..],
            "systemd does not accept the calendar expression 'bogus x'",
        ),
        (
            &[
                "backup",
                "schedule",
                "budget",
                "--on-calendar",
                "daily\nExecStart=/bin/sh",
            ][..],
            "is not a calendar expression",
        ),
        (
            &["backup", "schedule", "budget", "--randomized-delay", "1d"][..],
            "'1d' is not a time span",
        ),
        (
            &["backup", "schedule", "nosuch", "--keep-daily", "3"][..],
            "no instance named 'nosuch'",
        ),
        (&["backup", "schedule", "Bad_Name"][..], "Bad_Name"),
        (
            &["backup", "schedule", "budget", "--keep-daily", "10001"][..],
            "--keep-daily 10001 is more than 10000",
        ),
        (
            &["backup", "schedule", "budget", "--off", "--keep-daily", "3"][..],
            "cannot be used with",
        ),
        (&["backup", "schedule"][..], "required"),
    ] {
        let (rc, _, err) = run(root, args);
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), before);
    assert!(!root.join("etc/systemd/system").exists());
}

#[test]
fn dry_runs_plan_the_timer_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    registry_with_budget(root);
    let before = std::fs::read(registry_file(root)).unwrap();
    // No schedule yet: the configured default, changed by the flags.
    let v = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "schedule",
                "budget",
                "--on-calendar",
                "Sun 04:00",
                "--keep-daily",
                "0",
                "--keep",
                "3",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(
        action_names(&v),
        ["registry_write", "timer_dropin", "timer_enable"]
    );
    let s = &v["schedule"];
    assert_eq!(s["on_calendar"], "Sun 04:00");
    assert_eq!(s["randomized_delay"], "1h");
    assert_eq!(s["keep_last"], 3);
    assert!(s.get("keep_daily").is_none(), "0 turns the rule off: {s}");
    assert_eq!(s["keep_weekly"], 4);
    assert_eq!(s["keep_monthly"], 6);
    assert_eq!(v["normalized_calendar"], "Sun *-*-* 04:00:00");
    assert_eq!(v["timer"], "abssctl-backup@budget.timer");
    assert_eq!(v["changed"], false);
    // --off of an instance with no schedule and no timer: nothing to do.
    let v = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "schedule",
                "budget",
                "--off",
            ])
            .output()
            .unwrap(),
    );
    assert!(action_names(&v).is_empty(), "{v}");
    // --off of a scheduled one: registry, stop + disable, drop-in.
    scheduled_budget(root);
    let scheduled = std::fs::read(registry_file(root)).unwrap();
    let v = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "schedule",
                "budget",
                "--off",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(
        action_names(&v),
        ["registry_write", "timer_disable", "timer_dropin"]
    );
    assert!(v["schedule"].is_null());
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), scheduled);
    assert_ne!(scheduled, before);
    assert!(!root.join("etc/systemd/system").exists());
}

#[test]
fn list_without_systemd_shows_the_registry_and_warns_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    scheduled_budget(root);
    let out = without_systemd(root)
        .args(["--json", "backup", "schedule", "--list"])
        .output()
        .unwrap();
    let v = json_ok(&out);
    let rows = v["schedules"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["instance"], "budget");
    assert_eq!(rows[0]["schedule"]["on_calendar"], "*-*-* 03:00");
    assert!(rows[0]["status"].is_null());
    assert_eq!(rows[0]["last_result"], "unknown (systemd not reachable)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("systemd could not be asked").count(),
        1,
        "{err}"
    );
}

#[test]
fn new_instances_get_the_configured_schedule_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    let create = |env: &[(&str, &str)]| {
        let mut c = abssctl(root);
        for (k, v) in env {
            c.env(k, v);
        }
        c.args([
            "--dry-run",
            "--json",
            "instance",
            "create",
            "budget",
            "--domain",
            "budget.example.org",
            "--version",
            "26.9.0",
        ])
        .output()
        .unwrap()
    };
    let with = action_names(&json_ok(&create(&[])));
    assert!(with.contains(&"timer_enable".to_string()), "{with:?}");
    let without = action_names(&json_ok(&create(&[(
        "ABSSCTL_BACKUPS_SCHEDULE_ENABLED",
        "false",
    )])));
    assert!(
        !without.iter().any(|a| a.starts_with("timer_")),
        "{without:?}"
    );
    // A default calendar systemd refuses stops the create before any change.
    let out = create(&[("ABSSCTL_BACKUPS_SCHEDULE_ON_CALENDAR", "every day")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backups.schedule.on_calendar"), "{err}");
    assert!(!registry_file(root).exists());
    // A retention count out of range is a config error naming the variable.
    let out = create(&[("ABSSCTL_BACKUPS_RETENTION_KEEP_DAILY", "-1")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ABSSCTL_BACKUPS_RETENTION_KEEP_DAILY"));
}
