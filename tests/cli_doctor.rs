//! `abssctl doctor` on the real binary against a temp root with faults planted: each fault
//! turns its probe id the right status and the exit code the right number, `--fix` repairs
//! the safe ones and a second `--fix` finds nothing. systemd is out of reach (a bus socket
//! that does not exist) and no test reaches the network; `--only` keeps each test to the
//! probes it is about (the temp root is not a whole machine). The real fault matrix runs in
//! the container tier (tests/e2e/scenarios/47-doctor.sh).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
mod nginx_support;
// The certificate fixtures of cli_tls.rs (made by openssl); not all of their re-exports.
#[allow(unused_imports)]
#[path = "tls_support/mod.rs"]
mod support;
use common::{dropin_as_rendered, machine, registry_file, registry_with_budget, without_systemd};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `abssctl --json doctor ARGS`: (exit code, the JSON report).
fn doctor(root: &Path, args: &[&str]) -> (i32, Value) {
    let out = without_systemd(root)
        .args(["--json", "doctor"])
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The finding of probe `id` (panics when the probe did not report).
fn probe<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no probe {id} in {v:#}"))
}

fn status(v: &Value, id: &str) -> String {
    probe(v, id)["status"].as_str().unwrap().to_string()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The managed directories, as a first `--fix` makes them.
fn managed_dirs(root: &Path) {
    let (rc, v) = doctor(root, &["--only", "fs", "--fix", "--yes"]);
    assert_eq!(rc, 0, "{v:#}");
}

/// A pid that surely belongs to no process: one that has just exited.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// An instance `budget` as a create leaves it: registry, drop-in, vhost file and link,
/// data dir.
fn budget(root: &Path) {
    machine(root);
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    registry_with_budget(root);
    dropin_as_rendered(root, "budget");
    let avail = root.join("etc/nginx/sites-available");
    let enabled = root.join("etc/nginx/sites-enabled");
    std::fs::create_dir_all(&avail).unwrap();
    std::fs::create_dir_all(&enabled).unwrap();
    let file = avail.join("abssctl-budget.conf");
    std::fs::write(
        &file,
        "server { listen 443 ssl; server_name budget.example.org; }\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&file, enabled.join("abssctl-budget.conf")).unwrap();
    std::fs::create_dir_all(root.join("srv/budget/data")).unwrap();
}

#[test]
fn the_report_has_the_contract_shape_and_is_saved() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (rc, v) = doctor(root, &["--only", "state,locks"]);
    assert_eq!(rc, 0, "{v:#}");
    assert_eq!(v["rc"], 0);
    for p in v["probes"].as_array().unwrap() {
        for k in ["id", "category", "status", "message", "remediation"] {
            assert!(p.get(k).is_some(), "{k} missing in {p}");
        }
        assert!(
            ["state", "locks"].contains(&p["category"].as_str().unwrap()),
            "{p}"
        );
    }
    assert_eq!(status(&v, "state.registry"), "green");
    assert_eq!(v["summary"]["green"], v["probes"].as_array().unwrap().len());
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/abssctl/doctor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["probes"], v["probes"]);
    assert_eq!(saved["rc"], 0);
}

#[test]
fn an_unknown_category_is_refused_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let out = without_systemd(t.path())
        .args(["doctor", "--only", "env,bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown doctor category 'bogus'"), "{err}");
    assert!(!t.path().join("var/lib/abssctl/doctor.json").exists());
}

#[test]
fn a_garbage_registry_is_state_red_and_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let f = registry_file(root);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, "schema_version: 2\ninstances: [ {name: \n").unwrap();
    let (rc, v) = doctor(root, &["--only", "state"]);
    assert_eq!(status(&v, "state.registry"), "red", "{v:#}");
    assert_eq!(rc, 2);
    assert_eq!(v["rc"], 2);
    // An unknown schema is the same finding.
    std::fs::write(&f, "schema_version: 99\ninstances: []\n").unwrap();
    let (rc, v) = doctor(root, &["--only", "state"]);
    assert_eq!((rc, status(&v, "state.registry")), (2, "red".into()));
}

#[test]
fn a_world_writable_dir_is_fs_red_exit_3_and_fix_repairs_it_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    managed_dirs(root);
    let (rc, v) = doctor(root, &["--only", "fs"]);
    assert_eq!((rc, status(&v, "fs.perms")), (0, "green".into()), "{v:#}");
    let bad = root.join("var/lib/abssctl/registry");
    chmod(&bad, 0o777);
    let (rc, v) = doctor(root, &["--only", "fs"]);
    assert_eq!(status(&v, "fs.perms"), "red", "{v:#}");
    assert!(
        probe(&v, "fs.perms")["message"]
            .as_str()
            .unwrap()
            .contains("registry 777")
    );
    assert_eq!(rc, 3);
    // A dry run lists the repair and changes nothing.
    let (_, v) = doctor(root, &["--only", "fs", "--fix", "--dry-run"]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(
        std::fs::metadata(&bad).unwrap().permissions().mode() & 0o777,
        0o777
    );
    let (rc, v) = doctor(root, &["--only", "fs", "--fix", "--yes"]);
    assert_eq!(rc, 0, "{v:#}");
    assert_eq!(v["fixes"][0]["probe"], "fs.perms");
    assert_eq!(status(&v, "fs.perms"), "green");
    assert_eq!(
        std::fs::metadata(&bad).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let (rc, v) = doctor(root, &["--only", "fs", "--fix", "--yes"]);
    assert_eq!((rc, v["fixes"].as_array().unwrap().len()), (0, 0), "{v:#}");
}

#[test]
fn a_key_readable_by_others_is_fs_red_and_fixed_to_owner_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    machine(root);
    managed_dirs(root);
    let key = root.join("etc/ssl/private/cert.key");
    chmod(&key, 0o600);
    let (_, v) = doctor(root, &["--only", "fs"]);
    assert_eq!(status(&v, "fs.perms"), "green", "{v:#}");
    chmod(&key, 0o644);
    let (rc, v) = doctor(root, &["--only", "fs"]);
    assert_eq!((rc, status(&v, "fs.perms")), (3, "red".into()), "{v:#}");
    assert!(
        probe(&v, "fs.perms")["message"]
            .as_str()
            .unwrap()
            .contains("private key")
    );
    let (rc, _) = doctor(root, &["--only", "fs", "--fix", "--yes"]);
    assert_eq!(rc, 0);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_stale_lock_is_found_and_cleared_a_live_one_is_not() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let locks = root.join("run/abssctl/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let stale = locks.join("instance-budget.lock");
    let line = |pid: u32| {
        format!(
            "{{\"pid\":{pid},\"command\":\"backup create\",\"since\":\"2026-12-01T00:00:00Z\"}}\n"
        )
    };
    std::fs::write(&stale, line(dead_pid())).unwrap();
    std::fs::write(locks.join("build.lock"), line(std::process::id())).unwrap();
    let (rc, v) = doctor(root, &["--only", "locks"]);
    assert_eq!(
        (rc, status(&v, "locks.stale")),
        (0, "yellow".into()),
        "{v:#}"
    );
    let msg = probe(&v, "locks.stale")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("instance-budget.lock") && !msg.contains("build.lock"),
        "{msg}"
    );
    let (_, v) = doctor(root, &["--only", "locks", "--fix", "--yes"]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(status(&v, "locks.stale"), "green");
    assert_eq!(std::fs::read_to_string(&stale).unwrap(), "");
    let (_, v) = doctor(root, &["--only", "locks", "--fix", "--yes"]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 0, "{v:#}");
}

#[test]
fn leftover_staging_is_removed_an_upgrade_copy_only_reported() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    let build = root.join("srv/app/.staging/build-1234");
    std::fs::create_dir_all(&build).unwrap();
    let partial = root.join("srv/backups/budget/.abssctl-x.partial");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, "half").unwrap();
    let copy = root.join("srv/budget/.abssctl-upgrade-1");
    std::fs::create_dir_all(&copy).unwrap();
    let (rc, v) = doctor(root, &["--only", "staging"]);
    assert_eq!(
        (rc, status(&v, "staging.leftover")),
        (0, "yellow".into()),
        "{v:#}"
    );
    let (_, v) = doctor(root, &["--only", "staging", "--fix", "--yes"]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 2, "{v:#}");
    assert!(!build.exists() && !partial.exists());
    assert!(copy.exists(), "an upgrade copy may hold the only old data");
    let (_, v) = doctor(root, &["--only", "staging", "--fix", "--yes"]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 0, "{v:#}");
    std::fs::remove_dir(&copy).unwrap();
    let (_, v) = doctor(root, &["--only", "staging"]);
    assert_eq!(status(&v, "staging.leftover"), "green");
}

#[test]
fn a_missing_vhost_is_drift_and_nginx_red_exit_4() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    let (_, v) = doctor(root, &["--only", "state,nginx"]);
    assert_eq!(status(&v, "state.drift.budget"), "green", "{v:#}");
    assert_eq!(status(&v, "nginx.vhost.budget"), "green");
    std::fs::remove_file(root.join("etc/nginx/sites-available/abssctl-budget.conf")).unwrap();
    let (rc, v) = doctor(root, &["--only", "state"]);
    assert_eq!(
        (rc, status(&v, "state.drift.budget")),
        (2, "red".into()),
        "{v:#}"
    );
    let (rc, v) = doctor(root, &["--only", "state,nginx"]);
    assert_eq!(status(&v, "nginx.vhost.budget"), "red", "{v:#}");
    assert_eq!(rc, 4, "nginx outranks state");
}

#[test]
fn a_link_pointing_elsewhere_is_nginx_red() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    let link = root.join("etc/nginx/sites-enabled/abssctl-budget.conf");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let (rc, v) = doctor(root, &["--only", "nginx"]);
    assert_eq!(status(&v, "nginx.vhost.budget"), "red", "{v:#}");
    assert_eq!(rc, 4);
}

#[test]
fn a_drop_in_edited_by_hand_is_named() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    let (rc, v) = doctor(root, &["--only", "systemd"]);
    let msg = probe(&v, "systemd.budget")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!msg.contains("edited by hand"), "{msg}");
    assert_eq!(rc, 0, "yellow (systemd unknown) is exit 0");
    let p = root.join("etc/systemd/system/actual-sync@budget.service.d");
    let file = std::fs::read_dir(&p)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("Environment=EXTRA=1\n");
    std::fs::write(&file, text).unwrap();
    let (rc, v) = doctor(root, &["--only", "systemd"]);
    assert_eq!(status(&v, "systemd.budget"), "yellow");
    let msg = probe(&v, "systemd.budget")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("edited by hand"), "{msg}");
    assert_eq!(rc, 0);
}

#[test]
fn a_port_held_by_another_process_is_ports_red_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let l = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    registry_with_budget(root);
    let f = registry_file(root);
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("5000", &port.to_string());
    std::fs::write(&f, text).unwrap();
    let (rc, v) = doctor(root, &["--only", "ports"]);
    assert_eq!(status(&v, "ports.budget"), "red", "{v:#}");
    let msg = probe(&v, "ports.budget")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert_eq!(rc, 4);
    drop(l);
    let (rc, v) = doctor(root, &["--only", "ports"]);
    assert_eq!(
        (rc, status(&v, "ports.budget")),
        (0, "green".into()),
        "{v:#}"
    );
}

#[test]
fn an_absent_config_is_written_by_fix_and_then_parses() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (rc, v) = doctor(root, &["--only", "config"]);
    assert_eq!(
        (rc, status(&v, "config.parse")),
        (0, "yellow".into()),
        "{v:#}"
    );
    let (_, v) = doctor(root, &["--only", "config", "--fix", "--yes"]);
    assert_eq!(v["fixes"][0]["probe"], "config.parse", "{v:#}");
    assert!(root.join("etc/abssctl/config.yml").is_file());
    let (rc, v) = doctor(root, &["--only", "config", "--fix", "--yes"]);
    assert_eq!(
        (rc, status(&v, "config.parse")),
        (0, "green".into()),
        "{v:#}"
    );
    assert_eq!(v["fixes"].as_array().unwrap().len(), 0);
}

#[test]
fn systemd_out_of_reach_is_env_red_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let (rc, v) = doctor(t.path(), &["--only", "env"]);
    assert_eq!(status(&v, "env.systemd"), "red", "{v:#}");
    assert!(rc >= 3, "{rc}");
}

#[test]
fn certificates_expired_or_with_a_foreign_key_are_tls_red() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    support::system_cert(root, "budget.example.org");
    let (rc, v) = doctor(root, &["--only", "tls"]);
    assert_eq!((rc, status(&v, "tls.budget")), (0, "green".into()), "{v:#}");
    let dir = root.join("etc/ssl/private");
    let work = tempfile::tempdir().unwrap();
    // A key of another certificate.
    let (_, other_key) = support::pair(work.path(), "other", "rsa", "budget.example.org");
    std::fs::copy(&other_key, dir.join("cert.key")).unwrap();
    let cert_only = std::fs::read_to_string(dir.join("cert.crt")).unwrap();
    let other = std::fs::read_to_string(&other_key).unwrap();
    std::fs::write(dir.join("cert.pem"), format!("{cert_only}{other}")).unwrap();
    let (rc, v) = doctor(root, &["--only", "tls"]);
    assert_eq!((rc, status(&v, "tls.budget")), (3, "red".into()), "{v:#}");
    support::no_pem(&v.to_string());
    // Expired.
    let (c, k) = support::expired(work.path(), "budget.example.org");
    let mut pem = std::fs::read(&c).unwrap();
    pem.extend(std::fs::read(&k).unwrap());
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    std::fs::copy(&k, dir.join("cert.key")).unwrap();
    let (rc, v) = doctor(root, &["--only", "tls"]);
    assert_eq!((rc, status(&v, "tls.budget")), (3, "red".into()), "{v:#}");
    let msg = probe(&v, "tls.budget")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("expired"), "{msg}");
}

#[test]
fn a_deleted_archive_is_backups_red_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    std::fs::write(root.join("srv/budget/data/account.sqlite"), b"x").unwrap();
    let out = common::abssctl(root)
        .args(["backup", "create", "budget", "--json"])
        .output()
        .unwrap();
    let b = common::json_ok(&out);
    let (rc, v) = doctor(root, &["--only", "backups"]);
    assert_eq!(
        (rc, status(&v, "backups.index")),
        (0, "green".into()),
        "{v:#}"
    );
    let archive = b["path"].as_str().unwrap_or_else(|| panic!("{b:#}"));
    std::fs::remove_file(archive).unwrap();
    let (rc, v) = doctor(root, &["--only", "backups"]);
    assert_eq!(
        (rc, status(&v, "backups.index")),
        (2, "red".into()),
        "{v:#}"
    );
}

/// A configuration that does not load: the doctor still runs (on the defaults) and says
/// so in red with the file's own error, rc 2; `--fix` leaves the operator's file alone.
#[test]
fn a_broken_config_is_red_and_kept() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let cfg = root.join("etc/abssctl/config.yml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let text = "ports:\n  base: 99999999\n";
    std::fs::write(&cfg, text).unwrap();
    let (rc, v) = doctor(root, &["--only", "config"]);
    assert_eq!(rc, 2, "{v:#}");
    assert_eq!(status(&v, "config.parse"), "red");
    let msg = probe(&v, "config.parse")["message"].as_str().unwrap();
    assert!(msg.contains("ports.base"), "{msg}");
    let (_, v) = doctor(root, &["--only", "config", "--fix", "--yes"]);
    assert_eq!(status(&v, "config.parse"), "red");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
}

/// `instance list` shows the last saved report (it never runs the doctor itself): the
/// ids of what was not green, in the JSON and one line of the table.
#[test]
fn instance_list_shows_the_last_report() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    budget(root);
    let list = |json: bool| {
        let mut c = without_systemd(root);
        if json {
            c.arg("--json");
        }
        let out = c.args(["instance", "list"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&list(true)).unwrap();
    assert!(v["doctor"].is_null(), "no report yet: {v:#}");
    let locks = root.join("run/abssctl/locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(
        locks.join("instance-budget.lock"),
        format!(
            "{{\"pid\":{},\"command\":\"backup create\",\"since\":\"2026-12-01T00:00:00Z\"}}\n",
            dead_pid()
        ),
    )
    .unwrap();
    let (_, report) = doctor(root, &["--only", "locks"]);
    let v: Value = serde_json::from_str(&list(true)).unwrap();
    assert_eq!(
        v["doctor"]["yellow"],
        serde_json::json!(["locks.stale"]),
        "{v:#}"
    );
    assert_eq!(v["doctor"]["checked_at"], report["checked_at"]);
    assert!(list(false).contains("doctor ("), "{}", list(false));
}
