//! `upgrade`, `instance set-version` to another version and `instance rollback` on the real
//! binary against a temp root with systemd out of reach: every refusal comes before any
//! change (exit 2, the registry and the versions as they were), the dry run plans the
//! upgrade's transaction per instance in the rolling order, and a downgrade below the
//! data's migrations is refused with the way back. The upgrades themselves (real servers,
//! real migrations, the automatic rollback) run in the container tier (scenario 70).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{
    action_names, dropin_as_rendered, installed_version, machine, registry_file, without_systemd,
};
use std::path::Path;

/// `budget` follows `current` (26.9.0), `house` is bound to 26.9.0; 26.10.0 is installed.
fn two_instances(root: &Path) {
    machine(root);
    installed_version(root, "26.10.0", "22.23.3");
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    let f = registry_file(root);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    let inst = |name: &str, port: u16, binding: &str| {
        format!(
            "  - name: {name}\n    domain: {name}.example.org\n    port: {port}\n    version_binding: {binding}\n    data_dir: /srv/{name}/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\n"
        )
    };
    std::fs::write(
        &f,
        format!(
            "schema_version: 2\ninstances:\n{}{}ports:\n  - port: 5000\n    instance: budget\n    reserved_at: 2026-11-26T08:00:00Z\n  - port: 5001\n    instance: house\n    reserved_at: 2026-11-26T08:00:00Z\n",
            inst("budget", 5000, "current"),
            inst("house", 5001, "26.9.0")
        ),
    )
    .unwrap();
}

/// Migrations a version's tree ships (the 26.x loader chunk).
fn ships(root: &Path, version: &str, titles: &[&str]) {
    let chunks = root.join(format!(
        "srv/app/v{version}/node_modules/@actual-app/sync-server/build/chunks"
    ));
    std::fs::create_dir_all(&chunks).unwrap();
    let body: Vec<String> = titles
        .iter()
        .map(|t| format!("\"../migrations/{t}\": () => import(\"./x.js\")"))
        .collect();
    std::fs::write(
        chunks.join("migrations-Ab12Cd34.js"),
        format!("var m = Object.assign({{{}}});", body.join(",\n")),
    )
    .unwrap();
}

/// The data of `name` ran these migrations (node-migrate's state file).
fn ran(root: &Path, name: &str, titles: &[&str]) {
    let data = root.join(format!("srv/{name}/data"));
    std::fs::create_dir_all(&data).unwrap();
    let list: Vec<String> = titles
        .iter()
        .map(|t| format!("{{\"title\":\"{t}\",\"timestamp\":1}}"))
        .collect();
    std::fs::write(
        data.join(".migrate"),
        format!(
            "{{\"lastRun\":\"{}\",\"migrations\":[{}]}}",
            titles.last().unwrap(),
            list.join(",")
        ),
    )
    .unwrap();
}

fn run(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = without_systemd(root).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a refused command must not have changed.
fn state(root: &Path) -> (Vec<u8>, std::path::PathBuf, bool, Vec<String>) {
    let mut versions: Vec<String> = std::fs::read_dir(root.join("srv/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    (
        std::fs::read(registry_file(root)).unwrap(),
        std::fs::read_link(root.join("srv/app/current")).unwrap(),
        root.join("srv/backups").exists(),
        versions,
    )
}

#[test]
fn bad_input_is_refused_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_instances(root);
    let before = state(root);
    let cases: &[(&[&str], &str)] = &[
        (&["--yes", "upgrade"], "required"),
        (&["--yes", "upgrade", "budget", "--all"], "cannot be used"),
        (
            &["--yes", "upgrade", "ghost", "--to", "26.10.0"],
            "no instance named 'ghost'",
        ),
        (
            &["--yes", "upgrade", "Bad_Name", "--to", "26.10.0"],
            "Bad_Name",
        ),
        (
            &["--yes", "upgrade", "--all", "--to", "current"],
            "not a version to upgrade to",
        ),
        (&["--yes", "upgrade", "--all", "--to", "26.x"], "26.x"),
        (
            &["--yes", "instance", "set-version", "budget", "latest"],
            "abssctl upgrade",
        ),
        (
            &["--yes", "instance", "rollback", "budget"],
            "no snapshot from before an upgrade",
        ),
    ];
    for (args, says) in cases {
        let (rc, out, err) = run(root, args);
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(state(root), before, "{args:?} changed something");
    }
    // A version that is not installed: set-version does not install (exit 3, the hint).
    let (rc, _, err) = run(
        root,
        &["--yes", "instance", "set-version", "budget", "26.11.0"],
    );
    assert_eq!(rc, Some(3), "{err}");
    assert!(err.contains("abssctl version install 26.11.0"), "{err}");
    assert_eq!(state(root), before);
}

#[test]
fn a_dry_run_plans_each_instance_in_order_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_instances(root);
    let before = state(root);
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "--json",
            "upgrade",
            "--all",
            "--to",
            "26.10.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["target"], "26.10.0", "{r}");
    assert_eq!(r["ok"], true, "{r}");
    let names: Vec<&str> = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["budget", "house"], "{r}");
    for o in r["instances"].as_array().unwrap() {
        assert_eq!(o["status"], "planned", "{r}");
        assert_eq!(o["from"], "26.9.0", "{r}");
        // A follower of current that is not the target: bound to the target exactly.
        assert_eq!(o["version_binding"], "26.10.0", "{r}");
    }
    let actions = action_names(&r);
    // One transaction per instance: stop, snapshot, copy, rebind, start + gate.
    assert_eq!(
        actions.iter().filter(|a| *a == "unit_stop").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "backup_create").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "data_copy").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "unit_start").count(),
        2,
        "{actions:?}"
    );
    assert!(
        r["planned_actions"]
            .to_string()
            .contains("runs Actual 26.10.0"),
        "{r}"
    );
    assert_eq!(state(root), before);
    // A version that is not installed: its install is planned first, nothing happens.
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "--json",
            "upgrade",
            "house",
            "--to",
            "26.11.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(action_names(&r), ["version_install"], "{r}");
    assert_eq!(r["installed"], true, "{r}");
    assert_eq!(state(root), before);
    // Already there (its drop-in as rendered): nothing to do for that instance.
    dropin_as_rendered(root, "house");
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "--json",
            "upgrade",
            "house",
            "--to",
            "26.9.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["instances"][0]["status"], "unchanged", "{r}");
    assert_eq!(action_names(&r), Vec::<String>::new(), "{r}");
}

#[test]
fn a_downgrade_below_the_datas_migrations_is_refused_with_the_way_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_instances(root);
    let old = [
        "1694360000000-create-folders.js",
        "1719409568000-multiuser.js",
    ];
    let new = [old[0], old[1], "1763873600000-backfill-files-owner.js"];
    ships(root, "26.9.0", &old);
    ships(root, "26.10.0", &new);
    // house runs 26.9.0 with data that 26.10.0 migrated (it ran a migration 26.9.0 lacks).
    ran(root, "house", &new);
    let before = state(root);
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "instance",
            "set-version",
            "house",
            "26.10.0",
        ],
    );
    assert_eq!(rc, Some(0), "going up is fine: {err}{out}");
    // Bound to 26.10.0 in the registry, then asked to go back down.
    let reg = std::fs::read_to_string(registry_file(root))
        .unwrap()
        .replace("version_binding: 26.9.0", "version_binding: 26.10.0");
    std::fs::write(registry_file(root), reg).unwrap();
    let before = (state(root), before.1);
    for args in [
        &["--yes", "instance", "set-version", "house", "26.9.0"][..],
        &[
            "--yes",
            "--dry-run",
            "instance",
            "set-version",
            "house",
            "26.9.0",
        ][..],
    ] {
        let (rc, _, err) = run(root, args);
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("migrated beyond Actual 26.9.0")
                && err.contains("1763873600000-backfill-files-owner.js"),
            "{err}"
        );
        assert!(err.contains("abssctl instance rollback house"), "{err}");
        assert_eq!(state(root), before.0, "{args:?} changed something");
    }
    // The same through upgrade: the result says refused, exit 2.
    let (rc, out, err) = run(
        root,
        &["--yes", "--json", "upgrade", "house", "--to", "26.9.0"],
    );
    assert_eq!(rc, Some(2), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["instances"][0]["status"], "refused", "{r}");
    assert!(err.contains("'house' was not upgraded"), "{err}");
    assert_eq!(state(root), before.0);
    // Data that never ran a migration 26.9.0 lacks: allowed (same migration set).
    ran(root, "house", &old);
    let (rc, _, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "instance",
            "set-version",
            "house",
            "26.9.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
}

#[test]
fn rollback_finds_only_this_instances_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_instances(root);
    let index = root.join("srv/backups/backups.json");
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();
    std::fs::write(
        &index,
        serde_json::json!({
            "schema_version": 1,
            "backups": [{
                "id": "20261126T080000Z-house-abcd1234",
                "instance": "house",
                "created_at": "2026-11-26T08:00:00Z",
                "created_by": "root",
                "reason": "pre-upgrade",
                "type": "full",
                "archive_path": "/srv/backups/house/20261126T080000Z-house-abcd1234.tar.zst",
                "size_bytes": 1,
                "checksum_sha256": "00",
                "algorithm": "zstd",
                "version_binding": "26.9.0",
                "domain": "house.example.org",
                "port": 5001,
                "includes": ["data"],
                "status": "present"
            }]
        })
        .to_string(),
    )
    .unwrap();
    let (rc, _, err) = run(
        root,
        &[
            "--yes",
            "instance",
            "rollback",
            "budget",
            "--to-backup",
            "20261126T080000Z-house-abcd1234",
        ],
    );
    assert_eq!(rc, Some(2), "{err}");
    assert!(
        err.contains("is of instance 'house', not 'budget'"),
        "{err}"
    );
    let (rc, _, err) = run(root, &["--yes", "instance", "rollback", "budget"]);
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("'budget' has no snapshot"), "{err}");
}
