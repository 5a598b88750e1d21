//! The backup offered before a change that can lose or rewrite an instance's data (spec
//! "Safety", ADR-016/026): `instance delete`, `rename`, `set-version`, `version switch`,
//! `backup restore` over existing data.
//!
//! The choice comes from `--backup` / `--no-backup`; without either, a person at a
//! terminal is asked (default yes: the safe answer is the one Enter gives), and a run
//! without a terminal is refused with exit 2 naming both flags. `--yes` answers the
//! question with its default, but only where there is someone who could have answered
//! it: a script must say which it wants, because "no backup" must never be the silent
//! outcome of automation, and "a backup" may fill a disk nobody is watching.
//!
//! Call [`before`] BEFORE the command takes its own locks: the backup takes the global and
//! the instance lock itself (flock locks are per open file, so taking them again while
//! the caller holds them would wait on itself).

use super::create::{self, CreateArgs, Created};
use crate::domain::txn::PlannedAction;
use crate::error::Failure;
use crate::ops::Ctx;
use anyhow::Result;

/// What the flags said about the offered backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Neither flag: ask the person at the terminal.
    Ask,
    /// `--backup`: take it without asking.
    Take,
    /// `--no-backup`: go on without one.
    Skip,
}

impl Offer {
    /// From the two flags (clap makes them conflict, so both is not a case).
    pub fn from_flags(backup: bool, no_backup: bool) -> Offer {
        match (backup, no_backup) {
            (true, _) => Offer::Take,
            (false, true) => Offer::Skip,
            (false, false) => Offer::Ask,
        }
    }
}

/// The `reason` recorded in the index for a backup taken before `action`
/// (e.g. `pre-delete`, `pre-switch-version`).
pub fn reason(action: &str) -> String {
    format!("pre-{action}")
}

/// The refusal [`before`] would give, checked early (before a long build that precedes
/// the change): a run without a terminal and without `--backup`/`--no-backup` stops here,
/// not after the build.
pub fn check(ctx: &Ctx, instances: &[String], what: &str, offer: Offer) -> Result<()> {
    if instances.is_empty() || offer != Offer::Ask || ctx.ui.interactive() {
        return Ok(());
    }
    Err(refusal(ctx, instances, what))
}

fn names_of(instances: &[String]) -> String {
    instances
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn refusal(ctx: &Ctx, instances: &[String], what: &str) -> anyhow::Error {
    let dest = ctx.layout.backups_root.display().to_string();
    Failure::validation(format!(
        "{what} offers a backup of {} first, and there is no terminal to ask",
        names_of(instances)
    ))
    .hint(format!(
        "say --backup (archive to {dest}) or --no-backup (go on without one)"
    ))
    .into()
}

/// Decide whether to back up `instances` before `action` (a word for the prompt and the
/// reason, e.g. "delete", "switch-version"), and take the backups. `what` says the change
/// in the prompt ("delete instance 'a'"). Returns the backups made (none for a dry run,
/// which plans them, or when skipped). Validation only (no change) until the first
/// backup is written; a failed backup stops the command before its change.
pub fn before(
    ctx: &mut Ctx,
    instances: &[String],
    action: &str,
    what: &str,
    offer: Offer,
) -> Result<Vec<Created>> {
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let names = names_of(instances);
    let dest = ctx.layout.backups_root.display().to_string();
    let take = match offer {
        Offer::Take => true,
        Offer::Skip => false,
        Offer::Ask if !ctx.ui.interactive() => return Err(refusal(ctx, instances, what)),
        Offer::Ask if ctx.globals.yes || ctx.globals.dry_run => true,
        Offer::Ask => ctx.ui.ask(
            &format!(
                "Before you {what}: back up {names} to {dest} (restore with abssctl backup restore)?"
            ),
            true,
        )?,
    };
    if !take {
        ctx.op.warnings.push(format!(
            "no backup of {names} was taken before {action} (declined)"
        ));
        return Ok(Vec::new());
    }
    if ctx.globals.dry_run {
        for n in instances {
            ctx.op.planned.push(PlannedAction {
                action: "backup_create".into(),
                description: format!(
                    "back up '{n}' to {}/{n} first (reason {})",
                    dest,
                    reason(action)
                ),
                irreversible: false,
            });
        }
        return Ok(Vec::new());
    }
    let mut made = Vec::new();
    for n in instances {
        let args = CreateArgs {
            instance: Some(n.clone()),
            message: format!("taken before {what}"),
            reason: Some(reason(action)),
            ..CreateArgs::default()
        };
        let mut r = create::create(ctx, &args).map_err(|e| {
            e.context(format!(
                "the backup before {action} failed, so nothing was changed (or say --no-backup)"
            ))
        })?;
        ctx.op
            .backups
            .extend(r.backups.iter().map(|b| b.id.clone()));
        made.append(&mut r.backups);
    }
    Ok(made)
}
