//! `kura stats`: how much the chosen snapshots hold. Restore size counts what restoring each
//! of them would write; raw data counts the distinct blobs they need, as stored (compressed
//! and encrypted) and as plaintext, which is what they cost in the repository.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use kura_core::Id;
use kura_core::tree::NodeKind;
use kura_repo::{MasterIndex, Repository};

use crate::Result;
use crate::walk::{LostTree, load_tree};

/// What to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Files and bytes a restore of each snapshot writes, summed over the snapshots.
    #[default]
    RestoreSize,
    /// Distinct blobs the snapshots need, with their stored and plaintext sizes.
    RawData,
}

/// Totals over the chosen snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Restore size: files (every entry that is not a directory). Raw data: 0.
    pub files: u64,
    /// Restore size: bytes of file content. Raw data: plaintext bytes of the distinct blobs.
    pub bytes: u64,
    /// Raw data: distinct blobs (data and trees). Restore size: 0.
    pub blobs: u64,
    /// Raw data: bytes the distinct blobs take in the repository. Restore size: 0.
    pub stored_bytes: u64,
}

/// Counts `mode` over the snapshots whose root trees are `roots`; directories whose listing
/// could not be read are added to `lost` and not counted.
pub fn count(
    repo: &Repository,
    index: &MasterIndex,
    roots: &[Id],
    mode: Mode,
    lost: &mut Vec<LostTree>,
) -> Result<Totals> {
    let mut t = Totals {
        snapshots: roots.len() as u64,
        ..Totals::default()
    };
    match mode {
        Mode::RestoreSize => {
            let mut sizes = HashMap::new();
            for root in roots {
                let (files, bytes) = restore_size(repo, index, root, &mut sizes, lost)?;
                t.files += files;
                t.bytes += bytes;
            }
        }
        Mode::RawData => {
            let mut seen = HashSet::new();
            for root in roots {
                raw_data(repo, index, root, &mut seen, &mut t, lost)?;
            }
        }
    }
    Ok(t)
}

/// Files and bytes under tree `id`, each distinct tree walked once.
fn restore_size(
    repo: &Repository,
    index: &MasterIndex,
    id: &Id,
    sizes: &mut HashMap<Id, (u64, u64)>,
    lost: &mut Vec<LostTree>,
) -> Result<(u64, u64)> {
    if let Some(s) = sizes.get(id) {
        return Ok(*s);
    }
    let mut sum = (0, 0);
    if let Some(tree) = load_tree(repo, index, id, Path::new(&id.short()), lost)? {
        for n in &tree.nodes {
            match (n.kind, &n.subtree) {
                (NodeKind::Dir, Some(sub)) => {
                    let (f, b) = restore_size(repo, index, sub, sizes, lost)?;
                    sum = (sum.0 + f, sum.1 + b);
                }
                (NodeKind::Dir, None) => {}
                _ => sum = (sum.0 + 1, sum.1 + n.size),
            }
        }
    }
    sizes.insert(*id, sum);
    Ok(sum)
}

/// Adds the blobs under tree `id` not `seen` before.
fn raw_data(
    repo: &Repository,
    index: &MasterIndex,
    id: &Id,
    seen: &mut HashSet<Id>,
    t: &mut Totals,
    lost: &mut Vec<LostTree>,
) -> Result<()> {
    if !add_blob(index, id, seen, t) {
        return Ok(());
    }
    let Some(tree) = load_tree(repo, index, id, Path::new(&id.short()), lost)? else {
        return Ok(());
    };
    for n in &tree.nodes {
        for blob in &n.content {
            add_blob(index, blob, seen, t);
        }
        if let Some(sub) = &n.subtree {
            raw_data(repo, index, sub, seen, t, lost)?;
        }
    }
    Ok(())
}

/// Counts blob `id` unless seen; whether it was new.
fn add_blob(index: &MasterIndex, id: &Id, seen: &mut HashSet<Id>, t: &mut Totals) -> bool {
    if !seen.insert(*id) {
        return false;
    }
    t.blobs += 1;
    if let Some((_, e)) = index.locate(id) {
        t.bytes += u64::from(e.raw_length);
        t.stored_bytes += u64::from(e.length);
    } else if let Some(x) = index.external(id) {
        t.bytes += u64::from(x.raw_length);
    }
    true
}
