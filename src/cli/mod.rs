//! Command-line shell: clap definitions, one file per command group. A command turns its
//! arguments into one `ops` call and renders the result (human text or `--json`). No OS
//! access here: everything goes through `ops` and, below it, `sys`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod config;
pub mod instance;
pub mod output;
pub mod ports;
pub mod version;

pub use output::Report;

/// Actual Budget Sync Server ConTroL: run several Actual sync servers on one machine,
/// behind nginx with HTTPS, kept alive by systemd.
#[derive(Debug, Parser)]
#[command(name = "abssctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Print machine-readable JSON (a stable, documented contract) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show what a mutating command would do, and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Answer yes to every safety prompt (for automation).
    #[arg(long, short = 'y', global = true, env = "ABSSCTL_ASSUME_YES")]
    pub yes: bool,
    /// Print only errors.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (repeat for debug output).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Read the configuration from this file instead of /etc/abssctl/config.yml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Seconds to wait for another abssctl holding a lock (default 30).
    #[arg(long, global = true, value_name = "SECS")]
    pub lock_timeout: Option<f64>,
    /// No colour in output (also when NO_COLOR is set).
    #[arg(long, global = true, env = "NO_COLOR")]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the resolved configuration and where each value comes from.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// List and reserve service ports.
    #[command(subcommand)]
    Ports(ports::PortsCmd),
    /// Install, list, switch and remove Actual versions (and the Node runtimes they need).
    #[command(subcommand)]
    Version(version::VersionCmd),
    /// Create, run and change Actual instances (systemd service + nginx vhost each).
    #[command(subcommand)]
    Instance(instance::InstanceCmd),
    #[command(flatten)]
    InstanceShortcut(instance::Shortcut),
}

impl Command {
    /// Stable command name for the operations log and journald (e.g. `ports reserve`).
    pub fn name(&self) -> String {
        match self {
            Command::Config(c) => format!("config {}", c.name()),
            Command::Ports(c) => format!("ports {}", c.name()),
            Command::Version(c) => format!("version {}", c.name()),
            Command::Instance(c) => format!("instance {}", c.name()),
            Command::InstanceShortcut(c) => format!("instance {}", c.name()),
        }
    }
}

/// Parse, run, render, log; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    crate::ops::execute(cli)
}

/// Dispatch one parsed command to its group.
pub fn dispatch(ctx: &mut crate::ops::Ctx, command: &Command) -> anyhow::Result<Report> {
    match command {
        Command::Config(c) => config::run(ctx, c),
        Command::Ports(c) => ports::run(ctx, c),
        Command::Version(c) => version::run(ctx, c),
        Command::Instance(c) => instance::run(ctx, c),
        Command::InstanceShortcut(c) => instance::run_shortcut(ctx, c),
    }
}
