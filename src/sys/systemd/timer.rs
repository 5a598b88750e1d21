//! Timers: what `backup schedule --list` shows (next run, last run, how it ended), read
//! over D-Bus, and the check of an OnCalendar= expression by systemd's own parser.

use super::TimerStatus;
use super::call::{CALL_TIMEOUT, call};
use super::dbus::DbusSystemd;
use super::transient::U64_UNSET;
use crate::error::Failure;
use anyhow::{Context, Result};
use zbus_systemd::systemd1::{ServiceProxy, TimerProxy, UnitProxy};
use zbus_systemd::zbus::proxy::CacheProperties;

/// A systemd timestamp property: 0 (never) and the unset marker are `None`.
fn stamp(v: u64) -> Option<u64> {
    Some(v).filter(|v| *v != 0 && *v != U64_UNSET)
}

impl DbusSystemd {
    /// One timer and the service it triggers.
    pub(super) async fn timer_of(&self, timer: &str) -> Result<TimerStatus> {
        let mut st = TimerStatus {
            timer: timer.to_string(),
            ..TimerStatus::default()
        };
        let m = self.manager();
        let rows = call(
            "list",
            timer,
            CALL_TIMEOUT,
            m.list_units_by_names(vec![timer.to_string()]),
        )
        .await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(st);
        };
        (st.load_state, st.active_state) = (row.2, row.3);
        if st.load_state != "loaded" {
            return Ok(st);
        }
        let path = row.6;
        let conn = self.connection();
        let u = UnitProxy::builder(conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd unit proxy")?;
        let t = TimerProxy::builder(conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd timer proxy")?;
        let (file_state, next, last, service) = tokio::join!(
            call(
                "read UnitFileState of",
                timer,
                CALL_TIMEOUT,
                u.unit_file_state()
            ),
            call(
                "read NextElapseUSecRealtime of",
                timer,
                CALL_TIMEOUT,
                t.next_elapse_u_sec_realtime()
            ),
            call(
                "read LastTriggerUSec of",
                timer,
                CALL_TIMEOUT,
                t.last_trigger_u_sec()
            ),
            call("read Unit of", timer, CALL_TIMEOUT, t.unit()),
        );
        st.unit_file_state = file_state?;
        st.next_elapse_usec = stamp(next?);
        st.last_trigger_usec = stamp(last?);
        st.service = service?;
        let rows = call(
            "list",
            &st.service,
            CALL_TIMEOUT,
            m.list_units_by_names(vec![st.service.clone()]),
        )
        .await?;
        let Some(row) = rows.into_iter().next().filter(|r| r.2 == "loaded") else {
            return Ok(st);
        };
        st.service_active_state = row.3;
        let s = ServiceProxy::builder(conn)
            .path(row.6)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .context("creating a systemd service proxy")?;
        let name = st.service.clone();
        let (result, ended, status) = tokio::join!(
            call("read Result of", &name, CALL_TIMEOUT, s.result()),
            call(
                "read ExecMainExitTimestamp of",
                &name,
                CALL_TIMEOUT,
                s.exec_main_exit_timestamp()
            ),
            call(
                "read ExecMainStatus of",
                &name,
                CALL_TIMEOUT,
                s.exec_main_status()
            ),
        );
        st.service_result = result?;
        st.service_ended_usec = stamp(ended?);
        st.service_exit_status = st.service_ended_usec.map(|_| status).transpose()?;
        Ok(st)
    }
}

/// Check an OnCalendar= expression with `systemd-analyze calendar`, the parser the timer
/// will use (a spec systemd refuses would make the timer fail to load, silently to the
/// operator). Returns systemd's normalized form. Refused: exit 2; no systemd-analyze: 3.
pub fn check_calendar(spec: &str) -> Result<String> {
    let out = std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", "--", spec])
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| {
            anyhow::Error::from(
                Failure::environment(format!("cannot run systemd-analyze: {e}")).hint(
                    "abssctl checks calendar expressions with systemd-analyze (package systemd)",
                ),
            )
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(Failure::validation(format!(
            "systemd does not accept the calendar expression '{}': {}",
            spec.escape_default(),
            why.lines().next().unwrap_or("refused").trim()
        ))
        .hint("give a systemd OnCalendar= value, e.g. daily, '*-*-* 03:00' or 'Sun 04:00' (man systemd.time)")
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Normalized form:"))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| spec.to_string()))
}
