//! `abssctl backup prune` on the real binary against a temp root: real backups of a fake
//! instance, their index dates spread over days by editing the index (the format is the
//! real one), then the rules, the question, the dry run and the bad input.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, json_ok, registry_with_budget, run};
use std::path::{Path, PathBuf};

fn index_path(root: &Path) -> PathBuf {
    root.join("srv/backups/backups.json")
}

/// Four backups of `budget`, dated (oldest first) 40, 10, 9 and 0 days ago (minus five
/// minutes). Returns the ids, oldest first.
fn four_backups(root: &Path) -> Vec<String> {
    registry_with_budget(root);
    let data = root.join("srv/budget/data");
    std::fs::create_dir_all(data.join("user-files")).unwrap();
    std::fs::write(data.join("user-files/file-x.blob"), b"blob").unwrap();
    common::make_old(&data.join("user-files/file-x.blob"));
    let mut ids = Vec::new();
    for _ in 0..4 {
        let c = json_ok(
            &abssctl(root)
                .args(["backup", "create", "budget", "--json"])
                .output()
                .unwrap(),
        );
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let now = time::OffsetDateTime::now_utc();
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_path(root)).unwrap()).unwrap();
    for (e, days) in idx["backups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip([40, 10, 9, 0])
    {
        let t = now - time::Duration::days(days) - time::Duration::minutes(5);
        e["created_at"] = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .into();
    }
    std::fs::write(index_path(root), serde_json::to_vec_pretty(&idx).unwrap()).unwrap();
    ids
}

fn ids_in_index(root: &Path) -> Vec<String> {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_path(root)).unwrap()).unwrap();
    idx["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn archive(root: &Path, id: &str) -> PathBuf {
    root.join(format!("srv/backups/budget/{id}.tar.zst"))
}

#[test]
fn bad_input_is_exit_2_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    let before = std::fs::read(index_path(root)).unwrap();
    for args in [
        &["backup", "prune", "--instance", "budget"][..],
        &["backup", "prune", "--keep", "1"][..],
        &[
            "backup",
            "prune",
            "--instance",
            "budget",
            "--older-than",
            "3y",
        ][..],
        &["backup", "prune", "--instance", "Bad_Name", "--keep", "1"][..],
        // No terminal and no --yes: not confirmed.
        &["backup", "prune", "--instance", "budget", "--keep", "1"][..],
    ] {
        let (rc, _, err) = run(root, args);
        assert_eq!(rc, Some(2), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(index_path(root)).unwrap(), before);
    for id in &ids {
        assert!(archive(root, id).is_file());
    }
}

#[test]
fn a_dry_run_shows_what_goes_and_why_the_rest_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    let r = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "prune",
                "--instance",
                "budget",
                "--keep",
                "2",
            ])
            .output()
            .unwrap(),
    );
    let gone: Vec<&str> = r["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(gone, [ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(r["kept"][0]["id"], ids[3].as_str());
    assert!(
        r["kept"][0]["reasons"]
            .to_string()
            .contains("newest present")
    );
    assert_eq!(ids_in_index(root).len(), 4);
    assert!(archive(root, &ids[0]).is_file());
}

#[test]
fn gfs_with_yes_deletes_archives_sums_and_entries_of_what_no_rule_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    // Daily 2: today (ids[3]) and 9 days ago (ids[2]); monthly 1 adds nothing new.
    let r = json_ok(
        &abssctl(root)
            .args([
                "--yes",
                "--json",
                "backup",
                "prune",
                "--instance",
                "budget",
                "--keep-daily",
                "2",
                "--keep-monthly",
                "1",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r["deleted"].as_array().unwrap().len(), 2, "{r}");
    assert!(r["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(ids_in_index(root), [ids[2].clone(), ids[3].clone()]);
    for id in &ids[..2] {
        assert!(!archive(root, id).exists());
        assert!(
            !root
                .join(format!("srv/backups/budget/{id}.sha256"))
                .exists()
        );
    }
    for id in &ids[2..] {
        assert!(archive(root, id).is_file());
    }
    // Run again: nothing more to do, nothing changed.
    let r = json_ok(
        &abssctl(root)
            .args([
                "--yes",
                "--json",
                "backup",
                "prune",
                "--instance",
                "budget",
                "--keep-daily",
                "2",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r["deleted"].as_array().unwrap().len(), 0);
}

#[test]
fn older_than_alone_never_deletes_the_newest_present_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    let (rc, _, err) = run(
        root,
        &["--yes", "backup", "prune", "--all", "--older-than", "1m"],
    );
    assert_eq!(rc, Some(0), "{err}");
    assert_eq!(ids_in_index(root), [ids[3].clone()]);
}

#[test]
fn a_broken_index_is_exit_2_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    four_backups(root);
    std::fs::write(index_path(root), b"{ not json").unwrap();
    let (rc, _, err) = run(root, &["--yes", "backup", "prune", "--all", "--keep", "1"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("backups.json"), "{err}");
    assert_eq!(std::fs::read(index_path(root)).unwrap(), b"{ not json");
}

#[test]
fn reconcile_adds_orphans_marks_missing_removes_leftovers_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    let dir = root.join("srv/backups/budget");
    let orphan_entry = {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(index_path(root)).unwrap()).unwrap();
        idx["backups"][1].clone()
    };
    // The index loses ids[1] (its archive stays: an orphan), ids[2]'s archive is gone,
    // an interrupted create left a temp archive and a staging dir, and a stranger file.
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_path(root)).unwrap()).unwrap();
    idx["backups"].as_array_mut().unwrap().remove(1);
    std::fs::write(index_path(root), serde_json::to_vec_pretty(&idx).unwrap()).unwrap();
    std::fs::remove_file(archive(root, &ids[2])).unwrap();
    std::fs::write(dir.join(".abssctl-x1y2.partial"), b"half").unwrap();
    std::fs::create_dir(dir.join(".abssctl-staging-abc")).unwrap();
    std::fs::write(dir.join(".abssctl-staging-abc/db-1.sqlite"), b"db").unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    // A fake archive with no entry: its manifest cannot be read.
    std::fs::write(dir.join("20260101-000000-budget-ffffff.tar.zst"), b"junk").unwrap();

    let r = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "reconcile",
                "--instance",
                "budget",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r["added"], serde_json::json!([ids[1]]));
    assert!(
        dir.join(".abssctl-x1y2.partial").exists(),
        "a dry run removes nothing"
    );
    assert_eq!(ids_in_index(root).len(), 3);

    let r = json_ok(
        &abssctl(root)
            .args(["--json", "backup", "reconcile", "--all"])
            .output()
            .unwrap(),
    );
    assert_eq!(r["added"], serde_json::json!([ids[1]]), "{r}");
    assert_eq!(r["marked_missing"], serde_json::json!([ids[2]]), "{r}");
    assert_eq!(r["removed"].as_array().unwrap().len(), 2, "{r}");
    let left: Vec<String> = r["left_alone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert!(left.iter().any(|p| p.ends_with("notes.txt")), "{left:?}");
    assert!(
        left.iter().any(|p| p.ends_with("ffffff.tar.zst")),
        "{left:?}"
    );
    assert!(!dir.join(".abssctl-x1y2.partial").exists());
    assert!(!dir.join(".abssctl-staging-abc").exists());
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    assert!(dir.join("20260101-000000-budget-ffffff.tar.zst").exists());

    // The orphan is back with the checksum and size of its file; verify agrees.
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &ids[1], "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        s["backup"]["checksum_sha256"],
        orphan_entry["checksum_sha256"]
    );
    assert_eq!(s["backup"]["size_bytes"], orphan_entry["size_bytes"]);
    assert_eq!(s["backup"]["reason"], "reconciled");
    let (rc, _, err) = run(root, &["backup", "verify", &ids[1]]);
    assert_eq!(rc, Some(0), "{err}");
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &ids[2], "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["backup"]["status"], "missing");

    // Again: nothing more to do.
    let r = json_ok(
        &abssctl(root)
            .args(["--json", "backup", "reconcile", "--all"])
            .output()
            .unwrap(),
    );
    assert!(
        r["added"].as_array().unwrap().is_empty()
            && r["marked_missing"].as_array().unwrap().is_empty()
            && r["removed"].as_array().unwrap().is_empty(),
        "{r}"
    );
}

/// `--policy` (what the scheduled backup runs): the retention of the instance's schedule
/// in the registry; refused without one; a schedule that keeps everything prunes nothing.
#[test]
fn policy_prunes_by_the_instances_own_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ids = four_backups(root);
    let reg = common::registry_file(root);
    let plain = std::fs::read_to_string(&reg).unwrap();
    let with = |keep: &str| {
        let s = format!(
            "    notes: \"\"\n    schedule:\n      on_calendar: daily\n      randomized_delay: 1h\n{keep}"
        );
        std::fs::write(&reg, plain.replace("    notes: \"\"\n", &s)).unwrap();
    };
    let policy = [
        "--json",
        "backup",
        "prune",
        "--instance",
        "budget",
        "--policy",
    ];
    let (rc, _, err) = run(root, &policy);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("has no backup schedule"), "{err}");
    let (rc, _, err) = run(root, &[&policy[..], &["--keep", "1"]].concat());
    assert_eq!(rc, Some(2), "{err}");
    with("      keep_daily: 2\n");
    let r = json_ok(
        &abssctl(root)
            .args(["--dry-run"])
            .args(policy)
            .output()
            .unwrap(),
    );
    let gone: Vec<&str> = r["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(gone, [ids[1].as_str(), ids[0].as_str()]);
    let r = json_ok(&abssctl(root).args(["--yes"]).args(policy).output().unwrap());
    assert_eq!(r["deleted"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(ids_in_index(root), [ids[2].clone(), ids[3].clone()]);
    // A schedule with no retention rule keeps everything, with --all too.
    with("");
    let r = json_ok(
        &abssctl(root)
            .args(["--yes", "--json", "backup", "prune", "--all", "--policy"])
            .output()
            .unwrap(),
    );
    assert!(r["deleted"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(ids_in_index(root).len(), 2);
}
