//! Reading the list of packs a client reports for a snapshot never panics, and what it
//! accepts writes back to the same bytes.
#![no_main]
use kura_core::id::{ids_from_bytes, ids_to_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = ids_from_bytes(data) {
        assert_eq!(ids_to_bytes(&ids), data);
    }
});
