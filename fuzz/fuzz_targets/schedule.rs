//! Reading a timing (`--at`, `--every`, `--cron`, or the schedule file) never panics, prints
//! back to itself, and finding the next run of what was read never panics either.
#![no_main]
use jiff::tz::TimeZone;
use kura_core::schedule::{Schedule, Timing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for form in ["at ", "every ", "cron ", ""] {
        if let Ok(t) = format!("{form}{text}").parse::<Timing>() {
            assert_eq!(t.to_string().parse::<Timing>().ok(), Some(t.clone()));
            let _ = t.next_after(jiff::Timestamp::UNIX_EPOCH, &TimeZone::UTC);
        }
    }
    if let Ok(s) = Schedule::decode(data) {
        let _ = s.next_wake(&TimeZone::UTC);
    }
});
