//! The terminal side of a command (`ops::ui`): dialoguer prompts and indicatif spinners,
//! here in the cli because how a question or a progress line looks is presentation.

use anyhow::{Context, Result};
use std::time::Duration;

/// The interactive terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl crate::ops::ui::Ui for Terminal {
    fn confirm(&self, question: &str) -> Result<bool> {
        confirm(question, false)
    }
    fn interactive(&self) -> bool {
        use std::io::IsTerminal;
        std::io::stdin().is_terminal()
    }
    fn ask(&self, question: &str, default: bool) -> Result<bool> {
        confirm(question, default)
    }
    fn progress(&self, json: bool, quiet: bool) -> Box<dyn crate::ops::ui::Progress> {
        Box::new(Progress::new(json, quiet))
    }
}

/// Ask a yes/no question on the terminal; without a terminal the answer is no (scripts
/// must say --yes explicitly).
fn confirm(question: &str, default: bool) -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(default)
        .interact()
        .context("reading the answer")
}

/// Progress of long steps: a spinner on a terminal, plain lines on stderr otherwise (logs,
/// pipes), nothing with --quiet or --json (stdout stays a clean document).
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    fn new(json: bool, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        if json || quiet {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            return Progress {
                bar: Some(bar),
                plain: false,
            };
        }
        Progress {
            bar: None,
            plain: true,
        }
    }
}

impl crate::ops::ui::Progress for Progress {
    /// Announce a step.
    fn step(&self, msg: &str) {
        tracing::info!("{msg}");
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        } else if self.plain {
            eprintln!("{msg}");
        }
    }

    /// Bytes of a download (spinner only: plain logs get the step line, not a flood).
    fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            let t = total
                .map(|t| format!("/{} MB", t / 1_000_000))
                .unwrap_or_default();
            b.set_message(format!("{what}: {} MB{t}", done / 1_000_000));
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
