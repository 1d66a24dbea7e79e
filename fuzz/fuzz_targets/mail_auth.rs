//! Reading an incoming mail never panics: the whole message (mail-parser, bounded), its
//! direction and items, the `MB-Authentication-Info` field (and that what parses re-renders to
//! the same), its check against a key, and the freshness of its `Date` and `Message-Id`.
#![no_main]
use kura_mail::{AuthInfo, Direction, Key, auth, fresh};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::Shared { secret: b"fuzz", legacy: false };
    if let Ok(m) = kura_mail::message::read(data) {
        let _ = m.direction();
        let _ = m.items();
        let _ = m.verify(&key);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(info) = AuthInfo::parse(&text) {
        assert_eq!(AuthInfo::parse(&info.render()).ok(), Some(info));
    }
    // The input split into a few header fields and a body.
    let mut parts = text.splitn(6, '\n');
    let fields: Vec<(&str, &str)> = ["From", "Date", "Message-Id", "MB-Direction-Code", auth::FIELD]
        .into_iter()
        .zip(parts.by_ref())
        .collect();
    let body = parts.next().unwrap_or("").as_bytes();
    let _ = Direction::of(&fields);
    let _ = auth::verify(&fields, body, &key);
    if let (Some(date), Some(id)) = (auth::field(&fields, "Date"), auth::field(&fields, "Message-Id")) {
        let mut seen = std::collections::HashSet::new();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let _ = fresh::check(date, id, now, fresh::Window::default(), &mut seen);
    }
});
