//! `kura repair`: deal with what `kura check --read-data` found damaged.

use anyhow::Result;
use clap::Subcommand;

use crate::ctx::Ctx;
use crate::output::count;

/// What to repair.
#[derive(Subcommand)]
pub enum RepairCommand {
    /// Rewrite the packs a check found damaged with the blobs of them that still
    /// authenticate, take packs that are missing out of the index, and clear the damage
    /// records. Run `kura check --read-data` first; back up afterwards, so that what the
    /// damage cost is stored again from the sources that still have it.
    Packs {
        /// Only report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `kura repair`.
pub fn repair(ctx: &Ctx, c: RepairCommand) -> Result<()> {
    let RepairCommand::Packs { dry_run } = c;
    let repo = ctx.open()?;
    let (_, device) = ctx.this_device(&repo)?;
    let r = kura_repo::repair::repair_packs(&repo, device, dry_run)?;
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
