//! The nginx vhost of an instance as transaction steps. Instance commands (create,
//! set-domain, set-port, rename, delete, …) call these inside their own plan, after taking
//! their locks; everything that can be wrong with the input (template, TLS files, https
//! port) is found here, at plan time, before any step runs.
//!
//! Two machine-wide pieces ride along with the vhost step, so they are tested and undone
//! with it: the certificate fallback on a box without the system certificate (Debian's
//! snakeoil pair, else a self-signed one made for the domain), and the catch-all default
//! server (`domain::default_server`) when no enabled site claims the default on 443.

use crate::domain::default_server as dflt;
use crate::domain::tls as tlsfacts;
use crate::domain::txn::{self, Plan};
use crate::domain::validate::{Domain, InstanceName};
use crate::domain::vhost::{self, Http2Syntax, TlsSource, VhostSpec};
use crate::ops::Ctx;
use crate::sys;
use crate::sys::nginx::{ConfigTest, VhostPaths};
use crate::sys::systemd::Systemd;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the vhost of an instance should be.
#[derive(Debug, Clone)]
pub struct VhostRequest {
    pub name: InstanceName,
    pub domain: Domain,
    /// The instance's loopback port.
    pub port: u16,
    /// `--https-port P`: an extra TLS listener for this instance alone (no DNS needed).
    pub https_port: Option<u16>,
    /// The instance's own certificate and key, when the operator set them.
    pub custom_tls: Option<(PathBuf, PathBuf)>,
}

/// The machine's nginx and systemd, as the steps use them.
#[derive(Clone, Copy)]
pub struct Providers<'a> {
    pub systemd: &'a dyn Systemd,
    pub nginx: &'a dyn ConfigTest,
}

impl std::fmt::Debug for Providers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers")
    }
}

/// What the vhost will be, for `instance show/create --json` and the human report.
#[derive(Debug, Clone, Serialize)]
pub struct VhostSummary {
    pub file: PathBuf,
    pub link: PathBuf,
    pub tls: TlsSource,
    /// https://<domain>/
    pub url: String,
    /// https://<address>:<P>/ when a dedicated https port is set (the address is whatever
    /// the machine is reached by, so it is left as a placeholder).
    pub https_port_url: Option<String>,
    /// Set when the system certificate is missing and a fallback serves instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_fallback: Option<Fallback>,
}

/// What serves when neither an instance certificate, a Let's Encrypt one nor the system
/// certificate is there (a plain Debian box): both are self-signed, so browsers warn until
/// a real certificate is installed (`abssctl tls install`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Debian's /etc/ssl/certs/ssl-cert-snakeoil.pem (package ssl-cert).
    Snakeoil,
    /// One abssctl made for the domain (kept under the state dir, made once).
    SelfSigned,
}

impl Fallback {
    pub fn describe(self) -> &'static str {
        match self {
            Fallback::Snakeoil => {
                "the system certificate is missing: Debian's snakeoil certificate serves instead"
            }
            Fallback::SelfSigned => {
                "the system certificate is missing: a self-signed certificate made by abssctl serves instead"
            }
        }
    }
}

/// The TLS source a vhost gets, and whether it is a fallback still to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenTls {
    pub source: TlsSource,
    pub fallback: Option<Fallback>,
    /// The self-signed fallback does not exist yet: the plan makes it first.
    pub generate: bool,
}

/// Pick the TLS source for `domain` (ADR-010 order), then the fallbacks. A custom pair that
/// is unusable stays an error: the operator would believe their certificate is served.
pub fn choose_tls(ctx: &Ctx, domain: &Domain, custom: Option<(&Path, &Path)>) -> Result<ChosenTls> {
    let candidates = vhost::tls_candidates(&ctx.layout, domain, custom);
    match vhost::select_tls(&candidates, sys::tls::is_readable_file) {
        Ok(source) => {
            return Ok(ChosenTls {
                source,
                fallback: None,
                generate: false,
            });
        }
        Err(e) if custom.is_some() => return Err(e.into()),
        Err(_) => {}
    }
    let usable =
        |c: &Path, k: &Path| sys::tls::is_readable_file(c) && sys::tls::is_readable_file(k);
    let (cert, key) = tlsfacts::snakeoil(&ctx.layout);
    if usable(&cert, &key) {
        return Ok(ChosenTls {
            source: TlsSource {
                kind: vhost::TlsKind::System,
                cert,
                key,
            },
            fallback: Some(Fallback::Snakeoil),
            generate: false,
        });
    }
    let dir = tlsfacts::self_signed_dir(&ctx.layout, domain.as_str());
    let (cert, key) = (dir.join(tlsfacts::CERT_FILE), dir.join(tlsfacts::KEY_FILE));
    let generate = !usable(&cert, &key);
    Ok(ChosenTls {
        source: TlsSource {
            kind: vhost::TlsKind::System,
            cert,
            key,
        },
        fallback: Some(Fallback::SelfSigned),
        generate,
    })
}

fn paths(ctx: &Ctx, name: &InstanceName) -> VhostPaths {
    VhostPaths::new(
        ctx.layout.vhost_file(name.as_str()),
        ctx.layout.vhost_link(name.as_str()),
    )
}

/// Render the vhost for `req` (operator template if present) and pick its TLS source,
/// for the nginx on PATH.
pub fn prepare(ctx: &Ctx, req: &VhostRequest) -> Result<(String, VhostSummary)> {
    prepare_for(ctx, req, sys::nginx::installed_http2_syntax())
}

/// [`prepare`] with the HTTP/2 form of a given nginx: the one that will test the file, so
/// the text matches that nginx's version.
fn prepare_for(
    ctx: &Ctx,
    req: &VhostRequest,
    http2: Http2Syntax,
) -> Result<(String, VhostSummary)> {
    let chosen = choose_tls(
        ctx,
        &req.domain,
        req.custom_tls
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
    )?;
    render_with(ctx, req, http2, &chosen)
}

/// The vhost text and summary for a TLS source already chosen.
fn render_with(
    ctx: &Ctx,
    req: &VhostRequest,
    http2: Http2Syntax,
    chosen: &ChosenTls,
) -> Result<(String, VhostSummary)> {
    let tls = chosen.source.clone();
    let override_path = ctx.layout.templates_dir.join(vhost::TEMPLATE_NAME);
    let override_text = sys::fs::read_optional(&override_path)?;
    let spec = VhostSpec {
        instance: req.name.clone(),
        domain: req.domain.clone(),
        upstream_port: req.port,
        https_port: req.https_port,
        tls: tls.clone(),
        http2,
    };
    let text = vhost::render(
        &spec,
        override_text
            .as_deref()
            .map(|t| (override_path.as_path(), t)),
        &override_path,
    )?;
    let p = paths(ctx, &req.name);
    Ok((
        text,
        VhostSummary {
            file: p.file,
            link: p.link,
            tls,
            url: format!("https://{}/", req.domain),
            https_port_url: req
                .https_port
                .map(|port| format!("https://<address>:{port}/")),
            tls_fallback: chosen.fallback,
        },
    ))
}

/// Add the step that writes, tests and reloads the vhost of `req`. Its undo restores the
/// previous files and reloads again.
pub fn plan_apply<'a>(
    ctx: &Ctx,
    req: &VhostRequest,
    prov: Providers<'a>,
    plan: &mut Plan<'a>,
) -> Result<VhostSummary> {
    let chosen = choose_tls(
        ctx,
        &req.domain,
        req.custom_tls
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
    )?;
    plan_apply_with(ctx, req, &chosen, prov, plan)
}

/// [`plan_apply`] with the TLS source given: for `tls install`, whose files an earlier step
/// of the same plan writes (they are not there yet when the plan is made).
pub fn plan_apply_with<'a>(
    ctx: &Ctx,
    req: &VhostRequest,
    chosen: &ChosenTls,
    prov: Providers<'a>,
    plan: &mut Plan<'a>,
) -> Result<VhostSummary> {
    let (text, summary) = render_with(ctx, req, prov.nginx.http2_syntax(), chosen)?;
    if chosen.generate {
        plan_self_signed(plan, req.domain.as_str(), &chosen.source);
    }
    let catch_all = plan_default_server(ctx)?;
    let paths = paths(ctx, &req.name);
    let op_id = ctx.op.op_id.to_string();
    let domain = req.domain.clone();
    let mut desc = format!(
        "write {} (TLS: {}{}), enable it",
        paths.file.display(),
        summary.tls.kind.as_str(),
        match chosen.fallback {
            Some(Fallback::Snakeoil) =>
                ", Debian's snakeoil certificate: the system one is missing",
            Some(Fallback::SelfSigned) => ", a self-signed certificate: the system one is missing",
            None => "",
        }
    );
    match &catch_all {
        Some((p, DefaultChange::Install(_))) => desc.push_str(&format!(
            ", add the catch-all default server {} (no site claims default_server on 443)",
            p.file.display()
        )),
        Some((p, DefaultChange::Remove)) => desc.push_str(&format!(
            ", remove the catch-all {} (another site claims default_server on 443)",
            p.file.display()
        )),
        None => {}
    }
    desc.push_str(", nginx -t, reload nginx");
    let fallback = chosen.fallback;
    plan.step("nginx_vhost_apply", desc, move || {
        if let Some(f) = fallback {
            tracing::warn!(
                "{}; install a real one with `abssctl tls install`",
                f.describe()
            );
        }
        let mut changes = Vec::new();
        if let Some((p, change)) = &catch_all {
            changes.push(match change {
                DefaultChange::Install(t) => {
                    sys::nginx::install(p, t, &op_id, prov.nginx, &domain)?
                }
                DefaultChange::Remove => sys::nginx::uninstall(p, &op_id, prov.nginx)?,
            });
        }
        match sys::nginx::install(&paths, &text, &op_id, prov.nginx, &domain) {
            Ok(c) => changes.push(c),
            // The vhost's own files are back already; the catch-all goes back too (nginx
            // was not reloaded, so it still serves what the disk now says again).
            Err(e) => return Err(restore_all(e, &changes)),
        }
        changes.retain(sys::nginx::Change::changed);
        if changes.is_empty() {
            return txn::no_undo();
        }
        if let Err(e) = sys::nginx::reload(prov.systemd) {
            // nginx did not take the new files; put the old ones back so the disk
            // matches what it still serves (no second reload: the first just failed).
            return Err(restore_all(e.context("reload failed"), &changes));
        }
        txn::undo(move || undo_changes(&changes, prov))
    });
    Ok(summary)
}

/// Put back every change (newest first) and return `e` with what happened.
fn restore_all(e: anyhow::Error, changes: &[sys::nginx::Change]) -> anyhow::Error {
    for c in changes.iter().rev() {
        if let Err(u) = sys::nginx::restore(c) {
            return e.context(format!(
                "and restoring {} failed: {u:#}",
                c.paths.file.display()
            ));
        }
    }
    if changes.iter().any(sys::nginx::Change::changed) {
        e.context("previous nginx files restored")
    } else {
        e
    }
}

/// Step: make the self-signed fallback for `domain` (key 0600, certificate 0644, root-only
/// directory); the undo removes it.
fn plan_self_signed(plan: &mut Plan<'_>, domain: &str, source: &TlsSource) {
    let domain = domain.to_string();
    let (cert, key) = (source.cert.clone(), source.key.clone());
    plan.step(
        "tls_self_signed",
        format!(
            "make a self-signed certificate for {domain} in {} (no system certificate, no snakeoil)",
            cert.parent().unwrap_or(Path::new("/")).display()
        ),
        move || {
            let (c, k) = sys::tls::make_self_signed(&domain)?;
            let placed = sys::tls::place(
                &[
                    sys::tls::NewFile { path: key, bytes: k.into_bytes(), mode: sys::tls::KEY_MODE },
                    sys::tls::NewFile { path: cert, bytes: c.into_bytes(), mode: sys::tls::CERT_MODE },
                ],
                "self-signed",
            )?;
            txn::undo(move || sys::tls::unplace(&placed))
        },
    );
}

/// What the vhost step does to the catch-all default server.
#[derive(Debug, Clone)]
enum DefaultChange {
    Install(String),
    Remove,
}

/// Whether the catch-all must be added, rewritten or removed: read the enabled sites (and
/// conf.d) for `default_server` on 443, abssctl's own file left out. No sites-enabled
/// directory: not Debian's nginx layout (or no nginx yet), so nothing is decided.
fn plan_default_server(ctx: &Ctx) -> Result<Option<(VhostPaths, DefaultChange)>> {
    let enabled = &ctx.layout.nginx_sites_enabled;
    let Some(names) = sys::fs::list_names(enabled)? else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.as_str() != dflt::FILE_NAME)
        .map(|n| enabled.join(n))
        .collect();
    let conf_d = enabled.parent().unwrap_or(Path::new("/")).join("conf.d");
    for n in sys::fs::list_names(&conf_d)?.unwrap_or_default() {
        if n.ends_with(".conf") {
            files.push(conf_d.join(n));
        }
    }
    let mut claimed = dflt::Claimed::default();
    for f in files {
        if let Some(text) = sys::fs::read_optional(&f)? {
            claimed = claimed.or(dflt::claims(&text));
        }
    }
    let p = VhostPaths::new(
        ctx.layout.nginx_sites_available.join(dflt::FILE_NAME),
        enabled.join(dflt::FILE_NAME),
    );
    let current = sys::fs::read_optional(&p.file)?;
    let linked = sys::instdir::read_link(&p.link)?.as_deref() == Some(p.link_target.as_path());
    Ok(match dflt::needed(claimed) {
        None if current.is_some() || linked => Some((p, DefaultChange::Remove)),
        None => None,
        Some(n) => {
            let override_path = ctx.layout.templates_dir.join(dflt::TEMPLATE_NAME);
            let override_text = sys::fs::read_optional(&override_path)?;
            let text = dflt::render(
                &n,
                override_text
                    .as_deref()
                    .map(|t| (override_path.as_path(), t)),
            )?;
            if current.as_deref() == Some(text.as_str()) && linked {
                None
            } else {
                Some((p, DefaultChange::Install(text)))
            }
        }
    })
}

/// Add the step that disables and removes the vhost of `name` (kept as a .bak file).
pub fn plan_remove<'a>(
    ctx: &Ctx,
    name: &InstanceName,
    prov: Providers<'a>,
    plan: &mut Plan<'a>,
) -> Result<()> {
    let paths = paths(ctx, name);
    let op_id = ctx.op.op_id.to_string();
    plan.step(
        "nginx_vhost_remove",
        format!("disable and remove {}, reload nginx", paths.file.display()),
        move || {
            let change = sys::nginx::uninstall(&paths, &op_id, prov.nginx)?;
            if !change.changed() {
                return txn::no_undo();
            }
            if let Err(e) = sys::nginx::reload(prov.systemd) {
                // As in plan_apply: nginx still serves the vhost, so the files come back
                // (a failed step is not undone by the plan; it must not leave half).
                return Err(match sys::nginx::restore(&change) {
                    Ok(()) => e.context("previous vhost files restored"),
                    Err(u) => e.context(format!("and restoring the previous vhost failed: {u:#}")),
                });
            }
            txn::undo(move || undo_change(&change, prov))
        },
    );
    Ok(())
}

/// Put the files back, check them, and reload so nginx serves what it served before.
fn undo_change(change: &sys::nginx::Change, prov: Providers<'_>) -> Result<()> {
    undo_changes(std::slice::from_ref(change), prov)
}

/// [`undo_change`] for several changes of one step (newest first), with one test and reload.
fn undo_changes(changes: &[sys::nginx::Change], prov: Providers<'_>) -> Result<()> {
    for c in changes.iter().rev() {
        sys::nginx::restore(c)?;
    }
    prov.nginx.test()?;
    sys::nginx::reload(prov.systemd).map(drop)
}
