//! `abssctl version ...`: Actual versions side by side, each with the Node runtime it needs.

use crate::cli::Report;
use crate::ops::Ctx;
use crate::ops::updates::{self, CheckOpts};
use crate::ops::version::{self, InstallOpts};
use crate::ops::version_manage;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum VersionCmd {
    /// List installed versions (with --remote: also the registry's releases).
    List {
        /// Also list releases on the npm registry.
        #[arg(long)]
        remote: bool,
        /// How many registry releases to show.
        #[arg(long, value_name = "N", default_value_t = 10)]
        latest: usize,
        /// Include nightly/beta releases.
        #[arg(long)]
        include_prerelease: bool,
    },
    /// Compare installed versions with the newest stable release.
    #[command(alias = "check-for-updates")]
    Check {
        /// Also write the result (or the failure, beside the last good result) to the
        /// state dir's updates.json, which `instance list` shows. Needs root.
        #[arg(long)]
        record: bool,
        /// With --record: when upgrades.auto_upgrade is true and an instance runs an older
        /// version, upgrade every instance (rolling). What abssctl-update-check.service runs.
        #[arg(long, requires = "record")]
        auto_upgrade: bool,
    },
    /// Install a version (X.Y.Z or latest) with the Node runtime it needs.
    Install {
        /// X.Y.Z or latest.
        #[arg(value_name = "VERSION")]
        release: String,
        /// Point `current` at it afterwards.
        #[arg(long)]
        set_current: bool,
        /// Allow nightly/beta releases.
        #[arg(long)]
        include_prerelease: bool,
        /// Rebuild an installed version from its lockfile and the npm cache (no registry).
        #[arg(long)]
        offline: bool,
        /// With --set-current: the backup offered of the instances that follow `current`.
        #[command(flatten)]
        offer: crate::cli::instance::OfferFlags,
    },
    /// Rebuild an installed version offline (npm ci --offline from its lockfile).
    Reinstall {
        #[arg(value_name = "VERSION")]
        release: String,
    },
    /// Point `current` at an installed version. Offers a backup of the instances that
    /// follow `current` first.
    Switch {
        #[arg(value_name = "VERSION")]
        release: String,
        #[command(flatten)]
        offer: crate::cli::instance::OfferFlags,
    },
    /// Remove an installed version that no instance uses (and runtimes nothing needs).
    Uninstall {
        #[arg(value_name = "VERSION")]
        release: String,
    },
}

impl VersionCmd {
    pub fn name(&self) -> &'static str {
        match self {
            VersionCmd::List { .. } => "list",
            VersionCmd::Check { .. } => "check",
            VersionCmd::Install { .. } => "install",
            VersionCmd::Reinstall { .. } => "reinstall",
            VersionCmd::Switch { .. } => "switch",
            VersionCmd::Uninstall { .. } => "uninstall",
        }
    }
}

pub fn run(ctx: &mut Ctx, cmd: &VersionCmd) -> anyhow::Result<Report> {
    match cmd {
        VersionCmd::List {
            remote,
            latest,
            include_prerelease,
        } => version_manage::list(ctx, *remote, *latest, *include_prerelease),
        VersionCmd::Check {
            record,
            auto_upgrade,
        } => updates::check(
            ctx,
            CheckOpts {
                record: *record,
                auto_upgrade: *auto_upgrade,
            },
        ),
        VersionCmd::Install {
            release: v,
            set_current,
            include_prerelease,
            offline,
            offer,
        } => version::install(
            ctx,
            &InstallOpts {
                version: v.clone(),
                set_current: *set_current,
                include_prerelease: *include_prerelease,
                offline: *offline,
                offer: offer.offer(),
            },
        ),
        VersionCmd::Reinstall { release: v } => version::reinstall(ctx, v),
        VersionCmd::Switch { release: v, offer } => version_manage::switch(ctx, v, offer.offer()),
        VersionCmd::Uninstall { release: v } => crate::ops::version_uninstall::uninstall(ctx, v),
    }
}
