//! The card and the host together, in one process: the rules of card.md part B as scenarios
//! and properties. The same scenarios run through real PC/SC in the kura crate's tests.

use kura_core::crypto::Key;
use proptest::prelude::*;

use crate::app::default_layout;
use crate::card::{Card, Chip};
use crate::host::{Host, ValueOp, chain_to, check_chain};
use crate::image::Image;
use crate::memory::Memory;
use crate::seal::BackupKind;
use crate::{CardError, Status};

const PIN: &[u8] = b"2468";

fn card(number: u64, common: &Key) -> Host<Card> {
    let mut h = Host::new(Card::new(Chip::blank(
        Memory::blank(32, 64),
        default_layout(64),
    )));
    h.initialize(number, common, PIN).unwrap();
    h.verify(PIN).unwrap();
    h
}

fn stored(h: &mut Host<Card>, kind: BackupKind) -> Image {
    let image = h.backup(kind, &mut |_, _| {}).unwrap();
    h.complete().unwrap();
    Image::parse(&image.to_bytes()).unwrap()
}

fn memory(h: &mut Host<Card>) -> Vec<u8> {
    h.read("data", 0, 62 * 32).unwrap()
}

fn refused(r: Result<impl std::fmt::Debug, CardError>) -> Status {
    match r {
        Err(CardError::Refused { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_chain_restores_onto_the_same_card_and_onto_another_and_money_resets() {
    let common = Key::random();
    let mut a = card(1001, &common);
    a.value("purse", ValueOp::Credit(5000)).unwrap();
    a.write("data", 0, b"first").unwrap();
    let full = stored(&mut a, BackupKind::Full);
    assert_eq!(full.header().records, 64);
    a.write("data", 40, b"second").unwrap();
    let d1 = stored(&mut a, BackupKind::Differential);
    assert_eq!(d1.header().records, 1, "one page changed");
    a.write("data", 300, b"third").unwrap();
    a.value("purse", ValueOp::Debit(1000)).unwrap();
    let d2 = stored(&mut a, BackupKind::Differential);
    assert_eq!(d2.header().records, 2, "a data page and the purse");
    let want = memory(&mut a);

    a.write("data", 0, b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
        .unwrap();
    let chain = [full.clone(), d1.clone(), d2.clone()];
    a.restore(&chain, None, &mut |_, _| {}).unwrap();
    assert_eq!(memory(&mut a), want);
    let s = a.status().unwrap();
    assert!(
        s.apps.iter().all(|x| x.restored),
        "a full restore flags all"
    );
    assert_eq!(s.changed_pages, 0);
    assert_eq!(a.value("purse", ValueOp::Get).unwrap(), 0, "money reset");
    assert!(
        !a.status().unwrap().apps[0].restored,
        "reset clears the flag"
    );
    assert_eq!(
        refused(a.value("points", ValueOp::Get)),
        Status::RESTORED,
        "points report the restore"
    );
    a.value("points", ValueOp::Set(70)).unwrap();
    assert_eq!(a.value("points", ValueOp::Get).unwrap(), 70);

    let mut b = card(2002, &common);
    assert_eq!(
        refused(b.restore(&chain, None, &mut |_, _| {})),
        Status::WRONG_CARD,
        "another card's backup as if it were this card's"
    );
    assert_eq!(
        refused(b.restore(&chain, Some(2003), &mut |_, _| {})),
        Status::WRONG_CARD,
        "the operator named another target"
    );
    b.restore(&chain, Some(2002), &mut |_, _| {}).unwrap();
    assert_eq!(memory(&mut b), want);
    assert_eq!(b.status().unwrap().card_number, Some(2002), "number kept");

    let mut c = card(3003, &Key::random());
    assert_eq!(
        refused(c.restore(&chain, Some(3003), &mut |_, _| {})),
        Status::SEALED,
        "the wrong common key"
    );
}

#[test]
fn a_bad_record_is_refused_in_the_check_pass_before_anything_is_written() {
    let common = Key::random();
    let mut a = card(1, &common);
    a.write("data", 0, b"kept").unwrap();
    let full = stored(&mut a, BackupKind::Full);
    a.write("data", 0, b"now!").unwrap();
    let now = memory(&mut a);
    let len = full.header().record_len();

    let mut tampered = full.clone();
    tampered.records[len * 3 + 10] ^= 1;
    let mut reordered = full.clone();
    let (x, y) = reordered.records.split_at_mut(len * 2);
    x[..len].swap_with_slice(&mut y[..len]);
    let mut truncated = full.clone();
    truncated.records.truncate(len * 10);
    for bad in [tampered, reordered] {
        assert_eq!(
            refused(a.restore(&[bad], None, &mut |_, _| {})),
            Status::SEALED
        );
    }
    assert_eq!(
        refused(a.restore(&[truncated], None, &mut |_, _| {})),
        Status::CONDITIONS
    );
    assert_eq!(memory(&mut a), now, "nothing written");
    assert!(!a.status().unwrap().restoring);
    assert_eq!(
        a.value("purse", ValueOp::Credit(1)).unwrap(),
        1,
        "not locked"
    );
}

#[test]
fn an_abandoned_backup_keeps_its_pages_for_the_next_differential_and_blocks_writes() {
    let mut a = card(9, &Key::random());
    stored(&mut a, BackupKind::Full);
    a.write("data", 100, b"changed").unwrap();
    a.backup(BackupKind::Differential, &mut |_, _| {}).unwrap();
    let s = a.status().unwrap();
    assert!(s.backing_up);
    assert_eq!(s.changed_pages, 1);
    assert_eq!(refused(a.write("data", 0, b"no")), Status::CONDITIONS);
    let mut reset = Host::new({
        let mut c = a.into_reader();
        c.reset();
        c
    });
    reset.verify(PIN).unwrap();
    assert!(
        reset.status().unwrap().backing_up,
        "the flag outlives the session"
    );
    let next = stored(&mut reset, BackupKind::Differential);
    assert_eq!(
        next.header().records,
        1,
        "the page is still in the next differential"
    );
    assert_eq!(next.header().base, 1);
    reset.write("data", 0, b"free again").unwrap();
}

#[test]
fn the_pin_blocks_after_three_wrong_tries() {
    let mut h = Host::new(Card::new(Chip::blank(
        Memory::blank(32, 8),
        default_layout(8),
    )));
    h.initialize(5, &Key::random(), PIN).unwrap();
    assert_eq!(
        refused(h.backup(BackupKind::Full, &mut |_, _| {})),
        Status::SECURITY
    );
    assert_eq!(refused(h.verify(b"0000")), Status::tries_left(2));
    assert_eq!(refused(h.verify(b"0000")), Status::tries_left(1));
    assert_eq!(refused(h.verify(b"0000")), Status::BLOCKED);
    assert_eq!(
        refused(h.verify(PIN)),
        Status::BLOCKED,
        "even the right PIN"
    );
    assert_eq!(
        refused(h.initialize(6, &Key::random(), PIN)),
        Status::NOT_ALLOWED,
        "a personalised card cannot be initialised again"
    );
}

#[test]
fn an_interrupted_restore_keeps_value_locked_until_a_complete_one() {
    let mut a = card(4, &Key::random());
    a.value("purse", ValueOp::Credit(300)).unwrap();
    let full = stored(&mut a, BackupKind::Full);
    let mut c = a.into_reader();
    let mut h = Host::new(&mut c);
    // The write pass of a restore, cut off after its first transfer.
    let mut begin = crate::apdu::Command::new(0x80, crate::card::ins::RESTORE, 0, 0);
    begin.data = full.opening.to_bytes();
    assert_eq!(h.send(&begin).unwrap().status, Status::OK);
    let mut t = crate::apdu::Command::new(0x80, crate::card::ins::RESTORE_TRANSFER, 0, 0);
    t.data = full.records().next().unwrap().to_vec();
    assert_eq!(h.send(&t).unwrap().status, Status::OK);
    c.reset();
    let mut h = Host::new(&mut c);
    h.verify(PIN).unwrap();
    assert!(h.status().unwrap().restoring);
    assert_eq!(refused(h.value("purse", ValueOp::Get)), Status::CONDITIONS);
    assert_eq!(refused(h.write("data", 0, b"x")), Status::CONDITIONS);
    h.restore(&[full], None, &mut |_, _| {}).unwrap();
    assert_eq!(h.value("purse", ValueOp::Get).unwrap(), 0);
}

#[test]
fn a_value_reset_at_restore_happens_when_the_restore_completes_and_loads_stay_recorded() {
    let mut apps = default_layout(64);
    apps[1].kind = crate::app::Kind::Value {
        reset: crate::app::Reset::AtRestore,
        initial: 50,
    };
    let mut h = Host::new(Card::new(Chip::blank(Memory::blank(32, 64), apps)));
    h.initialize(8, &Key::random(), PIN).unwrap();
    h.verify(PIN).unwrap();
    h.value(
        "points",
        ValueOp::Load {
            amount: 700,
            date: 1_800_000_000,
        },
    )
    .unwrap();
    let full = stored(&mut h, BackupKind::Full);
    h.value("points", ValueOp::Debit(100)).unwrap();
    h.restore(&[full], None, &mut |_, _| {}).unwrap();
    let s = h.status().unwrap();
    assert!(
        !s.apps[1].restored,
        "the card's own routine ran at Restore-Complete"
    );
    assert!(
        s.apps[0].restored,
        "the purse resets at its next use instead"
    );
    assert_eq!(
        h.value("points", ValueOp::Get).unwrap(),
        50,
        "the fixed value"
    );
    let loads = h.history().unwrap();
    assert_eq!(
        loads.len(),
        1,
        "the load history is outside what a restore writes"
    );
    assert_eq!(
        (loads[0].amount, loads[0].count, loads[0].date),
        (700, 1, 1_800_000_000)
    );
}

#[test]
fn spent_money_cannot_come_back_through_a_partial_full_restore_and_a_differential() {
    use crate::apdu::Command;
    use crate::card::ins;
    let mut a = card(12, &Key::random());
    a.value("purse", ValueOp::Credit(100)).unwrap();
    let full = stored(&mut a, BackupKind::Full);
    a.write("data", 0, b"x").unwrap();
    let diff = stored(&mut a, BackupKind::Differential);
    a.value("purse", ValueOp::Debit(100)).unwrap();
    // A host that writes only the purse's record of the full backup, then the differential.
    let begin = |h: &mut Host<Card>, i: &Image| {
        h.send(&Command::new(0x80, ins::RESTORE, 0, 0).with_data(i.opening.to_bytes()))
            .unwrap()
            .status
    };
    assert_eq!(begin(&mut a, &full), Status::OK);
    let purse = full.records().next().unwrap().to_vec();
    let t = Command::new(0x80, ins::RESTORE_TRANSFER, 0, 0).with_data(purse);
    assert_eq!(a.send(&t).unwrap().status, Status::OK);
    assert!(
        a.status().unwrap().apps[0].restored,
        "flagged by its page at once"
    );
    assert_eq!(
        begin(&mut a, &diff),
        Status::CONDITIONS,
        "no differential on a full backup whose restore did not complete"
    );
    assert_eq!(refused(a.value("purse", ValueOp::Get)), Status::CONDITIONS);
}

#[test]
fn after_a_restore_the_next_backup_must_be_full() {
    let mut a = card(13, &Key::random());
    let full = stored(&mut a, BackupKind::Full);
    a.write("data", 0, b"later").unwrap();
    stored(&mut a, BackupKind::Differential);
    a.restore(&[full], None, &mut |_, _| {}).unwrap();
    assert_eq!(a.status().unwrap().completed, 0);
    assert_eq!(
        refused(a.backup(BackupKind::Differential, &mut |_, _| {})),
        Status::CONDITIONS,
        "a differential would rest on a base the memory no longer has"
    );
    stored(&mut a, BackupKind::Full);
}

#[test]
fn a_chain_with_a_gap_or_out_of_order_is_refused() {
    let mut a = card(4, &Key::random());
    let full = stored(&mut a, BackupKind::Full);
    a.write("data", 0, b"1").unwrap();
    let d1 = stored(&mut a, BackupKind::Differential);
    a.write("data", 64, b"2").unwrap();
    let d2 = stored(&mut a, BackupKind::Differential);
    assert!(check_chain(&[full.clone(), d2.clone()]).is_err(), "a gap");
    assert!(check_chain(&[full.clone(), d2.clone(), d1.clone()]).is_err());
    assert!(
        check_chain(std::slice::from_ref(&d1)).is_err(),
        "no full first"
    );
    // The card holds the same rule when a host skips its own check.
    use crate::apdu::Command;
    use crate::card::ins;
    let begin = |h: &mut Host<Card>, i: &Image| {
        h.send(&Command::new(0x80, ins::RESTORE, 0, 0).with_data(i.opening.to_bytes()))
            .unwrap()
            .status
    };
    assert_eq!(
        begin(&mut a, &d1),
        Status::CONDITIONS,
        "no full backup first"
    );
    assert_eq!(begin(&mut a, &full), Status::OK);
    for r in full.records() {
        let t = Command::new(0x80, ins::RESTORE_TRANSFER, 0, 0).with_data(r.to_vec());
        assert_eq!(a.send(&t).unwrap().status, Status::OK);
    }
    let more = Command::new(0x80, ins::RESTORE_COMPLETE, 1, 0);
    assert_eq!(a.send(&more).unwrap().status, Status::OK);
    assert_eq!(
        begin(&mut a, &d2),
        Status::CONDITIONS,
        "a gap: d1 is missing"
    );
    assert_eq!(begin(&mut a, &d1), Status::OK);
    let stored = vec![d2, full, d1];
    let label = |i: &Image| (i.header().sequence, i.header().kind);
    let seqs = |c: Vec<Image>| c.iter().map(|i| i.header().sequence).collect::<Vec<_>>();
    assert_eq!(
        seqs(chain_to(stored.clone(), label, None).unwrap()),
        [1, 2, 3]
    );
    assert_eq!(seqs(chain_to(stored, label, Some(2)).unwrap()), [1, 2]);
}

impl crate::host::Reader for &mut Card {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok(self.handle_bytes(apdu))
    }
}

#[derive(Debug, Clone)]
enum Step {
    Write(usize, Vec<u8>),
    Backup(bool),
    Abandoned(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..1900, proptest::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(o, d)| Step::Write(o, d)),
        1 => any::<bool>().prop_map(Step::Backup),
        1 => any::<bool>().prop_map(Step::Abandoned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the writes and however backups were made or abandoned, restoring the chain to
    /// the latest stored backup gives back the memory as it was when that backup was made.
    #[test]
    fn the_chain_to_the_last_stored_backup_gives_back_its_memory(
        steps in proptest::collection::vec(step(), 1..25)
    ) {
        let common = Key::random();
        let mut a = card(77, &common);
        let mut images = Vec::new();
        let mut at_last = None;
        let mut completed = false;
        for s in steps {
            match s {
                Step::Write(o, d) => {
                    let d = &d[..d.len().min(62 * 32 - o)];
                    a.write("data", o, d).unwrap();
                }
                Step::Backup(full) | Step::Abandoned(full) => {
                    let kind = if full || !completed {
                        BackupKind::Full
                    } else {
                        BackupKind::Differential
                    };
                    let image = a.backup(kind, &mut |_, _| {}).unwrap();
                    // An abandoned backup was still stored by the host, or not at all.
                    images.push(image);
                    at_last = Some(memory(&mut a));
                    if matches!(s, Step::Backup(_)) {
                        a.complete().unwrap();
                        completed = true;
                    } else {
                        a.abandon().unwrap();
                    }
                }
            }
        }
        let Some(want) = at_last else { return Ok(()) };
        let chain = chain_to(images, |i| (i.header().sequence, i.header().kind), None).unwrap();
        let mut b = card(78, &common);
        b.restore(&chain, Some(78), &mut |_, _| {}).unwrap();
        prop_assert_eq!(memory(&mut b), want);
    }
}
