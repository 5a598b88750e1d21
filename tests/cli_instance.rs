//! `abssctl instance ...` on the real binary against a temp root, for everything that does
//! not need systemd: bad input exits 2 before any change, dry runs show the whole plan and
//! write nothing, an empty registry lists without touching D-Bus. The systemd half runs in
//! the container tier (tests/e2e/scenarios/30-instances.sh).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use assert_cmd::Command;
use common::{abssctl, machine, registry_file, registry_with_budget};

fn rc(c: &mut Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn empty_registry_lists_without_systemd() {
    let tmp = tempfile::tempdir().unwrap();
    let out = abssctl(tmp.path())
        .args(["instance", "list", "--json"])
        .output()
        .unwrap();
    let v = common::json_ok(&out);
    // `doctor` is always present, null until a doctor has written its report.
    assert_eq!(
        v,
        serde_json::json!({"schema_version": 1, "instances": [], "doctor": null})
    );
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    registry_with_budget(root);
    let before = std::fs::read(registry_file(root)).unwrap();
    for (args, needle) in [
        (
            vec![
                "instance",
                "create",
                "Bad_Name",
                "--domain",
                "a.example.org",
            ],
            "invalid instance name",
        ),
        (
            vec!["instance", "create", "a", "--domain", "not a domain"],
            "invalid domain",
        ),
        (
            vec![
                "instance",
                "create",
                "a",
                "--domain",
                "a.example.org",
                "--port",
                "80",
            ],
            "80",
        ),
        (
            vec!["instance", "create", "a", "--domain", "budget.example.org"],
            "already used by instance 'budget'",
        ),
        (
            vec![
                "instance",
                "create",
                "a",
                "--domain",
                "a.example.org",
                "--version",
                "v26.9.0",
            ],
            "invalid version",
        ),
        (
            vec![
                "instance",
                "create",
                "budget",
                "--domain",
                "other.example.org",
            ],
            "already exists",
        ),
        (
            vec!["instance", "start", "nosuch"],
            "no instance named 'nosuch'",
        ),
        (
            vec!["instance", "logs", "nosuch"],
            "no instance named 'nosuch'",
        ),
        (vec!["instance", "set-port", "budget", "80"], "80"),
        (
            vec!["instance", "set-domain", "budget", "bad domain"],
            "invalid domain",
        ),
        (
            vec!["instance", "rename", "budget", "Bad Name"],
            "invalid instance name",
        ),
        (
            vec!["instance", "delete", "nosuch", "--yes"],
            "no instance named",
        ),
    ] {
        let (code, err) = rc(abssctl(root).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), before);
    assert!(!root.join("srv/a").exists());
}

#[test]
fn delete_without_yes_and_without_a_terminal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    registry_with_budget(root);
    let (code, err) = rc(abssctl(root).args(["instance", "delete", "budget"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not confirmed"), "{err}");
    assert!(
        std::fs::read_to_string(registry_file(root))
            .unwrap()
            .contains("budget")
    );
}

#[test]
fn create_dry_run_plans_every_step_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    let out = abssctl(root)
        .args([
            "instance",
            "create",
            "budget",
            "--domain",
            "budget.example.org",
            "--version",
            "26.9.0",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let v = common::json_ok(&out);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["changed"], false);
    assert_eq!(v["url"], "https://budget.example.org/");
    assert_eq!(v["unit"], "actual-sync@budget.service");
    assert_eq!(v["version"], "26.9.0");
    let actions: Vec<&str> = v["planned_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "registry_write",
            "instance_user",
            "instance_dir",
            "data_dir",
            "unit_dropin",
            "unit_enable",
            "timer_dropin",
            "timer_enable",
            "unit_start",
            "nginx_vhost_apply"
        ]
    );
    assert!(!registry_file(root).exists());
    assert!(!root.join("srv/budget").exists());
    assert!(!root.join("etc/systemd/system").exists());
}

#[test]
fn list_and_status_degrade_without_systemd_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    machine(root);
    let f = registry_file(root);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    let entry = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    domain: {name}.example.org\n    port: {port}\n    version_binding: 26.9.0\n    data_dir: /srv/{name}/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n"
        )
    };
    std::fs::write(
        &f,
        format!(
            "schema_version: 2\ninstances:\n{}{}ports: []\n",
            entry("budget", 5000),
            entry("family", 5001)
        ),
    )
    .unwrap();
    let no_bus = |args: &[&str]| {
        abssctl(root)
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", root.join("no-such-bus").display()),
            )
            .args(args)
            .output()
            .unwrap()
    };
    let one_warning = |out: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("warning: systemd"), "{stderr}");
    };

    let out = no_bus(&["instance", "list", "--json"]);
    one_warning(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v["instances"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["budget", "family"]);
    for i in list {
        for live in [
            "load_state",
            "active_state",
            "sub_state",
            "enabled",
            "main_pid",
            "restarts",
            "memory_bytes",
            "health",
        ] {
            assert!(i[live].is_null(), "{live}: {i}");
        }
        // The registry half is all there.
        assert_eq!(i["version"], "26.9.0");
        assert!(i["port"].is_u64() && i["url"].is_string(), "{i}");
    }
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);

    // The human table and status of one instance degrade the same way.
    let out = no_bus(&["instance", "list"]);
    one_warning(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("budget") && table.contains("family"),
        "{table}"
    );
    let out = no_bus(&["instance", "status", "family", "--json"]);
    one_warning(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "family");
    assert!(v["active_state"].is_null(), "{v}");
}
