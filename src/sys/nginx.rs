//! nginx: put an instance's vhost in place the ADR-031/032 way, and reload.
//!
//! The order matters because nginx serves every site on the machine, not only ours:
//! 1. the new text is written aside (`<file>.new`, fsynced), a changed file is copied to
//!    `<file>.bak-<op_id>` (fsynced too, before anything relies on it);
//! 2. the new file is renamed over the old one and the relative sites-enabled symlink made;
//! 3. `nginx -t` checks the whole configuration; nothing is reloaded yet, so the running
//!    nginx keeps serving the previous configuration throughout;
//! 4. if the test fails, the previous files are put back byte-identical and the test is run
//!    again (its result is reported, since another site may be what is broken);
//! 5. only a passing test is followed by a reload, over D-Bus (ReloadUnit, never restart).

use crate::domain::validate::Domain;
use crate::domain::vhost::{self, Http2Syntax, NGINX_UNIT, NginxVersion};
use crate::error::Failure;
use crate::sys::{fs, systemd::Systemd};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mode of vhost files: nginx config is not secret (ADR-031: 0644 root:root).
pub const VHOST_MODE: u32 = 0o644;
/// Backups `<file>.bak-<op_id>` kept per vhost; older ones are removed after a successful
/// change. Op ids are UUIDv7, so their text order is their time order.
pub const BACKUPS_KEPT: usize = 3;
/// How long a reload job may take before it is reported as a failure.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A configuration check that passed, with what nginx printed (warnings).
#[derive(Debug, Clone, Default)]
pub struct TestPassed {
    pub output: String,
}

/// Something that can check the whole nginx configuration (`nginx -t`).
pub trait ConfigTest {
    /// Ok with nginx's output when the configuration is valid; a provider [`Failure`]
    /// carrying nginx's first error line otherwise.
    fn test(&self) -> Result<TestPassed>;

    /// The HTTP/2 form this nginx takes, for the vhost it is about to test. By default that
    /// of the `nginx` on PATH, which is the one an implementor that finds nginx on first use
    /// (`ops::instance::LazyNginx`) tests with.
    fn http2_syntax(&self) -> Http2Syntax {
        installed_http2_syntax()
    }
}

/// The real `nginx -t`.
#[derive(Debug, Clone)]
pub struct NginxCli {
    program: PathBuf,
    args: Vec<OsString>,
    /// `nginx -v` of `program`, asked once.
    http2: std::sync::OnceLock<Http2Syntax>,
}

/// `nginx` in a directory of PATH.
fn nginx_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    })
}

/// The version of the nginx binary `program` (`nginx -v`, which prints on stderr).
pub fn nginx_version(program: &Path) -> Result<NginxVersion> {
    let out = std::process::Command::new(program)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {} -v", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(vhost::parse_nginx_version(&text)?)
}

/// The HTTP/2 form for `program`, or the 1.22 form when its version cannot be read: that
/// form works on every nginx (a newer one only warns), so a vhost is never made invalid by
/// a guess. A dry run on a machine without nginx lands here too.
fn http2_syntax_of(program: Option<&Path>) -> Http2Syntax {
    let Some(program) = program else {
        tracing::debug!("no nginx on PATH; vhosts use `listen ... ssl http2` (nginx 1.22 form)");
        return Http2Syntax::default();
    };
    match nginx_version(program) {
        Ok(v) => {
            let syntax = Http2Syntax::for_version(v);
            tracing::debug!(version = %v, ?syntax, "nginx version");
            syntax
        }
        Err(e) => {
            tracing::warn!(
                "{e:#}; the vhost uses `listen ... ssl http2` (nginx 1.22 form), which newer nginx accepts with a warning"
            );
            Http2Syntax::default()
        }
    }
}

/// The HTTP/2 form of the `nginx` on PATH, asked once per process.
pub fn installed_http2_syntax() -> Http2Syntax {
    static CACHE: std::sync::OnceLock<Http2Syntax> = std::sync::OnceLock::new();
    *CACHE.get_or_init(|| http2_syntax_of(nginx_on_path().as_deref()))
}

impl NginxCli {
    /// `nginx` from PATH, with the machine's own nginx.conf.
    pub fn from_path() -> Result<Self> {
        match nginx_on_path() {
            Some(program) => Ok(NginxCli::new(program, Vec::new())),
            None => Err(
                Failure::environment("nginx is not installed (no `nginx` on PATH)")
                    .hint("install it: apt install nginx")
                    .into(),
            ),
        }
    }

    /// A given nginx binary with extra arguments before `-t` (e.g. `-c <conf> -p <prefix>`
    /// for an nginx that does not use the packaged /etc/nginx/nginx.conf).
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        NginxCli {
            program: program.into(),
            args,
            http2: std::sync::OnceLock::new(),
        }
    }
}

impl ConfigTest for NginxCli {
    fn test(&self) -> Result<TestPassed> {
        let out = std::process::Command::new(&self.program)
            .args(&self.args)
            .arg("-t")
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {} -t", self.program.display()))?;
        // nginx -t reports on stderr; keep stdout too in case a wrapper prints there.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        if out.status.success() {
            Ok(TestPassed { output: text })
        } else {
            Err(Failure::provider(format!(
                "nginx rejected the configuration: {}",
                vhost::first_error_line(&text)
            ))
            .hint("run `nginx -t` to see the whole report")
            .into())
        }
    }

    fn http2_syntax(&self) -> Http2Syntax {
        *self
            .http2
            .get_or_init(|| http2_syntax_of(Some(&self.program)))
    }
}

/// The three paths of one vhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostPaths {
    /// sites-available/<file>
    pub file: PathBuf,
    /// sites-enabled/<file>
    pub link: PathBuf,
    /// What the link points to: ../sites-available/<file>
    pub link_target: PathBuf,
}

impl VhostPaths {
    pub fn new(file: PathBuf, link: PathBuf) -> Self {
        let link_target = vhost::relative_link_target(&link, &file);
        VhostPaths {
            file,
            link,
            link_target,
        }
    }
    fn aside(&self, suffix: &str) -> PathBuf {
        let mut s = self.file.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }
    /// `<file>.new`, where new text waits until it replaces the file.
    pub fn new_file(&self) -> PathBuf {
        self.aside(".new")
    }
    /// `<file>.bak-<op_id>`, the previous text of a file this operation changed.
    pub fn backup_file(&self, op_id: &str) -> PathBuf {
        self.aside(&format!(".bak-{op_id}"))
    }
}

/// What the vhost file was before an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBefore {
    Absent,
    Unchanged,
    /// Its previous bytes are in this backup.
    Backup(PathBuf),
}

/// What the sites-enabled entry was before an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkBefore {
    Absent,
    Unchanged,
    Pointed(PathBuf),
}

/// The record of one change, enough to put everything back.
#[derive(Debug, Clone)]
pub struct Change {
    pub paths: VhostPaths,
    pub file: FileBefore,
    pub link: LinkBefore,
}

impl Change {
    /// True when the files on disk differ from before (a reload is due).
    pub fn changed(&self) -> bool {
        self.file != FileBefore::Unchanged || self.link != LinkBefore::Unchanged
    }
}

fn link_state(link: &Path) -> Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", link.display())),
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(link)
            .map(Some)
            .with_context(|| format!("reading symlink {}", link.display())),
        Ok(_) => Err(Failure::validation(format!(
            "{} is a regular file, not abssctl's symlink; refusing to replace it",
            link.display()
        ))
        .hint("move that file away (it is not managed by abssctl) and run the command again")
        .into()),
    }
}

fn read_bytes_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// Put a previous state back (the undo of [`install`] and [`uninstall`]).
pub fn restore(change: &Change) -> Result<()> {
    let p = &change.paths;
    match &change.file {
        FileBefore::Unchanged => {}
        FileBefore::Absent => {
            fs::remove_file_if_exists(&p.file)?;
        }
        FileBefore::Backup(bak) => {
            // A rename brings back the very bytes, mode and owner of the old file.
            std::fs::rename(bak, &p.file).with_context(|| {
                format!("restoring {} from {}", p.file.display(), bak.display())
            })?;
        }
    }
    match &change.link {
        LinkBefore::Unchanged => {}
        LinkBefore::Absent => {
            fs::remove_file_if_exists(&p.link)?;
        }
        LinkBefore::Pointed(target) => fs::symlink_atomic(target, &p.link)?,
    }
    fs::sync_dir(parent(&p.file))?;
    fs::sync_dir(parent(&p.link))
}

/// After a change: test, and on failure restore and test again. Returns the error to raise.
fn test_or_restore(
    change: &Change,
    tester: &dyn ConfigTest,
    domain: Option<&Domain>,
) -> Result<()> {
    let failure = match tester.test() {
        Ok(passed) => match domain.and_then(|d| vhost::conflicting_name_warning(&passed.output, d)) {
            None => return Ok(()),
            Some(line) => anyhow::Error::from(
                Failure::provider(format!(
                    "another nginx site already serves this domain, so nginx would ignore this vhost: {line}"
                ))
                .hint("remove or rename the other site's server_name, or pick another domain"),
            ),
        },
        Err(e) => e,
    };
    if let Err(e) = restore(change) {
        return Err(failure.context(format!(
            "and restoring the previous files failed ({e:#}); fix {} by hand",
            change.paths.file.display()
        )));
    }
    match tester.test() {
        Ok(_) => Err(failure.context("previous vhost files restored; nginx was not reloaded")),
        Err(again) => Err(failure.context(format!(
            "previous vhost files restored, but the restored configuration fails too ({}); nginx was not reloaded",
            crate::error::classify(&again).1
        ))),
    }
}

/// Write `content` as the vhost and enable it; `nginx -t` must pass, else everything is put
/// back and a provider error carries nginx's first error line. Identical content and link:
/// nothing is touched (idempotent).
pub fn install(
    paths: &VhostPaths,
    content: &str,
    op_id: &str,
    tester: &dyn ConfigTest,
    domain: &Domain,
) -> Result<Change> {
    let old = read_bytes_optional(&paths.file)?;
    let old_link = link_state(&paths.link)?;
    let same_file = old.as_deref() == Some(content.as_bytes());
    let same_link = old_link.as_deref() == Some(paths.link_target.as_path());
    let mut change = Change {
        paths: paths.clone(),
        file: FileBefore::Unchanged,
        link: LinkBefore::Unchanged,
    };
    if same_file && same_link {
        return Ok(change);
    }
    if !same_file {
        let new = paths.new_file();
        fs::write_atomic(&new, content.as_bytes(), VHOST_MODE)?;
        change.file = match old {
            None => FileBefore::Absent,
            Some(_) => {
                let bak = paths.backup_file(op_id);
                // Durable before the rename below replaces the original: a power cut
                // after it must find the old bytes in the backup, not an empty file.
                if let Err(e) = fs::copy_durable(&paths.file, &bak).with_context(|| {
                    format!("backing up {} to {}", paths.file.display(), bak.display())
                }) {
                    fs::remove_file_if_exists(&new)?;
                    return Err(e);
                }
                FileBefore::Backup(bak)
            }
        };
        std::fs::rename(&new, &paths.file)
            .with_context(|| format!("renaming {} over {}", new.display(), paths.file.display()))?;
        fs::sync_dir(parent(&paths.file))?;
    }
    if !same_link {
        change.link = match old_link {
            None => LinkBefore::Absent,
            Some(t) => LinkBefore::Pointed(t),
        };
        if let Err(e) = fs::symlink_atomic(&paths.link_target, &paths.link) {
            return Err(match restore(&change) {
                Ok(()) => e,
                Err(r) => e.context(format!("and restoring failed: {r:#}")),
            });
        }
    }
    test_or_restore(&change, tester, Some(domain))?;
    prune_backups(paths, BACKUPS_KEPT)?;
    Ok(change)
}

/// Disable and remove the vhost (its text kept as `<file>.bak-<op_id>` until the undo or
/// for the operator). Absent files: nothing to do.
pub fn uninstall(paths: &VhostPaths, op_id: &str, tester: &dyn ConfigTest) -> Result<Change> {
    let old_link = link_state(&paths.link)?;
    let mut change = Change {
        paths: paths.clone(),
        file: FileBefore::Unchanged,
        link: LinkBefore::Unchanged,
    };
    if let Some(t) = old_link {
        fs::remove_file_if_exists(&paths.link)?;
        change.link = LinkBefore::Pointed(t);
    }
    if paths.file.exists() {
        let bak = paths.backup_file(op_id);
        std::fs::rename(&paths.file, &bak)
            .with_context(|| format!("moving {} to {}", paths.file.display(), bak.display()))?;
        change.file = FileBefore::Backup(bak);
    }
    if !change.changed() {
        return Ok(change);
    }
    fs::sync_dir(parent(&paths.file))?;
    fs::sync_dir(parent(&paths.link))?;
    test_or_restore(&change, tester, None)?;
    prune_backups(paths, BACKUPS_KEPT)?;
    Ok(change)
}

/// Remove all but the newest `keep` backups of this vhost, so repeated set-port/set-domain
/// runs do not fill sites-available. The newest is the one an undo of this run would use.
pub fn prune_backups(paths: &VhostPaths, keep: usize) -> Result<Vec<PathBuf>> {
    let dir = parent(&paths.file);
    let prefix = match paths.file.file_name() {
        Some(n) => format!("{}.bak-", n.to_string_lossy()),
        None => return Ok(Vec::new()),
    };
    let mut baks = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        {
            baks.push(path);
        }
    }
    baks.sort();
    let excess = baks.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = baks.into_iter().take(excess).collect();
    for p in &removed {
        fs::remove_file_if_exists(p)?;
    }
    Ok(removed)
}

/// Reload nginx over D-Bus. A stopped nginx is left stopped (it reads the files when it
/// starts); returns whether a reload happened.
pub fn reload(systemd: &dyn Systemd) -> Result<bool> {
    crate::failpoint!("nginx-reload");
    let status = systemd.unit_status(&[NGINX_UNIT.to_string()])?;
    let active = status
        .first()
        .is_some_and(|s| s.active_state == "active" || s.active_state == "reloading");
    if !active {
        tracing::warn!("{NGINX_UNIT} is not running; the vhost takes effect when it starts");
        return Ok(false);
    }
    let master = status.first().map_or(0, |s| s.main_pid);
    let old_workers = children(master);
    systemd
        .reload_unit(NGINX_UNIT, RELOAD_TIMEOUT)
        .with_context(|| format!("reloading {NGINX_UNIT}"))?;
    wait_new_generation(master, &old_workers);
    Ok(true)
}

/// nginx.service's ExecReload only SIGHUPs the master, so the reload job ends before nginx
/// has read the new files: a request right after it can still meet an old worker and the
/// old configuration (seen: a new vhost answered by another site). Wait, briefly, until the
/// master has new workers and the old ones are gone. Old workers finishing long requests
/// must not block the command: after the limit it goes on, and says so in the log.
fn wait_new_generation(master: u32, old_workers: &[u32]) {
    if master == 0 || old_workers.is_empty() {
        return;
    }
    let deadline = std::time::Instant::now() + GENERATION_WAIT;
    loop {
        let now = children(master);
        let fresh = now.iter().any(|p| !old_workers.contains(p));
        let old_left = now.iter().any(|p| old_workers.contains(p));
        if fresh && !old_left {
            return;
        }
        if std::time::Instant::now() > deadline {
            tracing::info!(
                fresh,
                old_left,
                "nginx reload: old workers still running after {}s; going on",
                GENERATION_WAIT.as_secs()
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How long to wait for nginx's workers to change over after a reload.
const GENERATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// PIDs whose parent is `pid`, from /proc (empty when it cannot be read).
fn children(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|st| {
                    // Field 4 (ppid) follows the command name, which is in parentheses and
                    // may itself contain spaces: split after the last ')'.
                    let rest = &st[st.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_finds_a_spawned_process_and_nothing_for_pid_0() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(kids.contains(&child.id()), "{kids:?}");
        assert!(children(0).is_empty());
    }

    #[test]
    fn an_nginx_that_cannot_be_asked_gets_the_1_22_form() {
        // A program that runs but prints no version, and one that does not exist.
        let no_version = NginxCli::new("/bin/true", Vec::new());
        assert_eq!(no_version.http2_syntax(), Http2Syntax::ListenParameter);
        assert!(nginx_version(Path::new("/bin/true")).is_err());
        let missing = NginxCli::new("/nonexistent/nginx", Vec::new());
        assert_eq!(missing.http2_syntax(), Http2Syntax::ListenParameter);
        assert_eq!(http2_syntax_of(None), Http2Syntax::ListenParameter);
    }
}
