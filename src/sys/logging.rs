//! Diagnostics through `tracing`: to journald (SYSLOG_IDENTIFIER=abssctl, with
//! ABSSCTL_OP_ID / ABSSCTL_COMMAND on every entry, and ABSSCTL_INSTANCE on every entry of a
//! command about an instance) when the journal socket answers, else human lines on stderr.
//! One sink per run, so a line never appears twice. `-v` asks for diagnostics on stderr
//! instead of the journal. The operations log (operations.jsonl) is a separate stream, see
//! `sys::audit`.
//!
//! ABSSCTL_INSTANCE comes from the command span: `execute` enters [`command_span`] for the
//! whole command (the final "finished" line included), and [`set_instance`] records the
//! instance on it as soon as the command knows its target. The journald layer copies a
//! span's fields, prefixed ABSSCTL_, into every event inside it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// What the operator asked of diagnostics, as plain values (sys does not know the CLI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `-q`: errors only.
    pub quiet: bool,
    /// `-v` count: 1 info, 2+ debug, and stderr instead of the journal.
    pub verbose: u8,
    /// Colour on a terminal (false with `--no-color`).
    pub color: bool,
}

/// The name of the span field that becomes ABSSCTL_INSTANCE in the journal.
pub const INSTANCE_FIELD: &str = "instance";

pub fn init(opts: LogOptions, op_id: &str, command: &str) {
    let level = match (opts.quiet, opts.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    // Only the environment's log filter (ABSSCTL_LOG) may override the level.
    let filter = |default: &str| {
        EnvFilter::try_from_env("ABSSCTL_LOG").unwrap_or_else(|_| EnvFilter::new(default))
    };
    if opts.verbose == 0
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
        .with_ansi(opts.color && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter(level)))
        .try_init();
}

/// The span around one whole command; its `instance` field is empty until
/// [`set_instance`]. At ERROR level so that no log filter that lets any line through
/// drops the span (and with it the field) from the lines inside it.
pub fn command_span() -> tracing::Span {
    tracing::error_span!("command", instance = tracing::field::Empty)
}

/// The command is about instance `name`: every line from now on, up to and including the
/// final one, carries ABSSCTL_INSTANCE=`name`. Recorded on the current span, which is the
/// command span (abssctl opens no other spans).
pub fn set_instance(name: &str) {
    tracing::Span::current().record(INSTANCE_FIELD, name);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// Collects, per event, the fields of its spans (as the journald layer does) and its
    /// message, so the test sees what each journal entry would carry.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Line>>>);

    /// One captured event: its message and the fields of the spans it was in.
    type Line = (String, Vec<(String, String)>);

    #[derive(Default)]
    struct Fields(Vec<(String, String)>);

    impl Visit for Fields {
        fn record_str(&mut self, f: &Field, v: &str) {
            self.0.push((f.name().to_string(), v.to_string()));
        }
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.push((f.name().to_string(), format!("{v:?}")));
        }
    }

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut f = Fields::default();
            attrs.record(&mut f);
            ctx.span(id).unwrap().extensions_mut().insert(f);
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let span = ctx.span(id).unwrap();
            let mut ext = span.extensions_mut();
            values.record(ext.get_mut::<Fields>().unwrap());
        }
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            let mut span_fields = Vec::new();
            for span in ctx
                .event_scope(event)
                .into_iter()
                .flat_map(|s| s.from_root())
            {
                span_fields.extend(span.extensions().get::<Fields>().unwrap().0.clone());
            }
            let mut own = Fields::default();
            event.record(&mut own);
            let msg = own
                .0
                .iter()
                .find(|(k, _)| k == "message")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            self.0.lock().unwrap().push((msg, span_fields));
        }
    }

    #[test]
    fn every_line_after_the_target_is_known_carries_the_instance() {
        let cap = Capture::default();
        let subscriber = tracing_subscriber::registry().with(cap.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = command_span();
            let _in = span.enter();
            tracing::info!("config loaded");
            set_instance("bars1");
            tracing::warn!("a step");
            tracing::info!(rc = 0, "instance create finished");
        });
        let lines = cap.0.lock().unwrap().clone();
        let instance_of = |msg: &str| {
            lines
                .iter()
                .find(|(m, _)| m == msg)
                .unwrap()
                .1
                .iter()
                .find(|(k, _)| k == INSTANCE_FIELD)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(instance_of("config loaded"), None);
        assert_eq!(instance_of("a step").as_deref(), Some("bars1"));
        assert_eq!(
            instance_of("instance create finished").as_deref(),
            Some("bars1")
        );
    }
}
