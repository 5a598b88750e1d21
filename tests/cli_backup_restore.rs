//! `abssctl backup restore` on the real binary against a temp root: every refusal happens
//! before anything changes (unknown id, a flipped byte, a crafted archive, missing flags,
//! an instance that is gone), a failure after the extraction leaves no staging behind,
//! and a dry run plans the stop -> swap -> rebind -> start transaction. The switch itself
//! runs against real systemd in the container tier (tests/e2e/scenarios/61-restore.sh).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, json_ok, machine, registry_file, registry_with_budget, run};
use std::path::{Path, PathBuf};

/// The instance `budget` with a real database, a blob and `.migrate`; one backup of it.
/// Returns (data dir, backup id, archive path).
fn with_backup(root: &Path) -> (PathBuf, String, PathBuf) {
    machine(root);
    // `budget` follows `current`: the backup records 26.9.0 as the version of its data.
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    registry_with_budget(root);
    let data = root.join("srv/budget/data");
    std::fs::create_dir_all(data.join("server-files")).unwrap();
    std::fs::create_dir_all(data.join("user-files")).unwrap();
    std::fs::write(data.join(".migrate"), "{\"1\":true}\n").unwrap();
    let a = rusqlite::Connection::open(data.join("server-files/account.sqlite")).unwrap();
    a.execute_batch("CREATE TABLE auth(method TEXT); INSERT INTO auth VALUES ('password');")
        .unwrap();
    drop(a);
    common::make_old(&data.join(".migrate"));
    let c = json_ok(
        &abssctl(root)
            .args(["backup", "create", "budget", "--json"])
            .output()
            .unwrap(),
    );
    (
        data,
        c["id"].as_str().unwrap().to_string(),
        PathBuf::from(c["path"].as_str().unwrap()),
    )
}

/// Every file under `dir` with its bytes (the live data, compared before and after).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                v.push((p.display().to_string(), Vec::new()));
            } else {
                v.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

fn no_staging_left(root: &Path) {
    for dir in [root.join("srv"), root.join("srv/budget")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.starts_with(".abssctl-restore-"),
                "{n} left in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn refusals_come_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, id, _) = with_backup(root);
    let before = snapshot(&data);
    let registry = std::fs::read(registry_file(root)).unwrap();

    let (rc, _, err) = run(root, &["backup", "restore", "20260101-000000-budget-nope"]);
    assert_eq!(rc, Some(2), "{err}");
    // No terminal, no --yes: the replacement of data is not confirmed.
    let (rc, _, err) = run(root, &["backup", "restore", &id, "--no-backup"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("not confirmed"), "{err}");
    // --yes, but neither --backup nor --no-backup.
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(
        err.contains("--backup") && err.contains("--no-backup"),
        "{err}"
    );
    // --domain / --port only go with --as.
    let (rc, _, err) = run(
        root,
        &["backup", "restore", &id, "--domain", "x.example.org"],
    );
    assert_eq!(rc, Some(2), "{err}");
    // --as an existing instance.
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--as", "budget"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (rc, _, err) = run(
        root,
        &["--yes", "backup", "restore", &id, "--as", "Bad_Name"],
    );
    assert_eq!(rc, Some(2), "{err}");

    assert_eq!(snapshot(&data), before);
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), registry);
    no_staging_left(root);
}

#[test]
fn a_flipped_byte_is_refused_marked_corrupt_and_the_data_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, id, archive) = with_backup(root);
    let before = snapshot(&data);
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, &bytes).unwrap();
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--no-backup"]);
    assert_eq!(rc, Some(3), "{err}");
    assert!(err.contains("is corrupt"), "{err}");
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["backup"]["status"], "corrupt");
    assert_eq!(snapshot(&data), before);
    no_staging_left(root);
}

/// A tar.zst whose checksum the index is made to agree with: what refuses it is the
/// member check, not the checksum.
fn craft(archive: &Path, root: &Path, id: &str, evil: &str) {
    let mut b = tar::Builder::new(Vec::new());
    let manifest = serde_json::json!({
        "format": 1, "id": id, "instance": "budget",
        "created_at": "2026-12-03T07:00:00Z", "version_binding": "current",
        "instance_version": null, "domain": "budget.example.org", "port": 5000,
        "includes": ["data"],
    })
    .to_string();
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    b.append_data(&mut h, "abssctl-backup.json", manifest.as_bytes())
        .unwrap();
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..evil.len()].copy_from_slice(evil.as_bytes());
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    std::fs::write(archive, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let sum = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(archive).unwrap()))
    };
    let size = std::fs::metadata(archive).unwrap().len();
    let idx_path = root.join("srv/backups/backups.json");
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    for e in idx["backups"].as_array_mut().unwrap() {
        e["checksum_sha256"] = sum.clone().into();
        e["size_bytes"] = size.into();
    }
    std::fs::write(&idx_path, serde_json::to_vec_pretty(&idx).unwrap()).unwrap();
}

#[test]
fn crafted_archives_are_refused_and_nothing_is_written_outside_staging() {
    for evil in [
        "../../../escaped",
        "/tmp/abssctl-restore-test-escaped",
        "data/../../x",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (data, id, archive) = with_backup(root);
        let before = snapshot(&data);
        craft(&archive, root, &id, evil);
        let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--no-backup"]);
        assert_eq!(rc, Some(2), "{evil}: {err}");
        assert!(err.contains("refusing to restore"), "{err}");
        assert_eq!(snapshot(&data), before);
        assert!(!root.join("escaped").exists() && !root.join("srv/x").exists());
        assert!(!Path::new("/tmp/abssctl-restore-test-escaped").exists());
        no_staging_left(root);
    }
}

#[test]
fn a_dry_run_plans_the_switch_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, id, _) = with_backup(root);
    let before = snapshot(&data);
    let r = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "restore",
                &id,
                "--no-backup",
            ])
            .output()
            .unwrap(),
    );
    let actions: Vec<&str> = r["planned_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["unit_stop", "data_swap", "unit_dropin", "unit_start"],
        "{r}"
    );
    assert_eq!(r["mode"], "in-place");
    assert_eq!(r["dry_run"], true);
    // With --backup, the dry run also plans the backup of the data it replaces.
    let (rc, out, err) = run(
        root,
        &["--dry-run", "--json", "backup", "restore", &id, "--backup"],
    );
    assert_eq!(rc, Some(0), "{err}");
    assert!(out.contains("backup_create"), "{out}");
    assert_eq!(snapshot(&data), before);
    let list = json_ok(
        &abssctl(root)
            .args(["backup", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(list["backups"].as_array().unwrap().len(), 1);
    no_staging_left(root);
}

#[test]
fn an_instance_that_is_gone_is_restored_with_as_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (_, id, _) = with_backup(root);
    std::fs::write(
        registry_file(root),
        "schema_version: 2\ninstances: []\nports: []\n",
    )
    .unwrap();
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--no-backup"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("--as budget"), "{err}");
    // Its data dir is still there (delete keeps data): --as the same name would merge.
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--as", "budget"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("data kept from a deleted instance"), "{err}");
    // The dry run of --as plans create's steps with the restored data moved in.
    let r = json_ok(
        &abssctl(root)
            .args([
                "--dry-run",
                "--json",
                "backup",
                "restore",
                &id,
                "--as",
                "budget2",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(r["mode"], "new-instance");
    assert_eq!(r["domain"], "budget.example.org");
    let actions: Vec<&str> = r["planned_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"data_restore"), "{actions:?}");
    assert!(!actions.contains(&"data_dir"), "{actions:?}");
}

#[test]
fn a_failure_after_the_extraction_leaves_the_data_and_no_staging() {
    // No account actual-budget in this root: the hand-over of the extracted data fails,
    // after the archive was read and checked.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, id, _) = with_backup(root);
    let before = snapshot(&data);
    let (rc, _, err) = run(root, &["--yes", "backup", "restore", &id, "--no-backup"]);
    assert_eq!(rc, Some(3), "{err}");
    assert!(err.contains("actual-budget"), "{err}");
    assert_eq!(snapshot(&data), before);
    no_staging_left(root);
}

#[test]
fn a_failure_after_a_complete_extraction_removes_the_staging_dir_too() {
    // The account exists, so the extracted data is handed over; then systemd is not
    // reachable (the bus points nowhere): the command fails before the transaction, and
    // the extracted copy must not stay behind in the instance's directory.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, id, _) = with_backup(root);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "actual-budget:x:64123:64123:Actual budget:/srv/budget:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "actual-budget:x:64123:\n").unwrap();
    let before = snapshot(&data);
    let out = abssctl(root)
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", root.join("no-such-bus").display()),
        )
        .args(["--yes", "backup", "restore", &id, "--no-backup"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("systemd"), "{err}");
    assert_eq!(snapshot(&data), before);
    no_staging_left(root);
}
