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
