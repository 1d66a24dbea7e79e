//! Sealed-file headers and bodies never panic, whatever the bytes.
#![no_main]
use kura_core::crypto::Key;
use kura_core::sealed::{FileKind, open_file, sealed_by};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_bytes([1; 32]);
    for kind in [FileKind::Snapshot, FileKind::Index] {
        let _ = sealed_by(data, kind);
        let _ = open_file(&key, kind, data);
    }
});
