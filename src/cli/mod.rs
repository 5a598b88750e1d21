//! Command-line shell: clap definitions, one file per command group. A command turns its
//! arguments into one `ops` call and renders the result (human text or `--json`). No OS
//! access here: everything goes through `ops` and, below it, `sys`.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

pub mod backup;
pub mod backup_schedule;
pub mod bundle;
pub mod config;
pub mod doctor;
pub mod firstboot;
pub mod generate;
pub mod instance;
pub mod output;
pub mod ports;
pub mod progress;
pub mod tls;
pub mod upgrade;
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
    /// No colour in output (also when NO_COLOR is set to anything but the empty string,
    /// as no-color.org says: NO_COLOR=1 is the common spelling).
    #[arg(long, global = true, env = "NO_COLOR", value_parser = no_color_value)]
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
    /// Back up instances, list and verify the backups.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Move instances to another Actual version safely (snapshot, health gate, rollback).
    Upgrade(upgrade::UpgradeCli),
    /// Set up the first instance of a fresh box in one idempotent command (TurnKey's
    /// first-boot hook runs it): an Actual version if none, then the instance.
    Firstboot(firstboot::FirstbootCli),
    /// Check, install and show the certificates instances serve.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
    /// Gather config, state, logs and versions into one archive (0600) to send for help,
    /// redacted: no keys, passwords, tokens or environment values (docs/support-bundle.md).
    SupportBundle(bundle::BundleCli),
    /// Check everything abssctl depends on; exit with the worst finding (docs/doctor.md).
    Doctor(doctor::DoctorCli),
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
            Command::Backup(c) => format!("backup {}", c.name()),
            Command::Upgrade(_) => "upgrade".to_string(),
            Command::Firstboot(_) => "firstboot".to_string(),
            Command::Tls(c) => format!("tls {}", c.name()),
            Command::SupportBundle(_) => "support-bundle".to_string(),
            Command::Doctor(_) => "doctor".to_string(),
            Command::InstanceShortcut(c) => format!("instance {}", c.name()),
        }
    }
}

/// NO_COLOR's rule: set and not empty means no colour, whatever its value.
fn no_color_value(s: &str) -> Result<bool, std::convert::Infallible> {
    Ok(!s.is_empty() && s != "false")
}

/// Parse, run, render, log; returns the process exit code. The hidden `generate`
/// subcommand (package build) is answered here, before any configuration is read.
pub fn main() -> i32 {
    let mut cmd = generate::with_generate(Cli::command());
    let matches = cmd.get_matches_mut();
    if let Some((generate::NAME, m)) = matches.subcommand() {
        return generate::run(m);
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    crate::ops::execute(
        crate::ops::Globals::from(&cli.global),
        cli.command.name(),
        &secret_flags(&cmd),
        &progress::Terminal,
        |ctx| dispatch(ctx, &cli.command),
        output::render,
    )
}

impl From<&GlobalArgs> for crate::ops::Globals {
    fn from(g: &GlobalArgs) -> crate::ops::Globals {
        crate::ops::Globals {
            json: g.json,
            dry_run: g.dry_run,
            yes: g.yes,
            quiet: g.quiet,
            verbose: g.verbose,
            config: g.config.clone(),
            lock_timeout: g.lock_timeout,
            no_color: g.no_color,
        }
    }
}

/// A command-line value that is a secret or names one (today: the password file). The
/// type is the mark: [`secret_flags`] finds every argument of this type in the clap
/// definition, so a new secret-bearing flag is kept out of the operations log by declaring
/// it with this type, with no list to keep in step. Give such flags no short form (the
/// log could not tell `-qx VALUE` apart); `cli::tests` checks both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPath(pub PathBuf);

impl From<OsString> for SecretPath {
    fn from(s: OsString) -> SecretPath {
        SecretPath(PathBuf::from(s))
    }
}

/// Every `--flag` (and alias) whose value the operations log must not record, read off the
/// clap definition `cmd` (the one already built for parsing: building clap's tree again costs
/// every command a few hundred microseconds): the arguments typed [`SecretPath`].
pub fn secret_flags(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if a.get_value_parser().type_id() == std::any::TypeId::of::<SecretPath>() {
                let longs = a
                    .get_long()
                    .into_iter()
                    .chain(a.get_all_aliases().unwrap_or_default());
                out.extend(longs.map(|l| format!("--{l}")));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out.sort();
    out.dedup();
    out
}

/// Dispatch one parsed command to its group.
pub fn dispatch(ctx: &mut crate::ops::Ctx, command: &Command) -> anyhow::Result<Report> {
    match command {
        Command::Config(c) => config::run(ctx, c),
        Command::Ports(c) => ports::run(ctx, c),
        Command::Version(c) => version::run(ctx, c),
        Command::Instance(c) => instance::run(ctx, c),
        Command::Backup(c) => backup::run(ctx, c),
        Command::Upgrade(u) => upgrade::run(ctx, u),
        Command::Firstboot(c) => firstboot::run(ctx, c),
        Command::Tls(c) => tls::run(ctx, c),
        Command::SupportBundle(c) => bundle::run(ctx, c),
        Command::Doctor(c) => doctor::run(ctx, c),
        Command::InstanceShortcut(c) => instance::run_shortcut(ctx, c),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_flags_are_the_password_file() {
        assert_eq!(secret_flags(&Cli::command()), ["--password-file"]);
    }

    /// The guard that keeps the list honest: any value-taking argument named like a secret
    /// must be typed [`SecretPath`] (so it is redacted), and none has a short form.
    #[test]
    fn every_secret_looking_argument_is_marked_secret() {
        fn walk(cmd: &clap::Command, path: &str, bad: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                let takes_value = a.get_num_args().is_some_and(|n| n.takes_values())
                    || !matches!(
                        a.get_action(),
                        clap::ArgAction::SetTrue
                            | clap::ArgAction::SetFalse
                            | clap::ArgAction::Count
                            | clap::ArgAction::Help
                            | clap::ArgAction::Version
                    );
                let secret_named = ["password", "token", "secret", "passphrase", "credential"]
                    .iter()
                    .any(|w| id.contains(w));
                let marked = a.get_value_parser().type_id() == std::any::TypeId::of::<SecretPath>();
                if takes_value && secret_named && !marked {
                    bad.push(format!("{path} {id}: not typed SecretPath"));
                }
                if marked && a.get_short().is_some() {
                    bad.push(format!("{path} {id}: a secret flag with a short form"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), bad);
            }
        }
        let mut bad = Vec::new();
        walk(&Cli::command(), "abssctl", &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn generate_is_hidden_from_help_and_parses() {
        let mut cmd = generate::with_generate(Cli::command());
        let help = cmd.render_help().to_string();
        assert!(help.contains("instance"), "{help}");
        assert!(!help.contains(generate::NAME), "{help}");
        let m = cmd
            .try_get_matches_from(["abssctl", "generate", "out"])
            .unwrap();
        assert_eq!(m.subcommand_name(), Some(generate::NAME));
        assert!(
            generate::with_generate(Cli::command())
                .try_get_matches_from(["abssctl", "generate"])
                .is_err()
        );
    }
}
