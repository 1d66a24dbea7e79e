//! `prune`: reclaim the space of blobs no snapshot needs.
//!
//! Packs whose blobs are all unused are deleted; packs with some unused blobs are rewritten
//! with only the used ones (the sealed bytes are copied after being authenticated, never
//! re-encrypted). The order keeps the repository consistent if prune is killed at any point:
//! new packs, then the new index, then old index files, then old packs.

use std::collections::HashMap;

use kura_core::Id;
use kura_core::index::{IndexFile, IndexedPack};
use kura_core::keys::DeviceId;
use kura_core::pack::{self, PackBuilder};
use serde::Serialize;

use crate::backend::FileType;
use crate::check::used_blobs;
use crate::{Repository, Result};

/// What prune did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Packs deleted whole.
    pub packs_deleted: usize,
    /// Packs rewritten without their unused blobs.
    pub packs_repacked: usize,
    /// Packs kept as they were.
    pub packs_kept: usize,
    /// Unindexed packs (from interrupted backups) deleted.
    pub orphans_deleted: usize,
    /// Unindexed packs kept because their header cannot be read (see `kura check`).
    pub orphans_kept: usize,
    /// Partial files of killed writers deleted.
    pub partials_deleted: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Bytes of storage freed.
    pub bytes_freed: u64,
    /// Bytes of storage in use afterwards.
    pub bytes_after: u64,
    /// The disk was full: the space kept in reserve was used, and packs with some unused
    /// blobs were left for a later prune (repacking writes before it frees).
    pub disk_was_full: bool,
    /// Packs left as they were because the disk was full.
    pub repack_skipped: usize,
    /// Whether the reserve is in place again afterwards (on storage that keeps one).
    pub reserve_kept: bool,
}

/// Prunes the repository, sealing the new index with `device`'s key.
pub fn prune(
    repo: &Repository,
    device: DeviceId,
    dry_run: bool,
    progress: &dyn crate::check::CheckProgress,
) -> Result<PruneReport> {
    repo.require_device(device)?;
    let (_lock, full) = repo.lock_to_clean()?;
    let (index, unreadable) = repo.load_index_reporting(&())?;
    // The packs an unreadable index file lists look unindexed: prune would delete them.
    if let Some(e) = unreadable.first() {
        return Err(refusal(
            repo,
            format!(
                "{e}; prune refuses to run while an index file cannot be read (its packs would look unused): rebuild the index with `kura repair index` first"
            ),
        ));
    }
    let (snapshots, damaged) = repo.readable_snapshots()?;
    // What a snapshot that cannot be read needs is unknown: deleting anything could lose it.
    if let Some(e) = damaged.first() {
        return Err(refusal(
            repo,
            format!(
                "{e}; prune cannot tell what that snapshot needs: remove it with `kura forget ID` (its file name) first"
            ),
        ));
    }
    let used = used_blobs(repo, &index, snapshots.iter().flat_map(|(_, s)| s.trees()))
        .map_err(|e| match e.is_damage() {
            true => refusal(
                repo,
                format!(
                    "{e}; prune cannot tell what the snapshots need while one of their listings is lost: run `kura check --read-data`, `kura repair packs` and `kura repair snapshots` first"
                ),
            ),
            false => e,
        })?;
    let stored = repo.stored_packs()?;

    // Never decide on what to delete from an index that names packs which are gone: a
    // duplicate of one of their blobs elsewhere could be the only copy left.
    if let Some(missing) = index
        .packs()
        .iter()
        .find(|p| !stored.contains_key(&p.id.to_hex()))
    {
        return Err(refusal(
            repo,
            format!(
                "pack {} is indexed but missing; prune refuses to run (see `kura check`)",
                missing.id.short()
            ),
        ));
    }
    let mut report = PruneReport {
        disk_was_full: full,
        ..PruneReport::default()
    };
    let mut keep: Vec<IndexedPack> = Vec::new();
    let mut repack: Vec<(&IndexedPack, Vec<usize>)> = Vec::new();
    let mut remove: Vec<Id> = Vec::new();
    for p in index.packs() {
        // A blob stored twice counts as used only where the index finds it.
        let live: Vec<usize> = (0..p.entries.len())
            .filter(|&i| {
                let e = &p.entries[i];
                used.contains(&e.id)
                    && index
                        .locate(&e.id)
                        .is_some_and(|(pid, le)| pid == p.id && le.offset == e.offset)
            })
            .collect();
        if live.is_empty() {
            remove.push(p.id);
        } else if live.len() == p.entries.len() {
            keep.push(p.clone());
            continue;
        } else if full {
            report.repack_skipped += 1;
            keep.push(p.clone());
            continue;
        } else {
            repack.push((p, live.clone()));
        }
        report.blobs_removed += p.entries.len() - live.len();
    }
    // Unindexed packs are an interrupted backup's, and go; one whose header cannot be read
    // may be another device's that cannot be opened now (its record damaged): kept.
    let mut orphans: Vec<String> = Vec::new();
    for name in stored
        .keys()
        .filter(|n| !n.parse::<Id>().is_ok_and(|id| index.has_pack(&id)))
    {
        match repo.read_pack_header(name) {
            Ok(_) => orphans.push(name.clone()),
            Err(e) if e.is_damage() => report.orphans_kept += 1,
            Err(e) => return Err(e),
        }
    }
    report.packs_kept = keep.len();
    report.packs_deleted = remove.len();
    report.packs_repacked = repack.len();
    report.orphans_deleted = orphans.len();
    let size_of = |id: &Id| stored.get(&id.to_hex()).copied().unwrap_or(0);
    let before: u64 = stored.values().sum();
    if dry_run {
        let freed: u64 = remove.iter().map(size_of).sum::<u64>()
            + orphans.iter().map(|n| stored[n]).sum::<u64>()
            + repack
                .iter()
                .map(|(p, live)| {
                    let live_bytes: u64 = live.iter().map(|&i| p.entries[i].length as u64).sum();
                    size_of(&p.id).saturating_sub(live_bytes)
                })
                .sum::<u64>();
        report.bytes_freed = freed;
        report.bytes_after = before - freed;
        // A dry run writes nothing but what it took from the reserve to get its lock.
        report.reserve_kept = !full || repo.backend().keep_reserve().is_ok();
        return Ok(report);
    }
    if repack.is_empty() && remove.is_empty() && orphans.is_empty() && index.files().len() <= 1 {
        let (partials, bytes) = repo.backend().remove_partials()?;
        report.partials_deleted = partials;
        report.bytes_freed = bytes;
        report.bytes_after = before;
        report.reserve_kept = repo.backend().keep_reserve().is_ok();
        return Ok(report);
    }

    let removed: u64 = remove
        .iter()
        .chain(repack.iter().map(|(p, _)| &p.id))
        .map(size_of)
        .sum::<u64>()
        + orphans.iter().map(|n| stored[n]).sum::<u64>();
    let external = index
        .externals()
        .filter(|x| used.contains(&x.id))
        .copied()
        .collect();
    let rewrite = Rewrite {
        keep,
        repack,
        remove,
        external,
        salvage: false,
    };
    let new_bytes = rewrite.apply(repo, &index, device, progress)?.new_bytes;
    for name in &orphans {
        repo.backend().remove(FileType::Pack, name)?;
    }
    // Partial files of writers killed mid-write: under this lock no writer is alive.
    let (partials, partial_bytes) = repo.backend().remove_partials()?;
    report.partials_deleted = partials;
    report.bytes_freed = removed.saturating_sub(new_bytes) + partial_bytes;
    report.bytes_after = before + new_bytes - removed;
    report.reserve_kept = repo.backend().keep_reserve().is_ok();
    Ok(report)
}

/// Why prune will not run: deciding what to delete now could delete what is needed.
fn refusal(repo: &Repository, why: String) -> crate::RepoError {
    crate::RepoError::Corrupt {
        what: "repository",
        name: repo.backend().location(),
        source: kura_core::FormatError::invalid("repository", why),
    }
}

/// A new index and packs for the repository: packs kept as they are, packs rewritten with
/// only some of their blobs, packs dropped. Written in the order that keeps the repository
/// consistent if the process is killed at any point: new packs, the new index, old index
/// files, old packs.
pub(crate) struct Rewrite<'a> {
    /// Packs that stay as they are.
    pub keep: Vec<IndexedPack>,
    /// Packs rewritten with the blobs at these positions of their entries.
    pub repack: Vec<(&'a IndexedPack, Vec<usize>)>,
    /// Packs deleted whole.
    pub remove: Vec<Id>,
    /// Baseline-only blobs the new index keeps.
    pub external: Vec<kura_core::index::External>,
    /// Whether a blob that does not authenticate is left out (repair) rather than stopping
    /// the rewrite (prune: damage is never carried forward, nor dropped unasked).
    pub salvage: bool,
}

/// What a [`Rewrite`] did.
pub(crate) struct Rewritten {
    /// Bytes of the new packs.
    pub new_bytes: u64,
    /// Blobs left out because they did not authenticate: (pack, blob).
    pub left_out: Vec<(Id, Id)>,
    /// Blobs copied into new packs.
    pub copied: usize,
}

impl Rewrite<'_> {
    /// Writes it all, sealing the new index with `device`'s key; `progress` hears of each
    /// pack repacked.
    pub fn apply(
        self,
        repo: &Repository,
        index: &crate::MasterIndex,
        device: DeviceId,
        progress: &dyn crate::check::CheckProgress,
    ) -> Result<Rewritten> {
        let key = repo.require_device(device)?.clone();
        let stored = repo.stored_packs()?;
        let size = |p: &IndexedPack| stored.get(&p.id.to_hex()).copied().unwrap_or(0);
        progress.start(
            self.repack.len() as u64,
            self.repack.iter().map(|(p, _)| size(p)).sum(),
        );
        let mut out = Rewritten {
            new_bytes: 0,
            left_out: Vec::new(),
            copied: 0,
        };
        // 1. New packs with the blobs kept of rewritten packs.
        let mut builders: HashMap<DeviceId, PackBuilder> = HashMap::new();
        let mut written: Vec<IndexedPack> = Vec::new();
        let mut flush = |b: PackBuilder, dev: DeviceId, out: &mut Rewritten| -> Result<()> {
            let dkey = repo.require_device(dev)?;
            let (bytes, id, entries) = b.finish(dkey);
            repo.backend().write(FileType::Pack, &id.to_hex(), &bytes)?;
            out.new_bytes += bytes.len() as u64;
            written.push(IndexedPack {
                id,
                device: dev,
                entries,
            });
            Ok(())
        };
        for (p, live) in &self.repack {
            let name = p.id.to_hex();
            if stored.get(&name).copied().unwrap_or(0) > pack::MAX_SIZE {
                return Err(crate::corrupt("pack", &name)(
                    kura_core::FormatError::invalid("pack", "larger than any pack"),
                ));
            }
            let bytes = repo.backend().read(FileType::Pack, &name)?;
            for &i in live {
                let e = &p.entries[i];
                let sealed = bytes.get(e.offset as usize..e.offset as usize + e.length as usize);
                let opened = match sealed {
                    Some(s) => repo.open_blob(&name, &p.id, e, s, index).map(|_| s),
                    None => Err(crate::corrupt("pack", &name)(
                        kura_core::FormatError::Truncated("pack"),
                    )),
                };
                let sealed = match opened {
                    Ok(s) => s,
                    Err(_) if self.salvage => {
                        out.left_out.push((p.id, e.id));
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let b = builders
                    .entry(p.device)
                    .or_insert_with(|| PackBuilder::new(p.device));
                b.push(e.kind, e.id, e.compression, e.raw_length, sealed);
                out.copied += 1;
                if b.len() >= pack::TARGET_SIZE {
                    let full = std::mem::replace(b, PackBuilder::new(p.device));
                    flush(full, p.device, &mut out)?;
                }
            }
            progress.pack(bytes.len() as u64);
        }
        for (dev, b) in builders {
            if !b.is_empty() {
                flush(b, dev, &mut out)?;
            }
        }
        // 2. One new index of everything that stays.
        let mut packs = self.keep;
        packs.extend(written);
        let new_index = IndexFile {
            packs,
            external: self.external,
        };
        let (sealed, id) = kura_core::sealed::seal_file(
            &key,
            device,
            kura_core::sealed::FileKind::Index,
            &new_index.encode(),
        );
        let new_name = id.to_hex();
        repo.backend().write(FileType::Index, &new_name, &sealed)?;
        // 3. Old index files, 4. old packs.
        for name in index.files() {
            if *name != new_name {
                repo.backend().remove(FileType::Index, name)?;
            }
        }
        for id in self
            .remove
            .iter()
            .chain(self.repack.iter().map(|(p, _)| &p.id))
        {
            match repo.backend().remove(FileType::Pack, &id.to_hex()) {
                Ok(()) | Err(crate::BackendError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}
