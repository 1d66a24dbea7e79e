//! `kura`: the command line. It parses, configures, calls the libraries and prints; the work
//! is done in kura-client and kura-repo.

mod billing;
mod cli;
mod conditions;
mod config;
mod jobs;
mod progress;
mod schedule;
mod service;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
