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

/// Render a simple aligned table (no colour, stable for tests and pipes).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

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
