//! Kura's integration tests: one test binary (ripgrep's habit) that drives the real `kura`
//! binary, a real `kura serve`, real S3 (Garage) and SMTP (aiosmtpd) servers. Every module but
//! the helpers is one area.

// The old helpers and the new fixtures side by side while the areas move over, one at a time.
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code, unused_imports)]
mod fixture;

mod backup_restore;
mod billing;
mod integrity;
mod jobs;
mod placement;
mod robustness;
mod schedule;
mod service;
mod sites;
