//! Kura's integration tests: one test binary (ripgrep's habit) that drives the real `kura`
//! binary, a real `kura serve`, real S3 (Garage) and SMTP (aiosmtpd) servers. The fixtures are
//! in `fixture/`; every other module is one area. Tests run in parallel, each in its own
//! temporary directory with its own service on a free port.

mod fixture;

mod backup_restore;
mod billing;
mod cards;
mod chains;
mod damage;
mod file_kinds;
mod first_minutes;
mod integrity;
mod jobs;
mod keys;
mod mount;
mod patterns;
mod phones;
mod placement;
mod robustness;
mod schedule;
mod selection;
mod service;
mod sites;
mod toolbox;
mod vault;
