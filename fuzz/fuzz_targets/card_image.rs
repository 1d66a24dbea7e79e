//! Reading what a host stores, an emulator keeps or a card answers never panics: a card backup
//! image and a card state file each decode or are refused, and what decodes writes back to the
//! same bytes; a card's status answer parses or is refused.
#![no_main]
use kura_card::host::CardStatus;
use kura_card::image::Image;
use kura_card::state;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = Image::parse(data) {
        assert_eq!(i.to_bytes(), data);
        assert_eq!(i.records().count(), i.header().records as usize);
    }
    if let Ok(chip) = state::decode(data) {
        assert_eq!(state::encode(&chip), data);
    }
    let _ = CardStatus::parse(data);
});
