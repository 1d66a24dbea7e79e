//! Reading a mail body never panics: a bundle of memory items decodes or is refused, a
//! decoded one re-encodes to the same bytes, its paths stay inside a phone's store, its
//! address-book cards parse as vCards or are refused, and a sealed body that does not open
//! under the key is refused.
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
        let _ = b.check_cards();
    }
    // The input as one address-book card.
    let mut card = Bundle::default();
    if card.insert("contacts/f.vcf", data.to_vec()).is_ok() {
        let _ = card.check_cards();
    }
    let secret = Secret::from_hex(&"7".repeat(64)).expect("a valid key");
    assert!(secret.open(data, "<f@x>", Direction::Restore).is_err());
});
