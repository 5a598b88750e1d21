//! Fixtures of cli_tls.rs: certificates made by `openssl` in temp dirs, and a temp machine
//! whose nginx reads only files under it (as in cli_vhost.rs), with a recording stand-in
//! for systemd's reload.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use abssctl::domain::config::{self, Config};
use abssctl::domain::default_server;
use abssctl::domain::layout::Layout;
use abssctl::domain::txn::Plan;
use abssctl::domain::validate;
use abssctl::ops::vhost::{Providers, VhostRequest, plan_apply};
use abssctl::ops::{Ctx, Globals, OpState};
use abssctl::sys::nginx::NginxCli;
use abssctl::sys::systemd::{Systemd, TransientOutcome, TransientSpec, UnitStatus};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// Records reloads; reports nginx.service as active. Nothing else is used by the vhost steps.
#[derive(Default)]
pub struct RecordingSystemd {
    pub reloads: RefCell<Vec<String>>,
}

impl Systemd for RecordingSystemd {
    fn daemon_reload(&self) -> anyhow::Result<()> {
        unreachable!("vhost steps never reload systemd itself")
    }
    fn enable_units(&self, _: &[String]) -> anyhow::Result<()> {
        unreachable!()
    }
    fn disable_units(&self, _: &[String]) -> anyhow::Result<()> {
        unreachable!()
    }
    fn start_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!()
    }
    fn stop_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!()
    }
    fn restart_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!("nginx is reloaded, never restarted")
    }
    fn reset_failed(&self, _: &str) -> anyhow::Result<()> {
        unreachable!("nginx is never started by the vhost steps")
    }
    fn reload_unit(&self, unit: &str, _: Duration) -> anyhow::Result<()> {
        self.reloads.borrow_mut().push(unit.to_string());
        Ok(())
    }
    fn unit_status(&self, units: &[String]) -> anyhow::Result<Vec<UnitStatus>> {
        Ok(units
            .iter()
            .map(|u| UnitStatus {
                unit: u.clone(),
                active_state: "active".into(),
                ..UnitStatus::default()
            })
            .collect())
    }
    fn run_transient(&self, _: &TransientSpec) -> anyhow::Result<TransientOutcome> {
        unreachable!()
    }
    fn timer_status(
        &self,
        _: &[String],
    ) -> anyhow::Result<Vec<abssctl::sys::systemd::TimerStatus>> {
        unreachable!("no timer is read here")
    }
}

/// A temp machine root with an nginx that reads only files under it.
pub struct Machine {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub nginx: NginxCli,
}

pub fn nginx_program() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx is needed for this test: apt install nginx-light")
}

pub fn machine() -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for d in [
        "etc/nginx/sites-available",
        "etc/nginx/sites-enabled",
        "nginx-prefix/logs",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    system_cert(&root, "budget.example.org");
    let p = root.join("nginx-prefix");
    let conf = root.join("etc/nginx/nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\nevents {{}}\nhttp {{\n    \
             client_body_temp_path {p}/body;\n    proxy_temp_path {p}/proxy;\n    \
             access_log off;\n    include {root}/etc/nginx/sites-enabled/*;\n}}\n",
            p = p.display(),
            root = root.display()
        ),
    )
    .unwrap();
    let nginx = NginxCli::new(
        nginx_program(),
        vec![
            "-p".into(),
            p.clone().into(),
            "-c".into(),
            conf.into(),
            "-e".into(),
            p.join("logs/error.log").into(),
        ],
    );
    Machine {
        _dir: dir,
        root,
        nginx,
    }
}

pub fn ctx(root: &Path) -> Ctx {
    let cfg = Config {
        root: root.to_path_buf(),
        ..Config::default()
    };
    let layout = Layout::new(&cfg, &root.join("etc/abssctl/config.yml"));
    Ctx {
        globals: Globals::default(),
        ui: &abssctl::ops::ui::Headless,
        resolved: config::resolve(None, &[], &config::Overrides::default()).unwrap(),
        layout,
        op: OpState {
            op_id: uuid::Uuid::now_v7(),
            command: "instance create".into(),
            args: serde_json::Value::Null,
            target: None,
            planned: Vec::new(),
            warnings: Vec::new(),
            lock_wait: Duration::ZERO,
            backups: Vec::new(),
        },
    }
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
