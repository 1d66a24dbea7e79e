//! Decoding a damage record (read from the repository, where anyone with write access could
//! put anything) never panics, and what decodes re-encodes to something that decodes the same.
#![no_main]
use kura_core::damage::Damage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Damage::decode(data) {
        assert_eq!(Damage::decode(&d.encode()).ok(), Some(d.clone()));
        let _ = d.beyond(&Damage::default());
    }
});
