//! Use cases. Each command is one function: lock -> load state -> build a plan -> run it as
//! a transaction -> save -> audit. `execute` is the frame around every command: logging,
//! configuration, privileges, the operations log and the exit code.

pub use crate::domain::audit::OpState;
use crate::domain::audit::{self, Actor, AuditRecord};
use crate::domain::config::{self, Overrides, Resolved};
use crate::domain::layout::Layout;
use crate::domain::txn::{PlannedAction, Rollback};
use crate::error;
use crate::sys;
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod backup;
pub mod bundle;
pub mod config_show;
pub mod doctor;
pub mod firstboot;
pub mod instance;
pub mod ports;
pub mod probe;
pub mod report;
pub mod tls;
pub mod ui;
pub mod updates;
pub mod upgrade;
pub mod version;
pub mod version_build;
pub mod version_manage;
pub mod version_uninstall;
pub mod vhost;

pub use report::{Outcome, Report};

/// The flags every command accepts, as the use cases see them (the CLI parses its own
/// flags into this; `ops` knows nothing of how they were spelled).
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// Machine-readable output: no progress text on stdout.
    pub json: bool,
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Answer yes to every safety prompt.
    pub yes: bool,
    /// Only errors on stderr.
    pub quiet: bool,
    /// Detail level of the stderr log.
    pub verbose: u8,
    /// Configuration file instead of the default one.
    pub config: Option<PathBuf>,
    /// Seconds to wait for a held lock.
    pub lock_timeout: Option<f64>,
    /// No colour in the stderr log.
    pub no_color: bool,
}

/// What one running command knows: flags, configuration, layout, and the audit facts it
/// accumulates (planned actions, lock wait, target).
#[derive(Debug)]
pub struct Ctx {
    pub globals: Globals,
    /// Questions and progress for the person at the terminal (the cli's, or `Headless`).
    pub ui: &'static dyn ui::Ui,
    pub resolved: Resolved,
    pub layout: Layout,
    pub op: OpState,
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
/// Commands that must run when the configuration is broken, on the defaults: the doctor
/// (whose `config.parse` says what is wrong) and the support bundle (which gathers the
/// broken file for whoever helps). Every other command refuses to start.
const RUN_ON_A_BROKEN_CONFIG: &[&str] = &["doctor", "support-bundle"];

fn load_context(globals: &Globals, ui: &'static dyn ui::Ui, mut op: OpState) -> Result<Ctx> {
    let env = sys::env::abssctl_vars();
    let overrides = Overrides {
        config_file: globals.config.clone(),
        lock_timeout: globals.lock_timeout,
    };
    let path: PathBuf = config::config_file_path(&overrides, &env);
    let loaded = sys::fs::read_optional(&path).and_then(|text| {
        config::resolve(
            text.as_deref().map(|t| (path.as_path(), t)),
            &env,
            &overrides,
        )
    });
    let resolved = match loaded {
        Ok(r) => r,
        Err(e) if RUN_ON_A_BROKEN_CONFIG.contains(&op.command.as_str()) => {
            // The defaults (and the environment), the file's error kept for the report.
            // When the environment is what fails, there is nothing to run on.
            let Ok(mut r) = config::resolve(None, &env, &overrides) else {
                return Err(e);
            };
            let why = error::classify(&e).1;
            let note = format!(
                "{} is not used ({why}); running on the defaults",
                path.display()
            );
            tracing::warn!("{note}");
            op.warnings.push(note);
            r.file.path = path.clone();
            r.file.error = Some(why);
            r
        }
        Err(e) => return Err(e),
    };
    let layout = Layout::new(&resolved.config, &path);
    Ok(Ctx {
        globals: globals.clone(),
        ui,
        resolved,
        layout,
        op,
    })
}

/// Run one command from start to exit code: `run` is the command itself (the CLI's
/// dispatch), `render` shows its outcome (the CLI's output). The operations log is written
/// after the outcome is shown, whatever happened, and a failure to write it is a warning
/// (rendered after the outcome) that never replaces the command's own result. `command` is the stable command name
/// (`ports reserve`); `secret_flags` are the flags whose values the log must not record.
pub fn execute(
    globals: Globals,
    command: String,
    secret_flags: &[String],
    ui: &'static dyn ui::Ui,
    run: impl FnOnce(&mut Ctx) -> Result<Report>,
    mut render: impl FnMut(&Globals, Outcome<'_>),
) -> i32 {
    sys::privilege::set_umask();
    let started = Instant::now();
    let op = OpState {
        op_id: uuid::Uuid::now_v7(),
        command: command.clone(),
        args: audit::redacted_args(std::env::args().skip(1), secret_flags),
        target: None,
        planned: Vec::new(),
        warnings: Vec::new(),
        lock_wait: Duration::ZERO,
        backups: Vec::new(),
    };
    let log = sys::logging::LogOptions {
        quiet: globals.quiet,
        verbose: globals.verbose,
        color: !globals.no_color,
    };
    sys::logging::init(log, &op.op_id.to_string(), &command);
    // Every line of the command, the "finished" one included, is inside this span; it
    // carries ABSSCTL_INSTANCE once the command knows its instance.
    let span = sys::logging::command_span();
    let _in_command = span.enter();

    let mut ctx_slot = None;
    let result = load_context(&globals, ui, op).and_then(|ctx| run(ctx_slot.insert(ctx)));

    let (rc, status_msg, errors, changed) = match &result {
        Ok(report) => {
            render(&globals, Outcome::Done(report));
            match &report.failed {
                None => (0, "ok".to_string(), Vec::new(), report.changed),
                Some(f) => {
                    render(&globals, Outcome::ErrorAfter(&f.message));
                    (
                        f.kind.exit_code(),
                        f.message.clone(),
                        vec![f.message.clone()],
                        report.changed,
                    )
                }
            }
        }
        Err(err) => {
            let (kind, message, hint) = error::classify(err);
            render(
                &globals,
                Outcome::Failed {
                    kind,
                    message: &message,
                    hint: hint.as_deref(),
                },
            );
            // A failed command changed something only if its rollback left an effect.
            let changed = err
                .downcast_ref::<Rollback>()
                .is_some_and(Rollback::changed);
            (kind.exit_code(), message.clone(), vec![message], changed)
        }
    };
    let rollback = match &result {
        Err(e) => e.downcast_ref::<Rollback>(),
        Ok(r) => r.failed.as_ref().and_then(|f| f.rollback.as_ref()),
    };

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
            time::OffsetDateTime::now_utc(),
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
        } else if let Err(e) = sys::audit::append(
            &ctx.layout.operations_log,
            &record,
            // Durable when the command planned a change (even one rolled back) or made one.
            changed || !ctx.op.planned.is_empty(),
        ) {
            if sys::privilege::is_root() {
                let warning = format!("could not write the operations log: {e:#}");
                render(&globals, Outcome::Warning(&warning));
            } else {
                tracing::debug!("operations log not writable as this user: {e:#}");
            }
        }
    }
    rc
}
