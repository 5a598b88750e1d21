//! Fixtures of cli_tls.rs: certificates made by `openssl` in temp dirs, and a temp machine
//! whose nginx reads only files under it (as in cli_vhost.rs), with a recording stand-in
//! for systemd's reload.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use abssctl::domain::default_server;
use abssctl::domain::txn::Plan;
use abssctl::domain::validate;
use abssctl::ops::Ctx;
use abssctl::ops::vhost::{Providers, VhostRequest, plan_apply};
use abssctl::sys::nginx::NginxCli;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---------------------------------------------------------------- fixtures (openssl)

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is needed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<tag>.crt` / `<tag>.key` in `dir`: self-signed for `name` (SAN), key of `kind`
/// (rsa, ed25519, or an EC curve name), valid 90 days.
pub fn pair(dir: &Path, tag: &str, kind: &str, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{tag}.key");
    let crt = format!("{tag}.crt");
    let mut args: Vec<&str> = vec!["req", "-x509", "-nodes", "-days", "90", "-newkey"];
    let curve;
    match kind {
        "rsa" => args.push("rsa:2048"),
        "ed25519" => args.push("ed25519"),
        c => {
            curve = format!("ec_paramgen_curve:{c}");
            args.extend(["ec", "-pkeyopt", &curve]);
        }
    }
    let subj = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    args.extend([
        "-subj", &subj, "-addext", &san, "-keyout", &key, "-out", &crt,
    ]);
    openssl(dir, &args);
    (dir.join(crt), dir.join(key))
}

/// A certificate for `name` that expired in 2020 (openssl 3.0 has no -not_after: `ca`
/// with explicit dates does it).
pub fn expired(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &["genpkey", "-algorithm", "ed25519", "-out", "old.key"],
    );
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-new", "-key", "old.key", "-subj", &subj, "-out", "old.csr",
        ],
    );
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=default\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "old.key",
            "-in",
            "old.csr",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
            "-out",
            "old.crt",
        ],
    );
    (dir.join("old.crt"), dir.join("old.key"))
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Nothing a command printed may carry key or certificate material.
pub fn no_pem(text: &str) {
    assert!(!text.contains("-----BEGIN"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

/// The system certificate, made like TurnKey's for `cn` (cert.pem = certificate + key).
pub fn system_cert(root: &Path, cn: &str) {
    let dir = root.join("etc/ssl/private");
    std::fs::create_dir_all(&dir).unwrap();
    let (c, k) = pair(&dir, "cert", "rsa", cn);
    let mut pem = std::fs::read(&c).unwrap();
    pem.extend(std::fs::read(&k).unwrap());
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
}

// ---------------------------------------------------------------- against the real nginx

pub use crate::nginx_support::{Machine, RecordingSystemd, ctx};

/// A temp machine with the system certificate (Debian's snakeoil path) for the domain.
pub fn machine() -> Machine {
    crate::nginx_support::machine_with(|root| system_cert(root, "budget.example.org"))
}

pub fn request() -> VhostRequest {
    VhostRequest {
        name: validate::instance_name("budget").unwrap(),
        domain: validate::domain("budget.example.org").unwrap(),
        port: 5000,
        https_port: None,
        custom_tls: None,
    }
}

pub fn apply(c: &Ctx, sd: &RecordingSystemd, nginx: &NginxCli) -> anyhow::Result<()> {
    let mut plan = Plan::new();
    plan_apply(c, &request(), Providers { systemd: sd, nginx }, &mut plan)?;
    plan.run(false).map(drop)
}

pub fn catch_all(root: &Path) -> PathBuf {
    root.join("etc/nginx/sites-available")
        .join(default_server::FILE_NAME)
}

pub fn enable_site(root: &Path, name: &str, text: &str) {
    let f = root.join("etc/nginx/sites-available").join(name);
    std::fs::write(&f, text).unwrap();
    std::os::unix::fs::symlink(&f, root.join("etc/nginx/sites-enabled").join(name)).unwrap();
}
