//! `kura copy`: snapshots of one repository into another. Blob names are keyed per
//! repository and the keys differ, so every blob a snapshot needs is read from the source,
//! named with the target's key and stored there sealed by the target device's key, unless
//! the target has it already (so a copy deduplicates against everything the target holds);
//! trees are written again with the new names. The data goes first, the snapshots last: a
//! copy cut short leaves no snapshot that needs what is missing.

use std::collections::{HashMap, HashSet};

use kura_core::Id;
use kura_core::keys::DeviceId;
use kura_core::pack::BlobKind;
use kura_core::snapshot::Snapshot;
use kura_repo::saver::{Saver, Scratch};
use kura_repo::{MasterIndex, RepoError, Repository};

use crate::progress::Progress;
use crate::{ClientError, Result};

/// What a copy did.
#[derive(Debug, Default)]
pub struct Copied {
    /// Each snapshot copied: its id in the source and in the target.
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the target had already (same time, host and paths).
    pub present: Vec<Id>,
    /// Source snapshots that could not be copied, and why (data only at a baseline, damage).
    pub failed: Vec<(Id, String)>,
    /// Blobs the target did not have, and their plaintext bytes.
    pub blobs_added: u64,
    /// Plaintext bytes added.
    pub data_added: u64,
    /// Bytes of packs written to the target.
    pub stored_added: u64,
}

/// Names blobs and trees of the source anew in the target, each once.
struct Renamer<'a> {
    from: &'a Repository,
    from_index: &'a MasterIndex,
    to: &'a Repository,
    saver: &'a Saver<'a>,
    scratch: Scratch,
    blobs: HashMap<Id, Id>,
    trees: HashMap<Id, Id>,
    progress: &'a dyn Progress,
}

impl Renamer<'_> {
    fn blob(&mut self, id: &Id) -> Result<Id> {
        if let Some(new) = self.blobs.get(id) {
            return Ok(*new);
        }
        let plain = match self.from.read_blob(self.from_index, id) {
            Err(RepoError::MissingBlob(_)) if self.from_index.external(id).is_some() => {
                return Err(ClientError::Usage(
                    "it needs data recorded at a baseline, which is not in the repository".into(),
                ));
            }
            r => r?,
        };
        let new = self.to.blob_key().id(&plain);
        self.saver
            .save(BlobKind::Data, new, &plain, &mut self.scratch)?;
        self.progress.bytes(plain.len() as u64);
        self.blobs.insert(*id, new);
        Ok(new)
    }

    fn tree(&mut self, id: &Id) -> Result<Id> {
        if let Some(new) = self.trees.get(id) {
            return Ok(*new);
        }
        let mut tree = self.from.load_tree(self.from_index, id)?;
        for node in &mut tree.nodes {
            node.content = (node.content.iter())
                .map(|b| self.blob(b))
                .collect::<Result<_>>()?;
            if let Some(sub) = node.subtree {
                node.subtree = Some(self.tree(&sub)?);
            }
        }
        let bytes = tree.encode();
        let new = self.to.blob_key().id(&bytes);
        self.saver
            .save(BlobKind::Tree, new, &bytes, &mut self.scratch)?;
        self.trees.insert(*id, new);
        Ok(new)
    }
}

/// The key by which a copy recognises a snapshot the target has already.
fn sameness(s: &Snapshot) -> (jiff::Timestamp, String, Vec<String>) {
    let mut paths = s.paths.clone();
    paths.sort();
    (s.time, s.hostname.clone(), paths)
}

/// Copies `snapshots` (of `from`, oldest first) into `to` as `device` of it.
pub fn copy(
    from: &Repository,
    to: &Repository,
    device: DeviceId,
    snapshots: &[(Id, Snapshot)],
    progress: &dyn Progress,
) -> Result<Copied> {
    to.require_device(device)?;
    let _from_lock = from.lock(false)?;
    let _to_lock = to.lock(false)?;
    let from_index = from.load_index()?;
    let to_index = to.load_index()?;
    let (there, _) = to.readable_snapshots()?;
    let there: HashSet<_> = there.iter().map(|(_, s)| sameness(s)).collect();
    let saver = Saver::new(to, &to_index, device)?;
    let mut r = Renamer {
        from,
        from_index: &from_index,
        to,
        saver: &saver,
        scratch: saver.scratch(),
        blobs: HashMap::new(),
        trees: HashMap::new(),
        progress,
    };
    let mut out = Copied::default();
    let mut ready = Vec::new();
    progress.start(snapshots.len() as u64, 0);
    for (id, s) in snapshots {
        if there.contains(&sameness(s)) {
            out.present.push(*id);
            progress.item();
            continue;
        }
        let renamed = r.tree(&s.tree).and_then(|tree| {
            let changes = s.changes.map(|c| r.tree(&c)).transpose()?;
            Ok((tree, changes))
        });
        match renamed {
            Ok((tree, changes)) => ready.push((
                *id,
                Snapshot {
                    device,
                    tree,
                    changes,
                    original: None,
                    ..s.clone()
                },
            )),
            Err(ClientError::Repo(e)) if !e.is_damage() => return Err(e.into()),
            Err(e) => {
                progress.warn(&format!("snapshot {}: {e}", id.short()));
                out.failed.push((*id, e.to_string()));
            }
        }
        progress.item();
    }
    saver.finish()?;
    // Oldest first, so a base copied in this run has its new id before what rests on it; a
    // base not copied is named by its source id, which means nothing here.
    let mut renamed: HashMap<Id, Id> = HashMap::new();
    for (old, mut s) in ready {
        s.base = s.base.and_then(|b| renamed.get(&b).copied());
        let new = to.save_snapshot(&s)?;
        renamed.insert(old, new);
        out.copied.push((old, new));
    }
    out.blobs_added = saver.stats.blobs.load(std::sync::atomic::Ordering::Relaxed);
    out.data_added = saver
        .stats
        .data_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    out.stored_added = saver
        .stats
        .stored_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(out)
}
