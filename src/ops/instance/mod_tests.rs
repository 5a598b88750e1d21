#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
//! The shared steps against a recording stand-in for systemd: what each step asks of
//! systemd, and what is on disk after a failure.

use super::*;
use crate::sys::systemd::{TransientOutcome, TransientSpec, UnitStatus};
use std::cell::{Cell, RefCell};

/// Records every call; the first `fail_reloads` daemon-reloads fail.
#[derive(Default)]
struct Recording {
    calls: RefCell<Vec<String>>,
    fail_reloads: Cell<u32>,
}

impl Recording {
    fn log(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Systemd for Recording {
    fn daemon_reload(&self) -> Result<()> {
        self.log("daemon_reload".into());
        if self.fail_reloads.get() > 0 {
            self.fail_reloads.set(self.fail_reloads.get() - 1);
            anyhow::bail!("Reload timed out");
        }
        Ok(())
    }
    fn enable_units(&self, units: &[String]) -> Result<()> {
        self.log(format!("enable {}", units.join(" ")));
        Ok(())
    }
    fn disable_units(&self, units: &[String]) -> Result<()> {
        self.log(format!("disable {}", units.join(" ")));
        Ok(())
    }
    fn start_unit(&self, unit: &str, _: Duration) -> Result<()> {
        self.log(format!("start {unit}"));
        Ok(())
    }
    fn stop_unit(&self, unit: &str, _: Duration) -> Result<()> {
        self.log(format!("stop {unit}"));
        Ok(())
    }
    fn restart_unit(&self, unit: &str, _: Duration) -> Result<()> {
        self.log(format!("restart {unit}"));
        Ok(())
    }
    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.log(format!("reset-failed {unit}"));
        Ok(())
    }
    fn reload_unit(&self, unit: &str, _: Duration) -> Result<()> {
        self.log(format!("reload {unit}"));
        Ok(())
    }
    fn unit_status(&self, _: &[String]) -> Result<Vec<UnitStatus>> {
        Ok(Vec::new())
    }
    fn run_transient(&self, _: &TransientSpec) -> Result<TransientOutcome> {
        unreachable!("instance steps never run transient units")
    }
    fn timer_status(&self, _: &[String]) -> Result<Vec<crate::sys::systemd::TimerStatus>> {
        unreachable!("no timer is read here")
    }
}

fn failing_step(plan: &mut Plan<'_>) {
    plan.step("boom", "fail", || anyhow::bail!("later step failed"));
}

#[test]
fn a_failed_reload_after_the_dropin_write_leaves_the_old_dropin() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("actual-sync@a.service.d/50-abssctl.conf");
    sys::fs::write_atomic(&path, b"old", inst::DROPIN_MODE).unwrap();
    let sd = Recording::default();
    sd.fail_reloads.set(1);
    let mut plan = Plan::new();
    step_dropin(&mut plan, &sd, path.clone(), Some("new".into()), true);
    let err = plan.run(false).unwrap_err();
    assert!(format!("{err:#}").contains("previous"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    // The failed reload, then one more after the old file is back.
    assert_eq!(sd.calls(), ["daemon_reload", "daemon_reload"]);
}

#[test]
fn a_failed_reload_after_a_new_dropin_removes_it_and_its_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("actual-sync@a.service.d");
    let path = dir.join("50-abssctl.conf");
    let sd = Recording::default();
    sd.fail_reloads.set(2);
    let mut plan = Plan::new();
    step_dropin(&mut plan, &sd, path.clone(), Some("new".into()), true);
    let err = plan.run(false).unwrap_err();
    // Both reloads failed: the file is back as it was (absent) and the error says that
    // systemd still has to be told.
    assert!(format!("{err:#}").contains("daemon-reload"), "{err:#}");
    assert!(!sys::instdir::exists(&path));
    assert!(!sys::instdir::exists(&dir));
}

#[test]
fn a_later_failure_undoes_the_dropin_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("d/50-abssctl.conf");
    sys::fs::write_atomic(&path, b"old", inst::DROPIN_MODE).unwrap();
    let sd = Recording::default();
    let mut plan = Plan::new();
    step_dropin(&mut plan, &sd, path.clone(), Some("new".into()), false);
    failing_step(&mut plan);
    plan.run(false).unwrap_err();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(sd.calls(), ["daemon_reload"]);
}

#[test]
fn the_boot_step_enables_or_disables_and_its_undo_reverses() {
    let sd = Recording::default();
    let mut plan = Plan::new();
    step_unit_file(&mut plan, &sd, "u1".into(), BootStart::Enable, "");
    step_unit_file(
        &mut plan,
        &sd,
        "u2".into(),
        BootStart::Disable,
        " (no start at boot)",
    );
    let planned = plan.planned_actions();
    assert_eq!(planned[0].action, "unit_enable");
    assert_eq!(planned[1].action, "unit_disable");
    assert_eq!(planned[1].description, "disable u2 (no start at boot)");
    failing_step(&mut plan);
    plan.run(false).unwrap_err();
    assert_eq!(
        sd.calls(),
        ["enable u1", "disable u2", "enable u2", "disable u1"]
    );
}

/// A rolled-back stop starts the unit again; the start limit is reset first, so the start
/// is not refused after many changes in a row (start-limit-hit, found in the real tier).
#[test]
fn the_undo_of_a_stop_resets_the_start_limit_before_it_starts() {
    let sd = Recording::default();
    let mut plan = Plan::new();
    super::step_stop(&mut plan, &sd, "u".into(), 1);
    failing_step(&mut plan);
    // The fake has no server to answer /health: the undo's wait fails after the start.
    plan.run(false).unwrap_err();
    assert_eq!(sd.calls(), ["stop u", "reset-failed u", "start u"]);
}

/// A loopback HTTP server answering each path with (status, body), for `conns` requests.
fn fake_server(answers: Vec<(&'static str, u16, &'static str)>, conns: usize) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&got).into_owned();
            let path = req.split(' ').nth(1).unwrap_or("").to_string();
            let (code, body) = answers
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, c, b)| (*c, *b))
                .unwrap_or((404, "{}"));
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// The gate beyond /health: the version /info reports must be the one expected (another
/// one is final: the unit runs another tree), and the account endpoint must answer.
#[test]
fn the_gate_checks_the_version_and_the_accounts() {
    let info = |v: &'static str| -> &'static str {
        match v {
            "26.9.0" => r#"{"build":{"name":"@actual-app/sync-server","version":"26.9.0"}}"#,
            _ => r#"{"build":{"version":"26.8.1"}}"#,
        }
    };
    let ok_accounts = r#"{"status":"ok","data":{"bootstrapped":true}}"#;
    let want = |v: &str| Expect {
        version: Some(v.to_string()),
    };
    let port = fake_server(
        vec![
            ("/info", 200, info("26.9.0")),
            ("/account/needs-bootstrap", 200, ok_accounts),
        ],
        4,
    );
    assert!(serves(port, &want("26.9.0")).is_ok());
    match serves(port, &want("27.0.0")) {
        Err(Wrong::Fatal(why)) => assert_eq!(why, "it runs Actual 26.9.0, not 27.0.0"),
        _ => panic!("another version must fail the gate at once"),
    }
    // No version expected (a plain start): /health alone, nothing more is asked.
    assert!(serves(1, &Expect::default()).is_ok());
    // The accounts do not answer yet: not yet healthy (the wait goes on).
    let port = fake_server(
        vec![
            ("/info", 200, info("26.9.0")),
            ("/account/needs-bootstrap", 500, "{}"),
        ],
        2,
    );
    match serves(port, &want("26.9.0")) {
        Err(Wrong::NotYet(why)) => assert!(why.contains("HTTP 500"), "{why}"),
        _ => panic!("an account endpoint that fails must hold the gate"),
    }
    // /info without a version (an odd build): not yet, never a pass.
    let port = fake_server(vec![("/info", 200, "{}")], 1);
    assert!(matches!(
        serves(port, &want("26.9.0")),
        Err(Wrong::NotYet(_))
    ));
}
