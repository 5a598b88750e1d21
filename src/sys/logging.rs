//! Diagnostics through `tracing`: to journald (SYSLOG_IDENTIFIER=abssctl, with
//! ABSSCTL_OP_ID / ABSSCTL_COMMAND on every entry and ABSSCTL_INSTANCE where an event names
//! one) when the journal socket answers, else human lines on stderr. One sink per run, so a
//! line never appears twice. `-v` asks for diagnostics on stderr instead of the journal.
//! The operations log (operations.jsonl) is a separate stream, see `sys::audit`.

use crate::cli::GlobalArgs;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

pub fn init(g: &GlobalArgs, op_id: &str, command: &str) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    // Only the environment's log filter (ABSSCTL_LOG) may override the level.
    let filter = |default: &str| {
        EnvFilter::try_from_env("ABSSCTL_LOG").unwrap_or_else(|_| EnvFilter::new(default))
    };
    if g.verbose == 0
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald
            .with_syslog_identifier("abssctl".into())
            .with_field_prefix(Some("ABSSCTL".into()))
            .with_custom_fields([("ABSSCTL_OP_ID", op_id), ("ABSSCTL_COMMAND", command)]);
        let _ = tracing_subscriber::registry()
            .with(journald.with_filter(filter("info")))
            .try_init();
        return;
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(!g.no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter(level)))
        .try_init();
}
