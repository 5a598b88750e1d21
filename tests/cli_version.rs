//! `abssctl version ...` on the real binary: bad input, refusals and listings. A tiny local
//! HTTP server serves the packuments captured from the registry, so these run without
//! network; the real registry and real builds are exercised by tests/e2e/scenarios/20-versions.sh.
#![allow(clippy::unwrap_used)]

mod common;
use common::{OFFLINE_REGISTRY, abssctl_with_registry, fake_registry, installed_version};
use predicates::prelude::*;

#[test]
fn unknown_version_exits_2_listing_the_nearest() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl_with_registry(tmp.path(), &fake_registry())
        .args(["version", "install", "26.9.1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("26.9.0"));
    assert!(!tmp.path().join("srv/app/v26.9.1").exists());
}

#[test]
fn prerelease_needs_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl_with_registry(tmp.path(), &fake_registry())
        .args(["version", "install", "26.9.0-nightly.20260814"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--include-prerelease"));
}

#[test]
fn malformed_version_exits_2_before_any_network() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl_with_registry(tmp.path(), OFFLINE_REGISTRY)
        .args(["version", "install", "v26.9.0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("drop the leading 'v'"));
}

#[test]
fn unreachable_registry_exits_3_with_the_offline_hint() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl_with_registry(tmp.path(), OFFLINE_REGISTRY)
        .args(["version", "install", "26.9.0"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("unreachable"))
        .stderr(predicate::str::contains("version reinstall"));
}

#[test]
fn remote_list_marks_engines_and_runtimes() {
    let tmp = tempfile::tempdir().unwrap();
    installed_version(tmp.path(), "26.8.1", "22.23.3");
    let out = abssctl_with_registry(tmp.path(), &fake_registry())
        .args(["--json", "version", "list", "--remote"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let rows = v["versions"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["26.9.0", "26.8.1", "25.6.0"], "{v}");
    assert_eq!(rows[0]["engines_node"], ">=22");
    assert_eq!(rows[0]["installed"], false);
    // 26.9.0 needs Node 22: whatever node this machine has, the answer names a Node >= 22
    // that is never 24 (known-bad with better-sqlite3 12).
    let avail = rows[0]["runtime_available"].as_str().unwrap();
    assert!(
        avail.contains("node 22.") || avail.contains("node 26."),
        "{avail}"
    );
    assert_eq!(rows[1]["installed"], true);
    assert_eq!(rows[1]["runtime"]["version"], "22.23.3");
    assert!(rows[2]["engines_node"].is_null());
}

#[test]
fn local_list_works_offline_and_check_names_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    installed_version(tmp.path(), "26.8.1", "22.23.3");
    abssctl_with_registry(tmp.path(), OFFLINE_REGISTRY)
        .args(["version", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("26.8.1"))
        .stdout(predicate::str::contains("node 22.23.3 (managed)"));
    let out = abssctl_with_registry(tmp.path(), &fake_registry())
        .args(["--json", "version", "check-for-updates"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["latest"], "26.9.0");
    assert_eq!(v["update_available"], true);
    assert!(v["command"].as_str().unwrap().contains("install 26.9.0"));
}

#[test]
fn switch_and_uninstall_refuse_what_is_not_there_or_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = OFFLINE_REGISTRY;
    abssctl_with_registry(tmp.path(), reg)
        .args(["version", "switch", "1.2.3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not installed"));
    installed_version(tmp.path(), "26.8.1", "22.23.3");
    installed_version(tmp.path(), "26.9.0", "22.23.3");
    abssctl_with_registry(tmp.path(), reg)
        .args(["version", "uninstall", "1.2.3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("installed: 26.9.0, 26.8.1"));
    std::os::unix::fs::symlink("v26.9.0", tmp.path().join("srv/app/current")).unwrap();
    abssctl_with_registry(tmp.path(), reg)
        .args(["--yes", "version", "uninstall", "26.9.0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("current version"));
    assert!(tmp.path().join("srv/app/v26.9.0/manifest.json").exists());
}

#[test]
fn uninstall_frees_a_runtime_only_when_nothing_else_uses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = OFFLINE_REGISTRY;
    installed_version(tmp.path(), "25.6.0", "22.23.3");
    installed_version(tmp.path(), "26.8.1", "22.23.3");
    installed_version(tmp.path(), "26.9.0", "22.24.0");
    let plan = |v: &str| {
        let out = abssctl_with_registry(tmp.path(), reg)
            .args(["--json", "--dry-run", "version", "uninstall", v])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    // 22.23.3 is shared by 25.6.0 and 26.8.1: removing one keeps it.
    let shared = plan("25.6.0");
    assert!(
        !shared["freed"].to_string().contains("node-v22.23.3"),
        "{shared}"
    );
    // 22.24.0 serves only 26.9.0: removing it frees the runtime.
    let alone = plan("26.9.0");
    assert!(
        alone["freed"].to_string().contains("node-v22.24.0"),
        "{alone}"
    );
    // A dry run changes nothing.
    assert!(tmp.path().join("srv/app/v26.9.0/manifest.json").exists());
}

/// A dry run of an install plans the whole build and changes nothing: no version, no
/// staging, no npm cache, and not the build user either (it is made on demand otherwise).
#[test]
fn install_dry_run_plans_the_build_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let out = abssctl_with_registry(root, &fake_registry())
        .args([
            "--json",
            "--dry-run",
            "version",
            "install",
            "26.9.0",
            "--set-current",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<&str> = v["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"build") && actions.contains(&"activate"),
        "{actions:?}"
    );
    assert!(!root.join("srv").exists());
    assert!(!root.join("var/cache").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
}
