//! Running npm builds without root, as the `abssctl-build` user: a transient systemd unit
//! (ProtectSystem=strict, only the build dir and the npm cache writable) where systemd runs
//! as PID 1, otherwise `setpriv` with a parent-death signal (so killing abssctl also stops
//! the build); then ending the user's processes and sealing the tree (`sys::seal`). Plus
//! the local facts the runtime choice needs (system node, build tools).

use crate::domain::versions::{self, LocalNode};
use crate::error::Failure;
use crate::sys::systemd::{Systemd, TransientSpec};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The PATH builds run with: the system directories only. The caller's PATH may point into
/// its home (pyenv shims, nvm) where the unprivileged build user cannot go.
pub const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first executable `name` on the caller's PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(&std::env::var_os("PATH")?, name)
}

/// The first executable `name` in a PATH-style list.
pub fn which_in(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

/// The version a node binary reports (`None`: not runnable).
pub fn node_version(node: &Path) -> Option<semver::Version> {
    let out = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| versions::parse_node_version(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// `node` on PATH, or the configured binary.
pub fn local_node(path: Option<&Path>) -> Option<LocalNode> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => which("node")?,
    };
    let version = node_version(&path)?;
    Some(LocalNode { path, version })
}

/// The header directory (`--nodedir`) of a node binary: `<prefix>` with
/// `include/node/node_version.h`, which node-gyp needs to build without downloading.
pub fn nodedir_of(node: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(node).ok()?;
    let prefix = real.parent()?.parent()?;
    prefix
        .join("include/node/node_version.h")
        .is_file()
        .then(|| prefix.to_path_buf())
}

/// The tools a native build needs that are missing (Debian package names = tool names).
pub fn missing_build_tools() -> Vec<&'static str> {
    ["g++", "make", "python3"]
        .into_iter()
        .filter(|t| which_in(std::ffi::OsStr::new(BUILD_PATH), t).is_none())
        .collect()
}

/// The system account npm builds run as (debian/sysusers.d; made on demand when abssctl
/// runs without its package, e.g. from a relocated root in tests).
///
/// Why a dedicated static user and not DynamicUser: the build dir and the npm cache must be
/// writable by the build and by no one else, from before the build starts. A dynamic uid is
/// unknown until the unit runs, so the old code opened both trees to everyone (a+rwX) for
/// the length of the build; systemd's own answer (StateDirectory=/CacheDirectory=) keeps
/// the files under /var/lib/private or /var/cache/private, away from the install root where
/// the tree must end up by one rename. A static user owns its two dirs 0700 ahead of time.
pub const BUILD_USER: &str = "abssctl-build";

/// How a build is isolated.
pub enum Sandbox {
    /// A transient unit running as the build user.
    Transient {
        sd: Box<dyn Systemd>,
        uid: u32,
        gid: u32,
    },
    /// `setpriv` to the build user (no systemd as PID 1).
    Setpriv { uid: u32, gid: u32 },
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Sandbox {
    /// Pick the strongest isolation this machine offers; `root` is the layout's root (the
    /// account database the build user is looked up in).
    pub fn detect(root: &Path) -> Result<Sandbox> {
        // Only root can hand the build dir to the build user and the built tree to root.
        if !crate::sys::privilege::is_root() {
            return Err(
                Failure::environment("building an Actual version needs root")
                    .hint("run it with sudo")
                    .into(),
            );
        }
        let accounts = crate::sys::users::Accounts::new(root);
        let acct = match accounts.lookup(BUILD_USER)? {
            Some(a) => a,
            None => {
                tracing::info!("creating the system user {BUILD_USER} for npm builds");
                accounts.create(BUILD_USER, "abssctl npm builds", None)?
            }
        };
        let (uid, gid) = (acct.uid, acct.gid);
        if uid == 0 || gid == 0 {
            return Err(Failure::environment(format!(
                "the build user {BUILD_USER} has uid {uid} / gid {gid}: builds never run as root"
            ))
            .hint(format!(
                "userdel {BUILD_USER}; abssctl recreates it as a system user"
            ))
            .into());
        }
        if Path::new("/run/systemd/system").is_dir() {
            match crate::sys::systemd::DbusSystemd::connect() {
                Ok(s) => {
                    return Ok(Sandbox::Transient {
                        sd: Box::new(s),
                        uid,
                        gid,
                    });
                }
                Err(e) => tracing::warn!(
                    "systemd is PID 1 but not reachable ({e:#}); building via setpriv instead"
                ),
            }
        }
        tracing::info!("no systemd as PID 1: the npm build runs as {BUILD_USER} via setpriv");
        Ok(Sandbox::Setpriv { uid, gid })
    }

    /// The uid/gid builds run as.
    pub fn ids(&self) -> (u32, u32) {
        match self {
            Sandbox::Transient { uid, gid, .. } | Sandbox::Setpriv { uid, gid } => (*uid, *gid),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sandbox::Transient { .. } => format!("{BUILD_USER} in a transient systemd unit"),
            Sandbox::Setpriv { .. } => format!("{BUILD_USER} (setpriv)"),
        }
    }

    /// Hand a directory root has just made (in a parent only root can write) to the build
    /// user, with everything in it, and make it 0700: nobody else may enter it.
    pub fn hand_over(&self, dir: &Path) -> Result<()> {
        crate::sys::users::chown_tree(dir, 0, self.ids())?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))
    }

    /// After a build: end every process of the build user, then seal `dir` (root-owned,
    /// no setuid, nothing writable by others). See `sys::seal`.
    pub fn seal(&self, dir: &Path) -> Result<crate::sys::seal::Sealed> {
        let (uid, _) = self.ids();
        let killed = crate::sys::seal::end_processes_of(uid)?;
        if killed > 0 {
            tracing::warn!("ended {killed} leftover process(es) of {BUILD_USER}");
        }
        crate::sys::seal::seal_tree(dir, &[0, uid])
    }
}

/// One npm run.
#[derive(Debug, Clone)]
pub struct BuildCmd {
    pub unit: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Directories the build writes (the build dir and the npm cache), already the build
    /// user's (`Sandbox::hand_over`, `ensure_owned_dir`).
    pub writable: Vec<PathBuf>,
    /// Where npm's output goes (setpriv/caller; a transient unit logs to the journal).
    pub log: PathBuf,
    pub timeout: Duration,
}

/// Total bytes of regular files in a tree (a sealed one: root's, no link followed).
pub fn tree_size(dir: &Path) -> Result<u64> {
    let md =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut total = if md.is_file() { md.len() } else { 0 };
    if md.is_dir() {
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            total += tree_size(
                &e.with_context(|| format!("listing {}", dir.display()))?
                    .path(),
            )?;
        }
    }
    Ok(total)
}

/// Create `dir` (missing parents get 0755, so an unprivileged build user can pass through
/// them) and set its mode; root keeps owning them.
pub fn ensure_dir_mode(dir: &Path, mode: u32) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        crate::sys::fs::create_dir_all_mode(d, 0o755)?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", d.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// The npm cache: a directory of the build user's alone (0700) in a root-owned parent.
/// One that is not exactly that (another owner, a link, group/other bits: e.g. left by an
/// older release or changed by hand) is not trusted and starts over empty; it is a cache.
pub fn ensure_owned_dir(sandbox: &Sandbox, dir: &Path) -> Result<()> {
    let (uid, gid) = sandbox.ids();
    match std::fs::symlink_metadata(dir) {
        Ok(md) => {
            let ok =
                md.is_dir() && md.mode() & 0o7777 == 0o700 && md.uid() == uid && md.gid() == gid;
            if ok {
                return Ok(());
            }
            tracing::warn!(
                "{} is not the build user's alone (owner {}, mode {:o}): starting it over",
                dir.display(),
                md.uid(),
                md.mode() & 0o7777
            );
            if md.is_dir() {
                std::fs::remove_dir_all(dir)
            } else {
                std::fs::remove_file(dir)
            }
            .with_context(|| format!("removing {}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    if let Some(parent) = dir.parent() {
        crate::sys::fs::create_dir_all_mode(parent, 0o755)?;
    }
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    sandbox.hand_over(dir)
}

/// The build user must reach these paths: every ancestor needs o+x. Fail early with the
/// directory to fix rather than with npm's "Cannot find module".
pub fn check_traversable(paths: &[&Path]) -> Result<()> {
    for path in paths {
        for anc in path.ancestors().skip(1) {
            let md =
                std::fs::metadata(anc).with_context(|| format!("reading {}", anc.display()))?;
            if md.mode() & 0o001 == 0 {
                return Err(Failure::environment(format!(
                    "the unprivileged build user cannot pass through {} (mode {:o})",
                    anc.display(),
                    md.mode() & 0o7777
                ))
                .hint(format!("chmod o+x {}", anc.display()))
                .into());
            }
        }
    }
    Ok(())
}

/// Stop the build unit a killed abssctl left running, before its staging dir is reused
/// (setpriv builds die with abssctl through their parent-death signal; what they started
/// is ended by `Sandbox::seal`).
pub fn stop_leftover(sandbox: &Sandbox, unit: &str) -> Result<()> {
    let Sandbox::Transient { sd, .. } = sandbox else {
        return Ok(());
    };
    let status = sd.unit_status(&[unit.to_string()])?;
    if status
        .iter()
        .any(|s| s.active_state == "active" || s.active_state == "activating")
    {
        tracing::warn!("stopping the leftover build unit {unit}");
        sd.stop_unit(unit, Duration::from_secs(60))?;
    }
    Ok(())
}

/// Run npm in the sandbox; `Ok(Err(detail))` when npm itself failed (detail = the end of
/// its output, or where to find it).
pub fn run(sandbox: &Sandbox, cmd: &BuildCmd) -> Result<std::result::Result<(), String>> {
    match sandbox {
        Sandbox::Transient { sd, .. } => {
            let spec = TransientSpec {
                unit: cmd.unit.clone(),
                argv: cmd.argv.clone(),
                env: cmd.env.clone(),
                working_dir: cmd.cwd.clone(),
                writable: cmd.writable.clone(),
                timeout: cmd.timeout,
                user: Some(BUILD_USER.into()),
            };
            let out = sd.run_transient(&spec)?;
            Ok(if out.result == "success" {
                Ok(())
            } else {
                Err(format!(
                    "{} ended with {} (status {}); see journalctl -u {}",
                    cmd.unit, out.result, out.exit_status, cmd.unit
                ))
            })
        }
        Sandbox::Setpriv { uid, gid } => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
                .args(["--clear-groups", "--pdeathsig", "KILL", "--"]);
            c.args(&cmd.argv);
            spawn_logged(c, cmd)
        }
    }
}

fn spawn_logged(mut c: Command, cmd: &BuildCmd) -> Result<std::result::Result<(), String>> {
    // The log is root's (0600 in root's logs dir): the build writes it through the fds it
    // inherits and cannot open anything else there.
    let log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&cmd.log)
        .with_context(|| format!("creating {}", cmd.log.display()))?;
    let log2 = log
        .try_clone()
        .context("duplicating the build log handle")?;
    c.env_clear()
        .envs(&cmd.env)
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let status = c
        .status()
        .with_context(|| format!("running {}", cmd.argv.join(" ")))?;
    if status.success() {
        return Ok(Ok(()));
    }
    let text = std::fs::read_to_string(&cmd.log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Ok(Err(format!(
        "npm failed ({status}); log {}:\n{}",
        cmd.log.display(),
        tail.join("\n")
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn size_of_a_tree_counts_files_not_links() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/x"), b"12345").unwrap();
        std::fs::write(d.join("f"), b"1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("l")).unwrap();
        assert_eq!(tree_size(&d).unwrap(), 6);
    }

    /// The npm cache that is not the build user's alone starts over; one that is stays.
    #[test]
    fn an_untrusted_npm_cache_starts_over() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cache/npm");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("planted"), b"x").unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o777)).unwrap();
        let builder = Sandbox::Setpriv {
            uid: 4242,
            gid: 4242,
        };
        ensure_owned_dir(&builder, &c).unwrap();
        assert!(!c.join("planted").exists());
        let md = std::fs::metadata(&c).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o700, 4242, 4242)
        );
        std::fs::write(c.join("kept"), b"x").unwrap();
        ensure_owned_dir(&builder, &c).unwrap();
        assert!(c.join("kept").exists());
        // Right mode, wrong owner (e.g. a dynamic uid of an older release): starts over.
        std::os::unix::fs::chown(&c, Some(4343), Some(4343)).unwrap();
        ensure_owned_dir(&builder, &c).unwrap();
        assert!(!c.join("kept").exists());
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-tool-abssctl").is_none());
    }
}
