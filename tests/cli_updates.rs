//! The weekly update check on the real binary: `version check --record` writes
//! updates.json (a failed check keeps the last good result), `instance list` shows it
//! without the network, the `upgrades.*` keys and `--auto-upgrade`. The registry is the
//! local fake of tests/common (fixture packuments: the newest stable release is 26.9.0).
#![allow(clippy::unwrap_used)]

mod common;
use common::{
    OFFLINE_REGISTRY, abssctl_with_registry, fake_registry, installed_version, json_ok,
    registry_file, registry_with_budget, without_systemd,
};
use predicates::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn updates_file(root: &Path) -> PathBuf {
    root.join("var/lib/abssctl/updates.json")
}

fn read_updates(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(updates_file(root)).unwrap()).unwrap()
}

/// `budget` follows `current`, which is 26.8.1: one release behind the fake registry.
fn behind(root: &Path) {
    installed_version(root, "26.8.1", "22.23.3");
    std::os::unix::fs::symlink("v26.8.1", root.join("srv/app/current")).unwrap();
    registry_with_budget(root);
}

fn list_json(root: &Path) -> serde_json::Value {
    json_ok(
        &without_systemd(root)
            .args(["--json", "instance", "list"])
            .output()
            .unwrap(),
    )
}

#[test]
fn record_writes_the_file_and_instance_list_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let v = json_ok(
        &abssctl_with_registry(root, &fake_registry())
            .args(["--json", "version", "check", "--record"])
            .output()
            .unwrap(),
    );
    assert_eq!(v["instances"][0]["update_available"], "26.9.0", "{v}");
    let f = read_updates(root);
    assert_eq!(f["schema_version"], 1);
    assert_eq!(f["latest"], "26.9.0");
    assert_eq!(f["installed"], serde_json::json!(["26.8.1"]));
    assert_eq!(f["current"], "26.8.1");
    assert_eq!(f["update_available"], true);
    assert!(f["error"].is_null());
    assert_eq!(f["last_good_at"], f["checked_at"]);
    assert_eq!(
        f["instances"],
        serde_json::json!([{"name": "budget", "version": "26.8.1", "update_available": "26.9.0"}])
    );
    let mode = std::fs::metadata(updates_file(root))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);

    // The list reads the file only: the registry is unreachable now.
    let l = list_json(root);
    assert_eq!(l["instances"][0]["update_available"], "26.9.0", "{l}");
    without_systemd(root)
        .args(["instance", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("UPDATE"))
        .stdout(predicate::str::contains(
            "update available: 26.9.0 (abssctl upgrade --all)",
        ));

    // Judged by what the instance runs now: moved to 26.9.0 since the check, no update.
    installed_version(root, "26.9.0", "22.23.3");
    std::fs::remove_file(root.join("srv/app/current")).unwrap();
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    assert!(list_json(root)["instances"][0]["update_available"].is_null());
    without_systemd(root)
        .args(["instance", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("update available").not());
}

#[test]
fn a_failed_check_keeps_the_last_good_fields_and_adds_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    abssctl_with_registry(root, &fake_registry())
        .args(["version", "check", "--record"])
        .assert()
        .success();
    let good = read_updates(root);
    abssctl_with_registry(root, OFFLINE_REGISTRY)
        .args(["version", "check", "--record"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("unreachable"));
    let f = read_updates(root);
    assert!(f["error"].as_str().unwrap().contains("unreachable"), "{f}");
    assert_ne!(f["checked_at"], good["checked_at"]);
    assert_eq!(f["last_good_at"], good["checked_at"]);
    for k in [
        "latest",
        "installed",
        "current",
        "update_available",
        "instances",
    ] {
        assert_eq!(f[k], good[k], "{k}");
    }
    // What was found still shows.
    assert_eq!(
        list_json(root)["instances"][0]["update_available"],
        "26.9.0"
    );

    // A first check that fails records only its error and time.
    let tmp = tempfile::tempdir().unwrap();
    abssctl_with_registry(tmp.path(), OFFLINE_REGISTRY)
        .args(["version", "check", "--record"])
        .assert()
        .code(3);
    let f = read_updates(tmp.path());
    assert!(f["error"].is_string() && f["latest"].is_null() && f["last_good_at"].is_null());
}

#[test]
fn without_record_or_with_a_dry_run_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let reg = fake_registry();
    for args in [
        &["version", "check"][..],
        &["--dry-run", "version", "check", "--record"],
    ] {
        abssctl_with_registry(root, &reg)
            .args(args)
            .assert()
            .success();
        assert!(!updates_file(root).exists(), "{args:?}");
    }
    abssctl_with_registry(root, OFFLINE_REGISTRY)
        .args(["version", "check"])
        .assert()
        .code(3);
    assert!(!updates_file(root).exists());
}

#[test]
fn a_missing_or_broken_file_leaves_the_column_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let l = list_json(root);
    assert!(l["instances"][0]["update_available"].is_null(), "{l}");
    assert!(l["instances"][0].get("update_available").is_some());
    std::fs::write(updates_file(root), "{not json").unwrap();
    assert!(list_json(root)["instances"][0]["update_available"].is_null());
    // A broken file is replaced by the next good check.
    abssctl_with_registry(root, &fake_registry())
        .args(["version", "check", "--record"])
        .assert()
        .success();
    assert_eq!(read_updates(root)["latest"], "26.9.0");
}

#[test]
fn bad_calendars_exit_2_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let cfg = root.join("etc/abssctl/config.yml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    // Refused by systemd's parser, before the registry is asked.
    std::fs::write(&cfg, "upgrades:\n  check_on_calendar: someday never\n").unwrap();
    abssctl_with_registry(root, &fake_registry())
        .args(["version", "check", "--record"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("upgrades.check_on_calendar"));
    // Not a one-line expression at all: refused when the config is read.
    std::fs::write(&cfg, "upgrades:\n  check_on_calendar: \"a\\nb\"\n").unwrap();
    abssctl_with_registry(root, OFFLINE_REGISTRY)
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("upgrades.check_on_calendar"));
    assert!(!updates_file(root).exists());
    assert!(!root.join("etc/systemd").exists());
}

#[test]
fn a_new_window_is_planned_as_a_timer_dropin() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let out = abssctl_with_registry(root, &fake_registry())
        .env("ABSSCTL_UPGRADES_CHECK_ON_CALENDAR", "Sun 04:00")
        .args(["--dry-run", "version", "check", "--record"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("dry run: would set the update-check window: Sun 04:00"),
        "{out}"
    );
    assert!(!root.join("etc/systemd").exists());
}

#[test]
fn auto_upgrade_only_when_turned_on_and_an_instance_is_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    behind(root);
    let reg = fake_registry();
    let run = |on: &str| {
        abssctl_with_registry(root, &reg)
            .env("ABSSCTL_UPGRADES_AUTO_UPGRADE", on)
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}/no-bus", root.display()),
            )
            .args(["--json", "version", "check", "--record", "--auto-upgrade"])
            .output()
            .unwrap()
    };
    // Off (the default): only recorded.
    let v = json_ok(&run("false"));
    assert_eq!(v["auto_upgrade"], "off");
    assert!(updates_file(root).exists());
    // On, with budget behind (the latest, 26.9.0, installed already: no build here): the
    // rolling upgrade of every instance runs, after the check was recorded; with systemd
    // out of reach it stops at budget before any change, and the run fails with that.
    installed_version(root, "26.9.0", "22.23.3");
    std::fs::remove_file(updates_file(root)).unwrap();
    let registry_before = std::fs::read(registry_file(root)).unwrap();
    let out = run("true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("'budget' was not upgraded"), "{err}");
    assert!(updates_file(root).exists());
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), registry_before);
    // On, nothing behind: nothing to do.
    std::fs::remove_file(root.join("srv/app/current")).unwrap();
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    assert_eq!(json_ok(&run("true"))["auto_upgrade"], "up_to_date");
    // The flag means nothing without --record.
    abssctl_with_registry(root, &reg)
        .args(["version", "check", "--auto-upgrade"])
        .assert()
        .code(2);
}
