//! Error categories at the seams, and how they map to the exit-code contract.
//!
//! Everything inside uses `anyhow::Error` with `.context(..)` at each I/O. Where a failure
//! belongs to one of the documented categories, the code raises a [`Failure`] (possibly
//! wrapped in more context); `main` finds it anywhere in the chain and picks the exit code.
//! An error without a `Failure` is a bug in abssctl: exit 1.

use std::fmt;

/// The stable exit codes (ADR-013). `--json` consumers and scripts rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 1: an internal bug; never raised on purpose for bad input or a broken machine.
    Internal,
    /// 2: the input (arguments, config, state files) is wrong; nothing was changed.
    Validation,
    /// 3: the machine is missing something (a tool, a path, privileges, the network).
    Environment,
    /// 4: systemd or nginx refused or failed what was asked of it.
    Provider,
}

impl Kind {
    /// The process exit code for this category.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Internal => 1,
            Kind::Validation => 2,
            Kind::Environment => 3,
            Kind::Provider => 4,
        }
    }
}

/// A categorised failure with an optional next step for the operator.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    /// A failure of a kind decided elsewhere (e.g. carried in a report).
    pub fn of_kind(kind: Kind, message: impl Into<String>) -> Self {
        Self::new(kind, message)
    }
    /// Bad input: exit 2.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(Kind::Validation, message)
    }
    /// The machine lacks something: exit 3.
    pub fn environment(message: impl Into<String>) -> Self {
        Self::new(Kind::Environment, message)
    }
    /// systemd / nginx failed: exit 4.
    pub fn provider(message: impl Into<String>) -> Self {
        Self::new(Kind::Provider, message)
    }
    /// Attach the next step the operator can take.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Shorthand: `return Err(fail!(validation, "bad {x}").hint(..).into())` reads worse than
/// `bail_kind!(...)`; these helpers keep call sites to one line.
pub fn validation(message: impl Into<String>) -> anyhow::Error {
    Failure::validation(message).into()
}
/// See [`validation`].
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    Failure::environment(message).into()
}
/// See [`validation`].
pub fn provider(message: impl Into<String>) -> anyhow::Error {
    Failure::provider(message).into()
}

/// The category, the one-line message (whole context chain) and the hint of an error.
pub fn classify(err: &anyhow::Error) -> (Kind, String, Option<String>) {
    // anyhow's own downcast also sees a Failure given as `.context(...)` (over a typed
    // cause such as `sys::unpack::Corrupt`); the chain's links see it as a source.
    let failure = err
        .downcast_ref::<Failure>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<Failure>()));
    let message = err
        .chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ");
    match failure {
        Some(f) => (f.kind, message, f.hint.clone()),
        None => (Kind::Internal, message, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kind_is_found_under_context_and_message_is_one_line() {
        let err = Err::<(), _>(Failure::validation("port 80 is below 1024").hint("use 1024-65535"))
            .context("reading ports.yml\nline 3")
            .unwrap_err();
        let (kind, msg, hint) = classify(&err);
        assert_eq!(kind, Kind::Validation);
        assert_eq!(kind.exit_code(), 2);
        assert_eq!(msg, "reading ports.yml line 3: port 80 is below 1024");
        assert_eq!(hint.as_deref(), Some("use 1024-65535"));
    }

    #[test]
    fn plain_errors_are_internal() {
        let err = anyhow::anyhow!("boom");
        assert_eq!(classify(&err).0, Kind::Internal);
        assert_eq!(Kind::Internal.exit_code(), 1);
        assert_eq!(Kind::Environment.exit_code(), 3);
        assert_eq!(Kind::Provider.exit_code(), 4);
    }
}
