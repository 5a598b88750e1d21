//! `abssctl firstboot`: the whole first-instance setup of a fresh appliance in one
//! idempotent, non-interactive command, for TurnKey's first-boot hook (which runs it again
//! on every `turnkey-init`) and for a package installed after first boot (its postinst
//! prints the command). Nothing new happens here: it is composed of the existing
//! operations, in the order a person would run them:
//!
//! 1. an Actual version: when none is installed, `version install X --set-current`
//!    (`latest` by default: then `instance create` installs it itself, see below); when
//!    versions are installed but `current` is missing, `current` is pointed at one;
//! 2. the instance: `instance create NAME --domain D --password-…` when it does not exist;
//!    when it exists with the domain (or HTTPS port) asked, nothing changes ("already set
//!    up"); with another one, the command refuses (exit 2) and names `instance set-domain`.
//!
//! Every check on input runs before the first change: both `--domain` and `--https-port`,
//! neither, a bad domain or name, or no password source is exit 2 with nothing changed.

use crate::domain::state::State;
use crate::domain::txn::PlannedAction;
use crate::domain::validate::{self, VersionSpec};
use crate::error::Failure;
use crate::ops::backup::safety::Offer;
use crate::ops::instance::create::{self, CreateArgs, PasswordSource};
use crate::ops::version::{self, InstallOpts};
use crate::ops::{Ctx, version_manage};
use crate::sys;
use anyhow::Result;
use serde::Serialize;

/// The instance name when `--name` is not given (the TurnKey appliance has one).
pub const DEFAULT_NAME: &str = "budget";

/// How the instance is reached: under a domain (the shared 443), or, on a box without
/// DNS, on a dedicated HTTPS port of its own (`https://<address>:P/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Domain(String),
    /// The server name is then `<name>.local` ([`https_port_domain`]): on its own port
    /// the vhost answers whatever name the browser used.
    HttpsPort(u16),
}

/// What `firstboot` was asked.
#[derive(Debug, Clone)]
pub struct FirstbootArgs {
    pub name: String,
    /// `None`: neither `--domain` nor `--https-port` (refused).
    pub reach: Option<Reach>,
    /// Both `--domain` and `--https-port` were given (refused: one way to reach it).
    pub both: bool,
    /// X.Y.Z or latest: only used when no Actual version is installed yet.
    pub version: Option<String>,
    pub password: Option<PasswordSource>,
}

/// `firstboot --json`.
#[derive(Debug, Clone, Serialize)]
pub struct FirstbootResult {
    pub name: String,
    pub domain: String,
    pub url: String,
    /// The Actual version the instance runs (or would run, on a dry run).
    pub version: String,
    /// This run installed (a dry run: would install) an Actual version.
    pub installed_version: bool,
    /// This run pointed (would point) `current` at the version.
    pub set_current: bool,
    /// This run created (would create) the instance.
    pub created: bool,
    pub changed: bool,
    pub dry_run: bool,
    pub planned_actions: Vec<PlannedAction>,
    pub warnings: Vec<String>,
}

/// The server name of an instance reached by its own HTTPS port only.
pub fn https_port_domain(name: &str) -> String {
    format!("{name}.local")
}

/// Run the setup (see the module doc).
pub fn firstboot(ctx: &mut Ctx, args: &FirstbootArgs) -> Result<FirstbootResult> {
    // 1. Input, against nothing but itself.
    if args.both {
        return Err(
            Failure::validation("give --domain or --https-port, not both")
                .hint("--domain D serves it on 443 under D; --https-port P serves it on its own port for a box without DNS")
                .into(),
        );
    }
    let Some(reach) = &args.reach else {
        return Err(
            Failure::validation("firstboot needs --domain or --https-port")
                .hint("abssctl firstboot --domain budget.example.org --password-stdin")
                .into(),
        );
    };
    let name = validate::instance_name(&args.name)?.as_str().to_string();
    sys::logging::set_instance(&name);
    let (domain, https_port) = match reach {
        Reach::Domain(d) => (validate::domain(d)?.as_str().to_string(), None),
        Reach::HttpsPort(p) => {
            crate::domain::vhost::check_https_port(*p)?;
            (https_port_domain(&name), Some(*p))
        }
    };
    let spec = match args.version.as_deref().map(validate::version).transpose()? {
        None => VersionSpec::Latest,
        Some(VersionSpec::Current) => {
            return Err(
                Failure::validation("--version current names no release to install")
                    .hint("give X.Y.Z or latest (the default)")
                    .into(),
            );
        }
        Some(s) => s,
    };

    // 2. The instance as it is: already set up, or set up differently (refused).
    let state = State::load(&ctx.layout)?;
    if let Some(existing) = state.instances.iter().find(|i| i.name == name) {
        let same = match reach {
            Reach::Domain(_) => existing.domain == domain,
            Reach::HttpsPort(p) => existing.https_port == Some(*p),
        };
        if !same {
            let (asked, has) = match reach {
                Reach::Domain(_) => (format!("domain {domain}"), existing.domain.clone()),
                Reach::HttpsPort(p) => (
                    format!("HTTPS port {p}"),
                    match existing.https_port {
                        Some(q) => format!("{} on HTTPS port {q}", existing.domain),
                        None => format!("{} without an HTTPS port of its own", existing.domain),
                    },
                ),
            };
            return Err(Failure::validation(format!(
                "instance '{name}' exists already with {has}, not {asked}"
            ))
            .hint(format!(
                "to move it: abssctl instance set-domain {name} DOMAIN; or set up another one with --name"
            ))
            .into());
        }
        let version = crate::ops::instance::resolve_version(&ctx.layout, &existing.version_binding)
            .map(|r| r.version)
            .unwrap_or_else(|_| existing.version_binding.to_string());
        return Ok(FirstbootResult {
            name,
            domain: existing.domain.clone(),
            url: crate::domain::instance::url(&existing.domain, existing.https_port),
            version,
            installed_version: false,
            set_current: false,
            created: false,
            changed: false,
            dry_run: ctx.globals.dry_run,
            planned_actions: Vec::new(),
            warnings: Vec::new(),
        });
    }

    // 3. A password before anything changes: a fresh server without one belongs to
    //    whoever reaches it first (Actual's bootstrap takes the first password it gets).
    let Some(password) = &args.password else {
        return Err(Failure::validation(format!(
            "creating '{name}' needs the server password, from --password-file or --password-stdin"
        ))
        .hint("echo \"$PASSWORD\" | abssctl firstboot --domain D --password-stdin")
        .into());
    };
    if let PasswordSource::File(p) = password {
        // Read now, so an unreadable or empty file fails before a version is installed.
        sys::secret::from_file(p)?;
    }
    ctx.require_root()?;

    // 4. The version.
    let installed = version_manage::installed(ctx)?;
    let current =
        version_manage::current(ctx)?.filter(|c| installed.iter().any(|m| &m.version == c));
    let mut planned: Vec<PlannedAction> = Vec::new();
    let mut warnings = Vec::new();
    let (mut installed_version, mut set_current) = (false, false);
    let mut chosen: Option<String> = current.clone();
    if let (Some(cur), VersionSpec::Exact(v)) = (&current, &spec)
        && &v.to_string() != cur
    {
        warnings.push(format!(
            "Actual {cur} is installed and current: --version {v} was not installed (abssctl upgrade moves instances later)"
        ));
    }
    if current.is_none() {
        let target = match (&spec, installed.first()) {
            (VersionSpec::Exact(v), _) => Some(v.to_string()),
            // Installed versions but no `current`: the newest of them, no registry needed.
            (_, Some(newest)) => Some(newest.version.clone()),
            // Nothing installed, latest: `instance create` installs it and points
            // `current` at it inside its own transaction, after it has read the password
            // (so an empty --password-stdin changes nothing) and undoes it on failure.
            (_, None) => None,
        };
        installed_version = match &target {
            Some(t) => !installed.iter().any(|m| &m.version == t),
            None => true,
        };
        set_current = true;
        if let Some(t) = &target {
            let first = ctx.op.planned.len();
            version::install(
                ctx,
                &InstallOpts {
                    version: t.clone(),
                    set_current: true,
                    include_prerelease: false,
                    offline: false,
                    // Instances bound to a missing `current` are backed up before it moves.
                    offer: Offer::Take,
                },
            )?;
            planned.extend(ctx.op.planned[first..].iter().cloned());
            chosen = Some(t.clone());
        } else {
            planned.push(PlannedAction {
                action: "version_install".into(),
                description: "install the latest Actual release (with the Node it needs) and point current at it".into(),
                irreversible: false,
            });
        }
    }

    // 5. The instance.
    let r = create::create(
        ctx,
        &CreateArgs {
            name: name.clone(),
            domain,
            port: None,
            version: None,
            https_port,
            password: Some(password.clone()),
            restored_data: None,
        },
    )?;
    // create's own install steps (the default `latest`) are in its plan already.
    if planned
        .first()
        .is_some_and(|p| p.action == "version_install")
        && !ctx.globals.dry_run
    {
        planned.clear();
    }
    planned.extend(r.planned_actions.iter().cloned());
    warnings.extend(r.warnings.iter().cloned());
    let dry_run = ctx.globals.dry_run;
    let version = match (&chosen, dry_run) {
        (Some(v), true) => v.clone(),
        (None, true) => "latest".to_string(),
        _ => r.version.clone(),
    };
    Ok(FirstbootResult {
        name,
        domain: r.domain,
        url: r.url,
        version,
        installed_version,
        set_current,
        // A dry run would create it; a real one did, unless it appeared meanwhile as asked.
        created: dry_run || r.changed,
        changed: !dry_run && (r.changed || installed_version || set_current),
        dry_run,
        planned_actions: planned,
        warnings,
    })
}
