//! `abssctl ports ...`: list, reserve and release the TCP ports instances listen on.

use crate::cli::Report;
use crate::cli::output::table;
use crate::domain::txn::PlannedAction;
use crate::ops::{self, Ctx};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PortsCmd {
    /// List reserved ports and their owners (works as any user, takes no lock).
    List,
    /// Reserve a port for an instance: the next free one from ports.base, or --port.
    Reserve {
        /// Instance name the port is reserved for.
        instance: String,
        /// This exact port instead of the next free one.
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
    },
    /// Release every port reserved for an instance that does not exist (any more).
    Release {
        /// Instance name whose reservations are dropped.
        instance: String,
    },
}

impl PortsCmd {
    pub fn name(&self) -> &'static str {
        match self {
            PortsCmd::List => "list",
            PortsCmd::Reserve { .. } => "reserve",
            PortsCmd::Release { .. } => "release",
        }
    }
}

fn fmt_time(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn plan_text(planned: &[PlannedAction]) -> String {
    let steps: Vec<String> = planned
        .iter()
        .map(|p| format!("  - {}", p.description))
        .collect();
    format!("dry run, would:\n{}", steps.join("\n"))
}

pub fn run(ctx: &mut Ctx, cmd: &PortsCmd) -> anyhow::Result<Report> {
    match cmd {
        PortsCmd::List => {
            let list = ops::ports::list(ctx)?;
            let human = if list.ports.is_empty() {
                "no ports reserved".to_string()
            } else {
                let rows: Vec<Vec<String>> = list
                    .ports
                    .iter()
                    .map(|r| {
                        vec![
                            r.port.to_string(),
                            r.instance.clone(),
                            fmt_time(&r.reserved_at),
                        ]
                    })
                    .collect();
                table(&["PORT", "INSTANCE", "RESERVED"], &rows)
            };
            Report::new(&list, human)
        }
        PortsCmd::Reserve { instance, port } => {
            let r = ops::ports::reserve(ctx, instance, *port)?;
            let human = if r.dry_run && !r.planned_actions.is_empty() {
                plan_text(&r.planned_actions)
            } else if r.changed {
                format!("reserved port {} for '{}'", r.port, r.instance)
            } else {
                format!("'{}' already holds port {}", r.instance, r.port)
            };
            Ok(Report::new(&r, human)?.changed(r.changed))
        }
        PortsCmd::Release { instance } => {
            let r = ops::ports::release(ctx, instance)?;
            let ports: Vec<String> = r.released.iter().map(|p| p.port.to_string()).collect();
            let human = if r.dry_run {
                plan_text(&r.planned_actions)
            } else {
                format!("released port(s) {} of '{}'", ports.join(", "), r.instance)
            };
            Ok(Report::new(&r, human)?.changed(!r.dry_run))
        }
    }
}
