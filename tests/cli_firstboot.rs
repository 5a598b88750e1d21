//! `abssctl firstboot` on the real binary against a temp root, for everything that needs
//! neither systemd nor the network: bad input exits 2 before any change, an instance set
//! up as asked is left alone (changed=false, systemd never asked), one set up otherwise is
//! refused, and a dry run with an installed version shows the whole plan offline. The
//! real setup (install, start, health gate, password) is create's, tested in its tier.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, json_ok, machine, registry_file, registry_with_budget, without_systemd};
use std::path::Path;

fn rc(c: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn password_file(root: &Path) -> String {
    let p = root.join("pw.txt");
    std::fs::write(&p, "s3cret-Pass\n").unwrap();
    p.display().to_string()
}

/// `current` -> v26.9.0, as `version install --set-current` leaves it.
fn current_is_26_9(root: &Path) {
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    let pw = password_file(root);
    for (args, needle) in [
        (
            vec![
                "--domain",
                "a.example.org",
                "--https-port",
                "8443",
                "--password-file",
                &pw,
            ],
            "not both",
        ),
        (
            vec!["--password-file", &pw],
            "needs --domain or --https-port",
        ),
        (
            vec!["--domain", "a.example.org"],
            "needs the server password",
        ),
        (
            vec!["--domain", "not a domain", "--password-file", &pw],
            "invalid domain",
        ),
        (vec!["--https-port", "443", "--password-file", &pw], "443"),
        (
            vec![
                "--domain",
                "a.example.org",
                "--name",
                "Bad_Name",
                "--password-file",
                &pw,
            ],
            "invalid instance name",
        ),
        (
            vec![
                "--domain",
                "a.example.org",
                "--version",
                "current",
                "--password-file",
                &pw,
            ],
            "--version current",
        ),
        (
            vec![
                "--domain",
                "a.example.org",
                "--password-file",
                "/nonexistent/pw",
            ],
            "password file",
        ),
    ] {
        let mut c = abssctl(root);
        c.arg("firstboot").args(&args);
        let (code, _, err) = rc(&mut c);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
        assert!(err.contains("hint:"), "{args:?}: {err}");
    }
    assert!(!registry_file(root).exists());
    assert!(!root.join("srv/budget").exists());
    assert!(!root.join("srv/app/current").exists());
}

#[test]
fn an_instance_set_up_as_asked_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    current_is_26_9(root);
    registry_with_budget(root);
    let before = std::fs::read(registry_file(root)).unwrap();
    // No password source needed: nothing is created. systemd is out of reach: never asked.
    let out = without_systemd(root)
        .args([
            "--yes",
            "firstboot",
            "--domain",
            "budget.example.org",
            "--json",
        ])
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["name"], "budget");
    assert_eq!(v["url"], "https://budget.example.org/");
    assert_eq!(v["version"], "26.9.0");
    assert_eq!(v["created"], false);
    assert_eq!(v["installed_version"], false);
    assert_eq!(v["changed"], false);
    // And in words, with a password given as the hook gives it (not read).
    let pw = password_file(root);
    let (code, stdout, err) = rc(without_systemd(root).args([
        "firstboot",
        "--domain",
        "budget.example.org",
        "--password-file",
        &pw,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("already set up"), "{stdout}");
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), before);
    assert!(!root.join("etc/systemd/system").exists());
    if let Some(last) = common::ops_log(root).last() {
        assert_eq!(last["command"], "firstboot");
        assert_eq!(last["result"]["changed"], false);
    }
}

#[test]
fn an_instance_under_another_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    current_is_26_9(root);
    registry_with_budget(root);
    let before = std::fs::read(registry_file(root)).unwrap();
    let pw = password_file(root);
    for args in [
        vec![
            "firstboot",
            "--domain",
            "other.example.org",
            "--password-file",
            &pw,
        ],
        vec!["firstboot", "--https-port", "8443", "--password-file", &pw],
    ] {
        let (code, _, err) = rc(without_systemd(root).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("exists already with budget.example.org"),
            "{err}"
        );
        assert!(err.contains("abssctl instance set-domain budget"), "{err}");
    }
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), before);
}

#[test]
fn dry_run_with_an_installed_version_plans_offline_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    current_is_26_9(root);
    let pw = password_file(root);
    let out = abssctl(root)
        .args([
            "firstboot",
            "--domain",
            "budget.example.org",
            "--password-file",
            &pw,
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["name"], "budget");
    assert_eq!(v["url"], "https://budget.example.org/");
    assert_eq!(v["version"], "26.9.0");
    assert_eq!(v["installed_version"], false);
    assert_eq!(v["created"], true);
    assert_eq!(v["changed"], false);
    assert_eq!(v["dry_run"], true);
    let actions = common::action_names(&v);
    assert_eq!(actions.first().map(String::as_str), Some("registry_write"));
    for a in ["unit_start", "server_password", "nginx_vhost_apply"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert!(
        !actions.iter().any(|x| x.contains("install")),
        "{actions:?}"
    );
    assert!(!registry_file(root).exists());
    assert!(!root.join("srv/budget").exists());
}

#[test]
fn dry_run_without_current_points_it_at_the_installed_version() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    let pw = password_file(root);
    let out = abssctl(root)
        .args([
            "firstboot",
            "--https-port",
            "8443",
            "--password-file",
            &pw,
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["url"], "https://budget.local:8443/");
    assert_eq!(v["version"], "26.9.0");
    assert_eq!(v["installed_version"], false);
    assert_eq!(v["set_current"], true);
    let actions = common::action_names(&v);
    assert_eq!(
        actions.first().map(String::as_str),
        Some("switch-current"),
        "{actions:?}"
    );
    assert!(!root.join("srv/app/current").exists());
    assert!(!registry_file(root).exists());
}
