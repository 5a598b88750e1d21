//! `instance list` / `status` read every running instance's health all at once, time
//! bounded: real loopback servers on test threads (one answering GET /health UP, several
//! that accept the connection and never answer, one refused port), a stand-in systemd
//! that reports their units active. A hung server is reported as `timeout`, and several
//! of them together cost about one probe timeout, not one each. `list` asks for an
//! answered connection, `status` for GET /health UP (query.rs `HealthProbe`).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
// Its command context rooted in a temp dir (the recorded command name does not matter here).
mod nginx_support;
use nginx_support::ctx;

use abssctl::domain::layout::Layout;
use abssctl::ops::instance::query::{self, LIST_PROBE_TIMEOUT};
use abssctl::sys::systemd::{Systemd, TimerStatus, TransientOutcome, TransientSpec, UnitStatus};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// Reports the units it is given as active, except `stopped`'s; nothing else is used.
struct Units {
    stopped: &'static str,
}

impl Systemd for Units {
    fn daemon_reload(&self) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn enable_units(&self, _: &[String]) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn disable_units(&self, _: &[String]) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn start_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn stop_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn restart_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn reset_failed(&self, _: &str) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn reload_unit(&self, _: &str, _: Duration) -> anyhow::Result<()> {
        unreachable!("a read")
    }
    fn unit_status(&self, units: &[String]) -> anyhow::Result<Vec<UnitStatus>> {
        Ok(units
            .iter()
            .map(|u| {
                let stopped = *u == Layout::unit_name(self.stopped);
                UnitStatus {
                    unit: u.clone(),
                    load_state: "loaded".into(),
                    active_state: if stopped { "inactive" } else { "active" }.into(),
                    sub_state: if stopped { "dead" } else { "running" }.into(),
                    ..UnitStatus::default()
                }
            })
            .collect())
    }
    fn run_transient(&self, _: &TransientSpec) -> anyhow::Result<TransientOutcome> {
        unreachable!("a read")
    }
    fn timer_status(&self, _: &[String]) -> anyhow::Result<Vec<TimerStatus>> {
        unreachable!("a read")
    }
}

/// A server that answers every request with 200 `{"status":"UP"}`.
fn healthy() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = r#"{"status":"UP"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A server that accepts connections and never answers (the kernel completes the
/// handshake from the backlog; the accepted sockets are held open, never written).
fn hung() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    port
}

/// A port nothing listens on (bound, then closed: refused).
fn refused() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn registry(root: &Path, instances: &[(&str, u16)]) {
    common::machine(root);
    let f = common::registry_file(root);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    let mut text = String::from("schema_version: 2\ninstances:\n");
    for (name, port) in instances {
        text.push_str(&format!(
            "  - name: {name}\n    domain: {name}.example.org\n    port: {port}\n    version_binding: 26.9.0\n    data_dir: /srv/{name}/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n"
        ));
    }
    text.push_str("ports: []\n");
    std::fs::write(&f, text).unwrap();
}

const HUNG: usize = 6;

#[test]
fn hung_servers_are_timeouts_and_cost_one_timeout_together() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut names: Vec<(String, u16)> = vec![
        ("alpha".into(), healthy()),
        ("bravo".into(), refused()),
        ("charlie".into(), refused()),
    ];
    names.extend((0..HUNG).map(|i| (format!("hung{i}"), hung())));
    let refs: Vec<(&str, u16)> = names.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    registry(root, &refs);
    let mut c = ctx(root);

    let t = Instant::now();
    let l = query::list_with(&mut c, &Units { stopped: "charlie" }).unwrap();
    let wall = t.elapsed();

    let health = |n: &str| {
        l.instances
            .iter()
            .find(|i| i.name == n)
            .unwrap_or_else(|| panic!("{n} listed"))
            .health
    };
    assert_eq!(health("alpha"), Some("up"));
    // Running, nothing on its port: down (refused at once, not a timeout).
    assert_eq!(health("bravo"), Some("down"));
    // Not active: not probed at all.
    assert_eq!(health("charlie"), Some("stopped"));
    for i in 0..HUNG {
        assert_eq!(health(&format!("hung{i}")), Some("timeout"), "hung{i}");
    }
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let how = |n: &str| {
        l.instances
            .iter()
            .find(|i| i.name == n)
            .unwrap()
            .health_probe
    };
    assert_eq!(how("alpha"), Some(query::HealthProbe::Connection));
    assert_eq!(how("charlie"), Some(query::HealthProbe::Connection));
    // The version is read (once) for every instance.
    assert!(
        l.instances
            .iter()
            .all(|i| i.version.as_deref() == Some("26.9.0"))
    );
    // Waited for the hung ones at all (the timeout is the engine's, not a quick error)...
    assert!(wall >= LIST_PROBE_TIMEOUT, "took {wall:?}");
    // ...but about once: one after the other they would take HUNG timeouts (3 s). The
    // bound is loose on purpose (a loaded machine), and still fails a sequential path.
    assert!(
        wall < LIST_PROBE_TIMEOUT * (HUNG as u32 - 1),
        "took {wall:?}"
    );
}

#[test]
fn status_of_one_hung_instance_is_a_timeout_within_one_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    registry(root, &[("budget", hung()), ("family", healthy())]);
    let mut c = ctx(root);
    let sd = Units { stopped: "" };
    let t = Instant::now();
    let (v, warnings) = query::show_with(&mut c, &sd, "budget").unwrap();
    let wall = t.elapsed();
    assert_eq!(v.health, Some("timeout"));
    assert!(warnings.is_empty(), "{warnings:?}");
    // Well under the 2 s the start gate allows one probe.
    assert!(wall < Duration::from_millis(1800), "took {wall:?}");
    let (v, _) = query::show_with(&mut c, &sd, "family").unwrap();
    assert_eq!(v.health, Some("up"));
    assert_eq!(v.health_probe, Some(query::HealthProbe::Http));
}

/// A server that accepts and closes but answers no HTTP: `status` (GET /health) says
/// down, `list` (an answered connection) says up, and each says which probe it used.
#[test]
fn list_asks_for_a_connection_and_status_for_health() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(b"not http\r\n");
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    registry(root, &[("budget", port)]);
    let mut c = ctx(root);
    let sd = Units { stopped: "" };
    let (v, _) = query::show_with(&mut c, &sd, "budget").unwrap();
    assert_eq!(
        (v.health, v.health_probe),
        (Some("down"), Some(query::HealthProbe::Http))
    );
    let l = query::list_with(&mut c, &sd).unwrap();
    assert_eq!(
        (l.instances[0].health, l.instances[0].health_probe),
        (Some("up"), Some(query::HealthProbe::Connection))
    );
}
