//! `instance rollback <name> [--to-backup ID]`: what the automatic rollback does, on
//! demand: the instance's newest pre-upgrade snapshot (or the backup named) is restored in
//! place and the version that wrote it is bound again (installed first if it is gone). It
//! is `backup restore` in place, so it has the same transaction and the same health gate,
//! and the current data can be backed up first.

use crate::domain::backup::{Entry, Status};
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::backup::restore::{self, RestoreArgs, RestoreResult};
use crate::ops::backup::safety::Offer;
use anyhow::Result;

/// Roll `name` back to `to_backup`, or to its newest present pre-upgrade snapshot.
pub fn rollback(
    ctx: &mut Ctx,
    name: &str,
    to_backup: Option<&str>,
    offer: Offer,
) -> Result<RestoreResult> {
    let name = validate::instance_name(name)?;
    let idx = crate::ops::backup::load_index(ctx)?;
    let entry: Entry = match to_backup {
        Some(id) => {
            let e = idx.find(id)?.clone();
            if e.instance != name.as_str() {
                return Err(Failure::validation(format!(
                    "backup {id} is of instance '{}', not '{}'",
                    e.instance,
                    name.as_str()
                ))
                .hint(format!(
                    "see its backups: abssctl backup list --instance {}",
                    name.as_str()
                ))
                .into());
            }
            e
        }
        None => newest_snapshot(&idx.backups, name.as_str())?.clone(),
    };
    restore::restore(
        ctx,
        &RestoreArgs {
            id: entry.id,
            as_name: None,
            domain: None,
            port: None,
            offer,
        },
    )
}

/// The newest present backup of `name` taken before an upgrade.
fn newest_snapshot<'e>(backups: &'e [Entry], name: &str) -> Result<&'e Entry> {
    backups
        .iter()
        .filter(|e| e.instance == name && e.reason == super::one::REASON)
        .filter(|e| e.status == Status::Present)
        .max_by_key(|e| e.created_at)
        .ok_or_else(|| {
            Failure::validation(format!("'{name}' has no snapshot from before an upgrade"))
                .hint(format!(
                    "pick a backup: abssctl backup list --instance {name}, then abssctl instance rollback {name} --to-backup ID"
                ))
                .into()
        })
}
