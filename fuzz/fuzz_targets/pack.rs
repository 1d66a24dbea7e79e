//! Pack trailer and header decoding never panics, whatever the bytes.
#![no_main]
use kura_core::crypto::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_bytes([7; 32]);
    let _ = kura_core::pack::decode_pack(|_| Some(key.clone()), data);
    if data.len() >= kura_core::pack::TRAILER_LEN {
        let tail = &data[data.len() - kura_core::pack::TRAILER_LEN..];
        if let Ok(t) = kura_core::pack::read_trailer(tail, data.len() as u64) {
            let _ = kura_core::pack::decode_header(&key, &t, data, data.len() as u64);
        }
    }
});
