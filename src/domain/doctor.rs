//! The doctor's findings and how they add up (ADR-029): a status per probe, an exit code
//! where the worst finding wins, and the human report grouped by severity. Pure: the
//! probes that produce findings live in `ops::doctor`.
//!
//! Probe ids (`env.tools`, `systemd.<instance>`, ...) are a contract: the confconsole menu
//! and the real-tier scenario match on them. docs/doctor.md lists them.

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Green < Yellow < Red`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Green,
    Yellow,
    Red,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Yellow => "yellow",
            Status::Red => "red",
        }
    }
}

/// What a probe looks at; decides the exit code of a red finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Env,
    Config,
    State,
    Fs,
    Ports,
    Systemd,
    Nginx,
    Tls,
    App,
    Disk,
    Backups,
    Updates,
    Locks,
    Staging,
}

impl Category {
    pub const ALL: [Category; 14] = [
        Category::Env,
        Category::Config,
        Category::State,
        Category::Fs,
        Category::Ports,
        Category::Systemd,
        Category::Nginx,
        Category::Tls,
        Category::App,
        Category::Disk,
        Category::Backups,
        Category::Updates,
        Category::Locks,
        Category::Staging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Env => "env",
            Category::Config => "config",
            Category::State => "state",
            Category::Fs => "fs",
            Category::Ports => "ports",
            Category::Systemd => "systemd",
            Category::Nginx => "nginx",
            Category::Tls => "tls",
            Category::App => "app",
            Category::Disk => "disk",
            Category::Backups => "backups",
            Category::Updates => "updates",
            Category::Locks => "locks",
            Category::Staging => "staging",
        }
    }

    /// Parse one `--only` word.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The exit code of a red finding in this category, by the ADR-013 meaning of the
    /// codes: 4 when a provider (systemd, nginx, the service behind them, a port it needs)
    /// is failing; 3 when the machine lacks something (tools, certificates, space, modes);
    /// 2 when abssctl's own files say something wrong (config, registry, backup index).
    /// Locks and staging leftovers are remains of a crashed abssctl on the machine: 3.
    /// Updates are never red.
    pub fn red_rc(self) -> i32 {
        match self {
            Category::Systemd | Category::Nginx | Category::App | Category::Ports => 4,
            Category::Env
            | Category::Tls
            | Category::Disk
            | Category::Fs
            | Category::Locks
            | Category::Staging => 3,
            Category::Config | Category::State | Category::Backups | Category::Updates => 2,
        }
    }
}

/// Parse `--only env,tls`: each word a category, an unknown one is named.
pub fn parse_only(text: &str) -> Result<Vec<Category>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| Category::parse(w).ok_or_else(|| w.to_string()))
        .collect()
}

/// One probe's verdict (the `--json` object of each probe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub category: Category,
    pub status: Status,
    pub message: String,
    /// The next step for the operator; empty when green.
    pub remediation: String,
}

impl Finding {
    pub fn green(id: impl Into<String>, category: Category, message: impl Into<String>) -> Self {
        Finding {
            id: id.into(),
            category,
            status: Status::Green,
            message: message.into(),
            remediation: String::new(),
        }
    }
    pub fn yellow(
        id: impl Into<String>,
        category: Category,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) -> Self {
        Finding::green(id, category, message).problem(Status::Yellow, remediation)
    }
    pub fn red(
        id: impl Into<String>,
        category: Category,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) -> Self {
        Finding::green(id, category, message).problem(Status::Red, remediation)
    }
    /// A finding that is not green carries the next step.
    fn problem(self, status: Status, remediation: impl Into<String>) -> Self {
        Finding {
            status,
            remediation: remediation.into(),
            ..self
        }
    }
}

/// Count of findings per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub green: usize,
    pub yellow: usize,
    pub red: usize,
}

/// The whole report: what `--json` prints and what `<state_dir>/doctor.json` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub probes: Vec<Finding>,
    pub summary: Summary,
    pub rc: i32,
    /// When the probes ran (UTC RFC 3339), so a reader of the saved report knows its age.
    pub checked_at: String,
}

impl Report {
    pub fn new(probes: Vec<Finding>, checked_at: String) -> Report {
        let summary = summary(&probes);
        let rc = exit_code(&probes);
        Report {
            probes,
            summary,
            rc,
            checked_at,
        }
    }
}

pub fn summary(findings: &[Finding]) -> Summary {
    let mut s = Summary::default();
    for f in findings {
        match f.status {
            Status::Green => s.green += 1,
            Status::Yellow => s.yellow += 1,
            Status::Red => s.red += 1,
        }
    }
    s
}

/// Worst wins: the highest `red_rc` of the red findings; yellow and green are 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    findings
        .iter()
        .filter(|f| f.status == Status::Red)
        .map(|f| f.category.red_rc())
        .max()
        .unwrap_or(0)
}

/// The findings worst first (red, yellow, green), in probe order within a severity.
pub fn grouped(findings: &[Finding]) -> Vec<(Status, Vec<&Finding>)> {
    [Status::Red, Status::Yellow, Status::Green]
        .into_iter()
        .map(|s| (s, findings.iter().filter(|f| f.status == s).collect()))
        .filter(|(_, v): &(Status, Vec<&Finding>)| !v.is_empty())
        .collect()
}

/// The human report: red and yellow findings each with their remediation, then the
/// green ones on one line each, then the summary.
pub fn human(report: &Report) -> String {
    let mut out = Vec::new();
    for (status, list) in grouped(&report.probes) {
        out.push(format!(
            "{} ({}):",
            status.as_str().to_uppercase(),
            list.len()
        ));
        for f in list {
            out.push(format!("  {:<28} {}", f.id, f.message));
            if !f.remediation.is_empty() {
                out.push(format!("  {:<28} fix: {}", "", f.remediation));
            }
        }
    }
    let s = report.summary;
    out.push(format!(
        "{} green, {} yellow, {} red (exit {})",
        s.green, s.yellow, s.red, report.rc
    ));
    out.join("\n")
}

/// Free space (or inodes) left, in percent of the total: red under 5 %, yellow under 10 %.
pub fn free_status(free: u64, total: u64) -> Status {
    if total == 0 {
        return Status::Green;
    }
    // Integer arithmetic on per-mille so 4.99 % is red.
    let per_mille = free.saturating_mul(1000) / total;
    if per_mille < 50 {
        Status::Red
    } else if per_mille < 100 {
        Status::Yellow
    } else {
        Status::Green
    }
}

/// A mode is unsafe when group or others may write (0o022).
pub fn group_or_world_writable(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// A private key is exposed when others (or its group, unless the group is root's) may read
/// it: nginx reads keys as root, nobody else needs to.
pub fn key_mode_exposed(mode: u32) -> bool {
    mode & 0o004 != 0
}

/// Is a schedule daily or more often (`daily`, `hourly`, a `*-*-*` calendar)?
pub fn schedule_at_least_daily(on_calendar: &str) -> bool {
    let s = on_calendar.trim();
    matches!(s, "daily" | "hourly" | "minutely") || s.starts_with("*-*-*")
}

/// How old a newest backup may be before it is a finding: two days for a daily (or more
/// frequent) schedule, nine for a weekly one, 35 for anything else.
pub fn backup_max_age_days(on_calendar: &str) -> i64 {
    let s = on_calendar.trim();
    if schedule_at_least_daily(s) {
        2
    } else if s == "weekly" || s.starts_with("Mon") || s.starts_with("Sun") {
        9
    } else {
        35
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, c: Category, s: Status) -> Finding {
        Finding {
            status: s,
            ..Finding::green(id, c, "m")
        }
    }

    #[test]
    fn worst_red_wins_and_yellow_is_zero() {
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f("a", Category::Systemd, Status::Yellow)]), 0);
        assert_eq!(exit_code(&[f("a", Category::Config, Status::Red)]), 2);
        assert_eq!(
            exit_code(&[
                f("a", Category::Config, Status::Red),
                f("b", Category::Tls, Status::Red),
            ]),
            3
        );
        assert_eq!(
            exit_code(&[
                f("b", Category::Tls, Status::Red),
                f("c", Category::Nginx, Status::Red),
                f("a", Category::State, Status::Red),
            ]),
            4
        );
    }

    #[test]
    fn every_category_has_a_red_rc_and_a_name_that_parses_back() {
        for c in Category::ALL {
            assert!([2, 3, 4].contains(&c.red_rc()));
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        assert_eq!(Category::App.red_rc(), 4);
        assert_eq!(Category::Disk.red_rc(), 3);
        assert_eq!(Category::Backups.red_rc(), 2);
    }

    #[test]
    fn only_names_the_unknown_word() {
        assert_eq!(
            parse_only("env, tls"),
            Ok(vec![Category::Env, Category::Tls])
        );
        assert_eq!(parse_only("env,bogus"), Err("bogus".into()));
    }

    #[test]
    fn grouping_puts_red_first_and_keeps_probe_order() {
        let list = vec![
            f("g1", Category::Env, Status::Green),
            f("y1", Category::Env, Status::Yellow),
            f("r1", Category::Env, Status::Red),
            f("r2", Category::Env, Status::Red),
        ];
        let g = grouped(&list);
        let ids: Vec<(Status, Vec<&str>)> = g
            .iter()
            .map(|(s, v)| (*s, v.iter().map(|f| f.id.as_str()).collect()))
            .collect();
        assert_eq!(
            ids,
            vec![
                (Status::Red, vec!["r1", "r2"]),
                (Status::Yellow, vec!["y1"]),
                (Status::Green, vec!["g1"]),
            ]
        );
        let r = Report::new(list, "t".into());
        assert_eq!(
            r.summary,
            Summary {
                green: 1,
                yellow: 1,
                red: 2
            }
        );
        let text = human(&r);
        assert!(text.find("RED").unwrap() < text.find("YELLOW").unwrap());
        assert!(
            text.ends_with("1 green, 1 yellow, 2 red (exit 3)"),
            "{text}"
        );
    }

    #[test]
    fn free_space_thresholds() {
        assert_eq!(free_status(50, 100), Status::Green);
        assert_eq!(free_status(10, 100), Status::Green);
        assert_eq!(free_status(9, 100), Status::Yellow);
        assert_eq!(free_status(5, 100), Status::Yellow);
        assert_eq!(free_status(4, 100), Status::Red);
        assert_eq!(free_status(0, 0), Status::Green);
    }

    #[test]
    fn modes() {
        assert!(group_or_world_writable(0o777));
        assert!(group_or_world_writable(0o775));
        assert!(!group_or_world_writable(0o755));
        assert!(key_mode_exposed(0o644));
        assert!(!key_mode_exposed(0o640));
        assert!(!key_mode_exposed(0o600));
    }

    #[test]
    fn backup_age_by_schedule() {
        assert_eq!(backup_max_age_days("daily"), 2);
        assert_eq!(backup_max_age_days("*-*-* 03:00"), 2);
        assert_eq!(backup_max_age_days("weekly"), 9);
        assert_eq!(backup_max_age_days("monthly"), 35);
    }
}
