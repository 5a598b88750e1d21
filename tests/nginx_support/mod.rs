//! A temp machine whose nginx reads only files under it, a recording stand-in for
//! systemd's reload and a command context rooted there: shared by cli_vhost.rs and the TLS
//! fixtures (tls_support), which differ only in the certificate the machine starts with.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use abssctl::domain::config::{self, Config};
use abssctl::domain::layout::Layout;
use abssctl::ops::{Ctx, Globals, OpState};
use abssctl::sys::nginx::NginxCli;
use abssctl::sys::systemd::{Systemd, TransientOutcome, TransientSpec, UnitStatus};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A temp machine whose certificate `cert` makes under its root.
pub fn machine_with(cert: impl FnOnce(&Path)) -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for d in [
        "etc/nginx/sites-available",
        "etc/nginx/sites-enabled",
        "nginx-prefix/logs",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    cert(&root);
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
