//! `abssctl ports ...` on the real binary against a temp root: broken registry files are
//! reported and never rewritten, concurrent reservations lose nothing, and a held lock makes
//! a waiter time out naming the holder.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use common::{abssctl, as_nobody};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn registry(root: &Path) -> PathBuf {
    root.join("var/lib/abssctl/registry")
}

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/state")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sha256(path: &Path) -> String {
    abssctl::sys::fs::sha256_file(path).unwrap()
}

fn list_json(root: &Path) -> serde_json::Value {
    let out = abssctl(root)
        .args(["ports", "list", "--json"])
        .output()
        .unwrap();
    common::json_ok(&out)
}

#[test]
fn list_reserve_release_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert_eq!(
        list_json(root),
        serde_json::json!({"schema_version": 1, "ports": []})
    );
    abssctl(root)
        .args(["ports", "reserve", "budget", "--port", "6123"])
        .assert()
        .success();
    let v = list_json(root);
    assert_eq!(v["ports"][0]["port"], 6123);
    assert_eq!(v["ports"][0]["instance"], "budget");
    assert!(
        v["ports"][0]["reserved_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // Dry run prints the plan and changes nothing.
    let ports_file = registry(root).join("registry.yml");
    let before = sha256(&ports_file);
    abssctl(root)
        .args(["--dry-run", "ports", "release", "budget"])
        .assert()
        .success()
        .stdout(predicates::str::contains("release port(s) 6123"));
    assert_eq!(sha256(&ports_file), before);

    abssctl(root)
        .args(["ports", "release", "budget"])
        .assert()
        .success();
    assert_eq!(list_json(root)["ports"], serde_json::json!([]));
    abssctl(root)
        .args(["ports", "release", "budget"])
        .assert()
        .code(2);
    abssctl(root)
        .args(["ports", "reserve", "Bad_Name"])
        .assert()
        .code(2);
}

#[test]
fn a_registry_file_with_an_unknown_field_is_reported_and_never_rewritten() {
    for (file, text, line) in [
        ("registry.yml", fixture("registry-unknown-field.yml"), 16),
        // A schema-1 file (upconverted on load) is held to the same rules.
        ("ports.yml", fixture("ports-unknown-field.yml"), 8),
        ("instances.yml", fixture("instances-unknown-field.yml"), 11),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let path = registry(root).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        let before = sha256(&path);
        for args in [
            &["ports", "list"][..],
            &["ports", "list", "--json"],
            &["ports", "reserve", "newcomer"],
            &["ports", "reserve", "budget", "--port", "7000"],
            &["ports", "release", "budget"],
        ] {
            let out = abssctl(root).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            let at = format!("{} line {line}", path.display());
            assert!(stderr.contains(&at), "{args:?}: {stderr}");
            assert!(stderr.contains("hint: "), "{args:?}: {stderr}");
            assert_eq!(sha256(&path), before, "{args:?} changed {file}");
        }
        // Nothing else was created in the registry either.
        let names: Vec<_> = std::fs::read_dir(registry(root))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(file)]);
    }
}

#[test]
fn twenty_concurrent_reservations_get_distinct_ports_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let children: Vec<_> = (0..20)
        .map(|n| {
            common::command(root)
                .args(["ports", "reserve", &format!("inst-{n}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = registry(root).join("registry.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let ports = abssctl::domain::state::parse_registry(&path, &text)
        .unwrap()
        .ports;
    assert_eq!(ports.len(), 20, "{text}");
    let mut numbers: Vec<u16> = ports.iter().map(|r| r.port).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 20, "{text}");
    let mut names: Vec<String> = ports.iter().map(|r| r.instance.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (0..20).map(|n| format!("inst-{n}")).collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(list_json(root)["ports"].as_array().unwrap().len(), 20);
}

#[test]
fn a_held_lock_times_out_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let lock = root.join("run/abssctl/locks/global.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // flock -F execs the shell in place, so the holder's pid is the child's pid; the shell
    // writes the holder line the way abssctl does, then sleeps holding the lock.
    let script = format!(
        "printf '{{\"pid\":%d,\"command\":\"test-holder\",\"since\":\"2026-11-26T08:00:00Z\"}}\\n' $$ > '{}'; exec sleep 10",
        lock.display()
    );
    let mut holder = std::process::Command::new("flock")
        .args(["-F", "-x"])
        .arg(&lock)
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    let pid = holder.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains(&format!("\"pid\":{pid}"))
    {
        assert!(Instant::now() < deadline, "holder never wrote its line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let out = abssctl(root)
        .args(["--lock-timeout", "1", "ports", "reserve", "x"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {pid} (test-holder)")),
        "{stderr}"
    );
    assert!(stderr.contains("since 2026-11-26T08:00:00Z"), "{stderr}");
    assert!(stderr.contains("--lock-timeout"), "{stderr}");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(!registry(root).join("registry.yml").exists());

    // Once the holder is gone the same command succeeds.
    abssctl(root)
        .args(["ports", "reserve", "x"])
        .assert()
        .success();
}

#[test]
fn listing_works_unprivileged_and_reserving_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let path = registry(root).join("registry.yml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, fixture("registry-valid.yml")).unwrap();
    // Let "nobody" through the temp tree (the real registry's readers are root + group).
    let mut dir = path.clone();
    while dir.pop() && dir.starts_with(root) {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run_as_nobody = |args: &[&str]| as_nobody(root).args(args).output().unwrap();
    let out = run_as_nobody(&["ports", "list", "--json"]);
    let v = common::json_ok(&out);
    assert_eq!(v["ports"][0]["instance"], "budget");
    let out = run_as_nobody(&["ports", "reserve", "other"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!root.join("run/abssctl/locks").exists());
}

#[test]
fn a_schema_1_pair_is_read_as_is_and_upconverted_by_the_first_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let legacy = registry(root).join("ports.yml");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, fixture("ports-valid.yml")).unwrap();
    // A read writes nothing.
    assert_eq!(list_json(root)["ports"][0]["instance"], "budget");
    assert!(!registry(root).join("registry.yml").exists());
    abssctl(root)
        .args(["ports", "reserve", "other"])
        .assert()
        .success();
    // One file now holds everything; the legacy file is gone.
    let names: Vec<_> = std::fs::read_dir(registry(root))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("registry.yml")]);
    let v = list_json(root);
    let owners: Vec<&str> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["budget", "other"]);
}
