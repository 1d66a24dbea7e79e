//! What a check found damaged, dealt with.
//!
//! `repair packs` rewrites every pack with a recorded damaged blob with the blobs of it that
//! still authenticate, takes packs that are indexed but missing out of the index, and removes
//! the damage records: no index names the damaged blobs any more, so the next backup stores
//! again whatever of them its sources still have. `repair snapshots` then rewrites the
//! snapshots that still need what no source had: a lost directory listing becomes an empty
//! directory, a file with a lost part is left out, and the snapshot is tagged `repaired`.
//! After both (and a backup between them) `check --read-data` finds nothing.

use serde::Serialize;

use kura_core::Id;
use kura_core::keys::DeviceId;
use kura_core::pack::BlobKind;
use kura_core::tree::{NodeKind, Tree};

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
    let done = rewrite.apply(repo, &index, device, &())?;
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

/// What `repair snapshots` did (or would do) to one snapshot.
#[derive(Debug, Serialize)]
pub struct SnapshotRepair {
    /// The snapshot as it was.
    pub old: Id,
    /// The repaired snapshot that replaced it (none in a dry run).
    pub new: Option<Id>,
    /// Directories whose listing was lost: empty in the repaired snapshot.
    pub dirs_emptied: Vec<String>,
    /// Files whose contents are lost, whole or in part: left out of the repaired snapshot.
    pub files_dropped: Vec<String>,
}

impl SnapshotRepair {
    fn of(old: Id) -> SnapshotRepair {
        SnapshotRepair {
            old,
            new: None,
            dirs_emptied: Vec::new(),
            files_dropped: Vec::new(),
        }
    }
}

/// Rewrites every snapshot that needs what the repository no longer has: a directory whose
/// listing is lost becomes empty, a file with a lost part is left out, and the rest is kept
/// as it was. The repaired snapshot has the old one's time, paths and device (or `device`,
/// if that one cannot seal any more) and the tag `repaired`; it replaces the old one. Run it
/// after `repair packs` and a backup, so that what the sources still have is stored again
/// first and only what is gone for good is left out.
pub fn repair_snapshots(
    repo: &Repository,
    device: DeviceId,
    dry_run: bool,
) -> Result<Vec<SnapshotRepair>> {
    repo.require_device(device)?;
    let _lock = repo.lock(true)?;
    let index = repo.load_index()?;
    let saver = crate::saver::Saver::new(repo, &index, device)?;
    let mut fix = Fixer {
        repo,
        index: &index,
        saver: &saver,
        scratch: saver.scratch(),
        write: !dry_run,
    };
    let mut repaired = Vec::new();
    for (id, snap) in repo.readable_snapshots()?.0 {
        let mut r = SnapshotRepair::of(id);
        let tree = fix.tree(snap.tree, "", &mut r)?;
        // What `changes` loses is lost under the whole tree too: reported once, from there.
        let changes = snap
            .changes
            .map(|c| fix.tree(c, "", &mut SnapshotRepair::of(id)))
            .transpose()?;
        if r.dirs_emptied.is_empty() && r.files_dropped.is_empty() {
            continue;
        }
        let mut new = repo.successor(id, &snap, device);
        (new.tree, new.changes) = (tree, changes);
        if !new.tags.iter().any(|t| t == "repaired") {
            new.tags.push("repaired".into());
        }
        repaired.push((r, new));
    }
    if dry_run {
        return Ok(repaired.into_iter().map(|(r, _)| r).collect());
    }
    // The new trees first, then the new snapshots, then the old ones go.
    saver.finish()?;
    let mut out = Vec::new();
    for (mut r, new) in repaired {
        r.new = Some(repo.replace_snapshot(&r.old, &new)?);
        out.push(r);
    }
    Ok(out)
}

/// Rewrites trees without what is lost.
struct Fixer<'a> {
    repo: &'a Repository,
    index: &'a crate::MasterIndex,
    saver: &'a crate::saver::Saver<'a>,
    scratch: crate::saver::Scratch,
    write: bool,
}

impl Fixer<'_> {
    /// The tree `id` of the directory at `path` without what is lost: `id` itself when
    /// nothing is.
    fn tree(&mut self, id: Id, path: &str, r: &mut SnapshotRepair) -> Result<Id> {
        let tree = match self.repo.load_tree(self.index, &id) {
            Ok(t) => t,
            Err(e) if e.is_damage() => {
                r.dirs_emptied.push(if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                });
                return self.save(Tree::default());
            }
            Err(e) => return Err(e),
        };
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let at = format!("{path}/{}", String::from_utf8_lossy(&node.name));
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => {
                    let fixed = self.tree(sub, &at, r)?;
                    if fixed != sub {
                        node.subtree = Some(fixed);
                        changed = true;
                    }
                }
                (NodeKind::File, _) if node.content.iter().any(|b| !self.index.knows(b)) => {
                    r.files_dropped.push(at);
                    changed = true;
                    continue;
                }
                _ => {}
            }
            nodes.push(node);
        }
        if !changed {
            return Ok(id);
        }
        self.save(Tree { nodes })
    }

    fn save(&mut self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        let id = self.repo.blob_key().id(&bytes);
        if self.write {
            self.saver
                .save(BlobKind::Tree, id, &bytes, &mut self.scratch)?;
        }
        Ok(id)
    }
}

/// What `repair index` did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    /// Packs whose header was read into the new index.
    pub packs_indexed: usize,
    /// Packs whose header cannot be read: left out of the index (and kept, see `prune`).
    pub packs_unreadable: Vec<String>,
    /// Index files the new one replaced (the ones that could not be read among them).
    pub index_files_replaced: usize,
    /// Of those, the ones that could not be read.
    pub index_files_unreadable: usize,
}

/// Builds the index anew from the packs' own headers, and replaces every index file with it:
/// for index files that were lost or cannot be read (their packs would otherwise look unused,
/// and prune refuses to run). Baseline-only entries of readable index files are kept.
pub fn repair_index(repo: &Repository, device: DeviceId, dry_run: bool) -> Result<IndexRepair> {
    repo.require_device(device)?;
    let _lock = repo.lock(true)?;
    let (old, unreadable) = repo.load_index_reporting(&())?;
    let lost = repo.lost()?;
    let mut report = IndexRepair {
        index_files_unreadable: unreadable.len(),
        ..IndexRepair::default()
    };
    let mut packs = Vec::new();
    for name in repo.backend().list(FileType::Pack)? {
        let Ok(id) = name.parse::<Id>() else { continue };
        if lost.packs.contains(&id) {
            continue;
        }
        match repo.read_pack_header(&name) {
            Ok((sealed_by, entries)) => packs.push(kura_core::index::IndexedPack {
                id,
                device: sealed_by,
                entries,
            }),
            Err(e) if e.is_damage() => report.packs_unreadable.push(name),
            Err(e) => return Err(e),
        }
    }
    report.packs_indexed = packs.len();
    let files = repo.backend().list(FileType::Index)?;
    report.index_files_replaced = files.len();
    if dry_run {
        return Ok(report);
    }
    let new = repo.write_index_file(
        device,
        &kura_core::index::IndexFile {
            packs,
            external: old.externals().copied().collect(),
        },
    )?;
    for name in files.iter().filter(|n| **n != new) {
        repo.backend().remove(FileType::Index, name)?;
    }
    Ok(report)
}
