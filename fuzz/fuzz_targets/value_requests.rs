//! Reading what the vault and the key manager are sent never panics: a withdrawal's body, a
//! replacement and its answer, and the key manager's enrolment, release, restore, rekey and
//! rekey-done requests, each decode or are refused. An
//! enrolment that decodes is signed by the wallet it names and reads back from its own JSON;
//! no decoded request carries a field beyond its bounds.
#![no_main]
use kura_wallet::certificate::Withdrawal;
use kura_wallet::escrow::{
    Credentials, Enrol, MAX_FEATURES, MAX_SECRET, Rekey, RekeyDone, Release, Restore,
};
use kura_wallet::rekey::{MAX_ITEMS, Replacement, answer_to_bytes, parse_answer};
use libfuzzer_sys::fuzz_target;

fn bounded(c: &Credentials) {
    for s in [&c.password, &c.id_card].into_iter().flatten() {
        assert!(!s.is_empty() && s.len() <= MAX_SECRET);
    }
    if let Some(b) = &c.biometric {
        assert!(!b.is_empty() && b.len() <= MAX_FEATURES);
        assert!(b.iter().all(|x| x.is_finite()));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = Withdrawal::parse(data) {
        assert_eq!(w.to_bytes(), data);
    }
    if let Ok(e) = Enrol::parse(data) {
        bounded(&e.credentials);
        assert!(!e.credentials.methods().is_empty());
        assert_eq!(Enrol::parse(&e.to_json()).unwrap(), e);
    }
    if let Ok((r, _)) = Release::parse(data) {
        bounded(&r.credentials);
    }
    if let Ok((r, _, _, _)) = Restore::parse(data) {
        bounded(&r.owner.credentials);
    }
    if let Ok((r, _, certs)) = Rekey::parse(data) {
        bounded(&r.owner.credentials);
        assert!(certs.len() <= MAX_ITEMS);
    }
    let _ = RekeyDone::parse(data);
    if let Ok(r) = Replacement::parse(data) {
        assert!(!r.items.is_empty() && r.items.len() <= MAX_ITEMS);
        assert_eq!(r.to_bytes(), data);
    }
    if let Ok(certs) = parse_answer(data) {
        assert_eq!(answer_to_bytes(&certs), data);
    }
});
