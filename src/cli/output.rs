//! Rendering of command results: human text by default, JSON with `--json`.

use crate::error::Kind;
use crate::ops::Globals;
pub use crate::ops::report::{JSON_SCHEMA_VERSION, Outcome, Report};

/// Show a command's outcome: the report (JSON envelope with `--json`, else its text unless
/// `--quiet`) on stdout; a failure on stderr (and, with `--json`, as an error object on
/// stdout too); a warning on stderr.
pub fn render(g: &Globals, outcome: Outcome<'_>) {
    match outcome {
        Outcome::Done(report) => print_report(g, report),
        Outcome::Failed {
            kind,
            message,
            hint,
        } => print_error(g, kind, message, hint),
        Outcome::Warning(message) => eprintln!("warning: {message}"),
        Outcome::ErrorAfter(message) => eprintln!("error: {message}"),
    }
}

fn print_report(g: &Globals, report: &Report) {
    if g.json {
        let mut v = report.json.clone();
        if let serde_json::Value::Object(map) = &mut v {
            map.entry("schema_version")
                .or_insert(JSON_SCHEMA_VERSION.into());
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if !g.quiet && !report.human.is_empty() {
        println!("{}", report.human);
    }
}

fn print_error(g: &Globals, kind: Kind, message: &str, hint: Option<&str>) {
    if g.json {
        let v = serde_json::json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "error": {"kind": kind, "exit_code": kind.exit_code(), "message": message, "hint": hint},
        });
        println!("{v}");
    }
    eprintln!("error: {message}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

pub use crate::ops::report::table;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["PORT", "INSTANCE"],
            &[
                vec!["5000".into(), "budget".into()],
                vec!["65535".into(), "x".into()],
            ],
        );
        assert_eq!(t, "PORT   INSTANCE\n5000   budget\n65535  x");
    }
}
