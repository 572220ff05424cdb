//! `ltd`: plan Random-LTD schedules, run a checked demo training step, render sparse-attention
//! layouts and benchmark the kernels. The subcommands live in the `ltd_cli` library; this file
//! only parses the command line and maps errors to exit codes (2 for usage errors, 1 for
//! failures).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ltd_cli::{Cli, CliError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match ltd_cli::run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // `ltd plan | head`: the reader went away; that is not a failure.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
