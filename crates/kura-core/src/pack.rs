//! Packs: many encrypted blobs in one stored file, with an encrypted header at the end.
//!
//! ```text
//! pack    = blob* header trailer
//! blob    = sealed(device key, aad = kind || id, payload)        payload = zstd or raw bytes
//! header  = sealed(device key, aad = "kura pack header v1" || device id, entry*)
//! entry   = kind u8 | compression u8 | id [32] | offset u32 | length u32 | raw length u32
//! trailer = header length u32 | device id [16] | version u8 (1) | "KPAK"
//! ```
//! All integers are little-endian. A pack is named by the BLAKE3 hash of all its bytes.

use crate::compress::{self, Compression};
use crate::crypto::{self, Key};
use crate::keys::{BlobKey, DeviceId};
use crate::{FormatError, Id, Reader};

/// Length of the fixed trailer at the end of every pack.
pub const TRAILER_LEN: usize = 4 + 16 + 1 + 4;
/// Length of one encoded [`Entry`].
pub const ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4 + 4;
const MAGIC: &[u8; 4] = b"KPAK";
const VERSION: u8 = 1;
/// Packs are closed at about this size.
pub const TARGET_SIZE: usize = 16 * 1024 * 1024;
/// No pack Kura writes comes near this size; a larger file under `data/` is not read.
pub const MAX_SIZE: u64 = 64 * 1024 * 1024;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A chunk of file contents.
    Data = 0,
    /// A directory listing ([`crate::tree::Tree`]).
    Tree = 1,
}

impl BlobKind {
    fn from_u8(b: u8) -> Result<BlobKind, FormatError> {
        match b {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Tree),
            _ => Err(FormatError::invalid(
                "blob entry",
                format!("unknown kind {b}"),
            )),
        }
    }
}

/// Where one blob sits in a pack, and how to decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What the blob holds.
    pub kind: BlobKind,
    /// How the payload is compressed.
    pub compression: Compression,
    /// The keyed id of the plaintext.
    pub id: Id,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

impl Entry {
    /// Appends the 46-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.compression as u8);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Entry, FormatError> {
        Ok(Entry {
            kind: BlobKind::from_u8(r.u8()?)?,
            compression: Compression::from_u8(r.u8()?)?,
            id: r.id()?,
            offset: r.u32()?,
            length: r.u32()?,
            raw_length: r.u32()?,
        })
    }
}

fn blob_aad(kind: BlobKind, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind as u8;
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Seals a (possibly compressed) payload as a blob, in place, bound to its kind and id.
pub fn seal_blob(key: &Key, kind: BlobKind, id: &Id, payload: &mut Vec<u8>) {
    crypto::seal_in_place(key, &blob_aad(kind, id), payload);
}

/// Opens a sealed blob, expands it, and checks that its plaintext has the id the entry claims.
pub fn open_blob(
    key: &Key,
    blob_key: &BlobKey,
    entry: &Entry,
    sealed: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let payload = crypto::open(key, &blob_aad(entry.kind, &entry.id), sealed, "blob")?;
    let plain = compress::decompress(&payload, entry.compression, entry.raw_length as usize)?;
    if blob_key.id(&plain) != entry.id {
        return Err(FormatError::invalid("blob", "contents do not match the id"));
    }
    Ok(plain)
}

/// Accumulates sealed blobs into one pack.
#[derive(Debug)]
pub struct PackBuilder {
    device: DeviceId,
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl PackBuilder {
    /// An empty pack for blobs of this device.
    pub fn new(device: DeviceId) -> PackBuilder {
        Self::with_buffer(device, Vec::new())
    }

    /// An empty pack that reuses `buffer`'s allocation (a finished pack's bytes), so a long
    /// backup does not allocate and free pack-sized buffers over and over.
    pub fn with_buffer(device: DeviceId, mut buffer: Vec<u8>) -> PackBuilder {
        buffer.clear();
        PackBuilder {
            device,
            bytes: buffer,
            entries: Vec::new(),
        }
    }

    /// Whether adding `sealed_len` more bytes would take the pack past [`TARGET_SIZE`]
    /// (callers then finish this pack first, so packs never outgrow their buffer).
    pub fn would_overflow(&self, sealed_len: usize) -> bool {
        !self.entries.is_empty() && self.bytes.len() + sealed_len > TARGET_SIZE
    }

    /// Appends a blob sealed by [`seal_blob`].
    pub fn push(
        &mut self,
        kind: BlobKind,
        id: Id,
        compression: Compression,
        raw_length: u32,
        sealed: &[u8],
    ) {
        if self.bytes.capacity() == 0 {
            // Room for a full pack plus its header, so finishing never reallocates.
            self.bytes
                .reserve(TARGET_SIZE.max(sealed.len()) + 64 * 1024);
        }
        self.entries.push(Entry {
            kind,
            compression,
            id,
            offset: self.bytes.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.bytes.extend_from_slice(sealed);
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the header and trailer and returns the pack's bytes, its id, and its entries.
    pub fn finish(mut self, key: &Key) -> (Vec<u8>, Id, Vec<Entry>) {
        let mut plain = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            e.encode(&mut plain);
        }
        let before = self.bytes.len();
        crypto::seal_into(key, &header_aad(self.device), &plain, &mut self.bytes);
        let header_len = (self.bytes.len() - before) as u32;
        self.bytes.extend_from_slice(&header_len.to_le_bytes());
        self.bytes.extend_from_slice(&self.device.0);
        self.bytes.push(VERSION);
        self.bytes.extend_from_slice(MAGIC);
        let id = Id::of_bytes(&self.bytes);
        (self.bytes, id, self.entries)
    }
}

fn header_aad(device: DeviceId) -> Vec<u8> {
    let mut aad = b"kura pack header v1".to_vec();
    aad.extend_from_slice(&device.0);
    aad
}

/// What the fixed-size trailer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the sealed header just before the trailer.
    pub header_len: u32,
    /// The device whose key sealed this pack.
    pub device: DeviceId,
}

/// Reads the trailer from the last [`TRAILER_LEN`] bytes of a pack of `pack_len` bytes.
pub fn read_trailer(tail: &[u8], pack_len: u64) -> Result<Trailer, FormatError> {
    if tail.len() != TRAILER_LEN || pack_len < TRAILER_LEN as u64 {
        return Err(FormatError::Truncated("pack"));
    }
    if &tail[21..] != MAGIC || tail[20] != VERSION {
        return Err(FormatError::BadMagic("pack"));
    }
    let header_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if header_len as u64 > pack_len - TRAILER_LEN as u64 {
        return Err(FormatError::Truncated("pack header"));
    }
    let mut device = [0u8; 16];
    device.copy_from_slice(&tail[4..20]);
    Ok(Trailer {
        header_len,
        device: DeviceId(device),
    })
}

/// Decrypts and decodes a pack header; every entry must lie inside the first `body_len` bytes.
pub fn decode_header(
    key: &Key,
    trailer: &Trailer,
    sealed: &[u8],
    body_len: u64,
) -> Result<Vec<Entry>, FormatError> {
    let plain = crypto::open(key, &header_aad(trailer.device), sealed, "pack header")?;
    if !plain.len().is_multiple_of(ENTRY_LEN) {
        return Err(FormatError::Truncated("pack header"));
    }
    let mut r = Reader::new(&plain, "pack header");
    let mut entries = Vec::with_capacity(plain.len() / ENTRY_LEN);
    while !r.is_empty() {
        let e = Entry::decode(&mut r)?;
        if e.offset as u64 + e.length as u64 > body_len {
            return Err(FormatError::invalid(
                "pack header",
                "entry points past the pack body",
            ));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// Decodes a whole pack held in memory: its trailer, header and entries.
pub fn decode_pack(
    key_for: impl Fn(DeviceId) -> Option<Key>,
    pack: &[u8],
) -> Result<(Trailer, Vec<Entry>), FormatError> {
    if pack.len() < TRAILER_LEN {
        return Err(FormatError::Truncated("pack"));
    }
    let trailer = read_trailer(&pack[pack.len() - TRAILER_LEN..], pack.len() as u64)?;
    let key = key_for(trailer.device)
        .ok_or_else(|| FormatError::invalid("pack", "sealed by an unknown device"))?;
    let header_end = pack.len() - TRAILER_LEN;
    let header_start = header_end - trailer.header_len as usize;
    let entries = decode_header(
        &key,
        &trailer,
        &pack[header_start..header_end],
        header_start as u64,
    )?;
    Ok((trailer, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CommonKey;

    #[test]
    fn pack_round_trip_and_damage() {
        let key = Key::random();
        let blob_key = CommonKey::generate().blob_key();
        let device = DeviceId::random();
        let mut b = PackBuilder::new(device);
        let datas: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        for d in &datas {
            let id = blob_key.id(d);
            let mut sealed = d.clone();
            seal_blob(&key, BlobKind::Data, &id, &mut sealed);
            b.push(
                BlobKind::Data,
                id,
                Compression::None,
                d.len() as u32,
                &sealed,
            );
        }
        let (pack, id, entries) = b.finish(&key);
        assert_eq!(id, Id::of_bytes(&pack));
        let (trailer, decoded) =
            decode_pack(|d| (d == device).then(|| key.clone()), &pack).unwrap();
        assert_eq!(trailer.device, device);
        assert_eq!(decoded, entries);
        for (e, d) in entries.iter().zip(&datas) {
            let s = &pack[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&open_blob(&key, &blob_key, e, s).unwrap(), d);
            let mut bad = s.to_vec();
            bad[30] ^= 0x40;
            assert!(open_blob(&key, &blob_key, e, &bad).is_err());
            let mut wrong = *e;
            wrong.kind = BlobKind::Tree;
            assert!(open_blob(&key, &blob_key, &wrong, s).is_err());
        }
        assert!(decode_pack(|_| Some(Key::random()), &pack).is_err());
        assert!(decode_pack(|_| Some(key.clone()), &pack[..pack.len() - 1]).is_err());
    }
}
