//! How a command talks to the person at the terminal while it runs: yes/no questions and
//! progress of long steps. ops decide WHEN to ask or report; the cli decides HOW (a
//! dialoguer prompt, an indicatif spinner: `cli::progress`). A caller without a person,
//! e.g. a test building a `Ctx` by hand, uses [`Headless`].

use anyhow::Result;

/// Progress of one long operation (a build, a download).
pub trait Progress {
    /// Announce a step.
    fn step(&self, msg: &str);
    /// Bytes of a download so far (`total` when known).
    fn bytes(&self, what: &str, done: u64, total: Option<u64>);
    /// The operation ended (clear a spinner).
    fn finish(&self);
}

/// The terminal side of a command.
pub trait Ui: std::fmt::Debug {
    /// Ask a yes/no question; without a person to answer, the answer is no (scripts must
    /// say --yes explicitly).
    fn confirm(&self, question: &str) -> Result<bool>;
    /// Whether a person can answer questions (stdin is a terminal). A command that must
    /// not guess (a backup offered before a destructive change) refuses to run without
    /// one unless the flags say what to do.
    fn interactive(&self) -> bool;
    /// Ask a yes/no question whose default (Enter) is `default`; without a person, the
    /// answer is no.
    fn ask(&self, question: &str, default: bool) -> Result<bool>;
    /// A progress reporter; `json` / `quiet`: stdout is a document, or the caller asked
    /// for silence.
    fn progress(&self, json: bool, quiet: bool) -> Box<dyn Progress>;
}

/// No person there: every question is answered no, progress goes to the log only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headless;

impl Progress for Headless {
    fn step(&self, msg: &str) {
        tracing::info!("{msg}");
    }
    fn bytes(&self, _what: &str, _done: u64, _total: Option<u64>) {}
    fn finish(&self) {}
}

impl Ui for Headless {
    fn confirm(&self, question: &str) -> Result<bool> {
        tracing::info!("not confirmed (no terminal): {question}");
        Ok(false)
    }
    fn interactive(&self) -> bool {
        false
    }
    fn ask(&self, question: &str, _default: bool) -> Result<bool> {
        self.confirm(question)
    }
    fn progress(&self, _json: bool, _quiet: bool) -> Box<dyn Progress> {
        Box::new(Headless)
    }
}
