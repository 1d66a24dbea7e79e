//! Decoding a backup log entry (client side) or a job report (service side) never panics, and
//! what decodes re-encodes to something that decodes the same.
#![no_main]
use kura_core::job::{Job, JobReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(job) = Job::decode(data) {
        assert_eq!(Job::decode(&job.encode()).ok(), Some(job.clone()));
        let _ = JobReport::of(&job);
    }
    if let Ok(report) = JobReport::decode(data) {
        let again = serde_json::to_vec(&report).unwrap();
        assert_eq!(JobReport::decode(&again).ok(), Some(report));
    }
});
