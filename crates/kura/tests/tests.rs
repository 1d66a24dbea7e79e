//! Kura's integration tests: one test binary (ripgrep's habit) that drives the real `kura`
//! binary, a real `kura serve`, real S3 (Garage) and SMTP (aiosmtpd) servers. Every module but
//! the helpers is one area.

mod common;

mod backup_restore;
mod billing;
mod integrity;
mod jobs;
mod placement;
mod robustness;
mod schedule;
mod service;
mod sites;
