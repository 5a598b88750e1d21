//! The frame around every command: exit codes, --version, --dry-run, privilege, and the
//! operations log (ADR-028), checked on the real binary against a temp root.

mod common;
use common::{abssctl, as_nobody, ops_log};
use predicates::prelude::*;

/// The tests that switch to an unprivileged user need root to do it. They fail, naming
/// why, rather than pass without having checked anything (tests/run-all runs as root, as
/// the README says; a developer without root sees which tests could not run).
fn needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test drops to uid 65534 with setpriv and needs root: run the tests as root"
    );
}

#[test]
fn version_flag_prints_the_cli_version() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl(tmp.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("abssctl {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl(tmp.path()).arg("no-such-command").assert().code(2);
}

#[test]
fn a_mutation_is_logged_with_op_id_plan_and_lock_wait() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl(tmp.path())
        .args(["ports", "reserve", "budget", "--password", "s3cret"])
        .assert()
        .failure(); // --password is not a ports flag: usage error, nothing logged
    abssctl(tmp.path())
        .args(["ports", "reserve", "budget"])
        .assert()
        .success();
    let log = ops_log(tmp.path());
    assert_eq!(log.len(), 1, "{log:?}");
    let rec = &log[0];
    assert_eq!(rec["schema_version"], 1);
    assert_eq!(rec["command"], "ports reserve");
    assert_eq!(rec["rc"], 0);
    assert_eq!(rec["result"]["status"], "success");
    assert_eq!(rec["result"]["changed"], true);
    let op_id = uuid::Uuid::parse_str(rec["op_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        op_id.get_version_num(),
        7,
        "op ids are time-ordered uuid v7"
    );
    assert!(rec["ts"].as_str().unwrap().ends_with('Z'));
    assert!(rec["lock_wait_ms"].is_u64());
    assert!(rec["duration_ms"].is_u64());
    let planned = rec["planned_actions"].as_array().unwrap();
    assert!(!planned.is_empty(), "the plan is recorded: {rec}");
    assert!(planned.iter().all(|a| a["action"].is_string()));
}

/// The CLI's one secret-bearing flag, `--password-file`, in both spellings, as the real
/// binary records it: the operations log has `***`, never the value. (The command fails
/// validation on the domain before anything else, so it reaches no network and no system.)
#[test]
fn the_password_file_never_reaches_the_operations_log() {
    let tmp = tempfile::tempdir().unwrap();
    for pw in [
        vec!["--password-file", "/root/family-pw.txt"],
        vec!["--password-file=/root/family-pw.txt"],
    ] {
        abssctl(tmp.path())
            .args(["instance", "create", "budget", "--domain", "not a domain"])
            .args(&pw)
            .assert()
            .code(2);
    }
    let log = ops_log(tmp.path());
    assert_eq!(log.len(), 2, "{log:?}");
    for rec in &log {
        assert_eq!(rec["command"], "instance create");
        let args = rec["args"].to_string();
        assert!(!args.contains("family-pw"), "{args}");
        assert!(
            args.contains(r#""--password-file","***""#)
                || args.contains(r#""--password-file=***""#),
            "{args}"
        );
        assert!(
            args.contains("not a domain"),
            "other values are kept: {args}"
        );
    }
}

#[test]
fn dry_run_changes_nothing_and_logs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl(tmp.path())
        .args(["--dry-run", "ports", "reserve", "budget"])
        .assert()
        .success()
        .stdout(predicate::str::contains("budget"));
    assert!(
        !tmp.path()
            .join("var/lib/abssctl/registry/registry.yml")
            .exists()
    );
    assert!(ops_log(tmp.path()).is_empty());
}

#[test]
fn failures_are_logged_with_their_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    abssctl(tmp.path())
        .args(["ports", "reserve", "Not_A_Name"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("error: "));
    let log = ops_log(tmp.path());
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["rc"], 2);
    assert_eq!(log[0]["result"]["status"], "error");
    assert!(!log[0]["result"]["errors"].as_array().unwrap().is_empty());
}

#[test]
fn json_errors_carry_kind_and_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let out = abssctl(tmp.path())
        .args(["--json", "ports", "reserve", "Not_A_Name"])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["kind"], "validation");
    assert_eq!(v["error"]["exit_code"], 2);
}

#[test]
fn an_unwritable_log_dir_warns_once_and_keeps_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    // The logs dir sits below a regular file: it can never be created.
    std::fs::write(tmp.path().join("blocker"), "").unwrap();
    let out = abssctl(tmp.path())
        .env("ABSSCTL_LOGS_DIR", "/blocker/logs")
        .args(["--json", "ports", "reserve", "budget"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(stderr.contains("operations log"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object(), "the command's own result is still printed");
}

#[test]
fn mutations_refuse_to_run_unprivileged_and_change_nothing() {
    needs_root();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = as_nobody(tmp.path())
        .args(["ports", "reserve", "budget"])
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(
        !tmp.path()
            .join("var/lib/abssctl/registry/registry.yml")
            .exists()
    );

    // Read-only commands work as any user.
    let out = as_nobody(tmp.path())
        .args(["ports", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn an_unreadable_config_file_is_an_environment_error() {
    needs_root();
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc/abssctl");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("config.yml"), "ports: {base: 6000}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(etc.join("config.yml"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let out = as_nobody(tmp.path())
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn a_port_in_use_by_a_process_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    // A real listener held by this test process: the probe must find it in /proc.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    if port < 1024 {
        return;
    }
    let out = abssctl(tmp.path())
        .args(["ports", "reserve", "budget", "--port", &port.to_string()])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port} is in use")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "the holder is named: {stderr}"
    );
    assert!(
        !tmp.path()
            .join("var/lib/abssctl/registry/registry.yml")
            .exists()
    );
    drop(listener);
}

/// NO_COLOR as people set it (no-color.org: any non-empty value) is accepted, not refused
/// as a bad boolean (seen: NO_COLOR=1 made every command exit 2).
#[test]
fn no_color_accepts_any_value() {
    let tmp = tempfile::tempdir().unwrap();
    for v in ["1", "yes", "true", "", "false"] {
        abssctl(tmp.path())
            .env("NO_COLOR", v)
            .args(["--json", "config", "show"])
            .assert()
            .success();
    }
    abssctl(tmp.path())
        .args(["--no-color", "config", "show"])
        .assert()
        .success();
}
