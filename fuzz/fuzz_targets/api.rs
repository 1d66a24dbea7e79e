//! The API's bodies and headers as the service and the client read them from the other side:
//! none panics, and a range that is taken reads back the same from the header it writes.
#![no_main]
use kura_api::{
    ByteRange, ErrorBody, Login, ObjectConditions, Objection, Received, Session, Statement,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Login>(data);
    let _ = serde_json::from_slice::<Objection>(data);
    let _ = serde_json::from_slice::<Session>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    let _ = serde_json::from_slice::<Received>(data);
    let _ = serde_json::from_slice::<Vec<Statement>>(data);
    let _ = serde_json::from_slice::<Vec<ObjectConditions>>(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(r) = ByteRange::parse(text)
    {
        assert_eq!(ByteRange::parse(&r.header()), Some(r));
        assert!(r.first <= r.last);
    }
});
