//! `abssctl config ...`

use crate::cli::Report;
use crate::ops::Ctx;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print every configuration key with its value and source.
    Show,
}

impl ConfigCmd {
    pub fn name(&self) -> &'static str {
        match self {
            ConfigCmd::Show => "show",
        }
    }
}

pub fn run(ctx: &mut Ctx, cmd: &ConfigCmd) -> anyhow::Result<Report> {
    match cmd {
        ConfigCmd::Show => Report::new(&ctx.resolved.config, format!("{:#?}", ctx.resolved.config)),
    }
}
