//! Key files and recovery codes from outside never panic; hostile KDF costs are refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kura_core::keys::RecoveryCode::parse(text);
    }
    if let Ok(kf) = serde_json::from_slice::<kura_core::keys::KeyFile>(data) {
        // Only cheap parameters are actually run, to keep the fuzzer fast.
        if kf.params.m_cost_kib <= 64 && kf.params.t_cost <= 2 {
            let _ = kf.unlock(b"pw");
        }
        let code = kura_core::keys::RecoveryCode::generate();
        let _ = kf.unlock_recovery(&code);
    }
});
