//! A card answers any sequence of command APDUs without panicking: every answer ends in a
//! status word, its number never changes once personalised, and its state saves and reads
//! back as it was. The input is a run of APDUs, each behind a one-byte length.
#![no_main]
use kura_card::apdu::Command;
use kura_card::app::default_layout;
use kura_card::card::{Card, Chip};
use kura_card::memory::Memory;
use kura_card::state;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Command::parse(data) {
        assert_eq!(Command::parse(&c.to_bytes()), Ok(c));
    }
    let mut card = Card::new(Chip::blank(Memory::blank(16, 16), default_layout(16)));
    let mut init = 7u64.to_be_bytes().to_vec();
    init.extend_from_slice(&[5; 32]);
    init.extend_from_slice(b"1234");
    card.handle_bytes(&Command::new(0x80, 0x10, 0, 0).with_data(init).to_bytes());
    card.handle_bytes(&Command::new(0, 0x20, 0, 0x81).with_data(b"1234".to_vec()).to_bytes());
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (apdu, tail) = tail.split_at(n);
        rest = tail;
        let answer = card.handle_bytes(apdu);
        assert!(answer.len() >= 2);
        assert_eq!(card.chip().card_number, Some(7));
    }
    let saved = state::encode(card.chip());
    assert_eq!(&state::decode(&saved).unwrap(), card.chip());
});
