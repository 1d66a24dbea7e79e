//! The in-memory index: every blob's location, merged from all index files.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use kura_core::Id;
use kura_core::index::{External, IndexFile, IndexedPack};
use kura_core::keys::DeviceId;
use kura_core::pack::Entry;

/// Blob ids are already uniform hashes: hash maps keyed by them need only fold their bytes.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// A hash map keyed by [`Id`].
pub type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;
/// A hash set of [`Id`]s.
pub type IdSet = std::collections::HashSet<Id, BuildHasherDefault<IdHasher>>;

/// All index files merged: where each blob is, and which blobs are baseline-only.
#[derive(Default)]
pub struct MasterIndex {
    packs: Vec<IndexedPack>,
    pack_pos: IdMap<u32>,
    blobs: IdMap<(u32, u32)>,
    external: IdMap<External>,
    files: Vec<String>,
}

impl MasterIndex {
    /// Merges one index file, remembering its name.
    pub fn add_file(&mut self, name: String, file: IndexFile) {
        for p in file.packs {
            self.add_pack(p);
        }
        for x in file.external {
            self.external.insert(x.id, x);
        }
        self.files.push(name);
    }

    /// Merges one pack's entries (a pack listed twice is merged once).
    pub fn add_pack(&mut self, pack: IndexedPack) {
        if self.pack_pos.contains_key(&pack.id) {
            return;
        }
        let p = self.packs.len() as u32;
        self.pack_pos.insert(pack.id, p);
        for (i, e) in pack.entries.iter().enumerate() {
            self.blobs.entry(e.id).or_insert((p, i as u32));
        }
        self.packs.push(pack);
    }

    /// Leaves out packs that are gone: their blobs count as not stored, or as stored in
    /// another pack that holds them too.
    pub fn forget_packs(&mut self, gone: &std::collections::HashSet<Id>) {
        if !self.packs.iter().any(|p| gone.contains(&p.id)) {
            return;
        }
        let packs = std::mem::take(&mut self.packs);
        self.pack_pos.clear();
        self.blobs.clear();
        for p in packs.into_iter().filter(|p| !gone.contains(&p.id)) {
            self.add_pack(p);
        }
    }

    /// Leaves out blobs a check found damaged, each in the pack it was found in (the same
    /// blob in another pack still counts), and packs found missing.
    pub fn forget_damage(&mut self, damage: &kura_core::damage::Damage) {
        if !damage.packs.is_empty() {
            self.forget_packs(&damage.packs.iter().copied().collect());
        }
        if damage.blobs.is_empty() {
            return;
        }
        self.blobs.clear();
        for (p, pack) in self.packs.iter().enumerate() {
            for (i, e) in pack.entries.iter().enumerate() {
                if !damage.blobs.contains(&(pack.id, e.id)) {
                    self.blobs.entry(e.id).or_insert((p as u32, i as u32));
                }
            }
        }
    }

    /// Records a baseline-only blob.
    pub fn add_external(&mut self, x: External) {
        self.external.insert(x.id, x);
    }

    /// The pack holding a blob, and the blob's entry.
    pub fn locate(&self, id: &Id) -> Option<(Id, &Entry)> {
        let &(p, e) = self.blobs.get(id)?;
        let pack = &self.packs[p as usize];
        Some((pack.id, &pack.entries[e as usize]))
    }

    /// Whether a blob is stored in a pack.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// A baseline-only blob.
    pub fn external(&self, id: &Id) -> Option<&External> {
        self.external.get(id)
    }

    /// Whether a blob is stored or baseline-only: either way a backup need not upload it.
    pub fn knows(&self, id: &Id) -> bool {
        self.contains(id) || self.external.contains_key(id)
    }

    /// The device whose key sealed a pack.
    pub fn pack_device(&self, pack: &Id) -> Option<DeviceId> {
        self.pack_pos
            .get(pack)
            .map(|&p| self.packs[p as usize].device)
    }

    /// Whether a pack is indexed.
    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_pos.contains_key(pack)
    }

    /// Every indexed pack.
    pub fn packs(&self) -> &[IndexedPack] {
        &self.packs
    }

    /// Every baseline-only blob.
    pub fn externals(&self) -> impl Iterator<Item = &External> {
        self.external.values()
    }

    /// Names of the index files merged.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Number of stored blobs.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }
}
