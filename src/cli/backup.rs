//! `abssctl backup ...`: create, list, show and verify backups of instances.

use crate::cli::Report;
use crate::cli::output::table;
use crate::domain::backup::Entry;
use crate::ops::Ctx;
use crate::ops::backup::{create, delete, prune, query, reconcile, restore, safety};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Back up an instance (or every one) while it runs: databases, blobs, settings.
    Create(CreateCli),
    /// The backups in the index, oldest first.
    List {
        /// Only this instance's backups.
        instance: Option<String>,
    },
    /// Everything the index knows about one backup.
    Show { id: String },
    /// Recompute archive checksums; mark missing or corrupt ones in the index.
    Verify {
        /// The backup to check.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Check every backup in the index.
        #[arg(long)]
        all: bool,
    },
    /// Delete a backup: its archive, its .sha256 and its index entry (asks first).
    Delete { id: String },
    /// Put a backup's data back: in place (stop, swap, start, health gate; undone on any
    /// failure), or as a new instance beside the live one with --as.
    Restore(RestoreCli),
    /// Delete the backups a retention policy does not keep (shows them and asks; the
    /// newest sound backup of an instance is always kept).
    Prune(PruneCli),
    /// Make the index agree with the backup directories: add archives it lost, mark
    /// missing ones, remove leftovers of interrupted creates; report anything else.
    Reconcile {
        /// Only this instance's directory and entries.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        instance: Option<String>,
        /// Every instance's.
        #[arg(long)]
        all: bool,
    },
    /// An instance's backup timer: when it runs and what each run keeps; --off stops
    /// it, --list shows every instance's next and last run.
    Schedule(crate::cli::backup_schedule::ScheduleCli),
}

#[derive(Debug, Args)]
pub struct PruneCli {
    /// Only this instance's backups.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub instance: Option<String>,
    /// Every instance's backups, each by the same rules.
    #[arg(long)]
    pub all: bool,
    /// Keep the N newest.
    #[arg(long = "keep", value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Only backups older than this are deleted (90m, 12h, 30d, 2w).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Each instance's own retention, from its backup schedule (see backup schedule);
    /// instances without one are left alone. What the scheduled backup runs.
    #[arg(long, conflicts_with_all = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly", "older_than"])]
    pub policy: bool,
}

#[derive(Debug, Args)]
pub struct RestoreCli {
    /// The backup to restore (see: abssctl backup list).
    pub id: String,
    /// Restore into a NEW instance of this name (own port, unit and vhost) instead of
    /// over the backup's instance.
    #[arg(long = "as", value_name = "NEW_NAME")]
    pub as_name: Option<String>,
    /// With --as: the new instance's domain (default: the backup's, if no instance uses
    /// it, else NEW_NAME.<backup's domain>).
    #[arg(long, requires = "as_name")]
    pub domain: Option<String>,
    /// With --as: the new instance's loopback port (default: the next free one).
    #[arg(long, requires = "as_name")]
    pub port: Option<u16>,
    /// In place: back up the data being replaced first (to the backups root).
    #[arg(long, conflicts_with = "no_backup")]
    pub backup: bool,
    /// In place: replace the data without a backup of it.
    #[arg(long)]
    pub no_backup: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compression {
    Auto,
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Args)]
pub struct CreateCli {
    /// The instance to back up.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub instance: Option<String>,
    /// Back up every instance in the registry, one after the other.
    #[arg(long)]
    pub all: bool,
    /// A note stored with the backup.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    /// A label (repeat for more).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Why the backup is taken (default: manual).
    #[arg(long)]
    pub reason: Option<String>,
    /// Compression (default: backups.compression.algorithm, auto = zstd).
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// Compression level (zstd 1-19, gzip 1-9; default backups.compression.level).
    #[arg(long, visible_alias = "compression-level")]
    pub level: Option<i32>,
    /// Write the archive into this directory instead of <backups_root>/<instance>.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl BackupCmd {
    pub fn name(&self) -> &'static str {
        match self {
            BackupCmd::Create(_) => "create",
            BackupCmd::List { .. } => "list",
            BackupCmd::Show { .. } => "show",
            BackupCmd::Verify { .. } => "verify",
            BackupCmd::Delete { .. } => "delete",
            BackupCmd::Restore(_) => "restore",
            BackupCmd::Prune(_) => "prune",
            BackupCmd::Reconcile { .. } => "reconcile",
            BackupCmd::Schedule(s) => s.name(),
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

fn fmt_time(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn show_text(e: &Entry) -> String {
    let mut lines = vec![
        format!("id:           {}", e.id),
        format!("instance:     {}", e.instance),
        format!(
            "created:      {} by {}",
            fmt_time(&e.created_at),
            e.created_by
        ),
        format!("reason:       {}", e.reason),
    ];
    if !e.message.is_empty() {
        lines.push(format!("message:      {}", e.message));
    }
    if !e.labels.is_empty() {
        lines.push(format!("labels:       {}", e.labels.join(", ")));
    }
    lines.extend([
        format!("archive:      {}", e.archive_path.display()),
        format!(
            "size:         {} ({} bytes)",
            mb(e.size_bytes),
            e.size_bytes
        ),
        format!("sha256:       {}", e.checksum_sha256),
        format!("algorithm:    {}", e.algorithm.as_str()),
        format!(
            "version:      {} (binding {})",
            e.instance_version.as_deref().unwrap_or("unknown"),
            e.version_binding
        ),
        format!("domain:       {} (port {})", e.domain, e.port),
        format!("includes:     {}", e.includes.join(", ")),
        format!("status:       {}", e.status.as_str()),
    ]);
    lines.join("\n")
}

pub fn run(ctx: &mut Ctx, cmd: &BackupCmd) -> anyhow::Result<Report> {
    match cmd {
        BackupCmd::Create(c) => {
            let args = create::CreateArgs {
                instance: c.instance.clone(),
                all: c.all,
                message: c.message.clone().unwrap_or_default(),
                labels: c.labels.clone(),
                reason: c.reason.clone(),
                compression: c.compression.map(|a| {
                    a.to_possible_value()
                        .map(|v| v.get_name().to_string())
                        .unwrap_or_default()
                }),
                level: c.level,
                out_dir: c.out_dir.clone(),
            };
            let r = create::create(ctx, &args)?;
            if r.dry_run {
                let lines: Vec<String> = r
                    .planned
                    .iter()
                    .map(|p| {
                        format!(
                            "  - archive '{}' ({} files, {}; {}) as {} level {} into {}",
                            p.instance,
                            p.files,
                            mb(p.data_bytes),
                            p.includes.join(", "),
                            p.algorithm.as_str(),
                            p.level,
                            p.archive_dir.display()
                        )
                    })
                    .collect();
                return Report::new(&r, format!("dry run, would:\n{}", lines.join("\n")));
            }
            let human = r
                .backups
                .iter()
                .map(|b| {
                    format!(
                        "backup {} of '{}': {} ({} files, {} of data) in {} ms\n  {}",
                        b.id,
                        b.instance,
                        mb(b.size),
                        b.files,
                        mb(b.data_bytes),
                        b.duration_ms,
                        b.path.display()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let report = match (c.all, r.backups.as_slice()) {
                (false, [one]) => Report::new(one, human)?,
                _ => Report::new(&r, human)?,
            };
            Ok(report.changed(true))
        }
        BackupCmd::List { instance } => {
            let l = query::list(ctx, instance.as_deref())?;
            let human = if l.backups.is_empty() {
                "no backups".to_string()
            } else {
                let rows: Vec<Vec<String>> = l
                    .backups
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            e.instance.clone(),
                            fmt_time(&e.created_at),
                            mb(e.size_bytes),
                            e.status.as_str().to_string(),
                            e.reason.clone(),
                            e.message.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID", "INSTANCE", "CREATED", "SIZE", "STATUS", "REASON", "MESSAGE",
                    ],
                    &rows,
                )
            };
            Report::new(&l, human)
        }
        BackupCmd::Show { id } => {
            let e = query::show(ctx, id)?;
            Report::new(&serde_json::json!({ "backup": e }), show_text(&e))
        }
        BackupCmd::Verify { id, all } => {
            let r = query::verify(ctx, id.as_deref(), *all)?;
            let human = r
                .verified
                .iter()
                .map(|v| format!("{}: {} ({})", v.id, v.status.as_str(), v.detail))
                .collect::<Vec<_>>()
                .join("\n");
            let human = if human.is_empty() {
                "no backups to verify".to_string()
            } else {
                human
            };
            Ok(Report::new(&r, human)?.changed(!r.dry_run))
        }
        BackupCmd::Restore(r) => restore_cmd(ctx, r),
        BackupCmd::Prune(p) => prune_cmd(ctx, p),
        BackupCmd::Schedule(s) => crate::cli::backup_schedule::run(ctx, s),
        BackupCmd::Reconcile { instance, all } => {
            let r = reconcile::reconcile(ctx, instance.as_deref(), *all)?;
            let mut lines = Vec::new();
            let verb = if r.dry_run { "would " } else { "" };
            lines.extend(
                r.added
                    .iter()
                    .map(|i| format!("  {verb}add {i} to the index")),
            );
            lines.extend(
                r.marked_missing
                    .iter()
                    .map(|i| format!("  {verb}mark {i} missing")),
            );
            lines.extend(
                r.removed
                    .iter()
                    .map(|p| format!("  {verb}remove leftover {}", p.display())),
            );
            lines.extend(
                r.left_alone
                    .iter()
                    .map(|l| format!("  left alone {}: {}", l.path.display(), l.why)),
            );
            let human = if lines.is_empty() {
                "index and backup directories agree".to_string()
            } else {
                lines.join("\n")
            };
            let nothing = r.added.is_empty() && r.marked_missing.is_empty() && r.removed.is_empty();
            let changed = !r.dry_run && !nothing;
            Ok(Report::new(&r, human)?.changed(changed))
        }
        BackupCmd::Delete { id } => {
            let d = delete::delete(ctx, id)?;
            let files = d
                .removed
                .iter()
                .map(|p| format!("  {}", p.display()))
                .collect::<Vec<_>>()
                .join("\n");
            let human = if d.dry_run {
                format!("dry run, would delete backup {} and:\n{files}", d.backup.id)
            } else {
                format!("deleted backup {}:\n{files}", d.backup.id)
            };
            Ok(Report::new(&d, human)?.changed(!d.dry_run))
        }
    }
}

fn restore_cmd(ctx: &mut Ctx, r: &RestoreCli) -> anyhow::Result<Report> {
    let args = restore::RestoreArgs {
        id: r.id.clone(),
        as_name: r.as_name.clone(),
        domain: r.domain.clone(),
        port: r.port,
        offer: safety::Offer::from_flags(r.backup, r.no_backup),
    };
    restore_report(&restore::restore(ctx, &args)?)
}

/// The report of an in-place or new-instance restore (also `instance rollback`'s).
pub(crate) fn restore_report(res: &restore::RestoreResult) -> anyhow::Result<Report> {
    let human = if res.dry_run {
        let steps = res
            .planned_actions
            .iter()
            .map(|a| format!("  - {}", a.description))
            .collect::<Vec<_>>()
            .join("\n");
        format!("dry run, would restore backup {}:\n{steps}", res.id)
    } else {
        let mut s = format!(
            "restored backup {} {} '{}' ({} files, {}): Actual {} on port {}, https://{}/",
            res.id,
            if res.mode == "in-place" {
                "into"
            } else {
                "as new instance"
            },
            res.instance,
            res.files,
            mb(res.data_bytes),
            res.version,
            res.port,
            res.domain
        );
        s.push_str(&format!("\nextracted in {} ms", res.extract_ms));
        if let Some(d) = res.downtime_ms {
            s.push_str(&format!(
                "; not serving for {d} ms (stop, swap, start, health)"
            ));
        }
        if let Some(b) = &res.pre_restore_backup {
            s.push_str(&format!("\nthe replaced data is in backup {b}"));
        }
        s
    };
    Ok(Report::new(res, human)?.changed(res.changed))
}

fn prune_cmd(ctx: &mut Ctx, p: &PruneCli) -> anyhow::Result<Report> {
    let args = prune::PruneArgs {
        instance: p.instance.clone(),
        all: p.all,
        policy: crate::domain::retention::Policy {
            keep_last: p.keep_last,
            keep_daily: p.keep_daily,
            keep_weekly: p.keep_weekly,
            keep_monthly: p.keep_monthly,
            older_than: p
                .older_than
                .as_deref()
                .map(crate::domain::retention::parse_age)
                .transpose()?,
        },
        from_schedule: p.policy,
    };
    let r = prune::prune(ctx, &args)?;
    let mut lines: Vec<String> = r
        .deleted
        .iter()
        .map(|d| format!("  delete {} ({}, {})", d.id, d.created_at, mb(d.size_bytes)))
        .collect();
    lines.extend(
        r.kept
            .iter()
            .map(|k| format!("  keep   {} ({})", k.id, k.reasons.join("; "))),
    );
    let head = if r.dry_run {
        format!(
            "dry run, would delete {} backups ({}):",
            r.deleted.len(),
            mb(r.bytes_freed)
        )
    } else {
        format!(
            "deleted {} backups ({} freed):",
            r.deleted.len(),
            mb(r.bytes_freed)
        )
    };
    let changed = !r.dry_run && !r.deleted.is_empty();
    Ok(Report::new(&r, format!("{head}\n{}", lines.join("\n")))?.changed(changed))
}
