//! Probes of the machine abssctl runs on: its tools, systemd, the Node runtime of each
//! installed version, the configuration file, and the last update check.

use super::{Check, EXEC_TIMEOUT, FILE_TIMEOUT, Facts};
use crate::domain::doctor::{Category, Finding};
use crate::domain::versions::NodeRange;
use crate::ops::Ctx;
use crate::sys;
use std::sync::Arc;

/// The programs abssctl needs: nginx serves every instance, tar is a dependency of the
/// package (an operator unpacks a backup with it). zstd is only recommended (abssctl
/// compresses through a library; restoring by hand needs the tool): missing is yellow.
pub const TOOLS: [&str; 2] = ["tar", "nginx"];
pub const RECOMMENDED: [&str; 1] = ["zstd"];

pub fn checks(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let mut v = vec![
        Check::one(
            "env.tools",
            Category::Env,
            facts.timeout(FILE_TIMEOUT),
            tools,
        ),
        systemd(facts),
    ];
    v.extend(runtimes(ctx, facts));
    v.push(config(ctx, facts));
    v.push(updates(ctx, facts));
    v
}

fn tools() -> Finding {
    let missing = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|t| sys::inspect::which(t).is_none())
            .collect()
    };
    let (needed, wanted) = (missing(&TOOLS), missing(&RECOMMENDED));
    if !needed.is_empty() {
        let all: Vec<&str> = needed.iter().chain(&wanted).copied().collect();
        return Finding::red(
            "env.tools",
            Category::Env,
            format!("not on PATH: {}", all.join(", ")),
            format!("install them: apt install {}", all.join(" ")),
        );
    }
    if !wanted.is_empty() {
        return Finding::yellow(
            "env.tools",
            Category::Env,
            format!(
                "not on PATH: {} (needed to unpack a backup by hand)",
                wanted.join(", ")
            ),
            format!("apt install {}", wanted.join(" ")),
        );
    }
    Finding::green(
        "env.tools",
        Category::Env,
        "tar, zstd and nginx are installed",
    )
}

/// The answer was read before the probes (`Facts::live`); this reports it.
fn systemd(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    Check::one(
        "env.systemd",
        Category::Env,
        FILE_TIMEOUT,
        move || match &f.live {
            Ok(_) => Finding::green(
                "env.systemd",
                Category::Env,
                "systemd answers on the system bus",
            ),
            Err(e) => Finding::red(
                "env.systemd",
                Category::Env,
                format!("systemd cannot be asked: {e}"),
                "abssctl needs systemd on the system bus: check `systemctl is-system-running` and the D-Bus socket",
            ),
        },
    )
}

/// `env.runtime.<version>`: the node binary each installed version was built for is there,
/// runs, is the version the build recorded (the tree is bound to its ABI), and satisfies
/// the version's `engines.node` range.
fn runtimes(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let installed = match crate::ops::version_manage::installed(ctx) {
        Ok(m) => m,
        Err(e) => {
            let msg = crate::error::classify(&e).1;
            return vec![Check::one(
                "env.runtime",
                Category::Env,
                FILE_TIMEOUT,
                move || {
                    Finding::red(
                        "env.runtime",
                        Category::Env,
                        format!("the installed versions cannot be read: {msg}"),
                        "abssctl version list shows the broken manifest",
                    )
                },
            )];
        }
    };
    installed
        .into_iter()
        .map(|m| {
            let id = format!("env.runtime.{}", m.version);
            let id2 = id.clone();
            Check::one(id, Category::Env, facts.timeout(EXEC_TIMEOUT), move || {
                let node = m.runtime.node.clone();
                let reinstall = format!(
                    "reinstall it: abssctl version install {} (its runtime comes with it)",
                    m.version
                );
                let Some(found) = sys::build::node_version(&node) else {
                    return Finding::red(
                        id2,
                        Category::Env,
                        format!(
                            "Actual {}: its Node runtime {} does not run",
                            m.version,
                            node.display()
                        ),
                        reinstall,
                    );
                };
                if found.to_string() != m.runtime.version {
                    return Finding::red(
                        id2,
                        Category::Env,
                        format!(
                            "Actual {} was built for Node {}, {} is Node {found}",
                            m.version,
                            m.runtime.version,
                            node.display()
                        ),
                        reinstall,
                    );
                }
                if let Some(range) = &m.engines_node
                    && let Ok(r) = NodeRange::parse(range)
                    && !r.matches(&found)
                {
                    return Finding::red(
                        id2,
                        Category::Env,
                        format!(
                            "Actual {} needs Node {range}, its runtime is {found}",
                            m.version
                        ),
                        reinstall,
                    );
                }
                Finding::green(
                    id2,
                    Category::Env,
                    format!("Actual {} runs on Node {found}", m.version),
                )
            })
        })
        .collect()
}

/// The configuration: broken (the command runs on the defaults, see `ops::load_context`:
/// red, with the file's own error), absent (defaults; worth writing down so an operator can
/// find the settings) or parsed.
fn config(ctx: &Ctx, facts: &Arc<Facts>) -> Check {
    let path = ctx.layout.config_file.clone();
    let broken = ctx.resolved.file.error.clone();
    Check::one(
        "config.parse",
        Category::Config,
        facts.timeout(FILE_TIMEOUT),
        move || {
            if let Some(why) = broken {
                Finding::red(
                    "config.parse",
                    Category::Config,
                    format!("{} does not load: {why}", path.display()),
                    "correct what the message names (abssctl config show checks it); until then every other command refuses to run",
                )
            } else if sys::instdir::exists(&path) {
                Finding::green(
                    "config.parse",
                    Category::Config,
                    format!("{} parses", path.display()),
                )
            } else {
                Finding::yellow(
                    "config.parse",
                    Category::Config,
                    format!("no {} (the defaults are in use)", path.display()),
                    "abssctl doctor --fix writes the default file (every setting commented)",
                )
            }
        },
    )
}

/// The last recorded update check (never the network).
fn updates(ctx: &Ctx, facts: &Arc<Facts>) -> Check {
    let record = crate::ops::updates::read_record(ctx);
    let newest = crate::ops::version_manage::installed(ctx)
        .ok()
        .and_then(|m| m.into_iter().next())
        .map(|m| m.version);
    Check::one(
        "updates",
        Category::Updates,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let Some(r) = record else {
                return Finding::green(
                    "updates",
                    Category::Updates,
                    "no update check recorded yet",
                );
            };
            match r.update_for(newest.as_deref()) {
                Some(v) => Finding::yellow(
                    "updates",
                    Category::Updates,
                    format!(
                        "Actual {v} is available (installed: {})",
                        newest.as_deref().unwrap_or("none")
                    ),
                    format!("abssctl version install {v}, then abssctl upgrade"),
                ),
                None => Finding::green("updates", Category::Updates, "no newer Actual release"),
            }
        },
    )
}
