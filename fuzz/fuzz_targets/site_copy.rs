//! Opening a copy read back from a storage site (which the service does not trust) never
//! panics, whatever its header claims, and only the exact sealed bytes open.
#![no_main]
use kura_placement::envelope::{self, HEADER, Keyring, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::decode(
        br#"{"keys": {"s": {"1": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}}}"#,
    )
    .expect("a valid keyring");
    let _ = envelope::open(&ring, "s", "data/ab", data);
    if let Ok(layout) = Layout::parse(data) {
        let end = layout.len.min(1 << 32);
        let (_, _, first) = layout.span(end / 2, end);
        let _ = envelope::open_segments(&ring, "s", "data/ab", &layout, first, &data[HEADER..]);
    }
});
