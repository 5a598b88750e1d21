//! Probes of the registry and of each instance: drift between the registry and the disk,
//! its port, its unit, its vhost, its certificate, its health; and nginx as a whole.

use super::{Check, EXEC_TIMEOUT, FILE_TIMEOUT, Facts, HEALTH_CONNECT, HEALTH_TOTAL};
use crate::domain::default_server as dflt;
use crate::domain::doctor::{Category, Finding};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, PortProbe};
use crate::ops::Ctx;
use crate::sys;
use crate::sys::nginx::ConfigTest;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn checks(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let mut v = vec![registry(facts)];
    for e in facts.instances() {
        v.push(drift(facts, e));
        v.push(port(facts, e));
        v.push(unit(facts, e));
        v.push(app(facts, e));
        v.push(vhost(facts, e));
        v.push(tls(ctx, facts, e));
    }
    v.push(nginx_config(facts));
    v.push(default_server(facts));
    v
}

/// Names, ports and domains are unique (parsing checks names and ports; a domain twice
/// would make nginx pick one of the two vhosts silently).
fn registry(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    Check::one("state.registry", Category::State, FILE_TIMEOUT, move || {
        let id = "state.registry";
        let state = match &f.state {
            Ok(s) => s,
            Err(e) => {
                return Finding::red(
                    id,
                    Category::State,
                    format!("the registry cannot be read: {e}"),
                    format!(
                        "fix {} by hand (abssctl never rewrites a registry it cannot read)",
                        f.layout.registry_file.display()
                    ),
                );
            }
        };
        let mut seen = HashSet::new();
        let dup: Vec<&str> = state
            .instances
            .iter()
            .filter(|e| !seen.insert(e.domain.to_ascii_lowercase()))
            .map(|e| e.domain.as_str())
            .collect();
        if !dup.is_empty() {
            return Finding::red(
                id,
                Category::State,
                format!("domain used by two instances: {}", dup.join(", ")),
                "give one of them another domain: abssctl instance set-domain NAME DOMAIN",
            );
        }
        Finding::green(
            id,
            Category::State,
            format!(
                "{} instance(s), names, ports and domains unique",
                state.instances.len()
            ),
        )
    })
}

/// What the registry says exists, exists: drop-in, vhost file and link, data dir.
fn drift(facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let (f, name) = (facts.clone(), e.name.clone());
    let id = format!("state.drift.{name}");
    let id2 = id.clone();
    Check::one(
        id,
        Category::State,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let l = &f.layout;
            let missing: Vec<String> = [
                inst::dropin_path(l, &name),
                l.vhost_file(&name),
                l.vhost_link(&name),
                l.data_dir(&name),
            ]
            .into_iter()
            .filter(|p| sys::inspect::meta(p).is_none())
            .map(|p| p.display().to_string())
            .collect();
            if missing.is_empty() {
                Finding::green(id2, Category::State, "drop-in, vhost and data dir present")
            } else {
                Finding::red(
                    id2,
                    Category::State,
                    format!(
                        "the registry has '{name}' but these are missing: {}",
                        missing.join(", ")
                    ),
                    format!(
                        "re-render what is missing: abssctl instance set-version {name} current (or restore its data from a backup)"
                    ),
                )
            }
        },
    )
}

/// The pid in "pid N (comm)".
fn holder_pid(holder: &str) -> Option<u32> {
    holder
        .strip_prefix("pid ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The port is free, or held by the unit's own main process (or a child of it).
fn port(facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let (f, name, port) = (facts.clone(), e.name.clone(), e.port);
    let id = format!("ports.{name}");
    let id2 = id.clone();
    Check::one(
        id,
        Category::Ports,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let ports = sys::net::SystemPorts::snapshot();
            if !ports.in_use(port) {
                return Finding::green(id2, Category::Ports, format!("port {port} is free"));
            }
            let unit = f.unit(&name);
            let main = unit.as_ref().map(|u| u.main_pid).filter(|p| *p != 0);
            let holder = ports.holder(port);
            let pid = holder.as_deref().and_then(holder_pid);
            let own = match (main, pid) {
                (Some(m), Some(p)) => p == m || sys::inspect::parent_pid(p) == Some(m),
                // Not root: the holder cannot be named; a running unit is taken as the holder.
                (Some(_), None) => true,
                _ => false,
            };
            if own {
                return Finding::green(
                    id2,
                    Category::Ports,
                    format!("port {port} is held by its unit"),
                );
            }
            let who = holder.unwrap_or_else(|| "another process (run as root to name it)".into());
            Finding::red(
                id2,
                Category::Ports,
                format!("port {port} of '{name}' is held by {who}, not by its unit"),
                format!(
                    "stop that process, or move the instance: abssctl instance set-port {name} PORT"
                ),
            )
        },
    )
}

/// Loaded, enabled, active when enabled, not restarting, and its drop-in what the current
/// template renders.
fn unit(facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let (f, entry) = (facts.clone(), e.clone());
    let id = format!("systemd.{}", e.name);
    let id2 = id.clone();
    Check::one(
        id,
        Category::Systemd,
        facts.timeout(EXEC_TIMEOUT),
        move || {
            let name = &entry.name;
            let c = Category::Systemd;
            let unit = Layout::unit_name(name);
            let Some(st) = f.unit(name) else {
                // The drop-in can still be compared without systemd.
                let edited = match dropin_drift(&f.layout, &entry) {
                    Ok(true) => "; its drop-in was edited by hand",
                    _ => "",
                };
                return Finding::yellow(
                    id2,
                    c,
                    format!("{unit}: systemd could not be asked{edited}"),
                    "see env.systemd",
                );
            };
            if st.load_state != "loaded" {
                let state = if st.load_state.is_empty() {
                    "unknown to systemd"
                } else {
                    st.load_state.as_str()
                };
                return Finding::red(
                    id2,
                    c,
                    format!("{unit} is {state}"),
                    "reinstall the package (it ships actual-sync@.service), then systemctl daemon-reload",
                );
            }
            let enabled = st.unit_file_state == "enabled";
            if enabled && st.active_state != "active" {
                return Finding::red(
                    id2,
                    c,
                    format!(
                        "{unit} is enabled but {} ({})",
                        st.active_state, st.sub_state
                    ),
                    format!(
                        "look at abssctl instance logs {name}, then abssctl instance start {name}"
                    ),
                );
            }
            match dropin_drift(&f.layout, &entry) {
                Ok(false) => {}
                Ok(true) => {
                    return Finding::yellow(
                        id2,
                        c,
                        format!(
                            "the drop-in of {unit} was edited by hand (it differs from what the template renders)"
                        ),
                        format!(
                            "put settings in {} instead; abssctl instance set-version {name} current renders it again",
                            f.layout.templates_dir.display()
                        ),
                    );
                }
                Err(e) => {
                    return Finding::yellow(
                        id2,
                        c,
                        format!("the drop-in of {unit} cannot be compared: {e}"),
                        "see env.runtime and state.drift",
                    );
                }
            }
            if st.n_restarts > 0 {
                return Finding::yellow(
                    id2,
                    c,
                    format!(
                        "{unit} was restarted {} time(s) after crashing",
                        st.n_restarts
                    ),
                    format!("look at abssctl instance logs {name}"),
                );
            }
            if !enabled {
                return Finding::yellow(
                    id2,
                    c,
                    format!(
                        "{unit} is {} (it will not start at boot)",
                        if st.unit_file_state.is_empty() {
                            "not enabled"
                        } else {
                            st.unit_file_state.as_str()
                        }
                    ),
                    format!("abssctl instance start {name} enables it again"),
                );
            }
            Finding::green(id2, c, format!("{unit} is enabled and {}", st.sub_state))
        },
    )
}

/// Whether the drop-in on disk differs from a fresh render (Err: it cannot be rendered).
fn dropin_drift(layout: &Layout, e: &InstanceEntry) -> Result<bool, String> {
    let path = inst::dropin_path(layout, &e.name);
    let Some(on_disk) = sys::inspect::read_text(&path) else {
        return Err(format!("{} is missing", path.display()));
    };
    let msg = |e: anyhow::Error| crate::error::classify(&e).1;
    let v = crate::ops::instance::resolve_version(layout, &e.version_binding).map_err(msg)?;
    let fresh = crate::ops::instance::render_dropin(layout, e, &v).map_err(msg)?;
    Ok(on_disk != fresh)
}

/// GET /health answers UP (connect 1 s, the whole probe 3 s, retried).
fn app(facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let (f, name, port) = (facts.clone(), e.name.clone(), e.port);
    let id = format!("app.{name}");
    let id2 = id.clone();
    let total = facts.timeout(HEALTH_TOTAL);
    // The engine's deadline a little past the probe's own budget, so the probe reports
    // its own last error rather than a bare timeout.
    Check::one(
        id,
        Category::App,
        total + Duration::from_millis(500),
        move || {
            let c = Category::App;
            let Some(st) = f.unit(&name) else {
                return Finding::yellow(
                    id2,
                    c,
                    "unknown: systemd could not be asked",
                    "see env.systemd",
                );
            };
            if st.active_state != "active" {
                return if st.unit_file_state == "enabled" {
                    Finding::red(
                        id2,
                        c,
                        format!("'{name}' is stopped although it is enabled"),
                        format!("abssctl instance start {name}"),
                    )
                } else {
                    Finding::green(id2, c, format!("'{name}' is stopped (disabled)"))
                };
            }
            let start = Instant::now();
            let mut last = String::new();
            for attempt in 0..=f.retries {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let left = total.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                match sys::http::get(port, "/health", HEALTH_CONNECT.min(left)) {
                    Ok(r) if r.status == 200 && r.body.contains("UP") => {
                        return Finding::green(id2, c, format!("GET /health on port {port}: UP"));
                    }
                    Ok(r) => last = format!("answered {}", r.status),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            Finding::red(
                id2,
                c,
                format!("'{name}' runs but GET /health on port {port} fails: {last}"),
                format!("look at abssctl instance logs {name}; abssctl instance restart {name}"),
            )
        },
    )
}

/// The vhost is enabled: its link in sites-enabled points at its file.
fn vhost(facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let (f, name) = (facts.clone(), e.name.clone());
    let id = format!("nginx.vhost.{name}");
    let id2 = id.clone();
    Check::one(
        id,
        Category::Nginx,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let (file, link) = (f.layout.vhost_file(&name), f.layout.vhost_link(&name));
            let fix = format!(
                "abssctl instance set-domain {name} DOMAIN (its domain) writes the vhost again"
            );
            if sys::inspect::meta(&file).is_none() {
                return Finding::red(
                    id2,
                    Category::Nginx,
                    format!("{} is missing", file.display()),
                    fix,
                );
            }
            let target = match sys::instdir::read_link(&link) {
                Ok(Some(t)) => t,
                _ => {
                    return Finding::red(
                        id2,
                        Category::Nginx,
                        format!(
                            "the vhost of '{name}' is not enabled ({} is not a link)",
                            link.display()
                        ),
                        fix,
                    );
                }
            };
            let resolved = if target.is_absolute() {
                target.clone()
            } else {
                link.parent().unwrap_or(Path::new("/")).join(&target)
            };
            if resolved != file
                && std::fs::canonicalize(&resolved).ok() != std::fs::canonicalize(&file).ok()
            {
                return Finding::red(
                    id2,
                    Category::Nginx,
                    format!(
                        "{} points at {}, not at {}",
                        link.display(),
                        target.display(),
                        file.display()
                    ),
                    fix,
                );
            }
            Finding::green(id2, Category::Nginx, "vhost enabled")
        },
    )
}

/// The served certificate: the same checks as `tls verify --instance` (files only: read
/// here, before the probes, since they need the command's context).
fn tls(ctx: &Ctx, facts: &Arc<Facts>, e: &InstanceEntry) -> Check {
    let id = format!("tls.{}", e.name);
    let c = Category::Tls;
    let name = e.name.clone();
    let fix_cert = format!(
        "install a valid one: abssctl tls install --instance {name} --cert FILE --key FILE (or renew it)"
    );
    let finding = match crate::ops::tls::verify(
        ctx,
        &crate::ops::tls::Target::Instance(name.clone()),
    ) {
        Err(err) => {
            let (kind, msg, _) = crate::error::classify(&err);
            if msg.contains("no certificate yet") {
                Finding::yellow(
                    &id,
                    c,
                    msg,
                    format!(
                        "abssctl instance set-domain {name} DOMAIN writes the vhost and its certificate"
                    ),
                )
            } else {
                let _ = kind;
                Finding::red(&id, c, msg, fix_cert)
            }
        }
        Ok(r) => {
            let v = &r.verdict;
            if v.expired {
                Finding::red(
                    &id,
                    c,
                    format!("{} expired {} day(s) ago", r.cert.display(), -v.days_left),
                    fix_cert,
                )
            } else if v.key_matches == Some(false) {
                Finding::red(
                    &id,
                    c,
                    format!(
                        "{} does not belong to {}",
                        r.key.display(),
                        r.cert.display()
                    ),
                    fix_cert,
                )
            } else if v.covers_domain == Some(false) {
                Finding::red(
                    &id,
                    c,
                    format!("{} does not name {}", r.cert.display(), e.domain),
                    fix_cert,
                )
            } else if !v.problems.is_empty() {
                Finding::red(&id, c, v.problems.join("; "), fix_cert)
            } else if v.days_left < 30 {
                Finding::yellow(
                    &id,
                    c,
                    format!("{} expires in {} day(s)", r.cert.display(), v.days_left),
                    fix_cert,
                )
            } else {
                Finding::green(
                    &id,
                    c,
                    format!("valid {} more day(s), covers {}", v.days_left, e.domain),
                )
            }
        }
    };
    Check::one(id, c, facts.timeout(FILE_TIMEOUT), move || finding)
}

/// `nginx -t` (never a reload).
fn nginx_config(facts: &Arc<Facts>) -> Check {
    Check::one(
        "nginx.config",
        Category::Nginx,
        facts.timeout(EXEC_TIMEOUT),
        || {
            let id = "nginx.config";
            let nginx = match sys::nginx::NginxCli::from_path() {
                Ok(n) => n,
                Err(_) => {
                    return Finding::yellow(
                        id,
                        Category::Nginx,
                        "nginx is not installed: not tested",
                        "see env.tools",
                    );
                }
            };
            match nginx.test() {
                Ok(_) => Finding::green(id, Category::Nginx, "nginx -t passes"),
                Err(e) => Finding::red(
                    id,
                    Category::Nginx,
                    crate::error::classify(&e).1,
                    "run nginx -t to see the whole report; fix the file it names (abssctl does not reload a broken configuration)",
                ),
            }
        },
    )
}

/// Some enabled site claims the default server on 443, so an unknown name never lands on
/// an instance.
fn default_server(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    Check::one(
        "nginx.default_server",
        Category::Nginx,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let id = "nginx.default_server";
            let dir = &f.layout.nginx_sites_enabled;
            let claimed = sys::inspect::names(dir)
                .into_iter()
                .filter_map(|n| sys::inspect::read_text(&dir.join(n)))
                .fold(dflt::Claimed::default(), |acc, t| acc.or(dflt::claims(&t)));
            if claimed.https_v4 || claimed.https_v6 {
                Finding::green(id, Category::Nginx, "a site claims default_server on 443")
            } else {
                Finding::yellow(
                    id,
                    Category::Nginx,
                    "no enabled site claims default_server on 443: an unknown name gets an instance's page",
                    format!(
                        "abssctl installs its catch-all ({}) with the next vhost change, e.g. abssctl instance set-domain NAME DOMAIN",
                        dflt::FILE_NAME
                    ),
                )
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_pid_reads_the_net_description() {
        assert_eq!(holder_pid("pid 42 (python3)"), Some(42));
        assert_eq!(holder_pid("nobody"), None);
    }
}
