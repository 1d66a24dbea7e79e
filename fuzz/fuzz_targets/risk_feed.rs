//! Reading a risk feed (CSV or JSON, from the operator or a provider) never panics, and what it
//! accepts has only finite, non-negative risks.
#![no_main]
use kura_placement::RiskFeed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(feed) = RiskFeed::parse(text) {
        for (region, _) in feed.regions() {
            let risk = feed.risk(region).unwrap();
            assert!(risk.is_finite() && risk >= 0.0, "{region}: {risk}");
        }
    }
});
