//! `abssctl firstboot`: the first instance of a fresh box in one idempotent command (what
//! TurnKey's first-boot hook runs; see docs/turnkey.md).

use crate::cli::Report;
use crate::ops::Ctx;
use crate::ops::firstboot::{self, FirstbootArgs, FirstbootResult, Reach};
use crate::ops::instance::create::PasswordSource;
use clap::Args;

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct FirstbootCli {
    /// Domain the instance is served under on 443 (nginx server_name).
    #[arg(long, visible_alias = "fqdn")]
    pub domain: Option<String>,
    /// Instead of a domain: serve it on this HTTPS port of its own
    /// (https://<address>:P/, for a box without DNS; server name <name>.local).
    #[arg(long)]
    pub https_port: Option<u16>,
    /// The server password, from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<crate::cli::SecretPath>,
    /// The server password, from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Instance name.
    #[arg(long, default_value = firstboot::DEFAULT_NAME)]
    pub name: String,
    /// The Actual version to install when none is installed yet (X.Y.Z or latest).
    #[arg(long, value_name = "X.Y.Z|latest")]
    pub version: Option<String>,
}

fn human(r: &FirstbootResult) -> String {
    if !r.created && !r.dry_run {
        return format!(
            "'{}' is already set up: {} (Actual {}); nothing changed",
            r.name, r.url, r.version
        );
    }
    if !r.created {
        return format!("'{}' is already set up: {}; nothing to do", r.name, r.url);
    }
    let mut s = if r.dry_run {
        let steps: Vec<String> = r
            .planned_actions
            .iter()
            .map(|p| format!("  - {}", p.description))
            .collect();
        format!("dry run, would:\n{}", steps.join("\n"))
    } else {
        let mut s = format!("set up '{}': Actual {} at {}", r.name, r.version, r.url);
        if r.installed_version {
            s.push_str(&format!(
                "\ninstalled Actual {} and made it current",
                r.version
            ));
        } else if r.set_current {
            s.push_str(&format!("\ncurrent now points to Actual {}", r.version));
        }
        s.push_str("\nserver password set");
        s
    };
    for w in &r.warnings {
        s.push_str(&format!("\nwarning: {w}"));
    }
    s
}

pub fn run(ctx: &mut Ctx, c: &FirstbootCli) -> anyhow::Result<Report> {
    let args = FirstbootArgs {
        name: c.name.clone(),
        reach: match (&c.domain, c.https_port) {
            (Some(d), _) => Some(Reach::Domain(d.clone())),
            (None, Some(p)) => Some(Reach::HttpsPort(p)),
            (None, None) => None,
        },
        both: c.domain.is_some() && c.https_port.is_some(),
        version: c.version.clone(),
        password: match (&c.password_file, c.password_stdin) {
            (Some(f), _) => Some(PasswordSource::File(f.0.clone())),
            (None, true) => Some(PasswordSource::Stdin),
            (None, false) => None,
        },
    };
    let r = firstboot::firstboot(ctx, &args)?;
    let text = human(&r);
    Ok(Report::new(&r, text)?.changed(r.changed))
}
