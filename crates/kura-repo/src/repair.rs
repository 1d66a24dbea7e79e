//! `repair packs`: what a check found damaged, dealt with. Every pack with a recorded damaged
//! blob is rewritten with the blobs of it that still authenticate (salvaged), packs that are
//! indexed but missing leave the index, and the damage records are then removed: the
//! repository is consistent again (`check --read-data` finds nothing) and no longer names the
//! damaged blobs, so the next backup stores again whatever of them its source still has. A
//! snapshot that needs a blob no source has any more stays incomplete (restore names those
//! files); rewriting such snapshots is `repair snapshots`' part.

use serde::Serialize;

use kura_core::Id;
use kura_core::keys::DeviceId;

use crate::backend::FileType;
use crate::prune::Rewrite;
use crate::{Repository, Result};

/// What `repair packs` did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct PackRepair {
    /// Damaged packs rewritten with the blobs of them that still authenticate.
    pub packs_salvaged: usize,
    /// Blobs copied out of damaged packs.
    pub blobs_salvaged: usize,
    /// Blobs left behind: damaged (as recorded, or found so while salvaging).
    pub blobs_dropped: usize,
    /// Packs that were indexed but missing, taken out of the index.
    pub packs_unindexed: usize,
    /// Damage records removed (what they said is dealt with).
    pub records_removed: usize,
}

/// Repairs the packs a check found damaged or missing, sealing the new index and packs with
/// `device`'s key.
pub fn repair_packs(repo: &Repository, device: DeviceId, dry_run: bool) -> Result<PackRepair> {
    repo.require_device(device)?;
    let _lock = repo.lock(true)?;
    let index = repo.load_index()?;
    let (damage, _) = repo.damage()?;
    let records = repo.backend().list(FileType::Damage)?;
    let stored = repo.stored_packs()?;
    // Recorded missing packs are already out of the loaded index; the new one leaves them out.
    let mut report = PackRepair {
        packs_unindexed: damage.packs.len(),
        ..PackRepair::default()
    };
    let mut keep = Vec::new();
    let mut repack = Vec::new();
    for p in index.packs() {
        if !stored.contains_key(&p.id.to_hex()) {
            report.packs_unindexed += 1;
            continue;
        }
        let damaged: Vec<Id> = p
            .entries
            .iter()
            .filter(|e| damage.blobs.contains(&(p.id, e.id)))
            .map(|e| e.id)
            .collect();
        if damaged.is_empty() {
            keep.push(p.clone());
            continue;
        }
        let live: Vec<usize> = (0..p.entries.len())
            .filter(|&i| !damaged.contains(&p.entries[i].id))
            .collect();
        report.packs_salvaged += 1;
        report.blobs_dropped += damaged.len();
        report.blobs_salvaged += live.len();
        repack.push((p, live));
    }
    report.records_removed = records.len();
    if dry_run || (repack.is_empty() && report.packs_unindexed == 0) {
        if !dry_run {
            remove_records(repo, &records)?;
        }
        return Ok(report);
    }
    let rewrite = Rewrite {
        keep,
        repack,
        remove: Vec::new(),
        external: index.externals().copied().collect(),
        salvage: true,
    };
    let done = rewrite.apply(repo, &index, device)?;
    // Blobs found damaged only now were not salvaged either.
    report.blobs_dropped += done.left_out.len();
    report.blobs_salvaged = done.copied;
    remove_records(repo, &records)?;
    Ok(report)
}

fn remove_records(repo: &Repository, records: &[String]) -> Result<()> {
    for name in records {
        repo.backend().remove(FileType::Damage, name)?;
    }
    Ok(())
}
