//! `instance create`: from a name and a domain to a healthy server behind HTTPS, in one
//! transaction (any failure undoes every step already applied).

use super::{
    Locks, Resolved, begin, resolve_version, step_dropin, step_save_state, step_start_healthy,
};
use crate::domain::instance as inst;
use crate::domain::layout::Layout;
use crate::domain::state::{InstanceEntry, Reserved, TlsSource, VersionBinding};
use crate::domain::txn::{self, Plan, PlannedAction};
use crate::domain::validate::{self, VersionSpec};
use crate::domain::vhost::TlsKind;
use crate::error::{self, Failure};
use crate::ops::Ctx;
use crate::ops::version_build::{self, Staged};
use crate::ops::vhost::{self, Providers, VhostRequest, VhostSummary};
use crate::sys;
use crate::sys::systemd::LazySystemd;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server password comes from (never from the command line: it would be in
/// the process list and shell history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Stdin,
}

/// What `instance create` was asked.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub name: String,
    pub domain: String,
    pub port: Option<u16>,
    pub version: Option<String>,
    pub https_port: Option<u16>,
    pub password: Option<PasswordSource>,
    /// A data directory restored from a backup (`backup restore --as`), staged by the
    /// caller on the instance root's filesystem, owned by root: moved into place as the
    /// new instance's data instead of an empty one, and handed to its account.
    pub restored_data: Option<PathBuf>,
}

/// `instance create --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateResult {
    pub name: String,
    pub domain: String,
    pub url: String,
    pub port: u16,
    pub version: String,
    pub version_binding: VersionBinding,
    pub unit: String,
    pub data_dir: PathBuf,
    /// false when the instance already existed as asked (idempotent re-run).
    pub changed: bool,
    pub dry_run: bool,
    /// Time from the start job to the first healthy answer.
    pub healthy_after_ms: Option<u64>,
    pub password_set: bool,
    pub vhost: Option<VhostSummary>,
    pub warnings: Vec<String>,
    pub planned_actions: Vec<PlannedAction>,
}

/// Set the server password once, through the running server's own API.
fn bootstrap(port: u16, password: &str) -> Result<Option<String>> {
    let body = serde_json::json!({ "password": password }).to_string();
    let r = sys::http::post_json(port, "/account/bootstrap", &body, Duration::from_secs(10))
        .context("setting the server password")?;
    if r.status == 200 {
        return Ok(None);
    }
    if r.body.contains("already-bootstrapped") {
        return Ok(Some(
            "the server password was already set; it was left unchanged".into(),
        ));
    }
    Err(error::provider(format!(
        "the server refused the password (HTTP {}: {})",
        r.status,
        r.body.chars().take(200).collect::<String>()
    )))
}

/// The directories: `<instance_root>/<name>` (root, group of the instance's account, 0750)
/// and its `data` (the instance's account, 0700), as two steps so that a failure making
/// the second undoes the first (one step with two effects left a half-made instance dir).
/// They come after the account step (the ids are read when they apply). Undo removes only
/// what this run created.
fn step_dirs<'a>(
    plan: &mut Plan<'a>,
    layout: &Layout,
    name: &str,
    user: String,
    restored: Option<PathBuf>,
) {
    let root = layout.instance_root.clone();
    let dir = layout.instance_dir(name);
    let data = layout.data_dir(name);
    let accounts = sys::users::Accounts::new(&layout.root);
    let ids = move |accounts: &sys::users::Accounts, user: &str| -> Result<(u32, u32)> {
        let acct = accounts.lookup(user)?.ok_or_else(|| {
            anyhow::Error::from(Failure::environment(format!(
                "the system account {user} does not exist"
            )))
        })?;
        Ok((acct.uid, acct.gid))
    };
    {
        let (accounts, user, dir) = (accounts.clone(), user.clone(), dir.clone());
        plan.step(
            "instance_dir",
            format!("create {} (0750, group {user})", dir.display()),
            move || {
                let (_, gid) = ids(&accounts, &user)?;
                sys::fs::create_dir_all_mode(&root, 0o755)?;
                let made = sys::instdir::ensure_dir(&dir, inst::INSTANCE_DIR_MODE, Some((0, gid)))?;
                txn::undo(move || {
                    if made {
                        sys::instdir::remove_empty_dir(&dir)?;
                    }
                    Ok(())
                })
            },
        );
    }
    if let Some(from) = restored {
        plan.step(
            "data_restore",
            format!(
                "move the restored data {} to {} and give it to {user}",
                from.display(),
                data.display()
            ),
            move || {
                let (uid, gid) = ids(&accounts, &user)?;
                sys::instdir::rename_dir(&from, &data)?;
                // Undo moves it back (the caller discards its staging either way).
                let back = move |from: &std::path::Path, data: &std::path::Path| {
                    sys::users::chown_tree(data, uid, (0, 0))?;
                    sys::instdir::rename_dir(data, from)
                };
                if let Err(e) = sys::users::chown_tree(&data, 0, (uid, gid)) {
                    return Err(match back(&from, &data) {
                        Ok(()) => e,
                        Err(b) => e.context(format!("and moving it back failed: {b:#}")),
                    });
                }
                txn::undo(move || back(&from, &data))
            },
        );
        return;
    }
    plan.step(
        "data_dir",
        format!("create {} (0700, owned by {user})", data.display()),
        move || {
            let (uid, gid) = ids(&accounts, &user)?;
            let made = sys::instdir::ensure_dir(&data, inst::DATA_DIR_MODE, Some((uid, gid)))?;
            txn::undo(move || {
                if made {
                    sys::instdir::remove_tree(&data)?;
                }
                Ok(())
            })
        },
    );
}

/// Create an instance (see the module doc).
pub fn create(ctx: &mut Ctx, args: &CreateArgs) -> Result<CreateResult> {
    let domain = validate::domain(&args.domain)?;
    if let Some(p) = args.port {
        validate::port(i64::from(p))?;
    }
    if let Some(p) = args.https_port {
        crate::domain::vhost::check_https_port(p)?;
    }
    let binding =
        match args.version.as_deref().map(validate::version).transpose()? {
            None | Some(VersionSpec::Current) => VersionBinding::Current,
            Some(VersionSpec::Exact(v)) => VersionBinding::Exact(v),
            Some(VersionSpec::Latest) => {
                return Err(Failure::validation("--version latest is not an installed version")
                .hint("give an installed version X.Y.Z, or omit --version to follow 'current'")
                .into());
            }
        };
    validate::instance_name(&args.name)?;
    // The nested build's lines belong to this instance's command too.
    sys::logging::set_instance(&args.name);
    let password = match &args.password {
        Some(PasswordSource::File(p)) => Some(sys::secret::from_file(p)?),
        Some(PasswordSource::Stdin) => Some(sys::secret::from_stdin()?),
        None => None,
    };
    // 1. Every check that can fail on input, against the box as it is, before anything
    //    changes and before any build (a used domain must not cost a build and a new
    //    `current`): without locks, since a build may follow.
    let missing = needs_install(&ctx.layout, &binding)?;
    if let Checked::Exists(r) = check(ctx, args, &domain, &binding, None)? {
        return Ok(*r);
    }
    // 2. The version it needs, built under the build lock only (instances stay manageable).
    let mut build_lock = None;
    let mut staged = None;
    let mut first_current = None;
    if missing && !ctx.globals.dry_run {
        let spec = match &binding {
            VersionBinding::Current => VersionSpec::Latest,
            VersionBinding::Exact(v) => VersionSpec::Exact(v.clone()),
        };
        let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
        let res = version_build::resolve(ctx, &spec, false, progress.as_ref())?;
        let vs = res.version.to_string();
        ctx.require_root()?;
        build_lock = Some(ctx.lock_build()?);
        if crate::ops::version::read_manifest(&ctx.layout.version_dir(&vs))?.is_none() {
            let built = version_build::build(ctx, &res, progress.as_ref());
            progress.finish();
            staged = Some(built.context("installing the Actual version the instance needs")?);
        }
        if binding == VersionBinding::Current {
            first_current = Some(vs);
        }
    }
    // 3. The locks, held from here to the end, then the same checks on the box as it is now.
    let (name, locks): (_, Locks) = begin(ctx, &args.name)?;
    let c = match check(ctx, args, &domain, &binding, staged.as_ref()) {
        Ok(Checked::New(c)) => *c,
        other => {
            if staged.is_some() {
                crate::ops::version::remove_tree(&ctx.layout.staging_dir)?;
            }
            return match other? {
                Checked::Exists(r) => Ok(*r),
                Checked::New(_) => unreachable!("matched above"),
            };
        }
    };
    let Prepared {
        before,
        after,
        entry,
        req,
        dropin,
        adopt,
        resolved,
        port,
        unit,
    } = c;
    let name_s = name.as_str().to_string();
    let sd = LazySystemd::new();
    let nginx = super::LazyNginx::default();
    let prov = Providers {
        systemd: &sd,
        nginx: &nginx,
    };
    let layout = ctx.layout.clone();
    let healthy = std::cell::Cell::new(None);
    let warning = std::cell::RefCell::new(None);
    let mut plan = Plan::new();
    if let Some(st) = &staged {
        crate::ops::version::plan_activate(&mut plan, &layout, st);
    }
    if let Some(vs) = &first_current {
        crate::ops::version::plan_first_current(&mut plan, &layout, vs);
    }
    step_save_state(
        &mut plan,
        &layout,
        &locks,
        &before,
        &after,
        format!(
            "register '{name_s}' on port {port} in {}",
            layout.registry_file.display()
        ),
    );
    adopt.plan_account(&mut plan);
    // Data kept by a delete from before per-instance accounts is handed over first.
    adopt.plan_data_owner(&mut plan);
    step_dirs(
        &mut plan,
        &layout,
        &name_s,
        adopt.user().to_string(),
        args.restored_data.clone(),
    );
    step_dropin(
        &mut plan,
        &sd,
        inst::dropin_path(&layout, &name_s),
        Some(dropin),
        false,
    );
    super::step_unit_file(&mut plan, &sd, unit.clone(), super::BootStart::Enable, "");
    if let Some(sched) = &entry.schedule {
        crate::ops::backup::schedule::plan_on(&mut plan, &sd, &layout, &name_s, sched, true);
    }
    step_start_healthy(&mut plan, &sd, unit.clone(), port, false, Some(&healthy));
    if let Some(pw) = password.as_deref() {
        let warning = &warning;
        let apply = move || {
            *warning.borrow_mut() = bootstrap(port, pw)?;
            txn::no_undo()
        };
        let (action, desc) = (
            "server_password",
            "set the server password (POST /account/bootstrap)",
        );
        // The password lives in the data dir's account.sqlite. A data dir this run makes
        // is removed by its own undo, password and all: then nothing is kept. Only data
        // that was there before (kept by a delete) keeps a password a failure cannot undo.
        if layout.data_dir(&name_s).exists() {
            plan.step_irreversible(action, desc, apply);
        } else {
            plan.step(action, desc, apply);
        }
    }
    let vhost_summary = vhost::plan_apply(ctx, &req, prov, &mut plan)?;
    let planned = plan.planned_actions();
    ctx.record_plan(planned.clone());
    let dry_run = ctx.globals.dry_run;
    let outcome = plan.run(dry_run);
    if staged.is_some() {
        // Staging never outlives the command: the build moved out, or is discarded.
        let cleanup = crate::ops::version::remove_tree(&layout.staging_dir);
        outcome?;
        cleanup?;
    } else {
        outcome?;
    }
    drop(build_lock);
    let warnings: Vec<String> = warning.into_inner().into_iter().collect();
    ctx.op.warnings.extend(warnings.clone());
    Ok(CreateResult {
        url: inst::url(domain.as_str(), args.https_port),
        name: name_s,
        domain: domain.as_str().to_string(),
        port,
        version: resolved.version,
        version_binding: entry.version_binding,
        unit,
        data_dir: entry.data_dir,
        changed: !dry_run,
        dry_run,
        healthy_after_ms: healthy.get().map(|d| d.as_millis() as u64),
        password_set: password.is_some() && !dry_run && warnings.is_empty(),
        vhost: Some(vhost_summary),
        warnings,
        planned_actions: planned,
    })
}

/// What `check` found: the instance is there as asked (nothing to do), or what to create.
enum Checked {
    Exists(Box<CreateResult>),
    New(Box<Prepared>),
}

/// Everything create computes before its first change.
struct Prepared {
    before: crate::domain::state::State,
    after: crate::domain::state::State,
    entry: InstanceEntry,
    req: VhostRequest,
    dropin: String,
    adopt: super::account::Adopt,
    resolved: Resolved,
    port: u16,
    unit: String,
}

/// Every check of create's input against the box, read-only: run once before any build
/// and again under the locks. `staged`: the version built for it (not yet in place).
fn check(
    ctx: &Ctx,
    args: &CreateArgs,
    domain: &crate::domain::validate::Domain,
    binding: &VersionBinding,
    staged: Option<&Staged>,
) -> Result<Checked> {
    let name = validate::instance_name(&args.name)?;
    let name_s = name.as_str().to_string();
    let before = crate::domain::state::State::load(&ctx.layout)?;
    let unit = Layout::unit_name(&name_s);
    if let Some(other) = before
        .instances
        .iter()
        .find(|i| i.domain == domain.as_str() && i.name != name_s)
    {
        return Err(Failure::validation(format!(
            "domain {} is already used by instance '{}'",
            domain.as_str(),
            other.name
        ))
        .hint("give each instance its own domain")
        .into());
    }
    if args.restored_data.is_some() {
        if before.instances.iter().any(|i| i.name == name_s) {
            return Err(
                Failure::validation(format!("instance '{name_s}' already exists"))
                    .hint("restore as a new name (--as NAME), or in place without --as")
                    .into(),
            );
        }
        let data = ctx.layout.data_dir(&name_s);
        if sys::instdir::exists(&data) {
            return Err(Failure::validation(format!(
                "{} exists (data kept from a deleted instance '{name_s}')",
                data.display()
            ))
            .hint("restore under another name, or move that directory away first")
            .into());
        }
    }
    if let Some(existing) = before.instances.iter().find(|i| i.name == name_s) {
        let same = existing.domain == domain.as_str()
            && args.port.is_none_or(|p| p == existing.port)
            && (args.version.is_none() || existing.version_binding == *binding);
        if !same {
            return Err(Failure::validation(format!(
                "instance '{name_s}' already exists with other settings (domain {}, port {})",
                existing.domain, existing.port
            ))
            .hint(format!(
                "change it with abssctl instance set-domain/set-port/set-version {name_s}, or pick another name"
            ))
            .into());
        }
        // Asked for what is already there: nothing to do (create is idempotent).
        let resolved = resolve_version(&ctx.layout, &existing.version_binding)?;
        return Ok(Checked::Exists(Box::new(CreateResult {
            url: inst::url(&existing.domain, existing.https_port),
            name: name_s,
            domain: existing.domain.clone(),
            port: existing.port,
            version: resolved.version,
            version_binding: existing.version_binding.clone(),
            unit,
            data_dir: existing.data_dir.clone(),
            changed: false,
            dry_run: ctx.globals.dry_run,
            healthy_after_ms: None,
            password_set: false,
            vhost: None,
            warnings: Vec::new(),
            planned_actions: Vec::new(),
        })));
    }
    let resolved: Resolved = match (staged, resolve_version(&ctx.layout, binding)) {
        (Some(st), _) => Resolved {
            version: st.version.clone(),
            dir: ctx.layout.version_dir(&st.version),
            node: st
                .manifest
                .as_ref()
                .map(|m| m.runtime.node.clone())
                .context("the staged build has no manifest")?,
        },
        (None, Ok(r)) => r,
        // Not installed yet (checked before the build, or a dry run): the template is
        // checked with the paths it will get.
        (None, Err(_)) if needs_install(&ctx.layout, binding)? => Resolved {
            version: binding.to_string(),
            dir: match binding {
                VersionBinding::Exact(v) => ctx.layout.version_dir(&v.to_string()),
                VersionBinding::Current => ctx.layout.version_dir("-latest"),
            },
            node: ctx.layout.runtimes_dir.join("node-pending/bin/node"),
        },
        (None, Err(e)) => return Err(e),
    };
    let mut after = before.clone();
    let now = time::OffsetDateTime::now_utc();
    let probe = sys::net::SystemPorts::snapshot();
    let port = match after.reserve(&name_s, args.port, ctx.cfg().ports_base, &probe, now)? {
        Reserved::New(r) | Reserved::Existing(r) => r.port,
    };
    if let Some(hp) = args.https_port {
        after.reserve(&name_s, Some(hp), ctx.cfg().ports_base, &probe, now)?;
    }
    let req = VhostRequest {
        name: name.clone(),
        domain: domain.clone(),
        port,
        https_port: args.https_port,
        custom_tls: None,
    };
    // The TLS source the vhost will use: a missing certificate is an error here.
    let (_, vhost_preview) = vhost::prepare(ctx, &req)?;
    let tls_source = Some(match vhost_preview.tls.kind {
        TlsKind::Custom => TlsSource::Custom,
        TlsKind::LetsEncrypt => TlsSource::Letsencrypt,
        TlsKind::System => TlsSource::System,
    });
    let entry = InstanceEntry {
        name: name_s.clone(),
        domain: domain.as_str().to_string(),
        port,
        version_binding: binding.clone(),
        data_dir: ctx.layout.data_dir(&name_s),
        created_at: now,
        last_changed: now,
        notes: String::new(),
        tls_source,
        tls_cert: None,
        tls_key: None,
        https_port: args.https_port,
        // The configured default schedule (checked by systemd's calendar parser here).
        schedule: crate::ops::backup::schedule::default_for(ctx.cfg())?,
    };
    after.instances.push(entry.clone());
    let dropin = render_checked(&ctx.layout, &entry, &resolved)?;
    // Its own account (a foreign one of that name is refused here, before any change).
    let adopt = super::account::Adopt::prepare(&ctx.layout, &name_s, &ctx.cfg().service_user)?;
    Ok(Checked::New(Box::new(Prepared {
        before,
        after,
        entry,
        req,
        dropin,
        adopt,
        resolved,
        port,
        unit,
    })))
}

/// Is the version this binding names missing (no `current`, or no manifest)?
fn needs_install(layout: &Layout, binding: &VersionBinding) -> Result<bool> {
    Ok(match binding {
        VersionBinding::Current => super::current_version_dir(layout)?.is_none(),
        VersionBinding::Exact(v) => {
            crate::ops::version::read_manifest(&layout.version_dir(&v.to_string()))?.is_none()
        }
    })
}

/// Render the drop-in now, so a broken operator template fails before any change.
fn render_checked(layout: &Layout, entry: &InstanceEntry, v: &Resolved) -> Result<String> {
    super::render_dropin(layout, entry, v)
}
