//! `abssctl backup ...` on the real binary against a temp root: a fake instance with real
//! SQLite databases, a blob and `.migrate`; create, read the archive back, verify, and the
//! bad cases (a flipped byte, a broken index, an unknown id).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, json_ok, registry_with_budget};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The instance `budget` with real databases (account: 1 row, group-x: 100 rows), a blob
/// and `.migrate` under <root>/srv/budget/data.
fn instance(root: &Path) -> PathBuf {
    registry_with_budget(root);
    let data = root.join("srv/budget/data");
    std::fs::create_dir_all(data.join("server-files")).unwrap();
    std::fs::create_dir_all(data.join("user-files")).unwrap();
    std::fs::write(data.join(".migrate"), "{\"1\":true}\n").unwrap();
    let a = rusqlite::Connection::open(data.join("server-files/account.sqlite")).unwrap();
    a.execute_batch("CREATE TABLE auth(method TEXT); INSERT INTO auth VALUES ('password');")
        .unwrap();
    let g = rusqlite::Connection::open(data.join("user-files/group-x.sqlite")).unwrap();
    g.execute_batch("CREATE TABLE messages(n INTEGER);")
        .unwrap();
    for i in 0..100 {
        g.execute("INSERT INTO messages VALUES (?1)", [i]).unwrap();
    }
    std::fs::write(data.join("user-files/file-x.blob"), vec![42u8; 50_000]).unwrap();
    // Not recently written: the copy does not wait for the file to be quiet.
    common::make_old(&data.join(".migrate"));
    common::make_old(&data.join("user-files/file-x.blob"));
    data
}

fn index_path(root: &Path) -> PathBuf {
    root.join("srv/backups/backups.json")
}

fn members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let mut a = tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(name, buf);
    }
    out
}

fn create(root: &Path) -> serde_json::Value {
    let out = abssctl(root)
        .args([
            "backup",
            "create",
            "budget",
            "--message",
            "before upgrade",
            "--label",
            "a",
            "--label",
            "b",
            "--reason",
            "pre-switch-version",
            "--json",
        ])
        .output()
        .unwrap();
    json_ok(&out)
}

#[test]
fn create_writes_a_checked_archive_and_its_index_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    let r = create(root);
    let id = r["id"].as_str().unwrap().to_string();
    assert!(id.contains("-budget-"), "{id}");
    assert!(r["duration_ms"].is_u64());
    let path = PathBuf::from(r["path"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), root.join("srv/backups/budget"));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), r["size"].as_u64().unwrap());
    for d in [root.join("srv/backups"), root.join("srv/backups/budget")] {
        assert_eq!(
            std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    // The .sha256 is what sha256sum says, in its format.
    let sums = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
    let real = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap();
    let real_sum = real.split_whitespace().next().unwrap();
    assert_eq!(
        sums,
        format!(
            "{real_sum}  {}\n",
            path.file_name().unwrap().to_string_lossy()
        )
    );
    assert_eq!(r["checksum"], real_sum);
    // No staging or temp files are left.
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The index entry.
    let idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index_path(root)).unwrap()).unwrap();
    assert_eq!(idx["schema_version"], 1);
    let e = &idx["backups"][0];
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["instance"], "budget");
    assert_eq!(e["reason"], "pre-switch-version");
    assert_eq!(e["message"], "before upgrade");
    assert_eq!(e["labels"], serde_json::json!(["a", "b"]));
    assert_eq!(e["type"], "full");
    assert_eq!(e["archive_path"], path.to_string_lossy().as_ref());
    assert_eq!(e["size_bytes"], meta.len());
    assert_eq!(e["checksum_sha256"], real_sum);
    assert_eq!(e["algorithm"], "zstd");
    assert_eq!(e["domain"], "budget.example.org");
    assert_eq!(e["port"], 5000);
    assert_eq!(e["status"], "present");
    assert_eq!(e["instance_version"], serde_json::Value::Null);
    assert_eq!(
        e["includes"],
        serde_json::json!(["data", "registry_entry", "version"])
    );
    assert!(e["created_by"].is_string() && e["created_at"].is_string());

    // The archive layout, and the data in it.
    let m = members(&path);
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "abssctl-backup.json",
            "data",
            "data/.migrate",
            "data/server-files",
            "data/server-files/account.sqlite",
            "data/user-files",
            "data/user-files/file-x.blob",
            "data/user-files/group-x.sqlite",
            "meta/registry-entry.json",
            "meta/version.json",
        ]
    );
    assert_eq!(m["data/.migrate"], b"{\"1\":true}\n");
    assert_eq!(m["data/user-files/file-x.blob"], vec![42u8; 50_000]);
    let manifest: serde_json::Value = serde_json::from_slice(&m["abssctl-backup.json"]).unwrap();
    assert_eq!(manifest["id"], id.as_str());
    let reg: serde_json::Value = serde_json::from_slice(&m["meta/registry-entry.json"]).unwrap();
    assert_eq!(reg["name"], "budget");
    let out = tempfile::tempdir().unwrap();
    for (db, sql, n) in [
        (
            "data/server-files/account.sqlite",
            "SELECT count(*) FROM auth",
            1,
        ),
        (
            "data/user-files/group-x.sqlite",
            "SELECT count(*) FROM messages",
            100,
        ),
    ] {
        let p = out.path().join("x.sqlite");
        std::fs::write(&p, &m[db]).unwrap();
        let c = rusqlite::Connection::open(&p).unwrap();
        let got: i64 = c.query_row(sql, [], |r| r.get(0)).unwrap();
        assert_eq!(got, n, "{db}");
        drop(c);
        std::fs::remove_file(&p).unwrap();
    }

    // list and show agree with the index.
    let l = json_ok(
        &abssctl(root)
            .args(["backup", "list", "budget", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(l["backups"][0]["id"], id.as_str());
    let l = json_ok(
        &abssctl(root)
            .args(["backup", "list", "other", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(l["backups"], serde_json::json!([]));
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["backup"]["checksum_sha256"], real_sum);
}

/// Blobs over the in-memory copy limit are read straight into the archive (no staged
/// copy): both arrive whole, the quiet one and the one written a moment ago (which takes
/// the checked copy instead), and nothing is left beside the archive.
#[test]
fn large_blobs_arrive_whole_streamed_or_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = instance(root);
    let size = 9 * 1024 * 1024;
    let quiet: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::write(data.join("user-files/file-quiet.blob"), &quiet).unwrap();
    common::make_old(&data.join("user-files/file-quiet.blob"));
    std::fs::write(data.join("user-files/file-fresh.blob"), vec![9u8; size]).unwrap();
    let r = create(root);
    let path = PathBuf::from(r["path"].as_str().unwrap());
    let m = members(&path);
    assert!(
        m["data/user-files/file-quiet.blob"] == quiet,
        "streamed blob differs"
    );
    assert!(m["data/user-files/file-fresh.blob"] == vec![9u8; size]);
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        2
    );
    let rec = common::ops_log(root).pop().unwrap();
    assert_eq!(rec["result"]["warnings"], serde_json::json!([]), "{rec}");
}

#[test]
fn verify_passes_then_finds_a_flipped_byte_and_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    let id = create(root)["id"].as_str().unwrap().to_string();
    let v = json_ok(
        &abssctl(root)
            .args(["backup", "verify", &id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(v["verified"][0]["status"], "present");

    let path = PathBuf::from(
        json_ok(
            &abssctl(root)
                .args(["backup", "show", &id, "--json"])
                .output()
                .unwrap(),
        )["backup"]["archive_path"]
            .as_str()
            .unwrap(),
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let out = abssctl(root)
        .args(["backup", "verify", &id])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["backup"]["status"], "corrupt");

    std::fs::remove_file(&path).unwrap();
    let out = abssctl(root)
        .args(["backup", "verify", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let s = json_ok(
        &abssctl(root)
            .args(["backup", "show", &id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["backup"]["status"], "missing");
}

#[test]
fn a_broken_index_is_exit_2_and_never_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    let idx = index_path(root);
    std::fs::create_dir_all(idx.parent().unwrap()).unwrap();
    let broken = "{\n  \"schema_version\": 1,\n  \"backups\": [\n";
    std::fs::write(&idx, broken).unwrap();
    for args in [
        vec!["backup", "create", "budget"],
        vec!["backup", "list"],
        vec!["backup", "verify", "--all"],
    ] {
        let out = abssctl(root).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{} at line 4", idx.display())),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&idx).unwrap(), broken);
    }
    // And no archive was written.
    assert!(!root.join("srv/backups/budget").exists());
}

#[test]
fn unknown_ids_and_instances_are_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    for args in [
        vec!["backup", "show", "20260101-000000-budget-abcdef"],
        vec!["backup", "verify", "nope"],
        vec!["backup", "create", "ghost"],
        vec![
            "backup",
            "create",
            "budget",
            "--compression",
            "gzip",
            "--level",
            "12",
        ],
    ] {
        let out = abssctl(root).args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!index_path(root).exists());
}

#[test]
fn dry_run_writes_nothing_and_gzip_works() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    let out = abssctl(root)
        .args(["backup", "create", "budget", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 files"));
    assert!(!root.join("srv/backups").exists());
    let r = json_ok(
        &abssctl(root)
            .args([
                "backup",
                "create",
                "--all",
                "--compression",
                "gzip",
                "--level",
                "6",
                "--json",
            ])
            .output()
            .unwrap(),
    );
    let p = r["backups"][0]["path"].as_str().unwrap();
    assert!(p.ends_with(".tar.gz"), "{p}");
    let list = std::process::Command::new("tar")
        .args(["-tzf", p])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("data/user-files/group-x.sqlite"));
}

#[test]
fn delete_asks_then_removes_archive_sums_and_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    instance(root);
    let r = create(root);
    let id = r["id"].as_str().unwrap().to_string();
    let path = PathBuf::from(r["path"].as_str().unwrap());
    let sums = PathBuf::from(format!("{}.sha256", path.display()));
    // No terminal, no --yes: refused (exit 2), nothing removed.
    let out = abssctl(root)
        .args(["backup", "delete", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = abssctl(root)
        .args(["backup", "delete", &id, "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(path.exists() && sums.exists());
    let d = json_ok(
        &abssctl(root)
            .args(["backup", "delete", &id, "--yes", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(d["removed"].as_array().unwrap().len(), 2);
    assert!(!path.exists() && !sums.exists());
    let l = json_ok(
        &abssctl(root)
            .args(["backup", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(l["backups"], serde_json::json!([]));
    let out = abssctl(root)
        .args(["backup", "delete", &id, "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A damaged database (a b-tree page turned to garbage) fails `backup create` with exit 3
/// naming the file and the check, and leaves no archive and no index entry: a backup that
/// could not be restored is never recorded as one.
#[test]
fn a_damaged_database_fails_the_create_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = instance(root);
    let db = data.join("user-files/group-y.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA page_size = 4096;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT i, printf('row %d of the budget', i) FROM n;",
        )
        .unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[2 * 4096 + 8..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = abssctl(root)
        .args(["backup", "create", "budget"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("group-y.sqlite") && err.contains("integrity check"),
        "{err}"
    );
    let archives: Vec<_> = std::fs::read_dir(root.join("srv/backups/budget"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(archives.is_empty(), "left behind: {archives:?}");
    if let Ok(index) = std::fs::read_to_string(index_path(root)) {
        assert!(!index.contains("budget-"), "an index entry: {index}");
    }
}
