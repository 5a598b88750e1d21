//! The nginx vhost of an instance as transaction steps. Instance commands (create,
//! set-domain, set-port, rename, delete, …) call these inside their own plan, after taking
//! their locks; everything that can be wrong with the input (template, TLS files, https
//! port) is found here, at plan time, before any step runs.

use crate::domain::txn::{self, Plan};
use crate::domain::validate::{Domain, InstanceName};
use crate::domain::vhost::{self, Http2Syntax, TlsSource, VhostSpec};
use crate::ops::Ctx;
use crate::sys;
use crate::sys::nginx::{ConfigTest, VhostPaths};
use crate::sys::systemd::Systemd;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

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
    let candidates = vhost::tls_candidates(
        &ctx.layout,
        &req.domain,
        req.custom_tls
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
    );
    let tls = vhost::select_tls(&candidates, sys::tls::is_readable_file)?;
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
    let (text, summary) = prepare_for(ctx, req, prov.nginx.http2_syntax())?;
    let paths = paths(ctx, &req.name);
    let op_id = ctx.op.op_id.to_string();
    let domain = req.domain.clone();
    plan.step(
        "nginx_vhost_apply",
        format!(
            "write {} (TLS: {}), enable it, nginx -t, reload nginx",
            paths.file.display(),
            summary.tls.kind.as_str()
        ),
        move || {
            let change = sys::nginx::install(&paths, &text, &op_id, prov.nginx, &domain)?;
            if !change.changed() {
                return txn::no_undo();
            }
            if let Err(e) = sys::nginx::reload(prov.systemd) {
                // nginx did not take the new files; put the old ones back so the disk
                // matches what it still serves (no second reload: the first just failed).
                return Err(match sys::nginx::restore(&change) {
                    Ok(()) => e.context("previous vhost files restored"),
                    Err(u) => e.context(format!("and restoring the previous vhost failed: {u:#}")),
                });
            }
            txn::undo(move || undo_change(&change, prov))
        },
    );
    Ok(summary)
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
    sys::nginx::restore(change)?;
    prov.nginx.test()?;
    sys::nginx::reload(prov.systemd).map(drop)
}
