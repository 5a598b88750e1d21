//! `abssctl ports ...`

use crate::cli::Report;
use crate::ops::Ctx;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PortsCmd {
    /// List reserved ports and their owners.
    List,
}

impl PortsCmd {
    pub fn name(&self) -> &'static str {
        match self {
            PortsCmd::List => "list",
        }
    }
}

pub fn run(_ctx: &mut Ctx, cmd: &PortsCmd) -> anyhow::Result<Report> {
    match cmd {
        PortsCmd::List => Report::new(&serde_json::json!({"ports": []}), ""),
    }
}
