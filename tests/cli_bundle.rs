//! `abssctl support-bundle` on a temp root with secrets planted where a real box has them
//! (a TLS key an instance serves, a bootstrap password in a drop-in comment and in an
//! Environment= value, Actual tokens in the operations log and in its rotated files, a
//! password in the config): the bundle is unpacked and every member is searched for each
//! one. `journalctl` and `dpkg-query` are stand-ins on PATH that print planted lines, so
//! no test reads the machine's own journal.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;

use common::{abssctl, installed_version, registry_file};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Each planted secret, by where it was planted.
const TLS_KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-TLSKEY";
const CONFIG_PASSWORD: &str = "CfgPass-7781";
const REGISTRY_URL_PASSWORD: &str = "RegPass-5521";
const DROPIN_COMMENT_PASSWORD: &str = "DropPass-3141";
const DROPIN_ENV_PASSWORD: &str = "EnvPass-2718";
/// Not named like a secret: only the Environment= rule (values go, names stay) removes it.
const DROPIN_ENV_VALUE: &str = "EnvClient-8642";
const DROPIN_PEM_BODY: &str = "MHcCAQEEIPastedIntoADropIn";
const DROPIN_KEY_FILE_BODY: &str = "MC4CAQAwBQYDK2VwBCIEIKeyFileInADropInDir";
const OPS_TOKEN_UUID: &str = "3f0c2a8e-9b1d-4c7e-8f2a-1b3c5d7e9f01";
const OPS_HEADER_TOKEN: &str = "HdrTok-ABCDEF123456";
const ROTATED_TOKEN: &str = "RotTok-998877";
const GZ_BEARER: &str = "GzBearer-556677";
const DOCTOR_SESSION: &str = "Sess-1234abcd";
const JOURNAL_TOKEN: &str = "JrnTok-24680";

const SECRETS: &[&str] = &[
    TLS_KEY_BODY,
    CONFIG_PASSWORD,
    REGISTRY_URL_PASSWORD,
    DROPIN_COMMENT_PASSWORD,
    DROPIN_ENV_PASSWORD,
    DROPIN_ENV_VALUE,
    DROPIN_PEM_BODY,
    DROPIN_KEY_FILE_BODY,
    OPS_TOKEN_UUID,
    OPS_HEADER_TOKEN,
    ROTATED_TOKEN,
    GZ_BEARER,
    DOCTOR_SESSION,
    JOURNAL_TOKEN,
];

/// Behind a symlink in the logs directory: never in any bundle.
const OUTSIDE: &str = "OUTSIDE-SECRET-4242";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A box with one instance `budget` and every secret planted; returns the fake bin dir.
fn planted(root: &Path) -> PathBuf {
    installed_version(root, "26.9.0", "22.23.3");
    write(
        &root.join("etc/abssctl/config.yml"),
        &format!(
            "# the admin password: {CONFIG_PASSWORD}\nnpm_registry: https://bob:{REGISTRY_URL_PASSWORD}@npm.example.org/\nlock_timeout: 5\n"
        ),
    );
    let key = root.join("var/lib/abssctl/tls/instances/budget/privkey.pem");
    write(
        &key,
        &format!("-----BEGIN PRIVATE KEY-----\n{TLS_KEY_BODY}\n-----END PRIVATE KEY-----\n"),
    );
    let cert = key.with_file_name("fullchain.pem");
    write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n",
    );
    let f = registry_file(root);
    write(
        &f,
        &format!(
            "schema_version: 2\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: current\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    notes: \"\"\n    tls_source: custom\n    tls_cert: {}\n    tls_key: {}\nports:\n  - port: 5000\n    instance: budget\n    reserved_at: 2026-11-26T08:00:00Z\n",
            cert.display(),
            key.display()
        ),
    );
    let vhost = root.join("etc/nginx/sites-available/abssctl-budget.conf");
    write(
        &vhost,
        &format!(
            "server {{\n    listen 443 ssl;\n    server_name budget.example.org;\n    ssl_certificate {};\n    ssl_certificate_key {};\n}}\n",
            cert.display(),
            key.display()
        ),
    );
    let enabled = root.join("etc/nginx/sites-enabled");
    std::fs::create_dir_all(&enabled).unwrap();
    std::os::unix::fs::symlink(&vhost, enabled.join("abssctl-budget.conf")).unwrap();
    let dropins = root.join("etc/systemd/system/actual-sync@budget.service.d");
    write(
        &dropins.join("50-abssctl.conf"),
        &format!(
            "# Settings of Actual instance 'budget', rendered by abssctl.\n# bootstrap password: {DROPIN_COMMENT_PASSWORD}\n[Service]\nUser=actual-budget\nEnvironment=ACTUAL_PORT=5000\nEnvironment=ACTUAL_BOOTSTRAP_PASSWORD={DROPIN_ENV_PASSWORD}\nEnvironment=\"ACTUAL_OPENID_CLIENT_ID={DROPIN_ENV_VALUE}\"\n"
        ),
    );
    write(
        &dropins.join("90-local.conf"),
        &format!(
            "[Service]\n# pasted by hand\n-----BEGIN EC PRIVATE KEY-----\n{DROPIN_PEM_BODY}\n-----END EC PRIVATE KEY-----\n"
        ),
    );
    // A key file dropped where the bundle looks: left out whole (its body is TLS_KEY_BODY's
    // twin, so the search below would find it).
    write(
        &dropins.join("99-key.pem"),
        &format!(
            "-----BEGIN PRIVATE KEY-----\n{DROPIN_KEY_FILE_BODY}\n-----END PRIVATE KEY-----\n"
        ),
    );
    let logs = root.join("var/log/abssctl");
    write(
        &logs.join("operations.jsonl"),
        &format!(
            "{{\"op_id\":\"019ae4b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b\",\"command\":\"instance x\",\"args\":[\"instance\",\"x\",\"--token\",\"{OPS_TOKEN_UUID}\"],\"message\":\"X-ACTUAL-TOKEN: {OPS_HEADER_TOKEN}\"}}\n"
        ),
    );
    write(
        &logs.join("operations.jsonl.1"),
        &format!("{{\"command\":\"old\",\"result\":{{\"token\":\"{ROTATED_TOKEN}\"}}}}\n"),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{{\"message\":\"Authorization: Bearer {GZ_BEARER}\"}}\n").as_bytes())
        .unwrap();
    std::fs::write(logs.join("operations.jsonl.2.gz"), gz.finish().unwrap()).unwrap();
    write(&root.join("outside/secret"), OUTSIDE);
    std::os::unix::fs::symlink(root.join("outside/secret"), logs.join("operations.jsonl.3"))
        .unwrap();
    write(
        &root.join("var/lib/abssctl/doctor.json"),
        &format!("{{\"probes\":[{{\"id\":\"x\",\"message\":\"session_id={DOCTOR_SESSION}\"}}]}}\n"),
    );
    write(
        &root.join("srv/backups/backups.json"),
        "{\"schema_version\":1,\"backups\":[]}\n",
    );
    write(
        &root.join("etc/abssctl/templates/instance-dropin.conf.tera"),
        &format!("[Service]\nEnvironment=ACTUAL_OPENID_CLIENT_ID={DROPIN_ENV_VALUE}\n"),
    );
    write(
        &root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
    );
    let bin = root.join("fakebin");
    let script = |name: &str, body: &str| {
        let p = bin.join(name);
        write(&p, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "journalctl",
        &format!(
            "echo \"2026-12-03T10:00:00+0000 box node[1]: login ok token={JOURNAL_TOKEN} (args: $*)\""
        ),
    );
    script("dpkg-query", "printf 0.1.0-1");
    bin
}

/// Every member of a .tar.gz by name below its top directory, and each one's mode.
fn unpack(path: &Path) -> (BTreeMap<String, String>, BTreeMap<String, u32>) {
    let f = std::fs::File::open(path).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut texts = BTreeMap::new();
    let mut modes = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let (top, rest) = name.split_once('/').unwrap();
        assert!(top.starts_with("abssctl-support-") || top == "b", "{name}");
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        modes.insert(rest.to_string(), e.header().mode().unwrap());
        texts.insert(rest.to_string(), s);
    }
    (texts, modes)
}

fn bundle(root: &Path, bin: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    abssctl(root)
        .env("PATH", bin)
        .args(["support-bundle", "--json", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn no_planted_secret_is_in_the_redacted_bundle() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let bin = planted(root);
    let out = root.join("b.tar.gz");
    let v = common::json_ok(&bundle(root, &bin, &out, &[]));
    assert_eq!(v["redacted"], true);
    assert_eq!(v["path"], out.to_str().unwrap());
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(v["size"], meta.len());
    let sha = abssctl::sys::fs::sha256_file(&out).unwrap();
    assert_eq!(v["sha256"], sha);
    assert!(
        // Each planted secret is redacted, except the two key files, which are left out.
        v["redactions"].as_u64().unwrap() >= SECRETS.len() as u64 - 2,
        "{v}"
    );

    let (members, modes) = unpack(&out);
    for want in [
        "MANIFEST",
        "MANIFEST.json",
        "config/config.yml",
        "config/resolved.json",
        "state/registry.yml",
        "state/doctor.json",
        "state/backups.json",
        "templates/instance-dropin.conf.tera",
        "versions/v26.9.0/manifest.json",
        "systemd/actual-sync@budget.service.d/50-abssctl.conf",
        "systemd/actual-sync@budget.service.d/90-local.conf",
        "nginx/sites-available/abssctl-budget.conf",
        "nginx/sites-enabled.txt",
        "logs/operations.jsonl",
        "logs/operations.jsonl.1",
        "logs/operations.jsonl.2",
        "journal/abssctl.log",
        "journal/abssctl-units.log",
        "journal/actual-sync@budget.service.log",
        "version.txt",
        "os-release",
    ] {
        assert!(
            members.contains_key(want),
            "{want} missing: {:?}",
            members.keys()
        );
    }
    for (name, mode) in &modes {
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert!(
        !members.keys().any(|k| k.starts_with("tls/")),
        "{:?}",
        members.keys()
    );
    for (name, text) in &members {
        for s in SECRETS.iter().chain([&OUTSIDE]) {
            assert!(!text.contains(s), "{s} is in {name}:\n{text}");
        }
        assert!(
            !text.contains("PRIVATE KEY-----\n"),
            "a key block in {name}"
        );
    }
    // The names stay, the file still reads as what it was, the facts survive.
    let dropin = &members["systemd/actual-sync@budget.service.d/50-abssctl.conf"];
    assert!(
        dropin.contains("Environment=ACTUAL_PORT=5000\n"),
        "{dropin}"
    );
    assert!(
        dropin.contains("Environment=ACTUAL_BOOTSTRAP_PASSWORD=[REDACTED]\n"),
        "{dropin}"
    );
    for line in members["logs/operations.jsonl"].lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(rec["op_id"], "019ae4b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b");
    }
    assert!(
        members["version.txt"].contains("0.1.0-1"),
        "{}",
        members["version.txt"]
    );
    assert!(members["os-release"].contains("bookworm"));
    assert!(members["nginx/sites-enabled.txt"].contains("abssctl-budget.conf -> "));
    assert!(
        members["journal/actual-sync@budget.service.log"].contains("-u actual-sync@budget.service"),
        "{}",
        members["journal/actual-sync@budget.service.log"]
    );
    let manifest = &members["MANIFEST"];
    assert!(
        manifest.contains("operations.jsonl.3: a symlink to"),
        "{manifest}"
    );
    assert!(manifest.contains("1 password"), "{manifest}");
    assert!(
        manifest.contains("99-key.pem: a private key file: never in a redacted bundle"),
        "{manifest}"
    );
    assert!(!members.keys().any(|k| k.ends_with("99-key.pem")));
    assert!(manifest.contains("environment value"), "{manifest}");
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"logs/operations.jsonl.2"), "{files:?}");
}

#[test]
fn no_redact_with_yes_keeps_every_secret_and_the_tls_key() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let bin = planted(root);
    let out = root.join("b.tar.gz");
    let v = common::json_ok(&bundle(root, &bin, &out, &["--no-redact", "--yes"]));
    assert_eq!(v["redacted"], false);
    assert_eq!(v["redactions"], 0);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (members, _) = unpack(&out);
    let all: String = members.values().cloned().collect();
    for s in SECRETS {
        assert!(all.contains(s), "{s} not in the unredacted bundle");
    }
    assert!(members["tls/abssctl-budget/privkey.pem"].contains(TLS_KEY_BODY));
    assert!(!all.contains(OUTSIDE), "a symlink was followed");
    assert!(members["MANIFEST"].contains("NOT REDACTED"));
}

#[test]
fn refusals_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let bin = planted(root);
    // --no-redact without --yes and without a terminal: not confirmed, exit 2.
    let out = root.join("b.tar.gz");
    let o = bundle(root, &bin, &out, &["--no-redact"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());
    // An existing --out: exit 2 with a hint, the file untouched.
    write(&out, "mine");
    let o = bundle(root, &bin, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    // A directory that does not exist: exit 2.
    let o = bundle(root, &bin, &root.join("nope/b.tar.gz"), &[]);
    assert_eq!(o.status.code(), Some(2));
    // Dry run: the list, no file.
    let dry = root.join("dry.tar.gz");
    let v = common::json_ok(&bundle(root, &bin, &dry, &["--dry-run"]));
    assert_eq!(v["dry_run"], true);
    assert!(v["sha256"].is_null());
    assert!(v["files"].as_array().unwrap().len() > 10, "{v}");
    assert!(!dry.exists());
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn without_journalctl_the_bundle_says_so() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    planted(root);
    let empty = root.join("emptybin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = root.join("b.tar.gz");
    let v = common::json_ok(&bundle(root, &empty, &out, &[]));
    let (members, _) = unpack(&out);
    let j = &members["journal/actual-sync@budget.service.log"];
    assert!(j.contains("journalctl is not installed"), "{j}");
    assert!(members["version.txt"].contains("dpkg-query is not installed"));
    assert!(members["MANIFEST"].contains("no journal"));
    assert_eq!(v["redacted"], true);
}

#[test]
fn the_default_place_is_roots_home() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let bin = planted(root);
    // No /root under this root: exit 3, say --out.
    let o = abssctl(root)
        .env("PATH", &bin)
        .args(["support-bundle"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    std::fs::create_dir_all(root.join("root")).unwrap();
    let o = abssctl(root)
        .env("PATH", &bin)
        .args(["support-bundle", "--json"])
        .output()
        .unwrap();
    let v = common::json_ok(&o);
    let p = PathBuf::from(v["path"].as_str().unwrap());
    assert_eq!(p.parent().unwrap(), root.join("root"));
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("abssctl-support-") && name.ends_with("Z.tar.gz"),
        "{name}"
    );
    assert!(p.exists());
}

#[test]
fn it_needs_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = root.join("b.tar.gz");
    let o = common::as_nobody(root)
        .args(["support-bundle", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("must run as root") && err.contains("sudo"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_schema1_registry_is_included_and_its_instances_journals_read() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    common::schema1_registry_with_budget(root);
    let bin = root.join("fakebin");
    write(
        &bin.join("journalctl"),
        "#!/bin/sh\necho \"line (args: $*)\"\n",
    );
    std::fs::set_permissions(
        bin.join("journalctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = root.join("b.tar.gz");
    common::json_ok(&bundle(root, &bin, &out, &[]));
    let (members, _) = unpack(&out);
    assert!(members["state/instances.yml"].contains("name: budget"));
    assert!(
        members["journal/actual-sync@budget.service.log"].contains("-u actual-sync@budget.service"),
        "{:?}",
        members.keys()
    );
    assert!(members["journal/abssctl-units.log"].contains("-u abssctl-backup@budget.service"));
}

/// A broken configuration is when help is most needed: the bundle is still made (on the
/// defaults, one warning) and holds the broken file, redacted; other commands refuse.
#[test]
fn a_broken_config_is_gathered_not_a_refusal() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    planted(root);
    let cfg = root.join("etc/abssctl/config.yml");
    write(
        &cfg,
        "ports:\n  base: [not a port\nbackups_password: hunter2-broken\n",
    );
    let refused = abssctl(root)
        .args(["--json", "instance", "list"])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a normal command refuses the broken file"
    );
    let out = root.join("b.tar.gz");
    let empty = root.join("emptybin");
    std::fs::create_dir_all(&empty).unwrap();
    let made = bundle(root, &empty, &out, &[]);
    let stderr = String::from_utf8_lossy(&made.stderr).to_string();
    common::json_ok(&made);
    assert!(stderr.contains("running on the defaults"), "{stderr}");
    let (members, _) = unpack(&out);
    let c = &members["config/config.yml"];
    assert!(c.contains("[not a port"), "{c}");
    assert!(!c.contains("hunter2-broken"), "{c}");
}
