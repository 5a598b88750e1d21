//! Reading an instance's journal with `journalctl` (reading logs is not unit control, and
//! journalctl is the stable reader of the journal's files; the D-Bus API has none).

use crate::error::Failure;
use anyhow::{Context, Result};
use std::process::{Command, Stdio};

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub unit: String,
    pub lines: Option<usize>,
    /// Anything journalctl's --since accepts ("10 min ago", "2026-11-26 08:00").
    pub since: Option<String>,
}

fn command(q: &Query) -> Command {
    let mut c = Command::new("journalctl");
    c.args(["--no-pager", "--quiet", "-o", "short-iso", "-u", &q.unit]);
    if let Some(n) = q.lines {
        c.args(["--lines", &n.to_string()]);
    }
    if let Some(s) = &q.since {
        c.args(["--since", s]);
    }
    c
}

fn missing(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Failure::environment("journalctl is not installed")
            .hint("abssctl reads instance logs from the systemd journal; install systemd")
            .into()
    } else {
        anyhow::Error::new(e).context("running journalctl")
    }
}

/// The matching lines.
pub fn read(q: &Query) -> Result<Vec<String>> {
    run(command(q), &q.unit)
}

/// The lines logged under a syslog identifier (`-t`; abssctl's own lines carry
/// SYSLOG_IDENTIFIER=abssctl and belong to no unit), for the support bundle.
pub fn read_identifier(identifier: &str, lines: usize, since: &str) -> Result<Vec<String>> {
    let mut c = Command::new("journalctl");
    c.args(["--no-pager", "--quiet", "-o", "short-iso", "-t", identifier]);
    c.args(["--lines", &lines.to_string(), "--since", since]);
    run(c, identifier)
}

/// The lines of any of `units` (one journalctl, the units' lines interleaved by time). A
/// unit that never logged adds nothing (a glob that matches no unit would be an error).
pub fn read_units(units: &[String], lines: usize, since: &str) -> Result<Vec<String>> {
    let mut c = Command::new("journalctl");
    c.args(["--no-pager", "--quiet", "-o", "short-iso"]);
    for u in units {
        c.args(["-u", u]);
    }
    c.args(["--lines", &lines.to_string(), "--since", since]);
    run(c, &units.join(", "))
}

fn run(mut c: Command, what: &str) -> Result<Vec<String>> {
    let out = c.stdin(Stdio::null()).output().map_err(missing)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Failure::environment(format!(
            "journalctl could not read the journal of {what}: {}",
            err.lines().next().unwrap_or("no error text")
        ))
        .hint("run as root or as a member of the systemd-journal group")
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Follow the journal on our own stdout until interrupted; returns journalctl's exit code.
pub fn follow(q: &Query) -> Result<i32> {
    let status = command(q)
        .arg("--follow")
        .stdin(Stdio::null())
        .status()
        .map_err(missing)?;
    status.code().context("journalctl was killed by a signal")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn builds_the_journalctl_arguments() {
        let q = Query {
            unit: "actual-sync@a.service".into(),
            lines: Some(20),
            since: Some("1 hour ago".into()),
        };
        let c = command(&q);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--no-pager",
                "--quiet",
                "-o",
                "short-iso",
                "-u",
                "actual-sync@a.service",
                "--lines",
                "20",
                "--since",
                "1 hour ago"
            ]
        );
    }
}
