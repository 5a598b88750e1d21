//! `abssctl upgrade [<instance>... | --all] [--to X.Y.Z|latest]`.

use crate::cli::Report;
use crate::ops::Ctx;
use crate::ops::upgrade::{self, UpgradeArgs};
use clap::Args;

/// Move instances to another Actual version, one after the other: install the version
/// (and its Node runtime) if needed, then per instance stop, snapshot, rebind, start and
/// health-gate; a failure rolls that instance back and stops the run.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct UpgradeCli {
    /// The instances, in the order to upgrade them.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub instances: Vec<String>,
    /// Every instance (in name order).
    #[arg(long)]
    pub all: bool,
    /// The version: X.Y.Z, or latest (the newest stable release; the default).
    #[arg(long, value_name = "X.Y.Z|latest")]
    pub to: Option<String>,
    /// One instance at a time, stopping at the first failure (the only mode: instances
    /// share the machine's CPU, and a failure stops before it spreads).
    #[arg(long)]
    pub rolling: bool,
}

pub fn run(ctx: &mut Ctx, u: &UpgradeCli) -> anyhow::Result<Report> {
    upgrade::upgrade(
        ctx,
        &UpgradeArgs {
            instances: u.instances.clone(),
            all: u.all,
            to: u.to.clone(),
        },
    )
}
