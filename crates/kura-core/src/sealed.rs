//! Sealed files: one encrypted, compressed object in one stored file (snapshots, indexes, jobs).
//!
//! ```text
//! file = "KURA" | version u8 (1) | kind u8 | device id [16] | sealed(device key, aad = the 22 bytes before, body)
//! body = compression u8 | payload                            payload = zstd or raw
//! ```
//! The file is named by the BLAKE3 hash of all its bytes.

use crate::compress::{self, Compression, Compressor};
use crate::crypto::{self, Key};
use crate::keys::DeviceId;
use crate::{FormatError, Id};

const MAGIC: &[u8; 4] = b"KURA";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 16;
/// A sealed file never expands beyond this (a guard against hostile length claims).
pub const MAX_PLAIN: usize = 1 << 30;

/// What a sealed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A [`crate::snapshot::Snapshot`].
    Snapshot = 1,
    /// An [`crate::index::IndexFile`].
    Index = 2,
    /// A [`crate::job::Job`] (a backup log entry).
    Job = 3,
    /// A [`crate::damage::Damage`] record.
    Damage = 4,
}

/// Seals `plain` as a file of `kind` under `device`'s key; returns its bytes and id.
pub fn seal_file(key: &Key, device: DeviceId, kind: FileKind, plain: &[u8]) -> (Vec<u8>, Id) {
    let mut body = Vec::with_capacity(plain.len() + 1);
    let mut compressed = Vec::new();
    let compression = Compressor::new(3).compress(plain, &mut compressed);
    body.push(compression as u8);
    body.extend_from_slice(&compressed);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + crypto::OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&device.0);
    let aad = out.clone();
    crypto::seal_into(key, &aad, &body, &mut out);
    let id = Id::of_bytes(&out);
    (out, id)
}

/// The device whose key sealed this file (read before decrypting, to pick the key).
pub fn sealed_by(file: &[u8], kind: FileKind) -> Result<DeviceId, FormatError> {
    if file.len() < HEADER_LEN {
        return Err(FormatError::Truncated("sealed file"));
    }
    if &file[..4] != MAGIC || file[4] != VERSION || file[5] != kind as u8 {
        return Err(FormatError::BadMagic("sealed file"));
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&file[6..HEADER_LEN]);
    Ok(DeviceId(d))
}

/// Opens a sealed file of `kind` with the key of the device that sealed it.
pub fn open_file(key: &Key, kind: FileKind, file: &[u8]) -> Result<Vec<u8>, FormatError> {
    sealed_by(file, kind)?;
    let body = crypto::open(key, &file[..HEADER_LEN], &file[HEADER_LEN..], "sealed file")?;
    let (&c, payload) = body
        .split_first()
        .ok_or(FormatError::Truncated("sealed file"))?;
    match Compression::from_u8(c)? {
        Compression::None => Ok(payload.to_vec()),
        Compression::Zstd => {
            let size = zstd::zstd_safe::get_frame_content_size(payload)
                .ok()
                .flatten()
                .filter(|&n| n as usize <= MAX_PLAIN)
                .ok_or_else(|| {
                    FormatError::invalid("sealed file", "missing or oversized content size")
                })?;
            compress::decompress(payload, Compression::Zstd, size as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let key = Key::random();
        let dev = DeviceId::random();
        let plain = b"{\"hello\": \"world\"}".repeat(50);
        let (file, id) = seal_file(&key, dev, FileKind::Snapshot, &plain);
        assert_eq!(id, Id::of_bytes(&file));
        assert_eq!(sealed_by(&file, FileKind::Snapshot).unwrap(), dev);
        assert_eq!(open_file(&key, FileKind::Snapshot, &file).unwrap(), plain);
        assert!(open_file(&key, FileKind::Index, &file).is_err());
        assert!(open_file(&Key::random(), FileKind::Snapshot, &file).is_err());
        let mut bad = file.clone();
        bad[7] ^= 1;
        assert!(open_file(&key, FileKind::Snapshot, &bad).is_err());
        assert!(open_file(&key, FileKind::Snapshot, &file[..file.len() - 1]).is_err());
        assert!(open_file(&key, FileKind::Snapshot, &file[..3]).is_err());
    }
}
