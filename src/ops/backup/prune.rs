//! `backup prune`: delete the backups a retention policy does not keep (see
//! `domain::retention` for the rules), after showing them and asking.
//!
//! The selection is made on the index as read, shown, confirmed, and applied under the
//! global lock on the index as it is THEN: a backup added meanwhile is never deleted
//! (it was not shown), and one already gone is skipped. Each deletion is delete.rs's:
//! the entry leaves the index first, then its files.

use crate::domain::backup::{self as bk, Entry};
use crate::domain::retention::{self, Decision, Policy};
use crate::domain::txn::PlannedAction;
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::lifecycle::confirm;
use anyhow::Result;
use serde::Serialize;

/// What `backup prune` was asked.
#[derive(Debug, Clone, Default)]
pub struct PruneArgs {
    pub instance: Option<String>,
    pub all: bool,
    pub policy: Policy,
    /// `--policy`: each instance's own retention, from its backup schedule (instances
    /// without one are left alone). The backup service's prune.
    pub from_schedule: bool,
}

/// One backup `prune` deletes (or would).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub id: String,
    pub instance: String,
    pub created_at: String,
    pub size_bytes: u64,
    pub status: bk::Status,
}

/// `backup prune --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PruneResult {
    pub dry_run: bool,
    pub kept: Vec<Decision>,
    pub deleted: Vec<Pruned>,
    pub bytes_freed: u64,
}

fn rfc3339(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn prune(ctx: &mut Ctx, args: &PruneArgs) -> Result<PruneResult> {
    ctx.require_root()?;
    if args.policy.is_empty() && !args.from_schedule {
        return Err(Failure::validation("prune needs a rule of what to keep")
            .hint("say --keep N, --keep-daily N, --keep-weekly N, --keep-monthly N and/or --older-than AGE, or --policy (the instance's schedule)")
            .into());
    }
    let only = match (&args.instance, args.all) {
        (Some(n), false) => Some(validate::instance_name(n)?.as_str().to_string()),
        (None, true) => None,
        _ => {
            return Err(
                Failure::validation("name one instance with --instance, or say --all")
                    .hint("abssctl backup prune --instance <name> --keep-daily 7 ...")
                    .into(),
            );
        }
    };
    let state = if args.from_schedule {
        Some(crate::domain::state::State::load(&ctx.layout)?)
    } else {
        None
    };
    if let (Some(st), Some(n)) = (&state, &only)
        && super::schedule::policy_of(st, n).is_none()
    {
        return Err(super::schedule::no_policy(n));
    }
    let idx = super::load_index(ctx)?;
    let mut names: Vec<String> = idx.backups.iter().map(|e| e.instance.clone()).collect();
    names.sort();
    names.dedup();
    if let Some(n) = &only {
        names.retain(|x| x == n);
    }
    let now = time::OffsetDateTime::now_utc();
    let mut kept = Vec::new();
    let mut doomed: Vec<Entry> = Vec::new();
    for n in &names {
        let policy = match &state {
            // No schedule, or one that keeps everything: nothing of it is pruned.
            Some(st) => match super::schedule::policy_of(st, n) {
                Some(p) if !p.is_empty() => p,
                _ => continue,
            },
            None => args.policy,
        };
        let mine: Vec<&Entry> = idx.of(Some(n));
        for d in retention::select(&mine, &policy, now) {
            if d.keep {
                kept.push(d);
            } else if let Some(e) = idx.get(&d.id) {
                doomed.push(e.clone());
            }
        }
    }
    let bytes: u64 = doomed.iter().map(|e| e.size_bytes).sum();
    let deleted: Vec<Pruned> = doomed
        .iter()
        .map(|e| Pruned {
            id: e.id.clone(),
            instance: e.instance.clone(),
            created_at: rfc3339(&e.created_at),
            size_bytes: e.size_bytes,
            status: e.status,
        })
        .collect();
    for e in &doomed {
        ctx.op.planned.push(PlannedAction {
            action: "backup_delete".into(),
            description: format!("delete backup {} of '{}'", e.id, e.instance),
            irreversible: true,
        });
    }
    let mut result = PruneResult {
        dry_run: ctx.globals.dry_run,
        kept,
        deleted,
        bytes_freed: bytes,
    };
    if ctx.globals.dry_run || doomed.is_empty() {
        return Ok(result);
    }
    let list = doomed
        .iter()
        .map(|e| e.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    confirm(
        ctx,
        &format!(
            "delete {} backups ({:.1} MB; irreversible): {list}?",
            doomed.len(),
            bytes as f64 / 1e6
        ),
        "backup prune",
    )?;
    let global = ctx.lock_global()?;
    let removed = super::update_index(ctx, &global, |idx| {
        Ok(doomed
            .iter()
            .filter_map(|e| idx.remove(&e.id))
            .collect::<Vec<_>>())
    })?;
    for e in &removed {
        super::delete::remove_files(e)?;
    }
    // Only what was still there under the lock was deleted.
    result
        .deleted
        .retain(|p| removed.iter().any(|e| e.id == p.id));
    result.bytes_freed = removed.iter().map(|e| e.size_bytes).sum();
    Ok(result)
}
