//! Index file decoding never panics and re-encodes what it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = kura_core::index::IndexFile::decode(data) {
        assert_eq!(kura_core::index::IndexFile::decode(&idx.encode()).as_ref(), Ok(&idx));
    }
});
