//! Use cases. Each command is one function: lock -> load state -> build a plan -> run it as
//! a transaction -> save -> audit. `execute` is the frame around every command: logging,
//! configuration, privileges, the operations log and the exit code.

use crate::cli::{Cli, GlobalArgs, Report};
use crate::domain::audit::{self, Actor, AuditRecord, Target};
use crate::domain::config::{self, Overrides, Resolved};
use crate::domain::layout::Layout;
use crate::domain::txn::{PlannedAction, Rollback};
use crate::error::{self, Kind};
use crate::sys;
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod config_show;
pub mod instance;
pub mod ports;
pub mod version;
pub mod version_build;
pub mod version_manage;
pub mod vhost;

/// What one running command knows: flags, configuration, layout, and the audit facts it
/// accumulates (planned actions, lock wait, target).
#[derive(Debug)]
pub struct Ctx {
    pub globals: GlobalArgs,
    pub resolved: Resolved,
    pub layout: Layout,
    pub op: OpState,
}

/// The audit facts of the running command.
#[derive(Debug)]
pub struct OpState {
    pub op_id: uuid::Uuid,
    pub command: String,
    pub args: serde_json::Value,
    pub target: Option<Target>,
    pub planned: Vec<PlannedAction>,
    pub warnings: Vec<String>,
    pub lock_wait: Duration,
}

impl Ctx {
    /// The resolved configuration values.
    pub fn cfg(&self) -> &config::Config {
        &self.resolved.config
    }

    /// Mutating commands need root (they write /etc, /srv and talk to systemd).
    pub fn require_root(&self) -> Result<()> {
        if self.globals.dry_run || sys::privilege::is_root() {
            return Ok(());
        }
        Err(error::Failure::environment(format!(
            "'abssctl {}' changes the system and must run as root",
            self.op.command
        ))
        .hint(format!(
            "run it with sudo: sudo abssctl {}",
            self.op.command
        ))
        .into())
    }

    fn lock_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.cfg().lock_timeout.max(0.0))
    }

    /// Take the global lock (always first). The wait is added to the op's lock_wait_ms.
    pub fn lock_global(&mut self) -> Result<sys::lock::LockGuard> {
        let (guard, waited) = sys::lock::acquire(
            &self.layout.global_lock(),
            self.lock_timeout(),
            &self.op.command,
        )?;
        self.op.lock_wait += waited;
        Ok(guard)
    }

    /// Take the build lock (before the global one, if both): one npm build at a time,
    /// while instances stay manageable; the global lock is taken only to commit the build.
    pub fn lock_build(&mut self) -> Result<sys::lock::LockGuard> {
        let (guard, waited) = sys::lock::acquire(
            &self.layout.build_lock(),
            self.lock_timeout(),
            &self.op.command,
        )?;
        self.op.lock_wait += waited;
        Ok(guard)
    }

    /// Take an instance lock; callers hold the global lock already (fixed order, ADR-027).
    pub fn lock_instance(&mut self, name: &str) -> Result<sys::lock::LockGuard> {
        let (guard, waited) = sys::lock::acquire(
            &self.layout.instance_lock(name),
            self.lock_timeout(),
            &self.op.command,
        )?;
        self.op.lock_wait += waited;
        Ok(guard)
    }

    /// Record the plan of a transaction for the operations log.
    pub fn record_plan(&mut self, planned: Vec<PlannedAction>) {
        self.op.planned.extend(planned);
    }
}

/// Build the context: read config file and ABSSCTL_* environment, merge with flags.
fn load_context(cli: &Cli, op: OpState) -> Result<Ctx> {
    let env = sys::env::abssctl_vars();
    let overrides = Overrides {
        config_file: cli.global.config.clone(),
        lock_timeout: cli.global.lock_timeout,
    };
    let path: PathBuf = config::config_file_path(&overrides, &env);
    let text = sys::fs::read_optional(&path)?;
    let resolved = config::resolve(
        text.as_deref().map(|t| (path.as_path(), t)),
        &env,
        &overrides,
    )?;
    let layout = Layout::new(&resolved.config, &path);
    Ok(Ctx {
        globals: cli.global.clone(),
        resolved,
        layout,
        op,
    })
}

/// Run one command from start to exit code. Output goes to stdout (result) and stderr
/// (errors); the operations log is written after the command, whatever happened, and a
/// failure to write it is a warning that never replaces the command's own result.
pub fn execute(cli: Cli) -> i32 {
    sys::privilege::set_umask();
    let started = Instant::now();
    let command = cli.command.name();
    let op = OpState {
        op_id: uuid::Uuid::now_v7(),
        command: command.clone(),
        args: audit::redacted_args(std::env::args().skip(1), &crate::cli::secret_flags()),
        target: None,
        planned: Vec::new(),
        warnings: Vec::new(),
        lock_wait: Duration::ZERO,
    };
    let log = sys::logging::LogOptions {
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        color: !cli.global.no_color,
    };
    sys::logging::init(log, &op.op_id.to_string(), &command);
    // Every line of the command, the "finished" one included, is inside this span; it
    // carries ABSSCTL_INSTANCE once the command knows its instance.
    let span = sys::logging::command_span();
    let _in_command = span.enter();

    let mut ctx_slot = None;
    let result = load_context(&cli, op).and_then(|ctx| {
        let ctx = ctx_slot.insert(ctx);
        crate::cli::dispatch(ctx, &cli.command)
    });

    let (rc, status_msg, errors, changed) = match &result {
        Ok(report) => {
            print_report(&cli.global, report);
            (0, "ok".to_string(), Vec::new(), report.changed)
        }
        Err(err) => {
            let (kind, message, hint) = error::classify(err);
            print_error(&cli.global, kind, &message, hint.as_deref());
            // A failed command changed something only if its rollback left an effect.
            let changed = err
                .downcast_ref::<Rollback>()
                .is_some_and(Rollback::changed);
            (kind.exit_code(), message.clone(), vec![message], changed)
        }
    };
    let rollback = result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<Rollback>());

    // One structured line per command for the journal (stderr mode filters it out by
    // default, so the operator never sees the error twice).
    tracing::info!(
        rc,
        duration_ms = started.elapsed().as_millis() as u64,
        "{command} finished"
    );

    // The audit record needs the layout; without a context (bad config) there is no
    // trustworthy log location, so the failure is only on stderr and in the journal.
    if let Some(ctx) = ctx_slot {
        let mut record = AuditRecord::new(
            &ctx.op,
            Actor::current(sys::privilege::user_name(), sys::env::is_ci()),
            rc,
            status_msg,
            errors,
            changed,
            started.elapsed(),
        );
        if let Some(r) = rollback {
            record.result.rolled_back = r.complete();
            record.result.effects_kept = r.effects_kept();
        }
        if ctx.globals.dry_run {
            tracing::debug!("dry run: not writing the operations log");
        } else if let Err(e) = sys::audit::append(&ctx.layout.operations_log, &record) {
            if sys::privilege::is_root() {
                eprintln!("warning: could not write the operations log: {e:#}");
            } else {
                tracing::debug!("operations log not writable as this user: {e:#}");
            }
        }
    }
    rc
}

fn print_report(g: &GlobalArgs, report: &Report) {
    if g.json {
        let mut v = report.json.clone();
        if let serde_json::Value::Object(map) = &mut v {
            map.entry("schema_version")
                .or_insert(crate::cli::output::JSON_SCHEMA_VERSION.into());
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if !g.quiet && !report.human.is_empty() {
        println!("{}", report.human);
    }
}

fn print_error(g: &GlobalArgs, kind: Kind, message: &str, hint: Option<&str>) {
    if g.json {
        let v = serde_json::json!({
            "schema_version": crate::cli::output::JSON_SCHEMA_VERSION,
            "error": {"kind": kind, "exit_code": kind.exit_code(), "message": message, "hint": hint},
        });
        println!("{v}");
    }
    eprintln!("error: {message}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}
