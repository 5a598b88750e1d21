//! `abssctl instance ...` and the top-level shortcuts `start|stop|restart|status|logs`.

use crate::cli::Report;
use crate::cli::output::table;
use crate::domain::txn::PlannedAction;
use crate::ops::backup::safety::Offer;
use crate::ops::instance::create::{CreateArgs, PasswordSource};
use crate::ops::instance::lifecycle::{self, ActionResult, Change, Verb};
use crate::ops::instance::query::{self, InstanceView};
use crate::ops::{self, Ctx};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Create an instance and serve it over HTTPS: port, directories, systemd unit,
    /// health check, optional server password, nginx vhost.
    #[command(disable_version_flag = true)]
    Create(CreateCli),
    /// List instances with their live state (works as any user).
    List,
    /// Everything about one instance.
    Show { name: String },
    /// The environment the instance's server runs with.
    Env { name: String },
    /// Start the instance and wait until it answers.
    Start { name: String },
    /// Stop the instance.
    Stop { name: String },
    /// Restart the instance and wait until it answers.
    Restart { name: String },
    /// Start the instance at boot.
    Enable { name: String },
    /// Do not start the instance at boot.
    Disable { name: String },
    /// Live state of one instance, or of all.
    Status { name: Option<String> },
    /// The instance's journal.
    Logs(LogsCli),
    /// Serve the instance under another domain (rewrites its vhost).
    #[command(alias = "set-fqdn")]
    SetDomain { name: String, domain: String },
    /// Move the instance to another loopback port (restarts it).
    SetPort { name: String, port: u16 },
    /// Bind the instance to another installed version, or 'current'. Another version goes
    /// the upgrade's way: stop, snapshot, restart, health gate, automatic rollback (the
    /// snapshot is always taken; --backup/--no-backup apply to a binding-only change).
    #[command(disable_version_flag = true)]
    SetVersion {
        name: String,
        version: String,
        #[command(flatten)]
        offer: OfferFlags,
    },
    /// Put the instance back on the data and version of its newest pre-upgrade snapshot
    /// (or of the backup given): a restore in place, health-gated. Offers a backup of the
    /// current data first.
    Rollback {
        name: String,
        /// The backup to go back to (default: the newest with reason pre-upgrade).
        #[arg(long, value_name = "ID")]
        to_backup: Option<String>,
        #[command(flatten)]
        offer: OfferFlags,
    },
    /// Rename an instance: unit, directories, vhost, registry and ports follow. Offers a
    /// backup of its data first.
    Rename {
        name: String,
        new_name: String,
        #[command(flatten)]
        offer: OfferFlags,
    },
    /// Stop, disable and unregister the instance; its data stays unless --purge-data.
    /// Offers a backup of its data first.
    Delete {
        name: String,
        /// Also remove the instance's directory and data (irreversible).
        #[arg(long)]
        purge_data: bool,
        #[command(flatten)]
        offer: OfferFlags,
    },
}

/// The backup offered before a change that can lose or rewrite data (asked at a terminal,
/// default yes; a run without a terminal must say which).
#[derive(Debug, Clone, Copy, Args)]
pub struct OfferFlags {
    /// Back up the data being changed first (to the backups root), without asking.
    #[arg(long, conflicts_with = "no_backup")]
    pub backup: bool,
    /// Go on without a backup of the data being changed.
    #[arg(long)]
    pub no_backup: bool,
}

impl OfferFlags {
    pub fn offer(self) -> Offer {
        Offer::from_flags(self.backup, self.no_backup)
    }
}

#[derive(Debug, Args)]
pub struct CreateCli {
    /// Instance name: lowercase letters, digits and '-'.
    pub name: String,
    /// Domain the instance is served under (nginx server_name).
    #[arg(long, visible_alias = "fqdn")]
    pub domain: String,
    /// Loopback port (default: the next free one from ports.base).
    #[arg(long)]
    pub port: Option<u16>,
    /// Installed Actual version X.Y.Z to bind (default: follow 'current').
    #[arg(long)]
    pub version: Option<String>,
    /// Also serve HTTPS on this port (https://<address>:P/, for a box without DNS).
    #[arg(long)]
    pub https_port: Option<u16>,
    /// Set the server password from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<crate::cli::SecretPath>,
    /// Set the server password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogsCli {
    pub name: String,
    /// How many lines (default 50).
    #[arg(long, short = 'n')]
    pub lines: Option<usize>,
    /// Only entries since this time ("10 min ago", "2026-11-26 08:00").
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new entries until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Top-level shortcuts for the daily verbs.
#[derive(Debug, Subcommand)]
pub enum Shortcut {
    /// Same as `instance start`.
    Start { name: String },
    /// Same as `instance stop`.
    Stop { name: String },
    /// Same as `instance restart`.
    Restart { name: String },
    /// Same as `instance status`.
    Status { name: Option<String> },
    /// Same as `instance logs`.
    Logs(LogsCli),
}

impl InstanceCmd {
    pub fn name(&self) -> &'static str {
        match self {
            InstanceCmd::Create(_) => "create",
            InstanceCmd::List => "list",
            InstanceCmd::Show { .. } => "show",
            InstanceCmd::Env { .. } => "env",
            InstanceCmd::Start { .. } => "start",
            InstanceCmd::Stop { .. } => "stop",
            InstanceCmd::Restart { .. } => "restart",
            InstanceCmd::Enable { .. } => "enable",
            InstanceCmd::Disable { .. } => "disable",
            InstanceCmd::Status { .. } => "status",
            InstanceCmd::Logs(_) => "logs",
            InstanceCmd::SetDomain { .. } => "set-domain",
            InstanceCmd::SetPort { .. } => "set-port",
            InstanceCmd::SetVersion { .. } => "set-version",
            InstanceCmd::Rollback { .. } => "rollback",
            InstanceCmd::Rename { .. } => "rename",
            InstanceCmd::Delete { .. } => "delete",
        }
    }
}

impl Shortcut {
    pub fn name(&self) -> &'static str {
        match self {
            Shortcut::Start { .. } => "start",
            Shortcut::Stop { .. } => "stop",
            Shortcut::Restart { .. } => "restart",
            Shortcut::Status { .. } => "status",
            Shortcut::Logs(_) => "logs",
        }
    }
}

fn plan_text(planned: &[PlannedAction]) -> String {
    let steps: Vec<String> = planned
        .iter()
        .map(|p| format!("  - {}", p.description))
        .collect();
    format!("dry run, would:\n{}", steps.join("\n"))
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.0}M", b as f64 / 1048576.0))
        .unwrap_or_else(|| "-".into())
}

fn rows(list: &[InstanceView]) -> String {
    if list.is_empty() {
        return "no instances (create one: abssctl instance create NAME --domain DOMAIN)".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                match (&v.active_state, &v.sub_state) {
                    (Some(a), Some(s)) => format!("{a}/{s}"),
                    _ => "?".into(),
                },
                v.health.unwrap_or("?").to_string(),
                v.port.to_string(),
                v.version
                    .clone()
                    .unwrap_or_else(|| format!("{} (missing)", v.version_binding)),
                v.main_pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                mib(v.memory_bytes),
                v.update_available.clone().unwrap_or_else(|| "-".into()),
                v.url.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "NAME", "STATE", "HEALTH", "PORT", "VERSION", "PID", "MEM", "UPDATE", "URL",
        ],
        &rows,
    );
    // One hint for all: the newest release any instance could move to.
    if let Some(up) = list
        .iter()
        .filter_map(|v| v.update_available.as_deref())
        .max_by_key(|u| semver::Version::parse(u).ok())
    {
        out.push_str(&format!("\nupdate available: {up} (abssctl upgrade --all)"));
    }
    out
}

fn action_report(r: &ActionResult) -> anyhow::Result<Report> {
    let mut human = if r.dry_run {
        if r.planned_actions.is_empty() {
            format!("dry run: '{}' needs no {}", r.name, r.action)
        } else {
            plan_text(&r.planned_actions)
        }
    } else if !r.changed {
        format!(
            "{}: nothing to do ({} already in that state)",
            r.action, r.name
        )
    } else {
        match r.healthy_after_ms {
            Some(ms) => format!(
                "{} {}: done, healthy after {:.1} s",
                r.action,
                r.name,
                ms as f64 / 1000.0
            ),
            None => format!("{} {}: done", r.action, r.name),
        }
    };
    for id in &r.backups {
        human.push_str(&format!(
            "\nbacked up first: {id} (abssctl backup restore {id})"
        ));
    }
    Ok(Report::new(r, human)?.changed(r.changed))
}

/// What a read command could not find out, on stderr (stdout stays the report or JSON).
fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn status(ctx: &mut Ctx, name: &Option<String>) -> anyhow::Result<Report> {
    match name {
        Some(n) => {
            let (v, warnings) = query::show(ctx, n)?;
            warn(&warnings);
            let human = rows(std::slice::from_ref(&v));
            Report::new(&v, human)
        }
        None => {
            let l = query::list(ctx)?;
            warn(&l.warnings);
            let mut human = rows(&l.instances);
            if let Some(d) = l
                .doctor
                .as_ref()
                .filter(|d| d.summary.red + d.summary.yellow > 0)
            {
                human.push_str(&format!(
                    "\ndoctor ({}): {} red, {} yellow: {} (abssctl doctor)",
                    d.checked_at,
                    d.summary.red,
                    d.summary.yellow,
                    d.red
                        .iter()
                        .chain(&d.yellow)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Report::new(&l, human)
        }
    }
}

fn logs(ctx: &mut Ctx, a: &LogsCli) -> anyhow::Result<Report> {
    let r = query::logs(ctx, &a.name, a.lines, a.since.clone(), a.follow)?;
    let human = r.lines.join("\n");
    Report::new(&r, human)
}

pub fn run_shortcut(ctx: &mut Ctx, cmd: &Shortcut) -> anyhow::Result<Report> {
    match cmd {
        Shortcut::Start { name } => action_report(&lifecycle::run_verb(ctx, name, Verb::Start)?),
        Shortcut::Stop { name } => action_report(&lifecycle::run_verb(ctx, name, Verb::Stop)?),
        Shortcut::Restart { name } => {
            action_report(&lifecycle::run_verb(ctx, name, Verb::Restart)?)
        }
        Shortcut::Status { name } => status(ctx, name),
        Shortcut::Logs(a) => logs(ctx, a),
    }
}

pub fn run(ctx: &mut Ctx, cmd: &InstanceCmd) -> anyhow::Result<Report> {
    match cmd {
        InstanceCmd::Create(c) => {
            let args = CreateArgs {
                name: c.name.clone(),
                domain: c.domain.clone(),
                port: c.port,
                version: c.version.clone(),
                https_port: c.https_port,
                password: match (&c.password_file, c.password_stdin) {
                    (Some(f), _) => Some(PasswordSource::File(f.0.clone())),
                    (None, true) => Some(PasswordSource::Stdin),
                    (None, false) => None,
                },
                restored_data: None,
            };
            let r = ops::instance::create::create(ctx, &args)?;
            let human = if r.dry_run {
                plan_text(&r.planned_actions)
            } else if !r.changed {
                format!(
                    "instance '{}' already exists: {} (port {}, Actual {})",
                    r.name, r.url, r.port, r.version
                )
            } else {
                let mut s = format!(
                    "created '{}': Actual {} on 127.0.0.1:{}, healthy after {:.1} s\n{}",
                    r.name,
                    r.version,
                    r.port,
                    r.healthy_after_ms.unwrap_or(0) as f64 / 1000.0,
                    r.url
                );
                if r.password_set {
                    s.push_str("\nserver password set");
                } else {
                    s.push_str("\nno server password yet: open the URL and set one");
                }
                for w in &r.warnings {
                    s.push_str(&format!("\nwarning: {w}"));
                }
                s
            };
            Ok(Report::new(&r, human)?.changed(r.changed))
        }
        InstanceCmd::List => status(ctx, &None),
        InstanceCmd::Status { name } => status(ctx, name),
        InstanceCmd::Show { name } => {
            let (v, warnings) = query::show(ctx, name)?;
            warn(&warnings);
            let human = serde_json::to_value(&v)?
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k:<16} {}",
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            Report::new(&v, human)
        }
        InstanceCmd::Env { name } => {
            let e = query::env(ctx, name)?;
            let human = e
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n");
            Report::new(&e, human)
        }
        InstanceCmd::Start { name } => action_report(&lifecycle::run_verb(ctx, name, Verb::Start)?),
        InstanceCmd::Stop { name } => action_report(&lifecycle::run_verb(ctx, name, Verb::Stop)?),
        InstanceCmd::Restart { name } => {
            action_report(&lifecycle::run_verb(ctx, name, Verb::Restart)?)
        }
        InstanceCmd::Enable { name } => {
            action_report(&lifecycle::run_verb(ctx, name, Verb::Enable)?)
        }
        InstanceCmd::Disable { name } => {
            action_report(&lifecycle::run_verb(ctx, name, Verb::Disable)?)
        }
        InstanceCmd::Logs(a) => logs(ctx, a),
        InstanceCmd::SetDomain { name, domain } => {
            action_report(&lifecycle::set(ctx, name, &Change::Domain(domain.clone()))?)
        }
        InstanceCmd::SetPort { name, port } => {
            action_report(&lifecycle::set(ctx, name, &Change::Port(*port))?)
        }
        InstanceCmd::SetVersion {
            name,
            version,
            offer,
        } => match ops::upgrade::set_version(ctx, name, version, offer.offer())? {
            ops::upgrade::SetVersion::Upgrade(r) => Ok(r),
            ops::upgrade::SetVersion::Binding(a) => action_report(&a),
        },
        InstanceCmd::Rollback {
            name,
            to_backup,
            offer,
        } => crate::cli::backup::restore_report(&ops::upgrade::rollback::rollback(
            ctx,
            name,
            to_backup.as_deref(),
            offer.offer(),
        )?),
        InstanceCmd::Rename {
            name,
            new_name,
            offer,
        } => action_report(&ops::instance::rename::rename(
            ctx,
            name,
            new_name,
            offer.offer(),
        )?),
        InstanceCmd::Delete {
            name,
            purge_data,
            offer,
        } => action_report(&lifecycle::delete(ctx, name, *purge_data, offer.offer())?),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (e.g. `--version` clashing with the version flag).
    #[test]
    fn command_tree_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }
}
