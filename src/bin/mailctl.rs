//! `mailctl`, the operator CLI. Everything but argument parsing and the exit code lives in
//! [`mailnode::ctl`].

use std::process::ExitCode;

use clap::Parser;
use mailnode::ctl::{self, Cli};

fn main() -> ExitCode {
    // Usage errors exit 2 from clap itself, as the CLI contract wants.
    let cli = Cli::parse();
    match ctl::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ctl::report(&e),
    }
}
