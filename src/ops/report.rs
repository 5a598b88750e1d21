//! What a command hands back: its data (the `--json` contract) and its human text. `ops`
//! builds it; `cli` decides how to show it (`cli::output`).

use crate::error::Kind;
use serde::Serialize;

/// Version of the `--json` envelope; bump only with a documented, compatible change.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// What a command produced: the data for `--json`, the text for humans, and whether it
/// changed anything (for the operations log).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub json: serde_json::Value,
    pub human: String,
    pub changed: bool,
    /// A command that reports a full result AND failed (an upgrade that stopped at an
    /// instance): its exit code and one-line error, shown after the result.
    pub failed: Option<Failed>,
}

/// How a command with a result failed (see [`Report::failed`]).
#[derive(Debug, Clone)]
pub struct Failed {
    pub kind: Kind,
    pub message: String,
    /// The transaction that failed and what its rollback did (for the operations log).
    pub rollback: Option<crate::domain::txn::Rollback>,
}

impl Report {
    /// Build a report from serializable data and its human rendering.
    pub fn new(data: &impl Serialize, human: impl Into<String>) -> anyhow::Result<Report> {
        Ok(Report {
            json: serde_json::to_value(data)?,
            human: human.into(),
            changed: false,
            failed: None,
        })
    }
    /// Mark the command failed although it has a result to show (exit code of `kind`).
    pub fn failed(
        mut self,
        kind: Kind,
        message: impl Into<String>,
        rollback: Option<crate::domain::txn::Rollback>,
    ) -> Self {
        self.failed = Some(Failed {
            kind,
            message: message.into(),
            rollback,
        });
        self
    }
    /// Mark that the command changed state.
    pub fn changed(mut self, changed: bool) -> Self {
        self.changed = changed;
        self
    }
}

/// What the command frame has to show: how the command ended (its report, or the
/// classified failure), then any warning about the frame's own work after it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Done(&'a Report),
    Failed {
        kind: Kind,
        message: &'a str,
        hint: Option<&'a str>,
    },
    /// Never replaces the command's result (e.g. the operations log could not be written).
    Warning(&'a str),
    /// After a result marked [`Report::failed`]: the error line (stderr only, so `--json`
    /// output stays one document).
    ErrorAfter(&'a str),
}

/// The human text of a list result: an aligned table (no colour, stable for tests and
/// pipes). Plain text the human side of a `Report` carries, so it lives beside it.
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
