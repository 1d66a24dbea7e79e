//! Index files: which pack holds each blob, so a blob can be read without scanning packs.
//!
//! ```text
//! index    = "KIDX" | version u8 (1) | pack count u32 | pack* | external count u32 | external*
//! pack     = pack id [32] | device id [16] | entry count u32 | entry*          (entry as in a pack header)
//! external = kind u8 | id [32] | raw length u32
//! ```
//! An index file is the body of a sealed file of kind `Index`. External blobs are the contents
//! of a baseline: known by id, never uploaded, restored from a recovery source.

use crate::keys::DeviceId;
use crate::pack::{BlobKind, ENTRY_LEN, Entry};
use crate::{FormatError, Id, Reader};

const MAGIC: &[u8; 4] = b"KIDX";
const VERSION: u8 = 1;

/// A blob known by id but never uploaded (part of a baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct External {
    /// What it holds (always data today).
    pub kind: BlobKind,
    /// Its keyed id.
    pub id: Id,
    /// Its plaintext length.
    pub raw_length: u32,
}

/// One pack as an index file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// The pack's id (its name).
    pub id: Id,
    /// The device whose key sealed it.
    pub device: DeviceId,
    /// The blobs it holds.
    pub entries: Vec<Entry>,
}

/// The contents of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Packs: id, the device whose key sealed it, and the blobs it holds.
    pub packs: Vec<IndexedPack>,
    /// Baseline blobs.
    pub external: Vec<External>,
}

impl IndexFile {
    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.entries.len()).sum();
        let mut out = Vec::with_capacity(
            13 + self.packs.len() * 52 + blobs * ENTRY_LEN + self.external.len() * 37,
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.id.0);
            out.extend_from_slice(&p.device.0);
            out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
            for e in &p.entries {
                e.encode(&mut out);
            }
        }
        out.extend_from_slice(&(self.external.len() as u32).to_le_bytes());
        for x in &self.external {
            out.push(x.kind as u8);
            out.extend_from_slice(&x.id.0);
            out.extend_from_slice(&x.raw_length.to_le_bytes());
        }
        out
    }

    /// Decodes [`IndexFile::encode`]'s output; never allocates more than the input justifies.
    pub fn decode(data: &[u8]) -> Result<IndexFile, FormatError> {
        let mut r = Reader::new(data, "index");
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return Err(FormatError::BadMagic("index"));
        }
        let n = r.u32()? as usize;
        let mut packs = Vec::with_capacity(n.min(data.len() / 52));
        for _ in 0..n {
            let id = r.id()?;
            let mut device = [0u8; 16];
            device.copy_from_slice(r.take(16)?);
            let count = r.u32()? as usize;
            let mut entries = Vec::with_capacity(count.min(data.len() / ENTRY_LEN));
            for _ in 0..count {
                entries.push(Entry::decode(&mut r)?);
            }
            packs.push(IndexedPack {
                id,
                device: DeviceId(device),
                entries,
            });
        }
        let n = r.u32()? as usize;
        let mut external = Vec::with_capacity(n.min(data.len() / 37));
        for _ in 0..n {
            let kind = match r.u8()? {
                0 => BlobKind::Data,
                1 => BlobKind::Tree,
                k => {
                    return Err(FormatError::invalid(
                        "index",
                        format!("unknown blob kind {k}"),
                    ));
                }
            };
            external.push(External {
                kind,
                id: r.id()?,
                raw_length: r.u32()?,
            });
        }
        if !r.is_empty() {
            return Err(FormatError::invalid("index", "trailing bytes"));
        }
        Ok(IndexFile { packs, external })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;
    use proptest::prelude::*;

    fn entry(i: u8) -> Entry {
        Entry {
            kind: if i.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            compression: Compression::Zstd,
            id: Id([i; 32]),
            offset: i as u32 * 10,
            length: 10,
            raw_length: 20,
        }
    }

    proptest! {
        #[test]
        fn round_trip(packs in proptest::collection::vec((any::<[u8; 32]>(), 0u8..20), 0..8), ext in 0u8..5) {
            let idx = IndexFile {
                packs: packs.iter().map(|(id, n)| IndexedPack { id: Id(*id), device: DeviceId([*n; 16]), entries: (0..*n).map(entry).collect() }).collect(),
                external: (0..ext).map(|i| External { kind: BlobKind::Data, id: Id([i; 32]), raw_length: i as u32 }).collect(),
            };
            let bytes = idx.encode();
            prop_assert_eq!(IndexFile::decode(&bytes).unwrap(), idx);
            for cut in 0..bytes.len() {
                prop_assert!(IndexFile::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        let mut data = b"KIDX\x01".to_vec();
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            IndexFile::decode(&data),
            Err(FormatError::Truncated("index"))
        );
    }
}
