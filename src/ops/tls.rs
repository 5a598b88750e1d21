//! `abssctl tls ...`: check certificates, give an instance its own, send it back to the
//! system one, and show what every instance serves. The facts come from `domain::tls`, the
//! files from `sys::tls`; the vhost goes through the same tested, undoable step as every
//! instance command (`ops::vhost`). Key material is read, never printed or logged.

use crate::domain::state::{InstanceEntry, State, TlsSource as StateTls};
use crate::domain::tls::{self as facts, CertInfo, Inputs, Verdict};
use crate::domain::txn::{self, Plan, PlannedAction};
use crate::domain::validate::{self, Domain};
use crate::domain::vhost::{TlsKind, TlsSource};
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::{self, LazyNginx, Locks};
use crate::ops::vhost::{self, ChosenTls, Fallback, Providers, VhostRequest};
use crate::sys;
use crate::sys::systemd::LazySystemd;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// What `tls verify` checks: an instance's served pair, or files given.
#[derive(Debug, Clone)]
pub enum Target {
    Instance(String),
    Files {
        cert: PathBuf,
        key: PathBuf,
        chain: Option<PathBuf>,
        domain: Option<String>,
    },
}

/// The result of `tls verify` (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub instance: Option<String>,
    /// custom | lets_encrypt | system (instances only).
    pub source: Option<TlsKind>,
    pub fallback: Option<Fallback>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: Option<PathBuf>,
    pub ok: bool,
    #[serde(flatten)]
    pub verdict: Verdict,
}

fn domain_of(e: &InstanceEntry) -> Result<Domain> {
    Ok(validate::domain(&e.domain)?)
}

fn custom_of(e: &InstanceEntry) -> Option<(&Path, &Path)> {
    match (&e.tls_cert, &e.tls_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    }
}

/// Read and check a pair (and chain) at `now`.
fn check_files(
    cert: &Path,
    key: &Path,
    chain: Option<&Path>,
    domain: Option<&str>,
) -> Result<Verdict> {
    let c = sys::tls::read(cert)?;
    let k = sys::tls::read(key)?;
    let ch = chain.map(sys::tls::read).transpose()?;
    Ok(facts::verify(
        Inputs {
            cert: &c,
            key: Some(&k),
            chain: ch.as_deref(),
            domain,
        },
        OffsetDateTime::now_utc(),
    )?)
}

/// `tls verify`: read-only. Files that do not parse or keys that cannot be checked fail
/// with exit 2, unreadable files with 3; a verdict with problems is shown and exits 2.
pub fn verify(ctx: &Ctx, target: &Target) -> Result<VerifyResult> {
    match target {
        Target::Files {
            cert,
            key,
            chain,
            domain,
        } => {
            let domain = domain.as_deref().map(validate::domain).transpose()?;
            let verdict = check_files(
                cert,
                key,
                chain.as_deref(),
                domain.as_ref().map(Domain::as_str),
            )?;
            Ok(VerifyResult {
                instance: None,
                source: None,
                fallback: None,
                cert: cert.clone(),
                key: key.clone(),
                chain: chain.clone(),
                ok: verdict.ok(),
                verdict,
            })
        }
        Target::Instance(name) => {
            let name = validate::instance_name(name)?;
            let state = State::load(&ctx.layout)?;
            let e = instance::find(&state, name.as_str())?;
            let domain = domain_of(e)?;
            let chosen = vhost::choose_tls(ctx, &domain, custom_of(e))?;
            if chosen.generate {
                return Err(Failure::environment(format!(
                    "'{}' has no certificate yet: the self-signed fallback is made when its vhost is written",
                    e.name
                ))
                .hint("install one: abssctl tls install --instance NAME --cert FILE --key FILE")
                .into());
            }
            let verdict = check_files(
                &chosen.source.cert,
                &chosen.source.key,
                None,
                Some(domain.as_str()),
            )?;
            Ok(VerifyResult {
                instance: Some(e.name.clone()),
                source: Some(chosen.source.kind),
                fallback: chosen.fallback,
                cert: chosen.source.cert,
                key: chosen.source.key,
                chain: None,
                ok: verdict.ok(),
                verdict,
            })
        }
    }
}

/// The result of `tls install` / `tls use-system` (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ChangeResult {
    pub instance: String,
    pub domain: String,
    pub source: TlsKind,
    pub fallback: Option<Fallback>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate now served (install only).
    pub certificate: Option<CertInfo>,
    pub days_left: Option<i64>,
    pub changed: bool,
    pub dry_run: bool,
    /// Timestamped copies of the files an install replaced (`<file>.bak-<UTC time>`).
    pub backups: Vec<PathBuf>,
    pub planned_actions: Vec<PlannedAction>,
}

/// UTC time as it ends backup names: 20261203T142707Z (the support bundle's name too).
pub(crate) fn stamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The files to install, from what was given.
pub struct InstallArgs {
    pub instance: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: Option<PathBuf>,
}

impl std::fmt::Debug for InstallArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallArgs")
            .field("instance", &self.instance)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// `tls install`: check the pair against the instance's domain (nothing changes unless it
/// is good), ask, then one transaction: the files (previous ones kept with a timestamp),
/// the registry, the vhost (nginx -t before the reload); a failure puts all of it back.
pub fn install(ctx: &mut Ctx, args: &InstallArgs) -> Result<ChangeResult> {
    let sd = LazySystemd::new();
    let nginx = LazyNginx::default();
    install_with(
        ctx,
        args,
        Providers {
            systemd: &sd,
            nginx: &nginx,
        },
    )
}

/// [`install`] with the machine's nginx and systemd given (tests pass their own).
pub fn install_with(
    ctx: &mut Ctx,
    args: &InstallArgs,
    prov: Providers<'_>,
) -> Result<ChangeResult> {
    let name = instance::check(ctx, &args.instance)?;
    let state = State::load(&ctx.layout)?;
    let e = instance::find(&state, name.as_str())?.clone();
    let domain = domain_of(&e)?;
    let cert = sys::tls::read(&args.cert)?;
    let key = sys::tls::read(&args.key)?;
    let chain = args.chain.as_deref().map(sys::tls::read).transpose()?;
    let now = OffsetDateTime::now_utc();
    let verdict = facts::verify(
        Inputs {
            cert: &cert,
            key: Some(&key),
            chain: chain.as_deref(),
            domain: Some(domain.as_str()),
        },
        now,
    )?;
    if !verdict.ok() {
        return Err(Failure::validation(format!(
            "not installing this certificate for '{}': {}",
            e.name,
            verdict.problems.join("; ")
        ))
        .hint("check it with: abssctl tls verify --cert FILE --key FILE --domain DOMAIN")
        .into());
    }
    let dir = facts::instance_dir(&ctx.layout, &e.name);
    let fullchain_path = dir.join(facts::FULLCHAIN_FILE);
    let key_path = dir.join(facts::KEY_FILE);
    let overwrites = sys::tls::is_readable_file(&fullchain_path) || e.tls_cert.is_some();
    instance::lifecycle::confirm(
        ctx,
        &format!(
            "serve '{}' ({}) with the certificate for {} (expires {}){}?",
            e.name,
            e.domain,
            verdict.certificate.names.join(", "),
            facts::rfc3339(verdict.certificate.not_after),
            if overwrites {
                ", replacing its current one (kept as a timestamped copy)"
            } else {
                ""
            }
        ),
        "tls install",
    )?;
    let (name, locks): (_, Locks) = instance::begin(ctx, name.as_str())?;
    let before = State::load(&ctx.layout)?;
    let old = instance::find(&before, name.as_str())?.clone();
    let mut new = old.clone();
    new.tls_source = Some(StateTls::Custom);
    new.tls_cert = Some(fullchain_path.clone());
    new.tls_key = Some(key_path.clone());
    let mut files = vec![
        sys::tls::NewFile {
            path: key_path.clone(),
            bytes: key,
            mode: sys::tls::KEY_MODE,
        },
        sys::tls::NewFile {
            path: fullchain_path.clone(),
            bytes: facts::fullchain(&cert, chain.as_deref()),
            mode: sys::tls::CERT_MODE,
        },
        sys::tls::NewFile {
            path: dir.join(facts::CERT_FILE),
            bytes: cert,
            mode: sys::tls::CERT_MODE,
        },
    ];
    if let Some(c) = chain {
        files.push(sys::tls::NewFile {
            path: dir.join(facts::CHAIN_FILE),
            bytes: c,
            mode: sys::tls::CERT_MODE,
        });
    }
    let chosen = ChosenTls {
        source: TlsSource {
            kind: TlsKind::Custom,
            cert: fullchain_path.clone(),
            key: key_path.clone(),
        },
        fallback: None,
        generate: false,
    };
    let backups = std::cell::RefCell::new(Vec::new());
    let placed_any = std::cell::Cell::new(false);
    let registry_changes = new != old;
    let files = Files {
        files,
        dir,
        stamp: stamp(now),
        backups: &backups,
        placed_any: &placed_any,
    };
    let summary = finish(
        ctx,
        &before,
        &locks,
        (old, new),
        Some(&chosen),
        Some(files),
        prov,
    )?;
    Ok(ChangeResult {
        certificate: Some(verdict.certificate),
        days_left: Some(verdict.days_left),
        backups: backups.into_inner(),
        // The same files again for an instance already set to them: nothing changed (the
        // vhost step was a no-op too, as it renders from the same paths).
        changed: summary.changed && (registry_changes || placed_any.get()),
        ..summary
    })
}

/// The files step of an install: what to write, and where the copies of replaced files are
/// reported.
struct Files<'c> {
    files: Vec<sys::tls::NewFile>,
    dir: PathBuf,
    stamp: String,
    backups: &'c std::cell::RefCell<Vec<PathBuf>>,
    placed_any: &'c std::cell::Cell<bool>,
}

/// Step: put the instance's files in place; the undo puts the previous ones back.
fn step_files<'a>(plan: &mut Plan<'a>, f: Files<'a>) {
    let Files {
        files,
        dir,
        stamp,
        backups,
        placed_any,
    } = f;
    plan.step(
        "tls_files",
        format!(
            "write {} (key 0600, certificates 0644, root only), keeping replaced files as <file>.bak-{stamp}",
            dir.display()
        ),
        move || {
            let placed = sys::tls::place(&files, &stamp)?;
            backups
                .borrow_mut()
                .extend(placed.iter().filter_map(|p| match p {
                    sys::tls::Placed::Replaced { backup, .. } => Some(backup.clone()),
                    sys::tls::Placed::Created(_) => None,
                }));
            if placed.is_empty() {
                return txn::no_undo();
            }
            placed_any.set(true);
            txn::undo(move || sys::tls::unplace(&placed))
        },
    );
}

/// `tls use-system`: the instance forgets its own certificate and goes back to the
/// automatic choice (a certbot certificate for its domain if there is one, else the system
/// certificate, which on TurnKey follows its Let's Encrypt renewals). The files stay where
/// `tls install` put them.
pub fn use_system(ctx: &mut Ctx, name: &str) -> Result<ChangeResult> {
    let sd = LazySystemd::new();
    let nginx = LazyNginx::default();
    use_system_with(
        ctx,
        name,
        Providers {
            systemd: &sd,
            nginx: &nginx,
        },
    )
}

/// [`use_system`] with the machine's nginx and systemd given.
pub fn use_system_with(ctx: &mut Ctx, name: &str, prov: Providers<'_>) -> Result<ChangeResult> {
    let (name, locks): (_, Locks) = instance::begin(ctx, name)?;
    let before = State::load(&ctx.layout)?;
    let old = instance::find(&before, name.as_str())?.clone();
    if old.tls_cert.is_none() && old.tls_key.is_none() {
        // Nothing of its own to forget: nothing to do (idempotent).
        let chosen = vhost::choose_tls(ctx, &domain_of(&old)?, None)?;
        return Ok(ChangeResult {
            instance: old.name.clone(),
            domain: old.domain.clone(),
            source: chosen.source.kind,
            fallback: chosen.fallback,
            cert: chosen.source.cert,
            key: chosen.source.key,
            certificate: None,
            days_left: None,
            changed: false,
            dry_run: ctx.globals.dry_run,
            backups: Vec::new(),
            planned_actions: Vec::new(),
        });
    }
    let mut new = old.clone();
    new.tls_cert = None;
    new.tls_key = None;
    let chosen = vhost::choose_tls(ctx, &domain_of(&old)?, None)?;
    new.tls_source = Some(match chosen.source.kind {
        TlsKind::LetsEncrypt => StateTls::Letsencrypt,
        _ => StateTls::System,
    });
    finish(ctx, &before, &locks, (old, new), None, None, prov)
}

/// The steps shared by install and use-system (files, registry, vhost), then the run.
fn finish(
    ctx: &mut Ctx,
    before: &State,
    locks: &Locks,
    (old, mut new): (InstanceEntry, InstanceEntry),
    chosen: Option<&ChosenTls>,
    files: Option<Files<'_>>,
    prov: Providers<'_>,
) -> Result<ChangeResult> {
    let layout = ctx.layout.clone();
    let registry_changes = new != old;
    let mut after = before.clone();
    if registry_changes {
        new.last_changed = OffsetDateTime::now_utc();
        if let Some(slot) = after.instances.iter_mut().find(|i| i.name == old.name) {
            *slot = new.clone();
        }
    }
    let req = VhostRequest {
        name: validate::instance_name(&old.name)?,
        domain: domain_of(&new)?,
        port: new.port,
        https_port: new.https_port,
        custom_tls: custom_of(&new).map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
    };
    let mut plan = Plan::new();
    if let Some(f) = files {
        step_files(&mut plan, f);
    }
    if registry_changes {
        instance::step_save_state(
            &mut plan,
            &layout,
            locks,
            before,
            &after,
            format!("record the TLS source of '{}'", old.name),
        );
    }
    let summary = match chosen {
        Some(c) => vhost::plan_apply_with(ctx, &req, c, prov, &mut plan)?,
        None => vhost::plan_apply(ctx, &req, prov, &mut plan)?,
    };
    let planned = plan.planned_actions();
    ctx.record_plan(planned.clone());
    let dry_run = ctx.globals.dry_run;
    plan.run(dry_run)?;
    Ok(ChangeResult {
        instance: old.name.clone(),
        domain: new.domain.clone(),
        source: summary.tls.kind,
        fallback: summary.tls_fallback,
        cert: summary.tls.cert,
        key: summary.tls.key,
        certificate: None,
        days_left: None,
        changed: !dry_run && !planned.is_empty(),
        dry_run,
        backups: Vec::new(),
        planned_actions: planned,
    })
}

/// One instance in `tls status` (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceTls {
    pub instance: String,
    pub domain: String,
    /// custom | lets_encrypt | system; absent when no source is usable.
    pub source: Option<TlsKind>,
    pub fallback: Option<Fallback>,
    pub cert: Option<PathBuf>,
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<i64>,
    pub expired: Option<bool>,
    pub covers_domain: Option<bool>,
    /// Why the facts above are missing (an unreadable file, no certificate yet).
    pub error: Option<String>,
}

/// `tls status` (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusResult {
    pub instances: Vec<InstanceTls>,
}

/// `tls status`: read-only, no lock; the certificate file is read (as any user: a root-only
/// one is reported as unreadable), never the key.
pub fn status(ctx: &Ctx) -> Result<StatusResult> {
    let state = State::load(&ctx.layout)?;
    let now = OffsetDateTime::now_utc();
    let instances = state
        .instances
        .iter()
        .map(|e| one_status(ctx, e, now))
        .collect();
    Ok(StatusResult { instances })
}

fn one_status(ctx: &Ctx, e: &InstanceEntry, now: OffsetDateTime) -> InstanceTls {
    let mut out = InstanceTls {
        instance: e.name.clone(),
        domain: e.domain.clone(),
        source: None,
        fallback: None,
        cert: None,
        names: Vec::new(),
        not_after: None,
        days_left: None,
        expired: None,
        covers_domain: None,
        error: None,
    };
    let chosen = match domain_of(e).and_then(|d| vhost::choose_tls(ctx, &d, custom_of(e))) {
        Ok(c) => c,
        Err(err) => {
            out.error = Some(crate::error::classify(&err).1);
            return out;
        }
    };
    out.source = Some(chosen.source.kind);
    out.fallback = chosen.fallback;
    out.cert = Some(chosen.source.cert.clone());
    if chosen.generate {
        out.error = Some(
            "no certificate yet (the self-signed fallback is made when the vhost is written)"
                .into(),
        );
        return out;
    }
    let parsed = sys::tls::read(&chosen.source.cert)
        .and_then(|b| Ok(facts::parse_certs(&b, "certificate")?));
    match parsed {
        Ok(certs) => {
            if let Some(leaf) = certs.into_iter().next() {
                out.covers_domain = Some(facts::names_cover(&leaf.names, &e.domain));
                out.days_left = Some(leaf.days_left(now));
                out.expired = Some(leaf.expired(now));
                out.not_after = Some(leaf.not_after);
                out.names = leaf.names;
            }
        }
        Err(err) => out.error = Some(crate::error::classify(&err).1),
    }
    out
}
