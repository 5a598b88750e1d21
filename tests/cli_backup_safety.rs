//! The backup offered before `instance delete`, `rename`, `set-version` and `version switch`
//! (`ops::backup::safety`), on the real binary against a temp root with systemd out of
//! reach: without a terminal a run must say `--backup` or `--no-backup` (exit 2, nothing
//! changed); a dry run plans the backup first, or not at all; the command's own checks
//! come before the question; the flags conflict; a no-op asks nothing. The changes
//! themselves run against real systemd in the container tier (scenario 30).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{
    abssctl, action_names, dropin_as_rendered, installed_version, json_ok, machine, ops_log,
    registry_file, registry_with_budget, without_systemd,
};
use std::path::Path;

/// `budget` follows `current` (26.9.0); 26.10.0 is installed too.
fn root_with_budget(root: &Path) {
    machine(root);
    installed_version(root, "26.10.0", "22.23.3");
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    registry_with_budget(root);
}

/// Run abssctl with systemd unreachable and no terminal: (exit code, stdout, stderr).
fn run(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = without_systemd(root).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The commands that offer a backup, each on `budget` (switch: it follows current).
/// `set-version` to another version is not among them: it takes the upgrade's snapshot
/// always (its rollback restores it), see the last test.
const COMMANDS: [&[&str]; 3] = [
    &["instance", "delete", "budget"],
    &["instance", "rename", "budget", "wallet"],
    &["version", "switch", "26.10.0"],
];

fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Everything a command could have changed: the registry, the `current` link, the backups.
fn state(root: &Path) -> (Vec<u8>, std::path::PathBuf, bool) {
    (
        std::fs::read(registry_file(root)).unwrap(),
        std::fs::read_link(root.join("srv/app/current")).unwrap(),
        root.join("srv/backups").exists(),
    )
}

#[test]
fn without_a_terminal_a_run_must_say_backup_or_no_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    for cmd in COMMANDS {
        // --yes answers the confirmation, not the backup question.
        let args = with(&["--yes"], cmd);
        let (rc, out, err) = run(root, &refs(&args));
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--backup") && err.contains("--no-backup"),
            "{args:?}: {err}"
        );
        assert!(err.contains("no terminal"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(state(root), before, "{args:?} changed something");
        // A dry run asks the same question: its plan depends on the answer.
        let args = with(&["--yes", "--dry-run"], cmd);
        let (rc, _, err) = run(root, &refs(&args));
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(err.contains("--no-backup"), "{args:?}: {err}");
    }
    assert_eq!(state(root), before);
}

fn planned(root: &Path, cmd: &[&str], flag: &'static str) -> Vec<String> {
    let args = with(&["--dry-run", "--json"], cmd);
    let args = with(&refs(&args), &[flag]);
    let r = json_ok(&without_systemd(root).args(&args).output().unwrap());
    assert_eq!(r["dry_run"], true, "{r}");
    action_names(&r)
}

#[test]
fn a_dry_run_plans_the_backup_first_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    for cmd in COMMANDS {
        let with_backup = planned(root, cmd, "--backup");
        let without = planned(root, cmd, "--no-backup");
        assert_eq!(with_backup[0], "backup_create", "{cmd:?}: {with_backup:?}");
        assert_eq!(
            with_backup.iter().filter(|a| *a == "backup_create").count(),
            1,
            "{cmd:?}: {with_backup:?}"
        );
        assert!(!without.is_empty(), "{cmd:?}");
        assert!(
            !without.iter().any(|a| a == "backup_create"),
            "{cmd:?}: {without:?}"
        );
        // The rest of the plan is the same either way.
        assert_eq!(with_backup[1..], without[..], "{cmd:?}");
    }
    assert_eq!(state(root), before);
}

#[test]
fn the_commands_own_checks_come_before_the_question() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    for (args, needle) in [
        (
            &["--yes", "instance", "delete", "nosuch"][..],
            "no instance named 'nosuch'",
        ),
        (
            &["--yes", "instance", "rename", "nosuch", "wallet"],
            "no instance named 'nosuch'",
        ),
        (
            &["--yes", "instance", "rename", "budget", "budget"],
            "already exists",
        ),
        (
            &["--yes", "instance", "rename", "budget", "Bad Name"],
            "invalid instance name",
        ),
        (
            &["--yes", "instance", "set-version", "nosuch", "26.10.0"],
            "no instance named 'nosuch'",
        ),
        (
            &["--yes", "instance", "set-version", "budget", "latest"],
            "not an installed version",
        ),
        (
            &["--yes", "version", "switch", "9.9.9"],
            "version 9.9.9 is not installed",
        ),
    ] {
        let (rc, _, err) = run(root, args);
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("--no-backup"), "{args:?}: {err}");
    }
    // Not installed: its own error (an environment one), not the backup question.
    let (rc, _, err) = run(
        root,
        &["--yes", "instance", "set-version", "budget", "9.9.9"],
    );
    assert_ne!(rc, Some(0), "{err}");
    assert!(err.contains("9.9.9 is not installed"), "{err}");
    assert!(!err.contains("--no-backup"), "{err}");
    assert_eq!(state(root), before);
}

#[test]
fn backup_and_no_backup_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    for cmd in COMMANDS {
        let args = with(&["--yes", "--dry-run"], cmd);
        let args = with(&refs(&args), &["--backup", "--no-backup"]);
        let (rc, _, err) = run(root, &refs(&args));
        assert_eq!(rc, Some(2), "{args:?}: {err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
    assert_eq!(state(root), before);
}

#[test]
fn a_switch_to_the_current_version_asks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    let (rc, out, err) = run(root, &["--yes", "--json", "version", "switch", "26.9.0"]);
    assert_eq!(rc, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["changed"], false, "{r}");
    assert!(!err.contains("backup"), "{err}");
    // No instance follows current: nothing to back up, so nothing is asked either.
    std::fs::write(
        registry_file(root),
        String::from_utf8(before.0.clone())
            .unwrap()
            .replace("version_binding: current", "version_binding: 26.9.0"),
    )
    .unwrap();
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "--json",
            "version",
            "switch",
            "26.10.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    assert!(!out.contains("backup_create"), "{out}");
    assert_eq!(state(root).1, before.1);
}

#[test]
fn the_backup_is_taken_before_the_change_and_outlives_its_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let data = root.join("srv/budget/data");
    std::fs::create_dir_all(data.join("server-files")).unwrap();
    std::fs::create_dir_all(data.join("user-files")).unwrap();
    let a = rusqlite::Connection::open(data.join("server-files/account.sqlite")).unwrap();
    a.execute_batch("CREATE TABLE auth(method TEXT); INSERT INTO auth VALUES ('password');")
        .unwrap();
    drop(a);
    let registry = std::fs::read(registry_file(root)).unwrap();
    // The delete itself fails (systemd is out of reach) and is rolled back; the backup
    // taken before it stays, with the reason that says why it was taken.
    let (rc, _, err) = run(root, &["--yes", "instance", "delete", "budget", "--backup"]);
    assert_ne!(rc, Some(0), "{err}");
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), registry);
    let list = json_ok(
        &abssctl(root)
            .args(["--json", "backup", "list", "budget"])
            .output()
            .unwrap(),
    );
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{list}");
    assert_eq!(backups[0]["reason"], "pre-delete", "{list}");
    // The record of the failed delete names the backup made before it.
    let rec = ops_log(root)
        .into_iter()
        .rfind(|r| r["command"] == "instance delete")
        .unwrap();
    assert_eq!(
        rec["result"]["backups"],
        serde_json::json!([backups[0]["id"]]),
        "{rec}"
    );
    assert_eq!(rec["result"]["changed"], false, "{rec}");
}

#[test]
fn set_version_asks_only_when_the_server_would_run_another_version() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    dropin_as_rendered(root, "budget");
    let before = state(root);
    // The binding it has: nothing to do, nothing asked (no flag, no terminal), no lock wait.
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--json",
            "instance",
            "set-version",
            "budget",
            "current",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(r["planned_actions"], serde_json::json!([]), "{r}");
    assert_eq!(state(root), before);
    // Bound exactly to the version `current` runs: the registry changes, the data is not
    // at stake, so no backup is offered.
    let (rc, out, err) = run(
        root,
        &[
            "--yes",
            "--dry-run",
            "--json",
            "instance",
            "set-version",
            "budget",
            "26.9.0",
        ],
    );
    assert_eq!(rc, Some(0), "{err}");
    assert!(out.contains("registry_write"), "{out}");
    assert!(!out.contains("backup_create"), "{out}");
    // Another version: nothing asked, the upgrade's path: stopped, snapshotted while
    // stopped (even with --no-backup: the rollback needs it), rebound, gated on 26.10.0.
    for extra in [None, Some("--no-backup")] {
        let mut args = vec![
            "--yes",
            "--dry-run",
            "--json",
            "instance",
            "set-version",
            "budget",
            "26.10.0",
        ];
        args.extend(extra);
        let (rc, out, err) = run(root, &args);
        assert_eq!(rc, Some(0), "{args:?}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            action_names(&r),
            [
                "unit_stop",
                "backup_create",
                "data_copy",
                "registry_write",
                "instance_user",
                "unit_dropin",
                "upgrade_mark",
                "unit_start"
            ],
            "{r}"
        );
        assert_eq!(r["instances"][0]["status"], "planned", "{r}");
        assert_eq!(r["instances"][0]["to"], "26.10.0", "{r}");
        assert!(
            r["planned_actions"]
                .to_string()
                .contains("runs Actual 26.10.0"),
            "{r}"
        );
    }
    assert_eq!(state(root), before);
}

/// `version install X --set-current` moves `current` as `version switch` does, so it
/// offers the same backup of the followers (here on the installed-already path, which
/// needs no registry): refused without a flag and a terminal, planned first with --backup.
#[test]
fn install_set_current_offers_the_backup_of_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    root_with_budget(root);
    let before = state(root);
    let cmd = ["--yes", "version", "install", "26.10.0", "--set-current"];
    let (rc, _, err) = run(root, &cmd);
    assert_eq!(rc, Some(2), "{err}");
    assert!(
        err.contains("--backup") && err.contains("--no-backup"),
        "{err}"
    );
    assert!(err.contains("switch current to Actual 26.10.0"), "{err}");
    assert_eq!(state(root), before);
    // --offline rebuilds first: refused before that, too.
    let (rc, _, err) = run(root, &[&cmd[..], &["--offline"]].concat());
    assert_eq!(rc, Some(2), "{err}");
    assert!(err.contains("--no-backup"), "{err}");
    assert_eq!(state(root), before);
    let plan = |flag: &str| -> Vec<String> {
        let (rc, out, err) = run(
            root,
            &[&["--dry-run", "--json"][..], &cmd[1..], &[flag]].concat(),
        );
        assert_eq!(rc, Some(0), "{flag}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["planned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["action"].as_str().unwrap().to_string())
            .collect()
    };
    let with_backup = plan("--backup");
    assert_eq!(
        with_backup.first().map(String::as_str),
        Some("backup_create"),
        "{with_backup:?}"
    );
    assert!(!plan("--no-backup").iter().any(|a| a == "backup_create"));
    assert_eq!(state(root), before);
}
