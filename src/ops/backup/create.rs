//! `backup create`: a consistent archive of a running instance and its index entry.
//!
//! Locks (global first, then the instance, ADR-027): the global lock is held only to read
//! the registry entry and, at the end, to add the index entry; the instance lock is held
//! from the registry read until the archive is complete, so no delete, rename or restore
//! of this instance can change its data under the copy. The long part (snapshots, tar,
//! compression) runs without the global lock, so other instances stay manageable. The
//! instance lock is released BEFORE the global one is taken again (taking the global while
//! holding an instance lock would invert the order and could deadlock).

use crate::domain::audit::Target;
use crate::domain::backup::{self as bk, Algorithm, DataKind, Entry, Manifest, Status};
use crate::domain::instance as inst;
use crate::domain::state::{InstanceEntry, State};
use crate::domain::validate;
use crate::error::Failure;
use crate::ops::Ctx;
use crate::ops::instance::{find, resolve_version};
use crate::sys;
use crate::sys::archive::{self as ar, ArchiveWriter, StableCopy};
use crate::sys::lock::LockGuard;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// What `backup create` was asked.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    /// One instance, or `None` with `all`.
    pub instance: Option<String>,
    pub all: bool,
    pub message: String,
    pub labels: Vec<String>,
    pub reason: Option<String>,
    pub compression: Option<String>,
    pub level: Option<i32>,
    pub out_dir: Option<PathBuf>,
}

/// One backup made (the `--json` result).
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub id: String,
    pub instance: String,
    pub path: PathBuf,
    pub size: u64,
    pub checksum: String,
    pub algorithm: Algorithm,
    pub files: usize,
    pub data_bytes: u64,
    pub duration_ms: u64,
}

/// What a dry run would do for one instance.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub instance: String,
    pub archive_dir: PathBuf,
    pub algorithm: Algorithm,
    pub level: i32,
    pub files: usize,
    pub data_bytes: u64,
    pub includes: Vec<String>,
}

/// The result of `backup create`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateResult {
    pub dry_run: bool,
    pub backups: Vec<Created>,
    pub planned: Vec<Planned>,
}

pub fn create(ctx: &mut Ctx, args: &CreateArgs) -> Result<CreateResult> {
    ctx.require_root()?;
    let (alg, level) = bk::resolve_compression(
        args.compression
            .as_deref()
            .unwrap_or(&ctx.cfg().backups_compression_algorithm),
        args.level.unwrap_or(ctx.cfg().backups_compression_level),
    )?;
    for l in &args.labels {
        if l.is_empty() || l.chars().any(|c| c.is_control() || c == ',') {
            return Err(Failure::validation(format!("invalid label '{l}'"))
                .hint("a label is a non-empty word without commas or control characters")
                .into());
        }
    }
    // A broken index stops the command before any work (and is never rewritten).
    super::load_index(ctx)?;
    let names: Vec<String> = match (&args.instance, args.all) {
        (Some(n), false) => vec![validate::instance_name(n)?.as_str().to_string()],
        (None, true) => {
            let mut v: Vec<String> = State::load(&ctx.layout)?
                .instances
                .into_iter()
                .map(|i| i.name)
                .collect();
            v.sort();
            v
        }
        _ => {
            return Err(Failure::validation("name one instance, or say --all")
                .hint("abssctl backup create <instance> | --all")
                .into());
        }
    };
    let mut out = CreateResult {
        dry_run: ctx.globals.dry_run,
        backups: Vec::new(),
        planned: Vec::new(),
    };
    if let [one] = names.as_slice() {
        sys::logging::set_instance(one);
        ctx.op.target = Some(Target {
            kind: "instance".into(),
            name: one.clone(),
        });
    }
    for name in &names {
        let r = if ctx.globals.dry_run {
            plan_one(ctx, name, alg, level, args).map(|p| out.planned.push(p))
        } else {
            create_one(ctx, name, alg, level, args, None).map(|c| out.backups.push(c))
        };
        if let Err(e) = r {
            let made: Vec<&str> = out.backups.iter().map(|b| b.id.as_str()).collect();
            return Err(if made.is_empty() {
                e
            } else {
                e.context(format!("after backups {} were made", made.join(", ")))
            }
            .context(format!("backup of '{name}'")));
        }
    }
    Ok(out)
}

fn archive_dir(ctx: &Ctx, args: &CreateArgs, name: &str) -> PathBuf {
    match &args.out_dir {
        Some(d) => d.clone(),
        None => ctx.layout.backups_root.join(name),
    }
}

fn data_dir(ctx: &Ctx, name: &str) -> Result<PathBuf> {
    let dir = ctx.layout.data_dir(name);
    if !dir.is_dir() {
        return Err(Failure::environment(format!(
            "the data directory {} of '{name}' is missing",
            dir.display()
        ))
        .hint("nothing to back up; see: abssctl instance show")
        .into());
    }
    Ok(dir)
}

fn plan_one(
    ctx: &Ctx,
    name: &str,
    alg: Algorithm,
    level: i32,
    args: &CreateArgs,
) -> Result<Planned> {
    let state = State::load(&ctx.layout)?;
    find(&state, name)?;
    let (found, _) = ar::walk(&data_dir(ctx, name)?)?;
    let files: Vec<_> = found
        .iter()
        .filter(|f| f.meta.is_file() && file_kind(&f.rel) != DataKind::Skip)
        .collect();
    Ok(Planned {
        instance: name.to_string(),
        archive_dir: archive_dir(ctx, args, name),
        algorithm: alg,
        level,
        files: files.len(),
        data_bytes: files.iter().map(|f| f.meta.len()).sum(),
        includes: includes(ctx, name),
    })
}

fn file_kind(rel: &str) -> DataKind {
    bk::data_kind(rel.rsplit('/').next().unwrap_or(rel))
}

fn includes(ctx: &Ctx, name: &str) -> Vec<String> {
    let mut v = vec![bk::INCLUDE_DATA.to_string(), bk::INCLUDE_REGISTRY.into()];
    if inst::dropin_path(&ctx.layout, name).is_file() {
        v.push(bk::INCLUDE_DROPIN.into());
    }
    if ctx.layout.vhost_file(name).is_file() {
        v.push(bk::INCLUDE_VHOST.into());
    }
    v.push(bk::INCLUDE_VERSION.into());
    v
}

/// abssctl's metadata about the instance, as archive members (name, bytes).
fn metadata_members(
    ctx: &Ctx,
    entry: &InstanceEntry,
    version: Option<&str>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let meta = |n: &str| format!("{}/{n}", bk::META_PREFIX);
    let mut v = vec![(
        meta("registry-entry.json"),
        serde_json::to_vec_pretty(entry)?,
    )];
    if let Some(t) = sys::fs::read_optional(&inst::dropin_path(&ctx.layout, &entry.name))? {
        v.push((meta("unit-dropin.conf"), t.into_bytes()));
    }
    if let Some(t) = sys::fs::read_optional(&ctx.layout.vhost_file(&entry.name))? {
        v.push((meta("vhost.conf"), t.into_bytes()));
    }
    v.push((
        meta("version.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "version_binding": entry.version_binding.to_string(),
            "resolved_version": version,
        }))?,
    ));
    Ok(v)
}

/// One entry of the data directory, ready to go into the archive.
enum Ready {
    Dir,
    Skip,
    /// A live database, read into the archive under a read transaction (see
    /// `sys::archive::hold_sqlite`), or snapshotted when it cannot be held.
    Database,
    /// A large plain file, streamed into the archive when its turn comes.
    Stream,
    Copy(StableCopy, Box<std::fs::Metadata>),
}

/// Whether `f` is read straight into the archive when large files are streamed.
fn streamed(f: &ar::Found, stream: bool) -> bool {
    stream && f.meta.is_file() && f.meta.len() > ar::MEMORY_COPY_MAX
}

fn prepare(i: usize, f: &ar::Found, staging: &std::path::Path, stream: bool) -> Result<Ready> {
    if f.meta.is_dir() {
        return Ok(Ready::Dir);
    }
    Ok(match file_kind(&f.rel) {
        DataKind::Skip => Ready::Skip,
        // Held and read by the archive itself, so the hold lasts only while that one file
        // is compressed (not while it waits its turn behind the ones before it).
        DataKind::Sqlite => Ready::Database,
        // Read by the archive itself too, and checked after (sys::archive::stream_stable).
        DataKind::Copy if streamed(f, stream) => Ready::Stream,
        DataKind::Copy => {
            let (copy, meta) =
                ar::copy_stable(&f.at, staging, &format!("file-{i}"), ar::QUIET_PERIOD)?;
            Ready::Copy(copy, Box::new(meta))
        }
    })
}

/// A backup-API snapshot of the database `f` into the staging dir, and its size.
fn snapshot(
    i: usize,
    f: &ar::Found,
    links: &ar::LinkDir,
    staging: &std::path::Path,
) -> Result<(PathBuf, u64)> {
    let snap = staging.join(format!("db-{i}.sqlite"));
    ar::sqlite_snapshot(&f.at, links, &snap, ar::SQLITE_BUSY_TIMEOUT)?;
    let size = std::fs::metadata(&snap)
        .with_context(|| format!("reading {}", snap.display()))?
        .len();
    Ok((snap, size))
}

/// What goes into one archive (everything but how large files are read).
struct Plan<'a> {
    dest: &'a std::path::Path,
    dir: &'a std::path::Path,
    alg: Algorithm,
    level: i32,
    manifest: Vec<u8>,
    members: &'a [(String, Vec<u8>)],
    mtime: u64,
    data_meta: &'a std::fs::Metadata,
    found: &'a [ar::Found],
    /// Where the databases get their root-owned second names (beside the data dir).
    links: &'a ar::LinkDir,
    total: u64,
    progress: &'a dyn crate::ops::ui::Progress,
}

/// Write the archive of `plan` (to a temp file, renamed at the end) and return it with
/// the number of files and data bytes in it. `stream`: large plain files are read straight
/// into the archive and checked after; one that changed meanwhile fails this attempt
/// with [`ar::ChangedWhileArchived`] and nothing left behind. Without it they are staged.
fn write_archive(plan: &Plan, stream: bool) -> Result<(ar::Written, usize, u64)> {
    let staging = ar::staging_dir(plan.dir)?;
    let mut w = ArchiveWriter::create(plan.dest, plan.alg, plan.level, bk::FILE_MODE)?;
    w.add_bytes(bk::MANIFEST_NAME, &plan.manifest, 0o600, plan.mtime)?;
    for (n, bytes) in plan.members {
        w.add_bytes(n, bytes, 0o600, plan.mtime)?;
    }
    w.add_dir(bk::DATA_PREFIX, plan.data_meta)?;
    // Snapshots and copies are made ahead of the archive, on another thread.
    let stage = staging.path();
    let mut files = 0;
    ar::prepare_ahead(
        plan.found,
        // A streamed file is read when its turn comes: nothing of it is held ahead.
        |f| match f.meta.is_file() && !streamed(f, stream) {
            true => f.meta.len(),
            false => 0,
        },
        |i, f| prepare(i, f, stage, stream),
        |f, ready| {
            let member = format!("{}/{}", bk::DATA_PREFIX, f.rel);
            match ready {
                Ready::Dir => return w.add_dir(&member, &f.meta),
                Ready::Skip => return Ok(()),
                Ready::Database => {
                    plan.progress.step(&format!("snapshot of {}", f.rel));
                    match ar::hold_sqlite(&f.at, plan.links, ar::SQLITE_BUSY_TIMEOUT)? {
                        Some(db) => {
                            db.read_checked(|file, len| w.add_file(&member, &f.meta, len, file))?
                        }
                        None => {
                            let (snap, size) = snapshot(files, f, plan.links, stage)?;
                            let file = std::fs::File::open(&snap)
                                .with_context(|| format!("opening {}", snap.display()))?;
                            w.add_file(&member, &f.meta, size, file)?;
                            sys::fs::remove_file_if_exists(&snap)?;
                        }
                    }
                }
                Ready::Stream => {
                    let streamed = ar::stream_stable(&f.at, ar::QUIET_PERIOD, |file, meta| {
                        w.add_file(&member, meta, meta.len(), file)?;
                        // Lets a test change the file between its read and its check.
                        #[cfg(feature = "failpoints")]
                        fail::fail_point!("backup-create-after-stream");
                        Ok(())
                    })?;
                    match streamed {
                        ar::Streamed::Whole => {}
                        ar::Streamed::Changed => {
                            return Err(ar::ChangedWhileArchived(f.at.path.clone()).into());
                        }
                        // Written moments ago: nothing of it is in the archive yet, so
                        // it takes the checked copy, which waits for it to settle.
                        ar::Streamed::NotQuiet => {
                            let (copy, meta) = ar::copy_stable(
                                &f.at,
                                stage,
                                &format!("file-{files}"),
                                ar::QUIET_PERIOD,
                            )?;
                            add_copy(&mut w, &member, copy, &meta)?;
                        }
                    }
                }
                Ready::Copy(copy, meta) => add_copy(&mut w, &member, copy, &meta)?,
            }
            files += 1;
            plan.progress
                .bytes("archive", w.input_bytes, Some(plan.total));
            Ok(())
        },
    )?;
    let data_bytes = w.input_bytes;
    let written = w.finish()?;
    drop(staging);
    Ok((written, files, data_bytes))
}

/// A checked copy into the archive (and its staging file removed).
fn add_copy(
    w: &mut ArchiveWriter,
    member: &str,
    copy: StableCopy,
    meta: &std::fs::Metadata,
) -> Result<()> {
    match copy {
        StableCopy::Memory(b) => w.add_file(member, meta, b.len() as u64, &b[..]),
        StableCopy::Staged(p) => {
            let file =
                std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
            w.add_file(member, meta, meta.len(), file)?;
            sys::fs::remove_file_if_exists(&p).map(drop)
        }
    }
}

/// One backup of `name` taken while the caller holds the global and the instance lock
/// (`global` is the held global lock, for the index entry). The caller decides whether the
/// instance runs: a stopped instance gives an exact copy of its data.
pub fn create_held(
    ctx: &mut Ctx,
    global: &LockGuard,
    name: &str,
    args: &CreateArgs,
) -> Result<Created> {
    let (alg, level) = bk::resolve_compression(
        args.compression
            .as_deref()
            .unwrap_or(&ctx.cfg().backups_compression_algorithm),
        args.level.unwrap_or(ctx.cfg().backups_compression_level),
    )?;
    create_one(ctx, name, alg, level, args, Some(global))
}

fn create_one(
    ctx: &mut Ctx,
    name: &str,
    alg: Algorithm,
    level: i32,
    args: &CreateArgs,
    held: Option<&LockGuard>,
) -> Result<Created> {
    let started = Instant::now();
    // Under the caller's locks (an upgrade holds both from its stop to its health gate),
    // or under our own: the global one only to read the entry, the instance one throughout.
    let (global, instance_lock) = match held {
        Some(_) => (None, None),
        None => (Some(ctx.lock_global()?), Some(ctx.lock_instance(name)?)),
    };
    let state = State::load(&ctx.layout)?;
    let entry = find(&state, name)?.clone();
    drop(global);

    let data = data_dir(ctx, name)?;
    // The databases are opened through links in the instance's own (root-owned) directory,
    // never by a path through the user's data (sys::archive_link). Made first: an instance
    // directory another account could write is refused before anything else is made.
    let links = ar::LinkDir::new(data.parent().unwrap_or(&data))?;
    let version = resolve_version(&ctx.layout, &entry.version_binding)
        .map(|r| r.version)
        .ok();
    let includes = includes(ctx, name);
    let members = metadata_members(ctx, &entry, version.as_deref())?;
    let dir = archive_dir(ctx, args, name);
    sys::archive::private_dir(&ctx.layout.backups_root, bk::DIR_MODE)?;
    sys::archive::private_dir(&dir, bk::DIR_MODE)?;
    // Whole seconds: the id has seconds, and the index reads better.
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let id = bk::new_id(now, name, &bk::short_id(&uuid::Uuid::now_v7()));
    let dest = dir.join(bk::archive_name(&id, alg));

    let progress = ctx.ui.progress(ctx.globals.json, ctx.globals.quiet);
    progress.step(&format!("backing up '{name}' to {}", dest.display()));
    let (found, skipped) = ar::walk(&data)?;
    // Lets a test swap a directory the walk saw for a symlink before anything is read.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("backup-create-after-walk");
    for s in &skipped {
        ctx.op
            .warnings
            .push(format!("left out {} (not a regular file)", s.display()));
    }
    let total: u64 = found.iter().map(|f| f.meta.len()).sum();
    let manifest = Manifest {
        format: bk::ARCHIVE_FORMAT,
        id: id.clone(),
        instance: name.to_string(),
        created_at: now,
        version_binding: entry.version_binding.to_string(),
        instance_version: version.clone(),
        domain: entry.domain.clone(),
        port: entry.port,
        includes: includes.clone(),
    };
    let data_meta = std::fs::symlink_metadata(&data)
        .with_context(|| format!("reading the metadata of {}", data.display()))?;
    let plan = Plan {
        dest: &dest,
        dir: &dir,
        alg,
        level,
        manifest: serde_json::to_vec_pretty(&manifest)?,
        members: &members,
        mtime: now.unix_timestamp().max(0) as u64,
        data_meta: &data_meta,
        found: &found,
        links: &links,
        total,
        progress: &*progress,
    };
    let (written, files, data_bytes) = match write_archive(&plan, true) {
        Err(e) if e.downcast_ref::<ar::ChangedWhileArchived>().is_some() => {
            // That archive is gone (its temp file with it); the next one stages every
            // large file, each checked and retried on its own (ar::copy_stable).
            let note = format!("{e:#}: the archive was written again");
            tracing::warn!("{note}");
            ctx.op.warnings.push(note);
            write_archive(&plan, false)?
        }
        r => r?,
    };
    let sums = bk::checksum_path(&written.path);
    let result = sys::fs::write_atomic(
        &sums,
        bk::sha256sum_line(&written.sha256, &written.path).as_bytes(),
        bk::FILE_MODE,
    );
    progress.finish();
    drop(instance_lock);

    let entry = Entry {
        id: id.clone(),
        instance: name.to_string(),
        created_at: now,
        created_by: sys::privilege::user_name(),
        reason: args
            .reason
            .clone()
            .unwrap_or_else(|| bk::REASON_MANUAL.into()),
        message: args.message.clone(),
        labels: args.labels.clone(),
        kind: bk::TYPE_FULL.into(),
        archive_path: written.path.clone(),
        size_bytes: written.size,
        checksum_sha256: written.sha256.clone(),
        algorithm: alg,
        instance_version: version,
        version_binding: entry.version_binding.to_string(),
        domain: entry.domain.clone(),
        port: entry.port,
        includes,
        status: Status::Present,
        verified_at: None,
    };
    let result = result.and_then(|()| match held {
        Some(global) => super::update_index(ctx, global, |idx| Ok(idx.add(entry)?)),
        None => {
            let global = ctx.lock_global()?;
            super::update_index(ctx, &global, |idx| Ok(idx.add(entry)?))
        }
    });
    if let Err(e) = result {
        // No archive without its index entry: remove what was written.
        let cleanup = sys::fs::remove_file_if_exists(&written.path)
            .and_then(|_| sys::fs::remove_file_if_exists(&sums));
        return Err(match cleanup {
            Ok(_) => e.context(format!("archive {} removed", written.path.display())),
            Err(c) => e.context(format!(
                "and removing {} failed ({c:#}); remove it by hand",
                written.path.display()
            )),
        });
    }
    // Inside a caller's transaction (held locks) the backup is one of its planned steps
    // already; the operations log must show that plan as it was planned.
    if held.is_none() {
        ctx.op.planned.push(crate::domain::txn::PlannedAction {
            action: "backup_create".into(),
            description: format!("archive {} of '{name}'", written.path.display()),
            irreversible: false,
        });
    }
    Ok(Created {
        id,
        instance: name.to_string(),
        path: written.path,
        size: written.size,
        checksum: written.sha256,
        algorithm: alg,
        files,
        data_bytes,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
