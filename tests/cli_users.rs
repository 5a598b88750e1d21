//! The per-instance system accounts, on the real binary against a temp root (no root and
//! no systemd needed: these are the decisions taken before any change). The accounts
//! themselves are made and handed data in `sys::users`' tests (root) and in the container
//! tier (tests/e2e/scenarios/30-instances.sh).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::abssctl;
use std::path::Path;

/// An installed, current version, the system certificate, and `/etc/passwd` + `/etc/group`
/// with the given extra lines.
fn machine(root: &Path, passwd: &str, group: &str) {
    let vdir = root.join("srv/app/v26.9.0");
    std::fs::create_dir_all(&vdir).unwrap();
    let node = root.join("srv/app/runtimes/node-v22.23.3/bin/node");
    let manifest = serde_json::json!({
        "schema_version": 1, "package": "@actual-app/sync-server", "version": "26.9.0",
        "integrity": "sha512-x", "engines_node": ">=22",
        "runtime": {"kind": "managed", "version": "22.23.3", "node": node},
        "npm_version": "12.2.1", "lockfile_sha256": "00", "size_bytes": 1,
        "installed_at": "2026-11-26T08:00:00Z"
    });
    std::fs::write(vdir.join("manifest.json"), manifest.to_string()).unwrap();
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    let tls = root.join("etc/ssl/private");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), "cert").unwrap();
    std::fs::write(tls.join("cert.key"), "key").unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{passwd}"),
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), format!("root:x:0:\n{group}")).unwrap();
}

fn registry_with_budget(root: &Path) {
    let f = root.join("var/lib/abssctl/registry/instances.yml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(
        &f,
        "schema_version: 1\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: current\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\n",
    )
    .unwrap();
}

fn actions(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["planned_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_account_of_that_name_not_made_for_the_instance_is_refused_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    machine(
        root,
        "actual-budget:x:990:990:somebody else:/home/x:/bin/sh\n",
        "actual-budget:x:990:\n",
    );
    let out = abssctl(root)
        .args([
            "instance",
            "create",
            "budget",
            "--domain",
            "budget.example.org",
        ])
        .args(["--dry-run", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("actual-budget exists but is not the account of instance 'budget'"),
        "{err}"
    );
    assert!(err.contains("userdel actual-budget"), "{err}");
    assert!(!root.join("var/lib/abssctl/registry").exists());
    assert!(!root.join("srv/budget").exists());
}

#[test]
fn create_makes_the_account_before_the_dirs_and_the_drop_in_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    machine(root, "", "");
    let out = abssctl(root)
        .args([
            "instance",
            "create",
            "budget",
            "--domain",
            "budget.example.org",
        ])
        .args(["--dry-run", "--json"])
        .output()
        .unwrap();
    let a = actions(&out);
    let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
    assert!(pos("instance_user") < pos("instance_dir"), "{a:?}");
    assert!(pos("instance_dir") < pos("data_dir"), "{a:?}");
    assert!(!a.contains(&"instance_data_owner".to_string()), "{a:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let desc = v["planned_actions"][pos("instance_user")]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(desc.contains("actual-budget"), "{desc}");
}

/// An instance from before per-instance accounts: its data is owned by the shared account.
/// (The test's own uid plays the shared account, so no root is needed to set that up.)
#[test]
fn a_legacy_instance_gets_its_account_and_its_data_on_the_next_drop_in_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let me = nix::unistd::getuid().as_raw();
    machine(
        root,
        &format!(
            "actual-sync:x:{me}:{me}:Actual Budget sync server (abssctl):/nonexistent:/usr/sbin/nologin\n"
        ),
        &format!("actual-sync:x:{me}:\n"),
    );
    registry_with_budget(root);
    std::fs::create_dir_all(root.join("srv/budget/data/server-files")).unwrap();
    let out = abssctl(root)
        .args([
            "instance",
            "set-port",
            "budget",
            "5077",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let a = actions(&out);
    let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
    assert!(pos("instance_user") < pos("instance_data_owner"), "{a:?}");
    assert!(pos("instance_data_owner") < pos("unit_dropin"), "{a:?}");

    // Already moved over (data owned by someone else than the shared account, account
    // ours): nothing to plan for the account.
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nactual-sync:x:{}:1:x:/:/x\nactual-budget:x:{me}:{me}:Actual Budget instance budget (abssctl):/nonexistent:/usr/sbin/nologin\n",
            me + 1
        ),
    )
    .unwrap();
    let out = abssctl(root)
        .args([
            "instance",
            "set-port",
            "budget",
            "5077",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let a = actions(&out);
    assert!(!a.iter().any(|x| x.starts_with("instance_")), "{a:?}");
}

#[test]
fn rename_refuses_a_new_name_whose_account_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    machine(
        root,
        "actual-budget:x:990:990:Actual Budget instance budget (abssctl):/nonexistent:/usr/sbin/nologin\nactual-wallet:x:991:991:Actual Budget instance wallet (abssctl):/nonexistent:/usr/sbin/nologin\n",
        "actual-budget:x:990:\nactual-wallet:x:991:\n",
    );
    registry_with_budget(root);
    let out = abssctl(root)
        .args([
            "-y",
            "instance",
            "rename",
            "budget",
            "wallet",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("actual-wallet already exists"), "{err}");
    // With the name free, the account is renamed (same uid), before the registry moves.
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nactual-budget:x:990:990:Actual Budget instance budget (abssctl):/nonexistent:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nactual-budget:x:990:\n").unwrap();
    let out = abssctl(root)
        .args([
            "-y",
            "instance",
            "rename",
            "budget",
            "wallet",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let a = actions(&out);
    let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
    assert!(pos("move_dirs") < pos("instance_user_rename"), "{a:?}");
    assert!(pos("instance_user_rename") < pos("registry_write"), "{a:?}");
}
