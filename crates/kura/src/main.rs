//! `kura`: the command line. It parses, configures, calls the libraries and prints; the work
//! is done in kura-client, kura-repo and kura-service.

mod cli;
mod commands;
mod config;
mod ctx;
mod output;
mod progress;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
