//! The operations log record (ADR-028): one JSON object per top-level command, written after
//! it ends. Never carries secrets: argument values after secret-looking flags are redacted,
//! and environment values are never recorded.

use crate::domain::txn::PlannedAction;
use crate::ops::OpState;
use serde::Serialize;
use std::time::Duration;

pub const SCHEMA_VERSION: u32 = 1;

/// Who ran the command.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

impl Actor {
    /// `ci` when running under CI, `user` otherwise.
    pub fn current(name: String, ci: bool) -> Actor {
        Actor {
            kind: if ci { "ci" } else { "user" }.into(),
            name,
        }
    }
}

/// What the command acted on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Target {
    pub kind: String,
    pub name: String,
}

/// The outcome block of a record.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: &'static str,
    pub message: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The system differs from before the command: true for a success that changed
    /// something, and for a failure that left an effect behind (see `effects_kept`).
    pub changed: bool,
    /// A transaction failed and every step it had applied was undone (its irreversible
    /// steps excepted, which `effects_kept` names). False for a success, for a failure
    /// before any change, and for an incomplete rollback.
    pub rolled_back: bool,
    /// After a failure: the action words (as in `planned_actions`) of the effects that
    /// stayed, i.e. irreversible steps that ran (e.g. `server_password`, `purge_data`) and
    /// steps whose undo failed.
    pub effects_kept: Vec<String>,
    pub backups: Vec<String>,
}

/// One line of operations.jsonl.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub schema_version: u32,
    pub ts: String,
    pub op_id: String,
    pub command: String,
    pub args: serde_json::Value,
    pub actor: Actor,
    pub target: Option<Target>,
    pub planned_actions: Vec<PlannedAction>,
    pub result: Outcome,
    pub rc: i32,
    pub duration_ms: u64,
    pub lock_wait_ms: u64,
}

impl AuditRecord {
    pub fn new(
        op: &OpState,
        actor: Actor,
        rc: i32,
        message: String,
        errors: Vec<String>,
        changed: bool,
        duration: Duration,
    ) -> AuditRecord {
        let status = match (rc, op.warnings.is_empty()) {
            (0, true) => "success",
            (0, false) => "warning",
            _ => "error",
        };
        AuditRecord {
            schema_version: SCHEMA_VERSION,
            ts: now_rfc3339(),
            op_id: op.op_id.to_string(),
            command: op.command.clone(),
            args: op.args.clone(),
            actor,
            target: op.target.clone(),
            planned_actions: op.planned.clone(),
            result: Outcome {
                status,
                message,
                errors,
                warnings: op.warnings.clone(),
                changed,
                rolled_back: false,
                effects_kept: Vec::new(),
                backups: Vec::new(),
            },
            rc,
            duration_ms: duration.as_millis() as u64,
            lock_wait_ms: op.lock_wait.as_millis() as u64,
        }
    }
}

/// UTC RFC 3339 with a `Z`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Flags whose following value is a secret (or a path to one, which is harmless but kept
/// out anyway to be safe).
const SECRET_FLAGS: &[&str] = &["--password", "--token", "--secret", "--key-passphrase"];

/// The command-line arguments, with values of secret flags replaced by `***`.
pub fn redacted_args(args: impl Iterator<Item = String>) -> serde_json::Value {
    let mut out = Vec::new();
    let mut redact_next = false;
    for a in args {
        if redact_next {
            out.push("***".to_string());
            redact_next = false;
            continue;
        }
        if let Some((flag, _)) = a.split_once('=')
            && SECRET_FLAGS.contains(&flag)
        {
            out.push(format!("{flag}=***"));
            continue;
        }
        if SECRET_FLAGS.contains(&a.as_str()) {
            redact_next = true;
        }
        out.push(a);
    }
    serde_json::Value::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_both_spellings() {
        let v = redacted_args(
            [
                "instance",
                "create",
                "--password",
                "hunter2",
                "--token=abc",
                "x",
            ]
            .into_iter()
            .map(String::from),
        );
        let s = v.to_string();
        assert!(!s.contains("hunter2") && !s.contains("abc"), "{s}");
        assert_eq!(v[3], "***");
        assert_eq!(v[4], "--token=***");
        assert_eq!(v[5], "x");
    }

    #[test]
    fn timestamp_is_utc_with_z() {
        assert!(now_rfc3339().ends_with('Z'));
    }
}
