//! `abssctl tls ...`: verify a certificate, install an instance's own, go back to the
//! system one, and show what each instance serves. Facts only: no PEM body is ever shown.

use crate::cli::Report;
use crate::cli::output::table;
use crate::domain::tls::rfc3339;
use crate::domain::txn::PlannedAction;
use crate::error::Kind;
use crate::ops::tls::{self, InstallArgs, Target};
use crate::ops::{self, Ctx};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Check a certificate: the key belongs to it, it has not expired (days left), its
    /// names cover the domain, the chain parses. Exit 2 when something is wrong.
    Verify(VerifyArgs),
    /// Serve an instance with its own certificate (copied root-only; replaced files kept
    /// with a timestamp; nginx -t before the reload). Asks first unless --yes.
    Install {
        /// The instance.
        #[arg(long, value_name = "NAME")]
        instance: String,
        /// The certificate (PEM; may already hold the chain after it).
        #[arg(long, value_name = "PATH")]
        cert: PathBuf,
        /// Its private key (PEM, unencrypted).
        #[arg(long, value_name = "PATH")]
        key: PathBuf,
        /// Intermediate certificates (PEM), served after the certificate.
        #[arg(long, value_name = "PATH")]
        chain: Option<PathBuf>,
    },
    /// Forget an instance's own certificate: back to the Let's Encrypt certificate for
    /// its domain if there is one, else the system (TurnKey) certificate.
    UseSystem {
        /// The instance.
        #[arg(long, value_name = "NAME")]
        instance: String,
    },
    /// Certificate source, names and expiry of every instance.
    Status,
}

/// `tls verify`: an instance, or files.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate and key this instance serves.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cert", "key", "chain", "domain"], required_unless_present = "cert")]
    instance: Option<String>,
    /// A certificate file (PEM).
    #[arg(long, value_name = "PATH", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PATH", requires = "cert")]
    key: Option<PathBuf>,
    /// Intermediate certificates (PEM).
    #[arg(long, value_name = "PATH", requires = "cert")]
    chain: Option<PathBuf>,
    /// Check that the certificate's names cover this domain.
    #[arg(long, value_name = "DOMAIN", requires = "cert")]
    domain: Option<String>,
}

impl TlsCmd {
    pub fn name(&self) -> &'static str {
        match self {
            TlsCmd::Verify(_) => "verify",
            TlsCmd::Install { .. } => "install",
            TlsCmd::UseSystem { .. } => "use-system",
            TlsCmd::Status => "status",
        }
    }
}

fn plan_text(planned: &[PlannedAction]) -> String {
    let steps: Vec<String> = planned
        .iter()
        .map(|p| format!("  - {}", p.description))
        .collect();
    format!("dry run, would:\n{}", steps.join("\n"))
}

fn verify_text(r: &tls::VerifyResult) -> String {
    let v = &r.verdict;
    let mut lines = Vec::new();
    if let Some(i) = &r.instance {
        let source = r.source.map_or("?", |k| k.as_str());
        lines.push(format!("instance: {i} (TLS: {source})"));
        if let Some(f) = r.fallback {
            lines.push(format!("note:     {}", f.describe()));
        }
    }
    lines.push(format!("cert:     {}", r.cert.display()));
    lines.push(format!("key:      {}", r.key.display()));
    lines.push(format!("names:    {}", v.certificate.names.join(", ")));
    lines.push(format!("issuer:   {}", v.certificate.issuer));
    lines.push(format!(
        "expires:  {} ({} days left)",
        rfc3339(v.certificate.not_after),
        v.days_left
    ));
    if let Some(kt) = v.key_type {
        let m = if v.key_matches == Some(true) {
            "matches"
        } else {
            "DOES NOT match"
        };
        lines.push(format!("key type: {} ({m} the certificate)", kt.as_str()));
    }
    if let (Some(d), Some(c)) = (&v.domain, v.covers_domain) {
        lines.push(format!(
            "domain:   {d} ({})",
            if c { "covered" } else { "NOT covered" }
        ));
    }
    if !v.chain.is_empty() {
        lines.push(format!("chain:    {} certificate(s)", v.chain.len()));
    }
    for w in &v.warnings {
        lines.push(format!("warning:  {w}"));
    }
    for p in &v.problems {
        lines.push(format!("problem:  {p}"));
    }
    lines.push(if r.ok { "ok".into() } else { "NOT OK".into() });
    lines.join("\n")
}

fn change_text(r: &tls::ChangeResult, what: &str) -> String {
    if r.dry_run {
        return plan_text(&r.planned_actions);
    }
    if !r.changed {
        return format!(
            "'{}' already serves {} ({})",
            r.instance,
            r.cert.display(),
            r.source.as_str()
        );
    }
    let mut s = format!("'{}' now serves {} ({what})", r.instance, r.cert.display());
    if let (Some(c), Some(d)) = (&r.certificate, r.days_left) {
        s.push_str(&format!(
            "\nnames {}, expires {} ({d} days left)",
            c.names.join(", "),
            rfc3339(c.not_after)
        ));
    }
    for b in &r.backups {
        s.push_str(&format!("\nprevious file kept as {}", b.display()));
    }
    if let Some(f) = r.fallback {
        s.push_str(&format!("\nnote: {}", f.describe()));
    }
    s
}

pub fn run(ctx: &mut Ctx, cmd: &TlsCmd) -> anyhow::Result<Report> {
    match cmd {
        TlsCmd::Verify(a) => {
            let target = match (&a.instance, &a.cert, &a.key) {
                (Some(i), _, _) => Target::Instance(i.clone()),
                (None, Some(cert), Some(key)) => Target::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    chain: a.chain.clone(),
                    domain: a.domain.clone(),
                },
                _ => {
                    return Err(crate::error::Failure::validation(
                        "say what to verify: --instance NAME, or --cert FILE --key FILE",
                    )
                    .hint("abssctl tls verify --help")
                    .into());
                }
            };
            let r = tls::verify(ctx, &target)?;
            let report = Report::new(&r, verify_text(&r))?;
            Ok(match r.verdict.problems.first() {
                Some(p) => report.failed(Kind::Validation, p.clone(), None),
                None => report,
            })
        }
        TlsCmd::Install {
            instance,
            cert,
            key,
            chain,
        } => {
            let r = tls::install(
                ctx,
                &InstallArgs {
                    instance: instance.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                    chain: chain.clone(),
                },
            )?;
            let human = change_text(&r, "its own certificate");
            Ok(Report::new(&r, human)?.changed(r.changed))
        }
        TlsCmd::UseSystem { instance } => {
            let r = tls::use_system(ctx, instance)?;
            let human = change_text(&r, r.source.as_str());
            Ok(Report::new(&r, human)?.changed(r.changed))
        }
        TlsCmd::Status => {
            let s = ops::tls::status(ctx)?;
            let human = if s.instances.is_empty() {
                "no instances".to_string()
            } else {
                let rows: Vec<Vec<String>> = s
                    .instances
                    .iter()
                    .map(|i| {
                        let source = match (i.source, i.fallback) {
                            (Some(k), Some(f)) => format!(
                                "{} ({})",
                                k.as_str(),
                                match f {
                                    ops::vhost::Fallback::Snakeoil => "snakeoil fallback",
                                    ops::vhost::Fallback::SelfSigned => "self-signed fallback",
                                }
                            ),
                            (Some(k), None) => k.as_str().to_string(),
                            (None, _) => "none".into(),
                        };
                        let expiry = match (i.not_after, i.days_left) {
                            (Some(t), Some(d)) if d < 0 => format!("{} (EXPIRED)", rfc3339(t)),
                            (Some(t), Some(d)) => format!("{} ({d} days)", rfc3339(t)),
                            _ => i.error.clone().unwrap_or_else(|| "-".into()),
                        };
                        let names = match i.covers_domain {
                            Some(false) => format!("{} (NOT {})", i.names.join(","), i.domain),
                            _ => i.names.join(","),
                        };
                        vec![i.instance.clone(), i.domain.clone(), source, names, expiry]
                    })
                    .collect();
                table(&["INSTANCE", "DOMAIN", "SOURCE", "NAMES", "EXPIRES"], &rows)
            };
            Report::new(&s, human)
        }
    }
}
