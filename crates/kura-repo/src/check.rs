//! `check`: the repository's structure, and with `read_data` every byte.
//!
//! Structure: every index and snapshot file decrypts and matches its name; every indexed pack
//! exists, and its header agrees with the index; every tree decodes; every blob a snapshot
//! needs is indexed (or baseline-only). Data: every pack hashes to its name and every blob in
//! it authenticates, expands and matches its id.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kura_core::Id;
use kura_core::damage::Damage;
use kura_core::pack;
use kura_core::tree::NodeKind;
use serde::Serialize;

use crate::backend::FileType;
use crate::index::IdSet;
use crate::{MasterIndex, Repository, Result, corrupt};

/// What `check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Trees checked.
    pub trees: usize,
    /// Packs checked.
    pub packs: usize,
    /// Blobs whose bytes were verified (with `read_data`).
    pub blobs_read: usize,
    /// Problems that make data unrestorable.
    pub errors: Vec<String>,
    /// Harmless findings (unindexed packs from an interrupted backup).
    pub warnings: Vec<String>,
    /// The blobs that failed their check and the packs that are missing, to be recorded
    /// ([`Repository::record_damage`]) so that backups store them again.
    pub damage: Damage,
}

/// Receives progress of the data pass: called once per pack with its size.
pub trait CheckProgress: Sync {
    /// The data pass begins.
    fn start(&self, _packs: u64, _bytes: u64) {}
    /// One pack done.
    fn pack(&self, _bytes: u64) {}
}

impl CheckProgress for () {}

/// Checks the repository.
pub fn check(
    repo: &Repository,
    read_data: bool,
    threads: usize,
    progress: &dyn CheckProgress,
) -> Result<CheckReport> {
    let _lock = repo.lock(false)?;
    let mut report = CheckReport::default();
    for (_, e) in repo.damaged_devices() {
        report
            .errors
            .push(format!("{e} (what that device stored cannot be opened)"));
    }
    let mut index = MasterIndex::default();
    let lost = repo.lost()?;
    for name in repo.backend().list(FileType::Index)? {
        if lost.index.contains(&name) {
            continue;
        }
        match repo.read_index_file(&name) {
            Ok(f) => index.add_file(name, f),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    // What a lost pack or index file costs shows below, as the files whose blobs are now
    // missing (none once a backup has stored them again).
    for p in &lost.packs {
        report.warnings.push(format!(
            "pack {} was lost by the storage provider (`kura incidents` names the files; the next backup stores them again)",
            p.to_hex()
        ));
    }
    for name in &lost.index {
        report.warnings.push(format!(
            "index file {name} was lost by the storage provider (the next backup indexes its packs again)"
        ));
    }
    for object in &lost.other {
        report
            .errors
            .push(format!("{object} was lost by the storage provider"));
    }
    index.forget_packs(&lost.packs);
    let mut stored = repo.stored_packs()?;
    stored.retain(|name, _| !name.parse().is_ok_and(|id| lost.packs.contains(&id)));
    for p in index.packs() {
        let name = p.id.to_hex();
        report.packs += 1;
        if !stored.contains_key(&name) {
            report
                .errors
                .push(format!("pack {name} is indexed but missing"));
            report.damage.packs.insert(p.id);
            continue;
        }
        match repo.read_pack_header(&name) {
            Ok((device, mut entries)) => {
                let mut indexed = p.entries.clone();
                entries.sort_by_key(|e| e.offset);
                indexed.sort_by_key(|e| e.offset);
                if device != p.device || entries != indexed {
                    report
                        .errors
                        .push(format!("pack {name}: header does not match the index"));
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for name in stored.keys() {
        if !name.parse::<Id>().is_ok_and(|id| index.has_pack(&id)) {
            report.warnings.push(format!(
                "pack {name} is not indexed (left by an interrupted backup; the next backup adopts it, prune removes it)"
            ));
        }
    }

    let mut seen = IdSet::default();
    for name in repo.backend().list(FileType::Snapshot)? {
        report.snapshots += 1;
        let snap = match repo.find_snapshot(&name) {
            Ok((_, s)) => s,
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        let mut stack: Vec<Id> = snap.trees().collect();
        while let Some(tree_id) = stack.pop() {
            if !seen.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            let tree = match repo.load_tree(&index, &tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(format!(
                        "snapshot {}: tree {}: {e}",
                        &name[..8],
                        tree_id.short()
                    ));
                    continue;
                }
            };
            for node in &tree.nodes {
                match node.kind {
                    NodeKind::Dir => stack.extend(node.subtree),
                    NodeKind::File => {
                        for id in &node.content {
                            if seen.insert(*id) && !index.knows(id) {
                                report.errors.push(format!(
                                    "snapshot {}: blob {} of {:?} is missing",
                                    &name[..8],
                                    id.short(),
                                    String::from_utf8_lossy(&node.name)
                                ));
                            }
                        }
                    }
                    NodeKind::Symlink
                    | NodeKind::Fifo
                    | NodeKind::CharDevice
                    | NodeKind::BlockDevice => {}
                }
            }
        }
    }

    if read_data {
        let packs: Vec<&kura_core::index::IndexedPack> = index
            .packs()
            .iter()
            .filter(|p| stored.contains_key(&p.id.to_hex()))
            .collect();
        progress.start(
            packs.len() as u64,
            packs.iter().map(|p| stored[&p.id.to_hex()]).sum(),
        );
        let next = AtomicUsize::new(0);
        let found: Mutex<(usize, Vec<String>, Damage)> =
            Mutex::new((0, Vec::new(), Damage::default()));
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    while let Some(p) = packs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let read = read_pack(repo, &index, p);
                        progress.pack(stored[&p.id.to_hex()]);
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        f.0 += read.ok;
                        f.1.extend(read.errors);
                        f.2.merge(read.damage);
                    }
                });
            }
        });
        let (blobs, errs, damage) = found.into_inner().unwrap_or_else(|e| e.into_inner());
        report.blobs_read = blobs;
        report.errors.extend(errs);
        report.damage.merge(damage);
    }
    report.errors.sort();
    Ok(report)
}

/// What reading one pack found.
#[derive(Default)]
struct PackRead {
    /// Blobs that checked out.
    ok: usize,
    errors: Vec<String>,
    damage: Damage,
}

impl PackRead {
    fn failed(error: String) -> PackRead {
        PackRead {
            errors: vec![error],
            ..PackRead::default()
        }
    }
}

fn read_pack(
    repo: &Repository,
    index: &MasterIndex,
    p: &kura_core::index::IndexedPack,
) -> PackRead {
    let name = p.id.to_hex();
    match repo.backend().size(FileType::Pack, &name) {
        Ok(size) if size > pack::MAX_SIZE => {
            let mut read = PackRead::failed(format!(
                "pack {name}: {size} bytes is larger than any pack (not read)"
            ));
            read.damage.packs.insert(p.id);
            return read;
        }
        Ok(_) => {}
        Err(e) => return PackRead::failed(e.to_string()),
    }
    let bytes = match repo.backend().read(FileType::Pack, &name) {
        Ok(b) => b,
        Err(e) => return PackRead::failed(e.to_string()),
    };
    let mut damage = Damage::default();
    let mut errors = Vec::new();
    if Id::of_bytes(&bytes) != p.id {
        errors.push(format!(
            "pack {name}: contents do not match the name (damaged)"
        ));
    }
    let mut ok = 0;
    for e in &p.entries {
        let end = e.offset as usize + e.length as usize;
        let Some(sealed) = bytes.get(e.offset as usize..end) else {
            errors.push(format!(
                "pack {name}: blob {} lies past the end (truncated)",
                e.id.short()
            ));
            damage.blobs.insert((p.id, e.id));
            continue;
        };
        match repo.open_blob(&name, &p.id, e, sealed, index) {
            Ok(_) => ok += 1,
            Err(err) => {
                errors.push(err.to_string());
                damage.blobs.insert((p.id, e.id));
            }
        }
    }
    if let Err(e) =
        pack::decode_pack(|d| repo.device_key(d).cloned(), &bytes).map_err(corrupt("pack", &name))
    {
        errors.push(e.to_string());
    }
    PackRead { ok, errors, damage }
}

/// Every blob the given snapshots' trees need (trees and data), walking each tree once.
pub fn used_blobs(
    repo: &Repository,
    index: &MasterIndex,
    roots: impl IntoIterator<Item = Id>,
) -> Result<IdSet> {
    let mut used = IdSet::default();
    let mut stack: Vec<Id> = roots.into_iter().collect();
    while let Some(tree_id) = stack.pop() {
        if !used.insert(tree_id) {
            continue;
        }
        let tree = repo.load_tree(index, &tree_id)?;
        for node in tree.nodes {
            if let Some(sub) = node.subtree {
                stack.push(sub);
            }
            used.extend(node.content);
        }
    }
    Ok(used)
}

/// The paths of a snapshot's files whose contents the index lacks (in a pack that was lost,
/// say), in tree order; a directory whose own tree is missing is named with a trailing `/`
/// (nothing below it can be known).
pub fn files_missing(repo: &Repository, index: &MasterIndex, root: Id) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root, String::new())];
    while let Some((tree_id, dir)) = stack.pop() {
        if !index.contains(&tree_id) {
            out.push(format!("{dir}/"));
            continue;
        }
        let tree = repo.load_tree(index, &tree_id)?;
        for node in tree.nodes.iter().rev() {
            let path = format!("{dir}/{}", String::from_utf8_lossy(&node.name));
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => stack.push((sub, path)),
                (NodeKind::File, _) if node.content.iter().any(|id| !index.knows(id)) => {
                    out.push(path)
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
