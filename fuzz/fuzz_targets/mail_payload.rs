//! Reading a mail body never panics: a bundle of memory items decodes or is refused, a
//! decoded one re-encodes to the same bytes, its paths stay inside a phone's store, and a
//! sealed body that does not open under the key is refused.
#![no_main]
use kura_mail::Direction;
use kura_mail::payload::{Bundle, Secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::decode(data) {
        assert_eq!(b.encode(), data);
        for p in b.entries.keys() {
            assert!(!p.contains(".."));
            assert!(p.starts_with("contacts/") || p.starts_with("items/"));
        }
        let _ = b.items();
    }
    let secret = Secret::from_hex(&"7".repeat(64)).expect("a valid key");
    assert!(secret.open(data, "<f@x>", Direction::Restore).is_err());
});
