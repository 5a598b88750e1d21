//! Probes of abssctl's files: modes and owners of its trees and the TLS keys, free space
//! and inodes, the backup index against the archives, the age of scheduled backups, locks
//! left by a dead holder, and leftovers of crashed operations. The scans that find what
//! `--fix` repairs are shared with `fix.rs`, so a fix repairs exactly what was reported.

use super::{Check, FILE_TIMEOUT, Facts};
use crate::domain::backup::{Index, Status as BackupStatus};
use crate::domain::doctor::{self as model, Category, Finding, Status};
use crate::domain::layout::Layout;
use crate::ops::Ctx;
use crate::sys;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Entries looked at per tree (a version tree holds thousands of files).
const TREE_LIMIT: usize = 20_000;

pub fn checks(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let mut v = vec![perms(facts)];
    v.extend(disks(facts));
    v.push(backup_index(ctx, facts));
    v.extend(backup_ages(ctx, facts));
    v.push(locks(facts));
    v.push(staging(facts));
    v
}

/// The directories abssctl owns (root:root, not writable by group or others).
pub fn managed_dirs(l: &Layout) -> Vec<PathBuf> {
    let mut v = vec![
        l.state_dir.clone(),
        l.registry_dir.clone(),
        l.logs_dir.clone(),
        l.locks_dir.clone(),
        l.backups_root.clone(),
    ];
    if let Some(d) = l.config_file.parent() {
        v.push(d.to_path_buf());
    }
    v
}

/// Trees under which nothing may be group- or world-writable: abssctl's own, and each
/// registered instance's directory (never the whole instance root: on TurnKey /srv holds
/// other applications too, which --fix must not touch).
fn trees(facts: &Facts) -> Vec<PathBuf> {
    let l = &facts.layout;
    let mut v = managed_dirs(l);
    v.extend([l.install_root.clone(), l.templates_dir.clone()]);
    v.extend(facts.instances().iter().map(|e| l.instance_dir(&e.name)));
    v.sort();
    v.dedup();
    v
}

/// The private keys instances are served with (the system one and every custom one).
pub fn keys(facts: &Facts) -> Vec<PathBuf> {
    let mut v = vec![facts.layout.tls_system_key.clone()];
    v.extend(
        facts
            .instances()
            .iter()
            .filter_map(|e| e.tls_key.clone())
            .map(|k| crate::domain::layout::rooted(&facts.layout.root, &k)),
    );
    v.sort();
    v.dedup();
    v
}

/// One mode to repair: the path, its mode, and the mode it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMode {
    pub path: PathBuf,
    pub mode: u32,
    pub want: u32,
    pub why: &'static str,
}

/// Every mode `fs.perms` reports: writable by group or others under abssctl's trees, and
/// private keys readable by others.
pub fn bad_modes(facts: &Facts) -> (Vec<BadMode>, bool) {
    let mut out = Vec::new();
    let mut cut = false;
    let mut seen = HashSet::new();
    for t in trees(facts) {
        let (found, c) = sys::inspect::writable_entries(&t, TREE_LIMIT);
        cut |= c;
        for p in found {
            if !seen.insert(p.clone()) {
                continue;
            }
            if let Some(m) = sys::inspect::meta(&p) {
                out.push(BadMode {
                    path: p,
                    mode: m.mode,
                    want: m.mode & !0o022,
                    why: "writable by group or others",
                });
            }
        }
    }
    for k in keys(facts) {
        if let Some(m) = sys::inspect::meta(&k)
            && !m.is_symlink
            && model::key_mode_exposed(m.mode)
        {
            out.push(BadMode {
                path: k,
                mode: m.mode,
                want: m.mode & !0o077,
                why: "a private key readable by others",
            });
        }
    }
    (out, cut)
}

/// Managed directories that do not exist (made by `--fix`). The backups dir is made by
/// the first backup, so its absence is no finding.
pub fn missing_dirs(l: &Layout) -> Vec<PathBuf> {
    managed_dirs(l)
        .into_iter()
        .filter(|d| *d != l.backups_root && sys::inspect::meta(d).is_none())
        .collect()
}

fn perms(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    Check::one(
        "fs.perms",
        Category::Fs,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let id = "fs.perms";
            let (bad, cut) = bad_modes(&f);
            let root = sys::privilege::is_root();
            let foreign: Vec<String> = managed_dirs(&f.layout)
                .into_iter()
                .filter(|d| root && sys::inspect::meta(d).is_some_and(|m| m.uid != 0))
                .map(|d| d.display().to_string())
                .collect();
            if !bad.is_empty() || !foreign.is_empty() {
                let mut parts: Vec<String> = bad
                    .iter()
                    .take(5)
                    .map(|b| format!("{} {:o} ({})", b.path.display(), b.mode, b.why))
                    .collect();
                if bad.len() > 5 {
                    parts.push(format!("and {} more", bad.len() - 5));
                }
                if !foreign.is_empty() {
                    parts.push(format!("not owned by root: {}", foreign.join(", ")));
                }
                let fix = if foreign.is_empty() {
                    "abssctl doctor --fix removes the extra permission bits".to_string()
                } else {
                    "abssctl doctor --fix removes the extra permission bits; chown root:root the directories not owned by root".to_string()
                };
                return Finding::red(id, Category::Fs, parts.join("; "), fix);
            }
            let missing = missing_dirs(&f.layout);
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
                return Finding::yellow(
                    id,
                    Category::Fs,
                    format!("missing: {}", list.join(", ")),
                    "abssctl doctor --fix creates them (root, 0750)",
                );
            }
            let note = if cut {
                " (large trees looked at in part)"
            } else {
                ""
            };
            Finding::green(
                id,
                Category::Fs,
                format!("modes and owners as they should be{note}"),
            )
        },
    )
}

/// `disk.<path>` for the filesystems holding instance data and backups, once each.
fn disks(facts: &Arc<Facts>) -> Vec<Check> {
    let l = &facts.layout;
    let mut seen = HashSet::new();
    let mut v = Vec::new();
    for p in [l.instance_root.clone(), l.backups_root.clone()] {
        let Some(space) = sys::inspect::space(&p) else {
            continue;
        };
        if !seen.insert(space.fsid) {
            continue;
        }
        let id = format!("disk.{}", p.display());
        let id2 = id.clone();
        v.push(Check::one(id, Category::Disk, FILE_TIMEOUT, move || {
            disk_finding(id2, &p, space)
        }));
    }
    v
}

fn disk_finding(id: String, p: &std::path::Path, s: sys::inspect::Space) -> Finding {
    let bytes = model::free_status(s.free_bytes, s.total_bytes);
    let inodes = model::free_status(s.free_inodes, s.total_inodes);
    let pct = |a: u64, b: u64| a.saturating_mul(100).checked_div(b).unwrap_or(100);
    let msg = format!(
        "{}: {} MiB free ({}%), {}% of inodes free",
        p.display(),
        s.free_bytes / (1 << 20),
        pct(s.free_bytes, s.total_bytes),
        pct(s.free_inodes, s.total_inodes)
    );
    let fix = "free space: abssctl backup prune, or move backups_root to a larger disk";
    match bytes.max(inodes) {
        Status::Green => Finding::green(id, Category::Disk, msg),
        Status::Yellow => Finding::yellow(id, Category::Disk, msg, fix),
        Status::Red => Finding::red(id, Category::Disk, msg, fix),
    }
}

/// The index against the files: entries whose archive is gone, entries already marked
/// missing or corrupt, and archives no entry names.
fn backup_index(ctx: &Ctx, facts: &Arc<Facts>) -> Check {
    let index = crate::ops::backup::load_index(ctx).map_err(|e| crate::error::classify(&e).1);
    let f = facts.clone();
    Check::one(
        "backups.index",
        Category::Backups,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let id = "backups.index";
            let c = Category::Backups;
            let index: Index = match index {
                Ok(i) => i,
                Err(e) => {
                    return Finding::red(
                        id,
                        c,
                        e,
                        "fix the index by hand (abssctl never rewrites an index it cannot read)",
                    );
                }
            };
            let gone: Vec<&str> = index
                .backups
                .iter()
                .filter(|b| {
                    b.status == BackupStatus::Present
                        && sys::inspect::meta(&b.archive_path).is_none()
                })
                .map(|b| b.id.as_str())
                .collect();
            if !gone.is_empty() {
                return Finding::red(
                    id,
                    c,
                    format!("archive file gone for: {}", gone.join(", ")),
                    "abssctl backup reconcile --all marks them missing; make a new backup: abssctl backup create NAME",
                );
            }
            let marked = index
                .backups
                .iter()
                .filter(|b| b.status != BackupStatus::Present)
                .count();
            let named: HashSet<&PathBuf> = index.backups.iter().map(|b| &b.archive_path).collect();
            let root = &f.layout.backups_root;
            let orphans: Vec<String> = sys::inspect::names(root)
                .into_iter()
                .flat_map(|d| {
                    let dir = root.join(&d);
                    sys::inspect::names(&dir)
                        .into_iter()
                        .map(move |n| dir.join(n))
                })
                .filter(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    crate::ops::backup::reconcile::archive_id(&n).is_some() && !named.contains(p)
                })
                .map(|p| p.display().to_string())
                .collect();
            if !orphans.is_empty() || marked > 0 {
                let mut parts = Vec::new();
                if marked > 0 {
                    parts.push(format!("{marked} backup(s) marked missing or corrupt"));
                }
                if !orphans.is_empty() {
                    parts.push(format!("archives not in the index: {}", orphans.join(", ")));
                }
                return Finding::yellow(
                    id,
                    c,
                    parts.join("; "),
                    "abssctl backup reconcile --all adds the archives; abssctl backup delete ID drops a lost one",
                );
            }
            Finding::green(
                id,
                c,
                format!("{} backup(s), index and files agree", index.backups.len()),
            )
        },
    )
}

/// `backups.age.<i>` for every instance with a schedule: the newest scheduled backup that
/// is still there is younger than the schedule allows.
fn backup_ages(ctx: &Ctx, facts: &Arc<Facts>) -> Vec<Check> {
    let index = crate::ops::backup::load_index(ctx).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    facts
        .instances()
        .iter()
        .filter_map(|e| e.schedule.as_ref().map(|s| (e, s)))
        .map(|(e, s)| {
            let id = format!("backups.age.{}", e.name);
            let max = model::backup_max_age_days(&s.on_calendar);
            let newest = index
                .backups
                .iter()
                .filter(|b| {
                    b.instance == e.name
                        && b.reason == crate::domain::schedule::REASON
                        && b.status == BackupStatus::Present
                })
                .map(|b| b.created_at)
                .max();
            let since = newest.unwrap_or(e.created_at);
            let days = (now - since).whole_days();
            let name = e.name.clone();
            let cal = s.on_calendar.clone();
            let id2 = id.clone();
            Check::one(id, Category::Backups, FILE_TIMEOUT, move || {
                let what = match newest {
                    Some(_) => format!("the newest scheduled backup of '{name}' is {days} day(s) old"),
                    None => format!("'{name}' has no scheduled backup yet ({days} day(s) since it was created)"),
                };
                if days > max {
                    Finding::yellow(
                        id2,
                        Category::Backups,
                        format!("{what}; its schedule is {cal}"),
                        format!("abssctl backup schedule --list shows the timer; systemctl status abssctl-backup@{name}.service"),
                    )
                } else {
                    Finding::green(id2, Category::Backups, what)
                }
            })
        })
        .collect()
}

/// A lock file whose holder line names a process that is gone.
#[derive(Debug, Clone)]
pub struct StaleLock {
    pub path: PathBuf,
    pub holder: sys::lock::Holder,
}

pub fn stale_locks(l: &Layout) -> Vec<StaleLock> {
    sys::inspect::names(&l.locks_dir)
        .into_iter()
        .filter(|n| n.ends_with(".lock"))
        .map(|n| l.locks_dir.join(n))
        .filter_map(|p| sys::lock::read_holder(&p).map(|h| (p, h)))
        .filter(|(_, h)| !sys::inspect::pid_alive(h.pid))
        .map(|(path, holder)| StaleLock { path, holder })
        .collect()
}

fn locks(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    Check::one(
        "locks.stale",
        Category::Locks,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let stale = stale_locks(&f.layout);
            if stale.is_empty() {
                return Finding::green(
                    "locks.stale",
                    Category::Locks,
                    "no lock left by a dead process",
                );
            }
            let list: Vec<String> = stale
                .iter()
                .map(|s| format!("{} ({}, gone)", s.path.display(), s.holder.describe()))
                .collect();
            Finding::yellow(
                "locks.stale",
                Category::Locks,
                format!("left by a crashed abssctl: {}", list.join("; ")),
                "abssctl doctor --fix clears them (the operation they belonged to did not finish: check its result)",
            )
        },
    )
}

/// Which lock guards a leftover: it is removed only when that lock is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// A version build's staging (the build lock).
    Build,
    /// A backup's temp archive or staging dir (the instance's lock).
    Instance(String),
}

/// A leftover of a crashed operation; `removable`: `--fix` may delete it.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub path: PathBuf,
    pub guard: Guard,
    pub removable: bool,
}

/// Leftovers: build staging dirs, backup temp archives and staging dirs, and (reported,
/// never removed: they may hold the only copy of an instance's data from before a
/// migration or a restore) upgrade copies and restore staging dirs.
pub fn leftovers(l: &Layout, instances: &[String]) -> Vec<Leftover> {
    let mut out: Vec<Leftover> = sys::inspect::names(&l.staging_dir)
        .into_iter()
        .map(|n| Leftover {
            path: l.staging_dir.join(n),
            guard: Guard::Build,
            removable: true,
        })
        .collect();
    for d in sys::inspect::names(&l.backups_root) {
        let dir = l.backups_root.join(&d);
        for n in sys::inspect::names(&dir) {
            if crate::ops::backup::reconcile::leftover(&n) {
                out.push(Leftover {
                    path: dir.join(n),
                    guard: Guard::Instance(d.clone()),
                    removable: true,
                });
            }
        }
    }
    let upgrade = crate::ops::upgrade::one::COPY_PREFIX;
    let restore = crate::ops::backup::restore::STAGING_PREFIX;
    for name in instances {
        let dir = l.instance_dir(name);
        for n in sys::inspect::names(&dir) {
            if n.starts_with(upgrade) || n.starts_with(restore) {
                out.push(Leftover {
                    path: dir.join(n),
                    guard: Guard::Instance(name.clone()),
                    removable: false,
                });
            }
        }
    }
    for n in sys::inspect::names(&l.instance_root) {
        if n.starts_with(restore) {
            out.push(Leftover {
                path: l.instance_root.join(n),
                guard: Guard::Build,
                removable: false,
            });
        }
    }
    out
}

fn staging(facts: &Arc<Facts>) -> Check {
    let f = facts.clone();
    let names: Vec<String> = facts.instances().iter().map(|e| e.name.clone()).collect();
    Check::one(
        "staging.leftover",
        Category::Staging,
        facts.timeout(FILE_TIMEOUT),
        move || {
            let id = "staging.leftover";
            let left = leftovers(&f.layout, &names);
            if left.is_empty() {
                return Finding::green(id, Category::Staging, "no leftovers of crashed operations");
            }
            let list: Vec<String> = left.iter().map(|x| x.path.display().to_string()).collect();
            let kept = left.iter().any(|x| !x.removable);
            let fix = if kept {
                "abssctl doctor --fix removes build and backup leftovers; upgrade copies and restore staging dirs may hold data: look inside, then remove them by hand"
            } else {
                "abssctl doctor --fix removes them (only while no operation holds their lock)"
            };
            Finding::yellow(
                id,
                Category::Staging,
                format!("left by crashed operations: {}", list.join(", ")),
                fix,
            )
        },
    )
}
