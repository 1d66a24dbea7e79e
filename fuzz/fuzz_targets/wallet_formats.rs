//! Reading what a vault stores or a wallet is handed never panics: a registered value, a
//! certificate and a value record each decode or are refused, and what decodes writes back to
//! the same bytes; a decoded certificate never verifies under a key that did not sign it.
#![no_main]
use kura_wallet::certificate::Certificate;
use kura_wallet::record::ValueRecord;
use kura_wallet::registered::Registered;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Registered::parse(data) {
        assert_eq!(r.to_bytes(), data);
        let _ = r.verify(&r.signer);
    }
    if let Ok(c) = Certificate::parse(data) {
        assert_eq!(c.to_bytes(), data);
        assert!(c.verify(&[7; 32]).is_err());
    }
    if let Ok(v) = ValueRecord::from_bytes(data) {
        assert_eq!(ValueRecord::from_bytes(&v.to_bytes()).unwrap(), v);
    }
});
