//! `abssctl backup prune` on the real binary against a temp root: real backups of a fake
//! instance, their index dates spread over days by editing the index (the format is the
//! real one), then the rules, the question, the dry run and the bad input.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, json_ok, registry_with_budget};
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
    let f = std::fs::File::options()
        .write(true)
        .open(data.join("user-files/file-x.blob"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
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

fn run(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = abssctl(root).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
