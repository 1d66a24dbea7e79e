//! Opening a blob (decrypt, bounded decompression, id check) never panics.
#![no_main]
use kura_core::compress::Compression;
use kura_core::crypto::Key;
use kura_core::keys::CommonKey;
use kura_core::pack::{BlobKind, Entry, open_blob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, bool, &[u8])| {
    let (raw_length, zstd, data) = input;
    let entry = Entry {
        kind: BlobKind::Data,
        compression: if zstd { Compression::Zstd } else { Compression::None },
        id: kura_core::Id([0; 32]),
        offset: 0,
        length: data.len() as u32,
        raw_length: raw_length % (16 << 20),
    };
    let _ = open_blob(&Key::from_bytes([2; 32]), &CommonKey::generate().blob_key(), &entry, data);
    let _ = kura_core::compress::decompress(data, entry.compression, entry.raw_length as usize);
});
