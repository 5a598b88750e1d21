//! Each instance's own system account (`actual-<name>`): made before its directories,
//! carried along by a rename, kept (locked) by a delete that keeps the data, removed with the
//! data by `--purge-data`. Instances made before per-instance accounts ran as the shared
//! `actual-sync`: the first command that re-renders their drop-in (set-port,
//! set-version, set-domain, rename, a `version switch` they follow) also makes their account
//! and hands their data over to it, in the same transaction. See docs/instances.md.
//!
//! Every decision is taken when the plan is built (a foreign account of the same name is an
//! error before any change); each step checks again when applied, so a re-run is a no-op.

use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::txn::{self, Plan};
use crate::error::Failure;
use crate::sys;
use crate::sys::users::{Account, Accounts};
use anyhow::Result;
use std::path::PathBuf;

/// The account of an instance as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No such account: it will be made.
    Missing,
    /// Ours (its comment names this instance).
    Ours(Account),
}

/// Look up the account `user` of instance `name`; an account of that name that abssctl did
/// not make for this instance is refused (exit 2, nothing changed): taking it over could give
/// this family's data to someone else's account.
pub fn find(accounts: &Accounts, name: &str, user: &str) -> Result<Found> {
    match accounts.lookup(user)? {
        Some(a) if a.comment == inst::user_comment(name) => Ok(Found::Ours(a)),
        Some(a) => Err(Failure::validation(format!(
            "the system account {user} exists but is not the account of instance '{name}' \
             (its comment is '{}')",
            a.comment
        ))
        .hint(format!(
            "remove or rename that account (userdel {user}) if it is unused, or pick another instance name"
        ))
        .into()),
        None if accounts.group_exists(user)? => Err(Failure::validation(format!(
            "the group {user} exists without an account of that name"
        ))
        .hint(format!(
            "remove the group (groupdel {user}) if it is unused, or pick another instance name"
        ))
        .into()),
        None => Ok(Found::Missing),
    }
}

/// What it takes to give an instance its own account and its data to that account.
#[derive(Debug, Clone)]
pub struct Adopt {
    accounts: Accounts,
    name: String,
    user: String,
    found: Found,
    /// The shared account the instance ran as before, when its data is still owned by it
    /// (the data then changes hands).
    legacy: Option<Account>,
    instance_dir: PathBuf,
    data_dir: PathBuf,
}

impl Adopt {
    /// Inspect the account of `name` and the owner of its data dir (as the layout places it).
    /// `legacy_user` is the shared account of older versions (`service_user` in the config).
    pub fn prepare(layout: &Layout, name: &str, legacy_user: &str) -> Result<Adopt> {
        Self::prepare_at(layout, name, &layout.data_dir(name), legacy_user)
    }

    /// As [`Adopt::prepare`], with the data still at `data_now` when the plan is built (a
    /// rename moves it to `name`'s place before these steps run).
    pub fn prepare_at(
        layout: &Layout,
        name: &str,
        data_now: &std::path::Path,
        legacy_user: &str,
    ) -> Result<Adopt> {
        let accounts = Accounts::new(&layout.root);
        let user = inst::service_user(name);
        let found = find(&accounts, name, &user)?;
        let legacy = match (accounts.lookup(legacy_user)?, sys::users::owner(data_now)?) {
            (Some(l), Some((uid, _))) if uid == l.uid => Some(l),
            _ => None,
        };
        Ok(Adopt {
            accounts,
            name: name.to_string(),
            user,
            found,
            legacy,
            instance_dir: layout.instance_dir(name),
            data_dir: layout.data_dir(name),
        })
    }

    /// The account name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The account as the plan found it.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// Step: make the account if it is missing; undo removes the account this run made.
    pub fn plan_account<'a>(&'a self, plan: &mut Plan<'a>) {
        if self.found != Found::Missing {
            return;
        }
        let (accounts, name, user) = (&self.accounts, &self.name, &self.user);
        plan.step(
            "instance_user",
            format!("create the system account {user} (and its group) for '{name}'"),
            move || {
                if find(accounts, name, user)? != Found::Missing {
                    return txn::no_undo();
                }
                accounts.create(user, &inst::user_comment(name), None)?;
                txn::undo(move || accounts.remove(user).map(drop))
            },
        );
    }

    /// Step (for an instance whose data the shared account still owns): hand the data tree
    /// to the instance's account and its directory's group to the account's group; undo
    /// hands both back. Comes after [`Adopt::plan_account`].
    pub fn plan_data_owner<'a>(&'a self, plan: &mut Plan<'a>) {
        let Some(legacy) = &self.legacy else {
            return;
        };
        let (accounts, user, dir, data) = (
            &self.accounts,
            &self.user,
            &self.instance_dir,
            &self.data_dir,
        );
        plan.step(
            "instance_data_owner",
            format!(
                "give {} (now owned by the shared account) to {user}, and {} to group {user}",
                data.display(),
                dir.display()
            ),
            move || {
                let acct = accounts.lookup(user)?.ok_or_else(|| {
                    anyhow::anyhow!("internal: the account {user} is missing after its step")
                })?;
                let back = (legacy.uid, legacy.gid);
                if let Err(e) = sys::users::chown_tree(data, legacy.uid, (acct.uid, acct.gid)) {
                    // Half a tree handed over is not a state to leave: hand it all back.
                    return Err(match sys::users::chown_tree(data, acct.uid, back) {
                        Ok(_) => e,
                        Err(back) => e.context(format!("and handing it back failed: {back:#}")),
                    });
                }
                sys::instdir::ensure_dir(dir, inst::INSTANCE_DIR_MODE, Some((0, acct.gid)))?;
                txn::undo(move || {
                    sys::instdir::ensure_dir(dir, inst::INSTANCE_DIR_MODE, Some((0, back.1)))?;
                    sys::users::chown_tree(data, acct.uid, back).map(drop)
                })
            },
        );
    }

    /// Both steps, in order: what any command that (re)writes the drop-in of an existing
    /// instance adds before the drop-in step.
    pub fn plan<'a>(&'a self, plan: &mut Plan<'a>) {
        self.plan_account(plan);
        self.plan_data_owner(plan);
    }
}

/// Step (`instance rename`): the account follows the instance, keeping its uid and gid, so
/// the moved data stays its own. Undo renames it back.
pub fn plan_rename<'a>(plan: &mut Plan<'a>, accounts: &'a Accounts, old: &'a str, new: &'a str) {
    let (from, to) = (inst::service_user(old), inst::service_user(new));
    plan.step(
        "instance_user_rename",
        format!("rename the system account {from} to {to} (same uid)"),
        move || {
            accounts.rename(&from, &to, &inst::user_comment(new))?;
            txn::undo(move || accounts.rename(&to, &from, &inst::user_comment(old)))
        },
    );
}

/// Step (`instance delete --purge-data`, before the data goes): remove the account and its
/// group. Undo recreates them with the same uid and gid, so the still-present data is theirs
/// again.
pub fn plan_remove(plan: &mut Plan<'_>, accounts: Accounts, name: &str) {
    let user = inst::service_user(name);
    plan.step(
        "instance_user_remove",
        format!("remove the system account {user} and its group"),
        move || match accounts.remove(&user)? {
            None => txn::no_undo(),
            Some(a) => txn::undo(move || {
                accounts
                    .create(&a.name, &a.comment, Some((a.uid, a.gid)))
                    .map(drop)
            }),
        },
    );
}
