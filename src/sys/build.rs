//! Running npm builds without root: a transient systemd unit (DynamicUser, ProtectSystem=
//! strict) where systemd runs as PID 1, otherwise `setpriv` to the `nobody` user with a
//! parent-death signal (so killing abssctl also stops the build). Plus the local facts the
//! runtime choice needs (system node, build tools) and the finishing of a built tree.

use crate::domain::versions::{self, LocalNode};
use crate::error::Failure;
use crate::sys::systemd::{Systemd, TransientSpec};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// How a build is isolated.
pub enum Sandbox {
    /// A transient unit with a dynamic user.
    Transient(Box<dyn Systemd>),
    /// `setpriv` to an unprivileged user (no systemd as PID 1).
    Setpriv { user: String, uid: u32, gid: u32 },
    /// Not root: npm runs as the caller (only possible when nothing privileged is at stake).
    Caller,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Sandbox {
    /// Pick the strongest isolation this machine offers.
    pub fn detect() -> Result<Sandbox> {
        if !crate::sys::privilege::is_root() {
            return Ok(Sandbox::Caller);
        }
        if Path::new("/run/systemd/system").is_dir() {
            match crate::sys::systemd::DbusSystemd::connect() {
                Ok(s) => return Ok(Sandbox::Transient(Box::new(s))),
                Err(e) => tracing::warn!(
                    "systemd is PID 1 but not reachable ({e:#}); building as 'nobody' instead"
                ),
            }
        }
        let user = nix::unistd::User::from_name("nobody")
            .context("looking up the user 'nobody'")?
            .ok_or_else(|| Failure::environment("no user 'nobody' to run the build as"))?;
        tracing::info!("no systemd as PID 1: the npm build runs as user 'nobody' via setpriv");
        Ok(Sandbox::Setpriv {
            user: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Sandbox::Transient(_) => "transient systemd unit (DynamicUser)".into(),
            Sandbox::Setpriv { user, .. } => format!("user '{user}' (setpriv)"),
            Sandbox::Caller => "the calling user".into(),
        }
    }
}

/// One npm run.
#[derive(Debug, Clone)]
pub struct BuildCmd {
    pub unit: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Directories the build writes (the build dir and the npm cache).
    pub writable: Vec<PathBuf>,
    /// Where npm's output goes (setpriv/caller; a transient unit logs to the journal).
    pub log: PathBuf,
    pub timeout: Duration,
}

/// chown -R (no symlink following).
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    walk(dir, &mut |p, _| {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
            .with_context(|| format!("changing the owner of {}", p.display()))
    })
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<()>) -> Result<()> {
    let md =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    f(dir, &md)?;
    if md.is_dir() {
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            walk(
                &e.with_context(|| format!("listing {}", dir.display()))?
                    .path(),
                f,
            )?;
        }
    }
    Ok(())
}

/// Make a built tree root-owned and read-only for everyone else: dirs 0755, files 0644
/// (0755 when executable). The service user reads it; nobody but root changes it.
pub fn seal_tree(dir: &Path) -> Result<()> {
    walk(dir, &mut |p, md| {
        std::os::unix::fs::lchown(p, Some(0), Some(0))
            .with_context(|| format!("changing the owner of {}", p.display()))?;
        if md.file_type().is_symlink() {
            return Ok(());
        }
        let mode = if md.is_dir() || md.mode() & 0o100 != 0 {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", p.display()))
    })
}

/// Total bytes of regular files in a tree.
pub fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    walk(dir, &mut |_, md| {
        if md.is_file() {
            total += md.len();
        }
        Ok(())
    })?;
    Ok(total)
}

/// Create `dir` (missing parents get 0755, so an unprivileged build user can pass through
/// them) and set its mode.
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
/// (setpriv builds die with abssctl through their parent-death signal).
pub fn stop_leftover(sandbox: &Sandbox, unit: &str) -> Result<()> {
    let Sandbox::Transient(sd) = sandbox else {
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
        Sandbox::Transient(sd) => {
            for w in &cmd.writable {
                // The dynamic uid is unknown before the start: let it write these two dirs.
                walk(w, &mut |p, md| {
                    if md.file_type().is_symlink() {
                        return Ok(());
                    }
                    let mode = if md.is_dir() {
                        0o777
                    } else {
                        md.mode() | 0o666
                    };
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
                        .with_context(|| format!("opening {} to the build user", p.display()))
                })?;
            }
            let spec = TransientSpec {
                unit: cmd.unit.clone(),
                argv: cmd.argv.clone(),
                env: cmd.env.clone(),
                working_dir: cmd.cwd.clone(),
                writable: cmd.writable.clone(),
                timeout: cmd.timeout,
                user: None,
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
        Sandbox::Setpriv { uid, gid, .. } => {
            for w in &cmd.writable {
                chown_tree(w, *uid, *gid)?;
            }
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
                .args(["--clear-groups", "--pdeathsig", "KILL", "--"]);
            c.args(&cmd.argv);
            spawn_logged(c, cmd)
        }
        Sandbox::Caller => {
            let mut c = Command::new(&cmd.argv[0]);
            c.args(&cmd.argv[1..]);
            spawn_logged(c, cmd)
        }
    }
}

fn spawn_logged(mut c: Command, cmd: &BuildCmd) -> Result<std::result::Result<(), String>> {
    let log = std::fs::File::create(&cmd.log)
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

/// Ask a yes/no question on the terminal; without a terminal the answer is no (scripts
/// must say --yes explicitly).
pub fn confirm(question: &str) -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .context("reading the answer")
}

/// Progress of long steps: a spinner on a terminal, plain lines on stderr otherwise (logs,
/// pipes), nothing with --quiet or --json (stdout stays a clean document).
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    pub fn new(json: bool, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        if json || quiet {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            return Progress {
                bar: Some(bar),
                plain: false,
            };
        }
        Progress {
            bar: None,
            plain: true,
        }
    }

    /// Announce a step.
    pub fn step(&self, msg: &str) {
        tracing::info!("{msg}");
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        } else if self.plain {
            eprintln!("{msg}");
        }
    }

    /// Bytes of a download (spinner only: plain logs get the step line, not a flood).
    pub fn bytes(&self, what: &str, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            let t = total
                .map(|t| format!("/{} MB", t / 1_000_000))
                .unwrap_or_default();
            b.set_message(format!("{what}: {} MB{t}", done / 1_000_000));
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_size_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/x"), b"12345").unwrap();
        std::fs::set_permissions(d.join("bin/x"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(d.join("f"), b"1").unwrap();
        assert_eq!(tree_size(&d).unwrap(), 6);
        if crate::sys::privilege::is_root() {
            seal_tree(&d).unwrap();
            let m = |p: &str| std::fs::metadata(d.join(p)).unwrap().mode() & 0o777;
            assert_eq!((m("bin/x"), m("f"), m("bin")), (0o755, 0o644, 0o755));
        }
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-tool-abssctl").is_none());
    }
}
