//! `abssctl config ...`

use crate::cli::Report;
use crate::cli::output::table;
use crate::ops::Ctx;
use crate::ops::config_show::{self, ConfigView};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print every configuration key with its value and where the value comes from
    /// (default, file:line, env VAR, flag).
    Show,
}

impl ConfigCmd {
    pub fn name(&self) -> &'static str {
        match self {
            ConfigCmd::Show => "show",
        }
    }
}

pub fn run(ctx: &mut Ctx, cmd: &ConfigCmd) -> anyhow::Result<Report> {
    match cmd {
        ConfigCmd::Show => {
            let view = config_show::show(ctx);
            Report::new(&view, render(&view))
        }
    }
}

/// Human rendering: which file was read, then an aligned KEY / VALUE / SOURCE table.
fn render(view: &ConfigView) -> String {
    let f = &view.config_file;
    let state = if f.loaded {
        "read".to_string()
    } else {
        "not found, built-in defaults apply".to_string()
    };
    let why = match f.source.describe().as_str() {
        "default" => String::new(),
        s => format!(", chosen by {s}"),
    };
    let rows: Vec<Vec<String>> = view
        .keys
        .iter()
        .map(|k| {
            let value = match &k.value {
                serde_json::Value::String(s) if s.is_empty() => "\"\"".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![k.key.to_string(), value, k.source.describe()]
        })
        .collect();
    format!(
        "config file: {} ({state}{why})\n\n{}",
        f.path.display(),
        table(&["KEY", "VALUE", "SOURCE"], &rows)
    )
}
