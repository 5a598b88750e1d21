//! Rendering of command results: human text by default, JSON with `--json`.

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
}

impl Report {
    /// Build a report from serializable data and its human rendering.
    pub fn new(data: &impl Serialize, human: impl Into<String>) -> anyhow::Result<Report> {
        Ok(Report {
            json: serde_json::to_value(data)?,
            human: human.into(),
            changed: false,
        })
    }
    /// Mark that the command changed state.
    pub fn changed(mut self, changed: bool) -> Self {
        self.changed = changed;
        self
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
