//! The operations log record (ADR-028): one JSON object per top-level command, written after
//! it ends. Never carries secrets: the values of the CLI's secret-bearing flags are
//! redacted, and environment values are never recorded.

use crate::domain::txn::PlannedAction;
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;

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

/// The audit facts of the running command, gathered while it runs (the command frame in
/// `ops` creates it; the use cases add their plan, target, warnings and lock waits).
#[derive(Debug)]
pub struct OpState {
    pub op_id: uuid::Uuid,
    pub command: String,
    pub args: serde_json::Value,
    pub target: Option<Target>,
    pub planned: Vec<PlannedAction>,
    pub warnings: Vec<String>,
    pub lock_wait: Duration,
    /// The ids of the backups made before the change (`ops::backup::safety`).
    pub backups: Vec<String>,
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
    /// The record of a command that ended at `now` after `duration`.
    #[allow(clippy::too_many_arguments)] // each is one field of the record, named at the call
    pub fn new(
        op: &OpState,
        now: OffsetDateTime,
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
            ts: rfc3339(now),
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
                backups: op.backups.clone(),
            },
            rc,
            duration_ms: duration.as_millis() as u64,
            lock_wait_ms: op.lock_wait.as_millis() as u64,
        }
    }
}

/// `t` in UTC, RFC 3339 with a `Z`, whatever offset it was given in.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The command-line arguments, with the values of `secret_flags` replaced by `***` in
/// both spellings (`--flag VALUE` and `--flag=VALUE`). The list comes from the clap
/// definition (`cli::secret_flags`, the arguments typed `SecretPath`), so it names exactly
/// the flags the CLI has; a flag it does not have never reaches the log (clap rejects the
/// command before anything runs).
pub fn redacted_args(
    args: impl Iterator<Item = String>,
    secret_flags: &[String],
) -> serde_json::Value {
    let is_secret = |f: &str| secret_flags.iter().any(|s| s == f);
    let mut out = Vec::new();
    let mut redact_next = false;
    for a in args {
        if redact_next {
            out.push("***".to_string());
            redact_next = false;
            continue;
        }
        if let Some((flag, _)) = a.split_once('=')
            && is_secret(flag)
        {
            out.push(format!("{flag}=***"));
            continue;
        }
        redact_next = is_secret(&a);
        out.push(a);
    }
    serde_json::Value::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The CLI's real secret-bearing flag (`cli::secret_flags` is checked against the clap
    /// definition in cli's own tests), in both spellings.
    #[test]
    fn the_password_file_is_redacted_in_both_spellings() {
        let secret = ["--password-file".to_string()];
        let v = redacted_args(
            args(&[
                "instance",
                "create",
                "budget",
                "--password-file",
                "/root/family-pw.txt",
                "--domain",
                "budget.example.org",
            ]),
            &secret,
        );
        assert!(!v.to_string().contains("family-pw"), "{v}");
        assert_eq!(v[3], "--password-file");
        assert_eq!(v[4], "***");
        assert_eq!(v[5], "--domain");
        assert_eq!(v[6], "budget.example.org", "the next flag's value is kept");

        let v = redacted_args(
            args(&["instance", "create", "--password-file=/root/pw"]),
            &secret,
        );
        assert_eq!(v[2], "--password-file=***");
        assert!(!v.to_string().contains("/root/pw"), "{v}");
    }

    #[test]
    fn other_values_are_recorded_as_given() {
        let secret = ["--password-file".to_string()];
        let given = [
            "instance",
            "create",
            "budget",
            "--password-stdin",
            "--port",
            "5001",
        ];
        assert_eq!(
            redacted_args(args(&given), &secret),
            serde_json::json!(given)
        );
        // No list, no redaction: the list is what decides, not a guess from flag names.
        let v = redacted_args(args(&["--password-file", "/p"]), &[]);
        assert_eq!(v, serde_json::json!(["--password-file", "/p"]));
    }

    #[test]
    fn timestamp_is_utc_with_z() {
        let at = time::macros::datetime!(2026-11-26 09:30:05.25 +01:00);
        assert_eq!(rfc3339(at), "2026-11-26T08:30:05.25Z");
    }

    fn op(warnings: &[&str]) -> OpState {
        OpState {
            op_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            command: "ports reserve".into(),
            args: serde_json::json!(["ports", "reserve", "budget"]),
            target: Some(Target {
                kind: "instance".into(),
                name: "budget".into(),
            }),
            planned: Vec::new(),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            lock_wait: Duration::from_millis(12),
            backups: Vec::new(),
        }
    }

    /// Everything in a record comes from its arguments: the same facts and the same `now`
    /// give the same line, byte for byte.
    #[test]
    fn a_record_is_determined_by_its_facts_and_now() {
        let now = time::macros::datetime!(2026-11-26 08:00:00 UTC);
        let make = |o: &OpState| {
            AuditRecord::new(
                o,
                now,
                Actor::current("root".into(), false),
                0,
                "ok".into(),
                Vec::new(),
                true,
                Duration::from_millis(1500),
            )
        };
        let line = serde_json::to_value(make(&op(&[]))).unwrap();
        assert_eq!(line, serde_json::to_value(make(&op(&[]))).unwrap());
        assert_eq!(line["ts"], "2026-11-26T08:00:00Z");
        assert_eq!(line["op_id"], "01900000-0000-7000-8000-000000000001");
        assert_eq!(line["duration_ms"], 1500);
        assert_eq!(line["lock_wait_ms"], 12);
        assert_eq!(
            line["target"],
            serde_json::json!({"kind": "instance", "name": "budget"})
        );
        assert_eq!(line["result"]["status"], "success");
        assert_eq!(
            line["actor"],
            serde_json::json!({"type": "user", "name": "root"})
        );
        let warned = serde_json::to_value(make(&op(&["slow disk"]))).unwrap();
        assert_eq!(warned["result"]["status"], "warning");
        assert_eq!(
            warned["result"]["warnings"],
            serde_json::json!(["slow disk"])
        );
    }
}
