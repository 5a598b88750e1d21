//! The transaction engine: every mutation is a plan of steps, each with an apply and
//! (returned by the apply) an undo. `--dry-run` shows the plan and applies nothing; a step
//! that fails makes the already-applied steps undo in reverse order. The planned actions
//! are what the operations log records, so a plan is also the audit trail of intent.
//!
//! Some effects cannot be undone (a server password set through the server's API, a purged
//! data directory): such steps are added with [`Plan::step_irreversible`], and when a later
//! failure rolls the plan back, the error carries a [`Rollback`] naming them, so the
//! operations log can say the failed command still changed something.
//!
//! With the cargo feature `failpoints` (test builds only) the engine evaluates two
//! failpoints after each step's apply has succeeded, so that step's own undo runs too:
//! `txn-after-step-<k>` (k = 1-based position of the step in `planned_actions`) and
//! `txn-after-<action>` (the step's action word, e.g. `txn-after-registry_write`; the
//! first step with that word). `FAILPOINTS=txn-after-step-3=return abssctl ...` makes the
//! third step "fail" once it has applied. Without the feature they compile to nothing.
//!
//! The engine itself performs no I/O: steps are closures that call into `sys/`.

use anyhow::{Context, Result};
use serde::Serialize;

/// How to reverse one applied step.
pub type Undo<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;
type Apply<'a> = Box<dyn FnOnce() -> Result<Option<Undo<'a>>> + 'a>;

/// What a step will do, in a form that is printed for `--dry-run` and logged as
/// `planned_actions` (ADR-028). `action` is a stable machine word, `description` is prose.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedAction {
    pub action: String,
    pub description: String,
    /// The step's effect cannot be undone once applied (shown so a dry run warns of it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

/// One step: its description and the closure that applies it.
pub struct Step<'a> {
    planned: PlannedAction,
    apply: Apply<'a>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("planned", &self.planned)
            .finish()
    }
}

/// An ordered list of steps.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    steps: Vec<Step<'a>>,
}

/// What running a plan did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// Descriptions of the steps that were applied (empty for a dry run).
    pub applied: Vec<String>,
    pub dry_run: bool,
}

/// Attached (as context) to the error of a plan that failed, so the frame around the
/// command can record what the failure left behind; find it with
/// `err.downcast_ref::<Rollback>()`. It displays as "rolled back" or "rollback incomplete
/// (...)", which is what the operator reads in the error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The action word of the step that failed.
    pub failed_action: String,
    /// Irreversible steps that ran, in plan order (the failing one included: it may have
    /// done part of its work before it failed).
    pub irreversible: Vec<String>,
    /// Steps whose undo failed, in plan order, and the failures (one line each).
    pub undo_failed: Vec<String>,
    pub undo_errors: Vec<String>,
}

impl Rollback {
    /// Every applied step that had an undo was undone without error.
    pub fn complete(&self) -> bool {
        self.undo_failed.is_empty()
    }

    /// Did the failed plan leave the system changed?
    pub fn changed(&self) -> bool {
        !self.irreversible.is_empty() || !self.undo_failed.is_empty()
    }

    /// Action words of the effects still in place after the rollback (empty: the plan
    /// left the system as it found it).
    pub fn effects_kept(&self) -> Vec<String> {
        let mut kept = self.irreversible.clone();
        kept.extend(
            self.undo_failed
                .iter()
                .filter(|a| !kept.contains(a))
                .cloned()
                .collect::<Vec<_>>(),
        );
        kept
    }
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.complete() {
            f.write_str("rolled back")?;
        } else {
            write!(f, "rollback incomplete ({})", self.undo_errors.join("; "))?;
        }
        if !self.irreversible.is_empty() {
            write!(
                f,
                " except what cannot be undone: {}",
                self.irreversible.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The failure a fired failpoint injects (plain error: exit 1, like any internal fault).
pub fn injected_failure(name: &str, arg: Option<String>) -> anyhow::Error {
    match arg {
        Some(msg) => anyhow::anyhow!("injected failure at failpoint {name}: {msg}"),
        None => anyhow::anyhow!("injected failure at failpoint {name}"),
    }
}

/// A failpoint (feature `failpoints`): when configured (FAILPOINTS=name=return), the
/// enclosing function returns `Err(injected_failure(..))`; without the feature, nothing.
/// For steps with two effects, placed between them (name: `<step action>-<where>`).
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |arg: Option<String>| Err(
            $crate::domain::txn::injected_failure($name, arg).into()
        ));
    };
}

/// The engine's failpoints after step `k` (1-based) with action word `action`.
#[cfg(feature = "failpoints")]
fn after_step(k: usize, action: &str) -> Result<()> {
    for name in [format!("txn-after-step-{k}"), format!("txn-after-{action}")] {
        let name = name.as_str();
        fail::fail_point!(name, |arg| Err(injected_failure(name, arg)));
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
fn after_step(_k: usize, _action: &str) -> Result<()> {
    Ok(())
}

impl<'a> Plan<'a> {
    pub fn new() -> Self {
        Plan { steps: Vec::new() }
    }

    /// Add a step whose apply returns how to undo it (`None`: nothing to undo, e.g. a check).
    pub fn step(
        &mut self,
        action: &str,
        description: impl Into<String>,
        apply: impl FnOnce() -> Result<Option<Undo<'a>>> + 'a,
    ) -> &mut Self {
        self.push(action, description.into(), false, Box::new(apply))
    }

    /// Add a step whose effect cannot be undone (its apply returns no undo, or one that
    /// only tidies up). If the plan fails after it ran, the rollback undoes the other
    /// steps and [`Rollback::effects_kept`] names this one, so the failed command is
    /// recorded as having changed the system.
    pub fn step_irreversible(
        &mut self,
        action: &str,
        description: impl Into<String>,
        apply: impl FnOnce() -> Result<Option<Undo<'a>>> + 'a,
    ) -> &mut Self {
        self.push(action, description.into(), true, Box::new(apply))
    }

    fn push(
        &mut self,
        action: &str,
        description: String,
        irreversible: bool,
        apply: Apply<'a>,
    ) -> &mut Self {
        self.steps.push(Step {
            planned: PlannedAction {
                action: action.to_string(),
                description,
                irreversible,
            },
            apply,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan as data, for `--dry-run` output and the operations log.
    pub fn planned_actions(&self) -> Vec<PlannedAction> {
        self.steps.iter().map(|s| s.planned.clone()).collect()
    }

    /// Apply every step in order. On the first failure, undo the applied steps in reverse;
    /// the returned error is the step's, with a [`Rollback`] as context that says what
    /// stayed (irreversible effects, failed undos: nothing is hidden from the operator).
    pub fn run(self, dry_run: bool) -> Result<Outcome> {
        if dry_run {
            return Ok(Outcome {
                applied: Vec::new(),
                dry_run: true,
            });
        }
        let mut done: Vec<(PlannedAction, Option<Undo<'a>>)> = Vec::new();
        for (k, step) in self.steps.into_iter().enumerate() {
            let planned = step.planned;
            let failed = match (step.apply)() {
                Ok(undo) => {
                    tracing::debug!(step = %planned.description, "applied");
                    let action = planned.action.clone();
                    done.push((planned.clone(), undo));
                    match after_step(k + 1, &action) {
                        Ok(()) => continue,
                        Err(e) => (planned, e, false),
                    }
                }
                Err(e) => (planned, e, true),
            };
            return Err(roll_back(done, failed));
        }
        Ok(Outcome {
            applied: done.into_iter().map(|(p, _)| p.description).collect(),
            dry_run: false,
        })
    }
}

/// Undo `done` in reverse after `failed` (the step, its error, and whether the failure
/// came from its own apply, i.e. it is not in `done`).
fn roll_back(
    done: Vec<(PlannedAction, Option<Undo<'_>>)>,
    (step, err, in_apply): (PlannedAction, anyhow::Error, bool),
) -> anyhow::Error {
    let mut irreversible: Vec<String> = done
        .iter()
        .filter(|(p, _)| p.irreversible)
        .map(|(p, _)| p.action.clone())
        .collect();
    if in_apply && step.irreversible {
        irreversible.push(step.action.clone());
    }
    let mut undo_failed = Vec::new();
    let mut undo_errors = Vec::new();
    for (p, undo) in done.into_iter().rev() {
        let Some(undo) = undo else { continue };
        match undo() {
            Ok(()) => tracing::info!(step = %p.description, "rolled back"),
            Err(e) => {
                tracing::error!(step = %p.description, error = %format!("{e:#}"), "undo failed");
                undo_errors.push(format!("undo of '{}' failed: {e:#}", p.description));
                undo_failed.insert(0, p.action);
            }
        }
    }
    let rollback = Rollback {
        failed_action: step.action,
        irreversible,
        undo_failed,
        undo_errors,
    };
    err.context(format!("step '{}' failed", step.description))
        .context(rollback)
}

/// Convenience for steps that must not fail silently when their undo is impossible.
pub fn no_undo<'a>() -> Result<Option<Undo<'a>>> {
    Ok(None)
}

/// Wrap an undo closure.
pub fn undo<'a>(f: impl FnOnce() -> Result<()> + 'a) -> Result<Option<Undo<'a>>> {
    Ok(Some(Box::new(f)))
}

/// Helper for steps: attach context naming the step's target.
pub fn ctx<T>(r: Result<T>, what: &str) -> Result<T> {
    r.with_context(|| what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn failing_middle_step_undoes_applied_steps_in_reverse() {
        let log = RefCell::new(Vec::<String>::new());
        let mut plan = Plan::new();
        for name in ["a", "b"] {
            let log = &log;
            plan.step("write", format!("write {name}"), move || {
                log.borrow_mut().push(format!("apply {name}"));
                undo(move || {
                    log.borrow_mut().push(format!("undo {name}"));
                    Ok(())
                })
            });
        }
        plan.step("fail", "the failing step", || anyhow::bail!("disk full"));
        plan.step("never", "never runs", || {
            log.borrow_mut().push("apply never".into());
            no_undo()
        });
        let err = plan.run(false).unwrap_err();
        assert_eq!(
            *log.borrow(),
            vec!["apply a", "apply b", "undo b", "undo a"]
        );
        let msg = format!("{err:#}");
        assert!(msg.contains("the failing step"), "{msg}");
        assert!(msg.contains("disk full"), "{msg}");
        assert!(msg.contains("rolled back"), "{msg}");
    }

    #[test]
    fn failed_undo_is_reported_not_swallowed() {
        let mut plan = Plan::new();
        plan.step("a", "step a", || undo(|| anyhow::bail!("cannot restore a")));
        plan.step("b", "step b", || anyhow::bail!("b broke"));
        let msg = format!("{:#}", plan.run(false).unwrap_err());
        assert!(msg.contains("rollback incomplete"), "{msg}");
        assert!(msg.contains("cannot restore a"), "{msg}");
    }

    #[test]
    fn dry_run_applies_nothing_but_exposes_the_plan() {
        let touched = RefCell::new(false);
        let mut plan = Plan::new();
        plan.step("write_file", "write x", || {
            *touched.borrow_mut() = true;
            no_undo()
        });
        assert_eq!(plan.planned_actions()[0].action, "write_file");
        let out = plan.run(true).unwrap();
        assert!(out.dry_run && out.applied.is_empty());
        assert!(!*touched.borrow());
    }

    #[test]
    fn irreversible_steps_that_ran_are_reported_as_kept() {
        let mut plan = Plan::new();
        plan.step("registry_write", "write", || undo(|| Ok(())));
        plan.step_irreversible("server_password", "set it", no_undo);
        plan.step("nginx_vhost_apply", "vhost", || {
            anyhow::bail!("nginx -t failed")
        });
        assert!(plan.planned_actions()[1].irreversible);
        let err = plan.run(false).unwrap_err();
        let r = err.downcast_ref::<Rollback>().expect("rollback context");
        assert!(r.complete() && r.changed());
        assert_eq!(r.failed_action, "nginx_vhost_apply");
        assert_eq!(r.effects_kept(), vec!["server_password"]);
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("rolled back except what cannot be undone: server_password"),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_irreversible_step_counts_as_kept_and_a_full_rollback_does_not() {
        let mut plan = Plan::new();
        plan.step("a", "a", || undo(|| Ok(())));
        plan.step_irreversible("purge_data", "purge", || anyhow::bail!("EIO halfway"));
        let err = plan.run(false).unwrap_err();
        let r = err.downcast_ref::<Rollback>().expect("rollback");
        assert_eq!(r.effects_kept(), vec!["purge_data"]);

        let mut plan = Plan::new();
        plan.step("a", "a", || undo(|| Ok(())));
        plan.step("b", "b", || anyhow::bail!("no"));
        let err = plan.run(false).unwrap_err();
        let r = err.downcast_ref::<Rollback>().expect("rollback");
        assert!(r.complete() && !r.changed() && r.effects_kept().is_empty());
    }

    #[test]
    fn a_failed_undo_is_a_kept_effect_and_the_context_survives_more_context() {
        let mut plan = Plan::new();
        plan.step("a", "step a", || undo(|| anyhow::bail!("cannot restore a")));
        plan.step("b", "step b", || anyhow::bail!("b broke"));
        let err = plan.run(false).unwrap_err().context("outer caller");
        let r = err.downcast_ref::<Rollback>().expect("found under context");
        assert!(!r.complete());
        assert_eq!(r.effects_kept(), vec!["a"]);
        assert!(r.undo_errors[0].contains("cannot restore a"), "{r:?}");
    }

    #[test]
    fn irreversible_is_in_the_json_only_when_true() {
        let mut plan = Plan::new();
        plan.step("a", "a", no_undo)
            .step_irreversible("b", "b", no_undo);
        let v = serde_json::to_value(plan.planned_actions()).unwrap();
        assert!(v[0].get("irreversible").is_none(), "{v}");
        assert_eq!(v[1]["irreversible"], true);
    }

    #[test]
    fn success_lists_applied_steps() {
        let mut plan = Plan::new();
        plan.step("a", "one", no_undo).step("b", "two", no_undo);
        assert_eq!(plan.run(false).unwrap().applied, vec!["one", "two"]);
    }
}
