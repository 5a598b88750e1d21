//! The per-instance system accounts, on the real binary against a temp root (no root and
//! no systemd needed: these are the decisions taken before any change). The accounts
//! themselves are made and handed data in `sys::users`' tests (root) and in the container
//! tier (tests/e2e/scenarios/30-instances.sh).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, machine, schema1_registry_with_budget};
use std::path::Path;

/// The machine of [`common::machine`] with its version current, and `/etc/passwd` +
/// `/etc/group` with the given extra lines.
fn machine_with_accounts(root: &Path, passwd: &str, group: &str) {
    machine(root);
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{passwd}"),
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), format!("root:x:0:\n{group}")).unwrap();
}

fn actions(out: &std::process::Output) -> Vec<String> {
    common::action_names(&common::json_ok(out))
}

#[test]
fn an_account_of_that_name_not_made_for_the_instance_is_refused_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    machine_with_accounts(
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
    machine_with_accounts(root, "", "");
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
    machine_with_accounts(
        root,
        &format!(
            "actual-sync:x:{me}:{me}:Actual Budget sync server (abssctl):/nonexistent:/usr/sbin/nologin\n"
        ),
        &format!("actual-sync:x:{me}:\n"),
    );
    schema1_registry_with_budget(root);
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
    machine_with_accounts(
        root,
        "actual-budget:x:990:990:Actual Budget instance budget (abssctl):/nonexistent:/usr/sbin/nologin\nactual-wallet:x:991:991:Actual Budget instance wallet (abssctl):/nonexistent:/usr/sbin/nologin\n",
        "actual-budget:x:990:\nactual-wallet:x:991:\n",
    );
    schema1_registry_with_budget(root);
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
            "--no-backup",
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
