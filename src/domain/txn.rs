//! The transaction engine: every mutation is a plan of steps, each with an apply and
//! (returned by the apply) an undo. `--dry-run` shows the plan and applies nothing; a step
//! that fails makes the already-applied steps undo in reverse order. The planned actions
//! are what the operations log records, so a plan is also the audit trail of intent.
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
        self.steps.push(Step {
            planned: PlannedAction {
                action: action.to_string(),
                description: description.into(),
            },
            apply: Box::new(apply),
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
    /// the returned error is the step's, with the rollback's own failures appended as
    /// context so nothing is hidden from the operator.
    pub fn run(self, dry_run: bool) -> Result<Outcome> {
        if dry_run {
            return Ok(Outcome {
                applied: Vec::new(),
                dry_run: true,
            });
        }
        let mut undos: Vec<(String, Option<Undo<'a>>)> = Vec::new();
        for step in self.steps {
            let desc = step.planned.description.clone();
            match (step.apply)() {
                Ok(undo) => {
                    tracing::debug!(step = %desc, "applied");
                    undos.push((desc, undo));
                }
                Err(err) => {
                    let mut rollback_errors = Vec::new();
                    for (done, undo) in undos.into_iter().rev() {
                        if let Some(undo) = undo {
                            if let Err(e) = undo() {
                                tracing::error!(step = %done, error = %format!("{e:#}"), "undo failed");
                                rollback_errors.push(format!("undo of '{done}' failed: {e:#}"));
                            } else {
                                tracing::info!(step = %done, "rolled back");
                            }
                        }
                    }
                    let err = err.context(format!("step '{desc}' failed"));
                    return Err(if rollback_errors.is_empty() {
                        err.context("rolled back")
                    } else {
                        err.context(format!(
                            "rollback incomplete ({})",
                            rollback_errors.join("; ")
                        ))
                    });
                }
            }
        }
        Ok(Outcome {
            applied: undos.into_iter().map(|(d, _)| d).collect(),
            dry_run: false,
        })
    }
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
    fn success_lists_applied_steps() {
        let mut plan = Plan::new();
        plan.step("a", "one", no_undo).step("b", "two", no_undo);
        assert_eq!(plan.run(false).unwrap().applied, vec!["one", "two"]);
    }
}
