//! Versions and instances together, on the real binary against a temp root, with the npm
//! registry pointed at an address where nothing listens (any registry access fails the
//! command with exit 3, so a test that expects exit 2 proves the input was checked first):
//! - `instance create` checks everything it was given before it builds (a used domain, a
//!   missing password file): exit 2, nothing installed, `current` untouched;
//! - `version uninstall` refuses a tree that a unit drop-in on disk still runs, even when
//!   the registry says nothing uses it (a drifted follower).
//!
//! The systemd half (the switch path of `--set-current`, drift repair, a restart during a
//! build) runs in the container tier: tests/e2e/scenarios/20-versions.sh.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
use std::path::Path;

/// The shared harness points the registry at 127.0.0.1:9, where nothing listens.
use common::abssctl;

fn run(c: &mut assert_cmd::Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The machine's TLS certificate (TurnKey's place) and a registry with one instance on
/// `budget.example.org`; NO Actual version installed.
fn box_with_budget(root: &Path) {
    let tls = root.join("etc/ssl/private");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), "cert").unwrap();
    std::fs::write(tls.join("cert.key"), "key").unwrap();
    let f = root.join("var/lib/abssctl/registry/registry.yml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(
        &f,
        "schema_version: 2\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: 26.9.0\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\nports:\n  - port: 5000\n    instance: budget\n    reserved_at: 2026-11-26T08:00:00Z\n",
    )
    .unwrap();
}

fn fake_installed(root: &Path, version: &str) {
    common::installed_version(root, version, "22.23.3");
}

/// Everything under `dir`: what a refused command must leave as it was.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir(dir);
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() && !p.is_symlink() {
            out.extend(walkdir(&p));
        }
    }
    out
}

#[test]
fn create_with_a_used_domain_fails_before_it_builds_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    box_with_budget(root);
    let registry = std::fs::read(root.join("var/lib/abssctl/registry/registry.yml")).unwrap();
    // No version installed and no `current`: the old code installed "latest" first (and
    // here, failing to reach the registry, exited 3).
    for version in [None, Some("26.8.1")] {
        let mut c = abssctl(root);
        c.args([
            "instance",
            "create",
            "other",
            "--domain",
            "budget.example.org",
        ]);
        if let Some(v) = version {
            c.args(["--version", v]);
        }
        let (code, err) = run(&mut c);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("already used by instance 'budget'"), "{err}");
    }
    assert!(
        listing(&root.join("srv")).is_empty(),
        "{:?}",
        listing(&root.join("srv"))
    );
    assert_eq!(
        std::fs::read(root.join("var/lib/abssctl/registry/registry.yml")).unwrap(),
        registry
    );
}

#[test]
fn create_with_a_missing_password_file_fails_before_it_builds_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    box_with_budget(root);
    let (code, err) = run(abssctl(root).args([
        "instance",
        "create",
        "other",
        "--domain",
        "other.example.org",
        "--password-file",
        "/nonexistent/pw",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("password file"), "{err}");
    assert!(listing(&root.join("srv")).is_empty());
}

/// With the inputs right, the build is what fails here (the registry is unreachable):
/// exit 3 with the offline hint, and still nothing left behind.
#[test]
fn create_that_needs_a_build_reaches_the_registry_only_after_its_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    box_with_budget(root);
    let (code, err) = run(abssctl(root).args([
        "instance",
        "create",
        "other",
        "--domain",
        "other.example.org",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("version reinstall"), "{err}");
    assert!(!root.join("srv/app/current").exists());
    assert!(!root.join("srv/app/.staging").exists());
}

#[test]
fn uninstall_refuses_a_tree_a_dropin_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_installed(root, "26.8.1");
    fake_installed(root, "26.9.0");
    std::os::unix::fs::symlink("v26.9.0", root.join("srv/app/current")).unwrap();
    // No instance is registered on 26.8.1, but a drop-in on disk still starts it.
    let d = root.join("etc/systemd/system/actual-sync@kids.service.d");
    std::fs::create_dir_all(&d).unwrap();
    let server = root.join("srv/app/v26.8.1/node_modules/@actual-app/sync-server/app.js");
    std::fs::write(
        d.join("50-abssctl.conf"),
        format!(
            "[Service]\nExecStart=\nExecStart=/node {}\n",
            server.display()
        ),
    )
    .unwrap();
    let (code, err) = run(abssctl(root).args(["--yes", "version", "uninstall", "26.8.1"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("actual-sync@kids.service.d"), "{err}");
    assert!(root.join("srv/app/v26.8.1/manifest.json").exists());
    // A drop-in that runs another version does not block it.
    std::fs::write(
        d.join("50-abssctl.conf"),
        "[Service]\nExecStart=\nExecStart=/node /srv/app/v26.9.0/x.js\n",
    )
    .unwrap();
    let (code, err) =
        run(abssctl(root).args(["--yes", "--dry-run", "version", "uninstall", "26.8.1"]));
    assert_eq!(code, 0, "{err}");
}

/// No CA store: the registry cannot be reached over HTTPS, and that is the machine's
/// problem (exit 3 with the package to install), not an internal error (exit 1).
#[test]
fn a_missing_ca_store_is_exit_3_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = run(
        common::abssctl_with_registry(tmp.path(), "https://127.0.0.1:9/")
            .env("SSL_CERT_FILE", tmp.path().join("no-such-bundle.pem"))
            .env("SSL_CERT_DIR", tmp.path().join("no-such-dir"))
            .args(["version", "list", "--remote"]),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("CA store"), "{err}");
    assert!(
        err.contains("hint: apt-get install ca-certificates"),
        "{err}"
    );
}
