//! Fault injection for rollbacks, CPU tier (feature `failpoints`, docs/testing.md): for
//! every step k of the commands that need no systemd, the real binary is made to fail
//! after step k applied (FAILPOINTS=txn-after-step-<k>=return), and the tree it manages
//! must be byte-identical to before (paths, modes, owners, contents) while the operations
//! log tells the truth (rc, changed, rolled_back, effects_kept, planned_actions). The
//! commands that need systemd, nginx and a server (instance create, set-port, set-domain,
//! set-version, rename, delete, version switch) run the same matrix in the real tier:
//! tests/e2e/scenarios/50-rollbacks.sh.
#![cfg(feature = "failpoints")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use abssctl::domain::txn::{self, Plan, Rollback};
mod common;
use common::abssctl;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every path under `dir` with its type, mode, owner and content (or link target).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                "dir".to_string()
            } else {
                abssctl::sys::fs::sha256_file(&p).unwrap()
            };
            let meta = format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid());
            out.insert(rel, meta);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The state a command may touch: registry, installed versions, and not the log.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut all = tree(&root.join("var/lib/abssctl"));
    for (k, v) in tree(&root.join("srv")) {
        all.insert(format!("srv/{k}"), v);
    }
    all
}

fn last_record(root: &Path) -> serde_json::Value {
    common::ops_log(root)
        .pop()
        .expect("the command left a record")
}

/// The steps of a command, from its own dry run (so the matrix grows with the code).
fn planned(root: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = abssctl(root)
        .args(["--json", "--dry-run"])
        .args(args)
        .output()
        .unwrap();
    let v = common::json_ok(&out);
    let steps = v
        .get("planned_actions")
        .or_else(|| v.get("planned"))
        .unwrap_or_else(|| panic!("no plan in {v}"));
    steps.as_array().unwrap().clone()
}

/// Fail `args` after each of its steps in turn; `setup` makes the starting tree.
fn matrix(args: &[&str], setup: impl Fn(&Path)) -> usize {
    let probe = tempfile::tempdir().unwrap();
    setup(probe.path());
    let steps = planned(probe.path(), args);
    assert!(!steps.is_empty(), "{args:?} plans nothing");
    for k in 1..=steps.len() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        setup(root);
        let before = snapshot(root);
        let out = abssctl(root)
            .env("FAILPOINTS", format!("txn-after-step-{k}=return"))
            .args(["--yes"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} step {k}: {stderr}");
        assert!(
            stderr.contains(&format!("failpoint txn-after-step-{k}")),
            "{stderr}"
        );
        let rec = last_record(root);
        assert_eq!(rec["rc"], 1, "{rec}");
        let actions = |v: &[serde_json::Value]| -> Vec<String> {
            v.iter()
                .map(|s| s["action"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            actions(rec["planned_actions"].as_array().unwrap()),
            actions(&steps),
            "{rec}"
        );
        let kept: Vec<&str> = steps[..k]
            .iter()
            .filter(|s| s["irreversible"] == true)
            .map(|s| s["action"].as_str().unwrap())
            .collect();
        let result = &rec["result"];
        assert_eq!(result["rolled_back"], true, "{args:?} step {k}: {rec}");
        assert_eq!(result["effects_kept"], serde_json::json!(kept), "{rec}");
        assert_eq!(result["changed"], !kept.is_empty(), "{rec}");
        if kept.is_empty() {
            assert_eq!(
                snapshot(root),
                before,
                "{args:?} failed at step {k}: {stderr}"
            );
        } else {
            assert_ne!(
                snapshot(root),
                before,
                "{args:?} kept {kept:?} but changed nothing"
            );
        }
    }
    steps.len()
}

fn plant_registry(root: &Path) {
    abssctl(root)
        .args(["ports", "reserve", "budget", "--port", "6123"])
        .assert()
        .success();
}

#[test]
fn ports_reserve_and_release_roll_back_at_every_step() {
    assert!(
        matrix(
            &["ports", "reserve", "other", "--port", "6200"],
            plant_registry
        ) >= 1
    );
    assert!(matrix(&["ports", "release", "budget"], plant_registry) >= 1);
}

/// Two installed versions on their own runtimes and npms, `current` on the newer: the
/// older one's uninstall has three steps (its tree, its runtime, its npm).
fn two_versions(root: &Path) {
    for (v, node, npm) in [
        ("26.8.1", "22.1.0", "11.0.0"),
        ("26.9.0", "22.23.3", "11.21.2"),
    ] {
        let dir = root.join(format!("srv/app/v{v}"));
        std::fs::create_dir_all(dir.join("node_modules")).unwrap();
        let node_path = root.join(format!("srv/app/runtimes/node-v{node}/bin/node"));
        std::fs::create_dir_all(node_path.parent().unwrap()).unwrap();
        std::fs::write(&node_path, v).unwrap();
        let npm_dir = root.join(format!("srv/app/runtimes/npm-v{npm}/bin"));
        std::fs::create_dir_all(&npm_dir).unwrap();
        std::fs::write(npm_dir.join("npm-cli.js"), npm).unwrap();
        let m = serde_json::json!({
            "schema_version": 1, "package": "@actual-app/sync-server", "version": v,
            "integrity": "sha512-x", "engines_node": ">=22",
            "runtime": {"kind": "managed", "version": node, "node": node_path},
            "npm_version": npm, "lockfile_sha256": "00", "size_bytes": 5,
            "installed_at": "2026-11-26T00:00:00Z"
        });
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
}

/// `version uninstall` moves each tree aside before it removes anything: a failure after
/// any step puts every tree back.
#[test]
fn version_uninstall_rolls_back_at_every_step() {
    let probe = tempfile::tempdir().unwrap();
    two_versions(probe.path());
    let steps = planned(probe.path(), &["version", "uninstall", "26.8.1"]);
    // None may be irreversible: then the matrix demands byte-identical trees after each.
    assert!(steps.iter().all(|s| s["irreversible"] != true), "{steps:?}");
    assert_eq!(matrix(&["version", "uninstall", "26.8.1"], two_versions), 3);
}

/// Without FAILPOINTS the same binary behaves as the shipped one.
#[test]
fn no_failpoint_configured_changes_nothing_about_success() {
    let tmp = tempfile::tempdir().unwrap();
    plant_registry(tmp.path());
    let rec = last_record(tmp.path());
    assert_eq!(rec["rc"], 0);
    assert_eq!(rec["result"]["changed"], true);
    assert_eq!(rec["result"]["rolled_back"], false);
}

/// The engine's failpoints, in process: the step that applied is undone too, and both
/// names (by position and by action word) fire.
#[test]
fn engine_fails_after_the_step_and_undoes_it() {
    for name in ["txn-after-step-2", "txn-after-b"] {
        let scenario = fail::FailScenario::setup();
        fail::cfg(name, "return(boom)").unwrap();
        let log = std::cell::RefCell::new(Vec::<String>::new());
        let mut plan = Plan::new();
        for a in ["a", "b", "c"] {
            let log = &log;
            plan.step(a, a, move || {
                log.borrow_mut().push(format!("apply {a}"));
                txn::undo(move || {
                    log.borrow_mut().push(format!("undo {a}"));
                    Ok(())
                })
            });
        }
        let err = plan.run(false).unwrap_err();
        assert_eq!(*log.borrow(), ["apply a", "apply b", "undo b", "undo a"]);
        assert!(format!("{err:#}").contains(&format!("failpoint {name}: boom")));
        let r = err.downcast_ref::<Rollback>().unwrap();
        assert_eq!(r.failed_action, "b");
        assert!(r.complete() && !r.changed());
        scenario.teardown();
    }
}

/// A large blob (streamed into the archive, not staged) rewritten by an upload after its
/// bytes went into the archive and before its check: that archive is thrown away and the
/// next one, with large blobs staged, holds the new version, whole; the result says so.
#[test]
fn a_streamed_blob_changed_after_its_read_gets_a_second_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::registry_with_budget(root);
    let files = root.join("srv/budget/data/user-files");
    std::fs::create_dir_all(&files).unwrap();
    let blob = files.join("file-big.blob");
    let size = 9 * 1024 * 1024; // over the in-memory copy limit: streamed
    std::fs::write(&blob, vec![b'a'; size]).unwrap();
    common::make_old(&blob);
    let child = common::command(root)
        .args(["--json", "backup", "create", "budget"])
        .env("FAILPOINTS", "backup-create-after-stream=sleep(4000)")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The archive's temp file appears when writing starts; the blob (milliseconds of
    // work) is then read, and the failpoint holds the check back for 4 s.
    let dir = root.join("srv/backups/budget");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&dir).map_or(0, |d| d.count()) == 0 {
        assert!(started.elapsed().as_secs() < 30, "no archive was started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::write(&blob, vec![b'b'; size]).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = common::json_ok(&out);
    // Said on stderr and kept in the operations log.
    let said = "file-big.blob changed while it was archived: the archive was written again";
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(said),
        "{out:?}"
    );
    let rec = last_record(root);
    assert!(
        rec["result"]["warnings"].to_string().contains(said),
        "{rec}"
    );
    // One archive and its .sha256, nothing of the first attempt.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let archive = std::path::PathBuf::from(r["path"].as_str().unwrap());
    let dec = zstd::stream::read::Decoder::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut a = tar::Archive::new(dec);
    let mut seen = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("user-files/file-big.blob") {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut got).unwrap();
            assert_eq!(got.len(), size);
            assert!(got.iter().all(|b| *b == b'b'), "not the new version, whole");
            seen = true;
        }
    }
    assert!(seen, "the blob is not in the archive");
    abssctl(root)
        .args(["backup", "verify", "--all"])
        .assert()
        .success();
}

/// The instance's user swaps `server-files` and `user-files`, after the walk saw them and
/// before they are read, for symlinks to directories holding another `account.sqlite` and
/// blob (as another instance's would be): the archive holds the files the walk saw, read
/// through the directories it held open, and never a byte of the others.
#[test]
fn directories_swapped_for_links_after_the_walk_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::registry_with_budget(root);
    let data = root.join("srv/budget/data");
    let other = root.join("srv/other/data");
    let db = |dir: &Path, marker: &str| {
        std::fs::create_dir_all(dir.join("server-files")).unwrap();
        let c = rusqlite::Connection::open(dir.join("server-files/account.sqlite")).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('{marker}');"
        ))
        .unwrap();
        std::fs::create_dir_all(dir.join("user-files")).unwrap();
        let blob = dir.join("user-files/file-a.blob");
        std::fs::write(&blob, marker.repeat(100)).unwrap();
        common::make_old(&blob);
    };
    db(&data, "ORIGINAL-BYTES");
    db(&other, "SECRET-MARKER!");
    let child = common::command(root)
        .args(["--json", "backup", "create", "budget"])
        .env("FAILPOINTS", "backup-create-after-walk=sleep(4000)")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The walk takes milliseconds; the failpoint then holds everything else back for 4 s.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for d in ["server-files", "user-files"] {
        std::fs::rename(data.join(d), data.join(format!("{d}.seen"))).unwrap();
        std::os::unix::fs::symlink(other.join(d), data.join(d)).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let r = common::json_ok(&out);
    let archive = std::path::PathBuf::from(r["path"].as_str().unwrap());
    let dec = zstd::stream::read::Decoder::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut a = tar::Archive::new(dec);
    let mut seen = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut got).unwrap();
        let has = |m: &[u8]| got.windows(m.len()).any(|w| w == m);
        assert!(
            !has(b"SECRET-MARKER!"),
            "{name} holds the other file's bytes"
        );
        seen.insert(name, has(b"ORIGINAL-BYTES"));
    }
    // Not a walk that came after the swap and found nothing: the files it saw, whole.
    for f in ["server-files/account.sqlite", "user-files/file-a.blob"] {
        let k = seen.keys().find(|k| k.ends_with(f)).cloned();
        assert_eq!(k.map(|k| seen[&k]), Some(true), "{f} missing: {seen:?}");
    }
}
