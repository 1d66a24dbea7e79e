//! `kura repair`: deal with what `kura check --read-data` found damaged.

use anyhow::Result;
use clap::Subcommand;
use kura_core::keys::DeviceId;
use kura_repo::Repository;

use crate::ctx::Ctx;
use crate::output::{count, lines};

/// What to repair.
#[derive(Subcommand)]
pub enum RepairCommand {
    /// Build the index anew from the packs' own headers and replace every index file with it:
    /// for index files that are lost or cannot be read (prune refuses to run while one
    /// cannot).
    Index {
        /// Only report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the packs a check found damaged with the blobs of them that still
    /// authenticate, take packs that are missing out of the index, and clear the damage
    /// records. Run `kura check --read-data` first; back up afterwards, so that what the
    /// damage cost is stored again from the sources that still have it.
    Packs {
        /// Only report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the snapshots that need data the repository no longer has: a directory whose
    /// listing is lost becomes empty, a file with a lost part is left out, the rest is kept,
    /// and the snapshot is tagged `repaired`. Run it after `repair packs` and a backup, so that
    /// only what no source has any more is left out.
    Snapshots {
        /// Only report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `kura repair`.
pub fn repair(ctx: &Ctx, c: RepairCommand) -> Result<()> {
    let repo = ctx.open()?;
    let (_, device) = ctx.this_device(&repo)?;
    match c {
        RepairCommand::Index { dry_run } => index(ctx, &repo, device, dry_run),
        RepairCommand::Packs { dry_run } => packs(ctx, &repo, device, dry_run),
        RepairCommand::Snapshots { dry_run } => snapshots(ctx, &repo, device, dry_run),
    }
}

fn index(ctx: &Ctx, repo: &Repository, device: DeviceId, dry_run: bool) -> Result<()> {
    let r = kura_repo::repair::repair_index(repo, device, dry_run)?;
    ctx.out.emit(&r, || {
        let mut text = format!(
            "{}{} indexed from their headers, replacing {} ({} unreadable)",
            if dry_run { "dry run: " } else { "" },
            count(r.packs_indexed as u64, "pack"),
            count(r.index_files_replaced as u64, "index file"),
            r.index_files_unreadable
        );
        for p in &r.packs_unreadable {
            text.push_str(&format!(
                "\npack {p}: its header cannot be read; left out and kept"
            ));
        }
        text
    });
    Ok(())
}

fn snapshots(ctx: &Ctx, repo: &Repository, device: DeviceId, dry_run: bool) -> Result<()> {
    let r = kura_repo::repair::repair_snapshots(repo, device, dry_run)?;
    ctx.out.emit(&r, || {
        let each = r.iter().map(|s| {
            let to = s
                .new
                .map(|n| format!(" -> {}", n.short()))
                .unwrap_or_default();
            let mut line = format!(
                "{} {}{to}: {} emptied, {} left out",
                if dry_run { "would repair" } else { "repaired" },
                s.old.short(),
                count(s.dirs_emptied.len() as u64, "dir"),
                count(s.files_dropped.len() as u64, "file"),
            );
            for p in s.dirs_emptied.iter().chain(&s.files_dropped) {
                line.push_str(&format!("\n  {p}"));
            }
            line
        });
        let total = format!(
            "{} {}",
            count(r.len() as u64, "snapshot"),
            if dry_run {
                "would be repaired"
            } else {
                "repaired"
            }
        );
        lines(each.chain([total]))
    });
    Ok(())
}

fn packs(ctx: &Ctx, repo: &Repository, device: DeviceId, dry_run: bool) -> Result<()> {
    let r = kura_repo::repair::repair_packs(repo, device, dry_run)?;
    ctx.out.emit(&r, || {
        format!(
            "{}{} salvaged ({} kept, {} dropped), {} taken out of the index, {} cleared",
            if dry_run { "dry run: " } else { "" },
            count(r.packs_salvaged as u64, "damaged pack"),
            count(r.blobs_salvaged as u64, "blob"),
            count(r.blobs_dropped as u64, "damaged blob"),
            count(r.packs_unindexed as u64, "missing pack"),
            count(r.records_removed as u64, "damage record"),
        )
    });
    Ok(())
}
