//! Building an Actual version: resolve it in the registry (read-only), then build it
//! without root under the build lock into a sealed, verified tree with its manifest in
//! staging ([`Staged`]). Committing it (one rename into place, `current`) is the caller's,
//! under the global lock: see `version.rs` and `instance create`.
//!
//! Crash safety: everything is built under the staging dir, which every build removes
//! first; a version dir appears only by one rename of a verified, sealed tree that already
//! holds its manifest. So a killed build leaves at most a staging dir, never a version.

use crate::domain::txn::{self, Plan};
use crate::domain::validate::VersionSpec;
use crate::domain::versions::{self, Manifest, RuntimeChoice, RuntimePolicy, RuntimeRecord};
use crate::error::{self, Failure};
use crate::ops::Ctx;
use crate::ops::ui::Progress;
use crate::ops::version::remove_tree;
use crate::sys::build::{self, BuildCmd, Sandbox};
use crate::sys::{self, npm};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One fixed unit name: builds are serialised by the build lock, and a fixed name lets
/// the next build find and stop a build its killed predecessor left running.
const BUILD_UNIT: &str = "abssctl-npm-build.service";

/// Longest an npm run may take before it is stopped.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where a build runs and which node/npm it uses.
#[derive(Debug, Clone)]
struct Toolchain {
    node: PathBuf,
    nodedir: PathBuf,
    npm_cli: PathBuf,
    npm_version: String,
    runtime: RuntimeRecord,
}

/// What the registry says about a requested version and how it would be built; found
/// without root and without a lock, so that bad input fails before anything changes.
#[derive(Debug)]
pub struct Resolution {
    pub version: semver::Version,
    pkg: String,
    registry: String,
    machine: npm::MachineNpm,
    reg: npm::Registry,
    choice: RuntimeChoice,
    node_pk: Option<versions::Packument>,
    npm_pk: versions::Packument,
    npm_version: semver::Version,
    integrity: String,
    engines: Option<String>,
}

/// Resolve `spec` in the registry, choose the runtime and npm, check the build tools.
pub fn resolve(
    ctx: &Ctx,
    spec: &VersionSpec,
    include_prerelease: bool,
    progress: &dyn Progress,
) -> Result<Resolution> {
    let cfg = ctx.cfg().clone();
    let machine = npm::machine_npm();
    let registry = npm::resolve_registry(&cfg.npm_registry, &machine)?;
    let reg = npm::Registry::new(&registry)?;
    progress.step(&format!(
        "reading {} from the registry",
        cfg.npm_package_name
    ));
    let pk = reg.packument(&cfg.npm_package_name)?;
    let version = versions::resolve_request(&pk, spec, include_prerelease)?;
    let vs = version.to_string();
    let pv = pk
        .get(&version)
        .context("the packument lost the resolved version")?;
    let integrity =
        pv.dist.integrity.clone().ok_or_else(|| {
            Failure::environment(format!("the registry gives no integrity for {vs}"))
        })?;

    // Runtime: the local node when it fits, else a managed one (registry consulted only then).
    let policy = RuntimePolicy::parse(&cfg.runtime)?;
    let local = match &policy {
        RuntimePolicy::Path(p) => build::local_node(Some(p)),
        _ => build::local_node(None),
    };
    let mut input = versions::ChoiceInput {
        engines: pv.engines_node(),
        deps: &pv.dependencies,
        policy: &policy,
        local,
        managed_available: &[],
    };
    let (choice, node_pk) = match versions::choose_runtime(&input) {
        Ok(c) => (c, None),
        Err(_) => {
            let name = versions::managed_runtime_package(std::env::consts::ARCH)?;
            let node_pk = reg.packument(name)?;
            let avail = node_pk.releases(false);
            input.managed_available = &avail;
            (versions::choose_runtime(&input)?, Some(node_pk))
        }
    };
    let missing = build::missing_build_tools();
    if !missing.is_empty() {
        return Err(Failure::environment(format!(
            "building Actual's native modules needs g++, make and python3; missing: {}",
            missing.join(", ")
        ))
        .hint(format!("apt-get install {}", missing.join(" ")))
        .into());
    }
    let npm_pk = reg.packument("npm")?;
    let npm_version = versions::choose_npm(&npm_pk, choice.version())?;
    let engines = pv.engines_node().map(str::to_string);
    Ok(Resolution {
        version,
        pkg: cfg.npm_package_name.clone(),
        registry,
        machine,
        reg,
        choice,
        node_pk,
        npm_pk,
        npm_version,
        integrity,
        engines,
    })
}

/// A built tree waiting in staging for its commit (`manifest` is `None` in a dry run).
#[derive(Debug)]
pub struct Staged {
    pub version: String,
    pub dir: PathBuf,
    pub manifest: Option<Manifest>,
}

/// Build a resolved version into staging. The caller holds the build lock (NOT the global
/// one: instances stay manageable during the minutes a build takes) and is root. The
/// plan's steps are recorded in the operations log; a failure undoes provisioned runtimes
/// and removes staging.
pub fn build(ctx: &mut Ctx, r: &Resolution, progress: &dyn Progress) -> Result<Staged> {
    let Resolution {
        version,
        pkg,
        registry,
        machine,
        reg,
        choice,
        node_pk,
        npm_pk,
        npm_version,
        integrity,
        engines,
        ..
    } = r;
    let vs = version.to_string();
    // A dry run changes nothing, not even the build user that detect makes on demand: it
    // only names the sandbox; the steps that use it are not applied.
    let sandbox = if ctx.globals.dry_run {
        None
    } else {
        Some(Sandbox::detect(&ctx.layout.root)?)
    };
    let sandbox_desc = sandbox.as_ref().map_or_else(
        || format!("{} (sandboxed)", build::BUILD_USER),
        Sandbox::describe,
    );
    let layout = ctx.layout.clone();
    let staging = layout.staging_dir.clone();
    let build_dir = staging.join(format!("v{vs}"));
    let tc = toolchain(&layout, choice, &npm_version.to_string())?;
    let npm_env = npm::npm_env(registry, machine, &staging.join("npmrc"));
    let manifest = std::cell::RefCell::new(None);
    let mut plan = Plan::new();
    plan.step(
        "clean-staging",
        format!("remove leftovers in {}", staging.display()),
        || {
            let sandbox = sandbox.as_ref().context("no build sandbox in a dry run")?;
            build::stop_leftover(sandbox, BUILD_UNIT)?;
            prepare_dirs(&layout, sandbox)?;
            txn::no_undo()
        },
    );
    if let (RuntimeChoice::Managed { version: nv }, Some(node_pk)) = (choice, node_pk) {
        let dir = layout.runtime_dir(&nv.to_string());
        if !dir.join("bin/node").exists() {
            let pv = node_pk.get(nv).context("runtime version vanished")?;
            let (url, sri) = (
                pv.dist.tarball.clone(),
                pv.dist.integrity.clone().unwrap_or_default(),
            );
            let (staging, progress) = (&staging, progress);
            plan.step(
                "provision-runtime",
                format!("install Node {nv} in {}", dir.display()),
                move || {
                    progress.step(&format!("downloading Node {nv}"));
                    provision(reg, &url, &sri, staging, &dir, progress)?;
                    let got = build::node_version(&dir.join("bin/node"));
                    anyhow::ensure!(
                        got.as_ref() == Some(nv),
                        "{} does not run as Node {nv} (got {got:?})",
                        dir.display()
                    );
                    txn::undo(move || remove_tree(&dir))
                },
            );
        }
    }
    let npm_dir = layout.npm_dir(&tc.npm_version);
    if !tc.npm_cli.exists() {
        let pv = npm_pk.get(npm_version).context("npm version vanished")?;
        let (url, sri) = (
            pv.dist.tarball.clone(),
            pv.dist.integrity.clone().unwrap_or_default(),
        );
        let (staging, progress) = (&staging, progress);
        plan.step(
            "provision-npm",
            format!("install npm {npm_version} in {}", npm_dir.display()),
            move || {
                progress.step(&format!("downloading npm {npm_version}"));
                provision(reg, &url, &sri, staging, &npm_dir, progress)?;
                txn::undo(move || remove_tree(&npm_dir))
            },
        );
    }
    {
        let (tc, build_dir, layout, sandbox, vs) = (&tc, &build_dir, &layout, &sandbox, &vs);
        let (engines, manifest) = (engines.as_deref(), &manifest);
        plan.step(
            "build",
            format!(
                "build {pkg} {vs} with Node {} as {}",
                tc.runtime.version, sandbox_desc
            ),
            move || {
                progress.step(&format!(
                    "building {pkg} {vs} with Node {} (1-2 minutes)",
                    tc.runtime.version
                ));
                std::fs::create_dir_all(build_dir)
                    .with_context(|| format!("creating {}", build_dir.display()))?;
                let pj = versions::staging_package_json(pkg, version);
                sys::fs::write_atomic(
                    &build_dir.join("package.json"),
                    serde_json::to_string_pretty(&pj)?.as_bytes(),
                    0o644,
                )?;
                let argv = ["install", "--omit=dev", "--no-audit", "--no-fund"];
                let sandbox = sandbox.as_ref().context("no build sandbox in a dry run")?;
                run_npm(layout, sandbox, tc, build_dir, &npm_env, &argv, vs)?;
                let m = verify_and_record(build_dir, pkg, vs, integrity, engines, tc)?;
                *manifest.borrow_mut() = Some(m);
                txn::no_undo()
            },
        );
    }
    ctx.record_plan(plan.planned_actions());
    let outcome = plan.run(ctx.globals.dry_run);
    if let Err(e) = outcome {
        // Staging never outlives a failed build.
        if !ctx.globals.dry_run {
            remove_tree(&staging)?;
        }
        return Err(classify_build_error(e, &layout));
    }
    Ok(Staged {
        version: vs,
        dir: build_dir,
        manifest: manifest.into_inner(),
    })
}

/// The node/npm paths for a runtime choice.
fn toolchain(
    layout: &crate::domain::layout::Layout,
    choice: &RuntimeChoice,
    npm_version: &str,
) -> Result<Toolchain> {
    let npm_cli = layout.npm_dir(npm_version).join("bin/npm-cli.js");
    let (node, nodedir, kind) = match choice {
        RuntimeChoice::Managed { version } => {
            let dir = layout.runtime_dir(&version.to_string());
            (dir.join("bin/node"), dir, "managed")
        }
        RuntimeChoice::Local { path, version } => {
            let nodedir = build::nodedir_of(path).ok_or_else(|| {
                Failure::environment(format!(
                    "Node {version} at {} has no headers (include/node) for building native modules",
                    path.display()
                ))
                .hint("set runtime: auto so abssctl provisions a runtime with headers")
            })?;
            (path.clone(), nodedir, "local")
        }
    };
    Ok(Toolchain {
        runtime: RuntimeRecord {
            kind: kind.into(),
            version: choice.version().to_string(),
            node: node.clone(),
        },
        node,
        nodedir,
        npm_cli,
        npm_version: npm_version.to_string(),
    })
}

/// Fresh staging and a trusted npm cache. Root owns every directory on the way; the build
/// user owns only its build dir (made by `run_npm`) and the npm cache, both 0700, so no
/// other local user can write (or read) what the build makes, at any moment of it.
fn prepare_dirs(layout: &crate::domain::layout::Layout, sandbox: &Sandbox) -> Result<()> {
    remove_tree(&layout.staging_dir)?;
    build::ensure_dir_mode(&layout.install_root, 0o755)?;
    build::ensure_dir_mode(&layout.runtimes_dir, 0o755)?;
    build::ensure_dir_mode(&layout.staging_dir, 0o711)?;
    build::ensure_dir_mode(&layout.cache_dir, 0o755)?;
    build::ensure_owned_dir(sandbox, &layout.npm_cache_dir)?;
    if layout.legacy_npm_cache_dir.exists() {
        // Releases before the build user opened this cache to everyone during builds: its
        // contents are not trusted, and the state dir goes back to the 0750 tmpfiles gives it.
        tracing::warn!(
            "removing the old npm cache {} (it was writable by other users during builds)",
            layout.legacy_npm_cache_dir.display()
        );
        remove_tree(&layout.legacy_npm_cache_dir)?;
        build::ensure_dir_mode(&layout.state_dir, 0o750)?;
    }
    sys::fs::write_atomic(&layout.staging_dir.join("npmrc"), b"", 0o644)
}

/// Download + verify + unpack a tarball into `dest` (via a temp dir and one rename).
fn provision(
    reg: &npm::Registry,
    url: &str,
    sri: &str,
    staging: &Path,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let name = dest
        .file_name()
        .context("destination has no name")?
        .to_string_lossy()
        .into_owned();
    let tgz = staging.join(format!("{name}.tgz"));
    reg.download(url, sri, &tgz, &mut |d, t| progress.bytes(&name, d, t))?;
    let tmp = staging.join(format!("{name}.unpack"));
    npm::unpack_tarball(&tgz, &tmp)?;
    sys::seal::seal_unpacked(&tmp)?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))?;
    sys::fs::sync_parent(dest)?;
    sys::fs::remove_file_if_exists(&tgz)?;
    Ok(())
}

/// Run one npm command for a build dir with the toolchain, sandboxed.
fn run_npm(
    layout: &crate::domain::layout::Layout,
    sandbox: &Sandbox,
    tc: &Toolchain,
    build_dir: &Path,
    npm_env: &BTreeMap<String, String>,
    args: &[&str],
    vs: &str,
) -> Result<()> {
    let home = build_dir.join(".home");
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    // Everything in the build dir so far is root's (package.json, the lockfile, .home):
    // from here on it is the build user's alone.
    sandbox.hand_over(build_dir)?;
    let bin = tc.node.parent().context("node has no directory")?;
    let mut env = npm_env.clone();
    env.insert(
        "PATH".into(),
        format!("{}:{}", bin.display(), build::BUILD_PATH),
    );
    env.insert("HOME".into(), home.to_string_lossy().into_owned());
    env.insert(
        "npm_config_cache".into(),
        layout.npm_cache_dir.to_string_lossy().into_owned(),
    );
    env.insert(
        "npm_config_nodedir".into(),
        tc.nodedir.to_string_lossy().into_owned(),
    );
    env.insert("npm_config_build_from_source".into(), "true".into());
    env.insert("npm_config_update_notifier".into(), "false".into());
    let mut argv = vec![
        tc.node.to_string_lossy().into_owned(),
        tc.npm_cli.to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    sys::fs::create_dir_all_mode(&layout.logs_dir, sys::fs::DIR_MODE)?;
    let cmd = BuildCmd {
        unit: BUILD_UNIT.into(),
        argv,
        env,
        cwd: build_dir.to_path_buf(),
        writable: vec![build_dir.to_path_buf(), layout.npm_cache_dir.clone()],
        log: layout.logs_dir.join(format!("build-v{vs}.log")),
        timeout: BUILD_TIMEOUT,
    };
    build::check_traversable(&[&tc.node, &tc.npm_cli, build_dir, &layout.npm_cache_dir])?;
    let result = build::run(sandbox, &cmd)?;
    // The unit has ended: end whatever the build user still runs, then seal. A failed
    // build is discarded whole, so its seal result only matters as a warning.
    let sealed = sandbox.seal(build_dir);
    if let Err(detail) = result {
        if let Err(e) = &sealed {
            tracing::warn!("sealing the failed build: {e:#}");
        }
        return Err(
            Failure::environment(format!("npm {} failed for {vs}: {detail}", args[0])).into(),
        );
    }
    let sealed = sealed?;
    tracing::info!(
        entries = sealed.entries,
        bits_cleared = sealed.bits_cleared,
        "sealed the build of {vs}"
    );
    remove_tree(&home)
}

/// Check the built tree is the version the registry describes, seal it, write its manifest.
fn verify_and_record(
    build_dir: &Path,
    pkg: &str,
    vs: &str,
    integrity: &str,
    engines: Option<&str>,
    tc: &Toolchain,
) -> Result<Manifest> {
    let pj_path = build_dir
        .join("node_modules")
        .join(pkg)
        .join("package.json");
    let pj: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&pj_path)
            .with_context(|| format!("reading {}", pj_path.display()))?,
    )?;
    let got = pj.get("version").and_then(|v| v.as_str()).unwrap_or("?");
    if got != vs {
        return Err(error::environment(format!(
            "the build installed {pkg} {got}, not {vs}"
        )));
    }
    let lock_path = build_dir.join("package-lock.json");
    let lock_text = std::fs::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    let lock: serde_json::Value =
        serde_json::from_str(&lock_text).context("reading package-lock.json")?;
    let locked = versions::lockfile_integrity(&lock, pkg);
    if locked.as_deref().and_then(versions::sri_sha512) != versions::sri_sha512(integrity) {
        return Err(error::environment(format!(
            "integrity mismatch for {pkg} {vs}: registry {integrity}, installed {}",
            locked.as_deref().unwrap_or("none")
        )));
    }
    let m = Manifest {
        schema_version: versions::MANIFEST_SCHEMA_VERSION,
        package: pkg.to_string(),
        version: vs.to_string(),
        integrity: integrity.to_string(),
        engines_node: engines.map(str::to_string),
        runtime: tc.runtime.clone(),
        npm_version: tc.npm_version.clone(),
        lockfile_sha256: sys::fs::sha256_file(&lock_path)?,
        size_bytes: build::tree_size(build_dir)?,
        installed_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the install time")?,
    };
    sys::fs::write_atomic(
        &build_dir.join(versions::MANIFEST_FILE),
        serde_json::to_string_pretty(&m)?.as_bytes(),
        0o644,
    )?;
    Ok(m)
}

/// Disk full gets its own clear message (the npm log says ENOSPC somewhere).
fn classify_build_error(e: anyhow::Error, layout: &crate::domain::layout::Layout) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("ENOSPC") || text.contains("No space left on device") {
        return Failure::environment(format!(
            "the disk is full while installing under {}; nothing was installed and staging was removed",
            layout.install_root.display()
        ))
        .hint("free space (about 250 MB per version plus 100 MB of npm cache) and retry")
        .into();
    }
    e
}

/// Shared with `version_manage`: run `npm ci --offline` for a build dir.
pub(crate) fn offline_build(ctx: &Ctx, build_dir: &Path, m: &Manifest) -> Result<Manifest> {
    let layout = &ctx.layout;
    let sandbox = Sandbox::detect(&ctx.layout.root)?;
    build::stop_leftover(&sandbox, BUILD_UNIT)?;
    prepare_dirs(layout, &sandbox)?;
    std::fs::create_dir_all(build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let vdir = layout.version_dir(&m.version);
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(vdir.join(f), build_dir.join(f))
            .with_context(|| format!("copying {f} of {}", m.version))?;
    }
    let node = m.runtime.node.clone();
    let nodedir = if m.runtime.kind == "managed" {
        node.parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .context("runtime layout")?
    } else {
        build::nodedir_of(&node).context("the recorded runtime has no headers")?
    };
    let tc = Toolchain {
        node,
        nodedir,
        npm_cli: layout.npm_dir(&m.npm_version).join("bin/npm-cli.js"),
        npm_version: m.npm_version.clone(),
        runtime: m.runtime.clone(),
    };
    if !tc.node.exists() || !tc.npm_cli.exists() {
        return Err(Failure::environment(format!(
            "the runtime recorded for {} ({}) or npm {} is gone",
            m.version,
            tc.node.display(),
            m.npm_version
        ))
        .hint(format!("reinstall from the registry: abssctl version uninstall {v} && abssctl version install {v}", v = m.version))
        .into());
    }
    // No network is used (--offline); the registry only has to match the lockfile's URLs.
    let machine = npm::machine_npm();
    let registry = npm::resolve_registry(&ctx.cfg().npm_registry, &machine).unwrap_or_default();
    let mut env = npm::npm_env(&registry, &machine, &layout.staging_dir.join("npmrc"));
    if registry.is_empty() {
        env.remove("npm_config_registry");
    }
    run_npm(
        layout,
        &sandbox,
        &tc,
        build_dir,
        &env,
        &["ci", "--offline", "--omit=dev", "--no-audit", "--no-fund"],
        &m.version,
    )?;
    verify_and_record(
        build_dir,
        &m.package,
        &m.version,
        &m.integrity,
        m.engines_node.as_deref(),
        &tc,
    )
}
