//! `ltd`: train a small GPT with Random-LTD, plan Random-LTD schedules, run a checked demo training step, render sparse-attention
//! layouts and benchmark the kernels. Each subcommand lives in its own module; this file only
//! parses the command line and maps errors to exit codes (2 for usage errors, 1 for failures).

#![forbid(unsafe_code)]

mod bench;
mod block;
mod config;
mod demo;
mod error;
#[cfg(feature = "cuda")]
mod gpu;
mod layout;
mod plan;
mod plot;
mod timing;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::{CliError, Result};

/// Random-LTD and block-sparse attention, from DeepSpeed, in Rust.
#[derive(Debug, Parser)]
#[command(
    name = "ltd",
    version,
    about = "Random-LTD and block-sparse attention: train a GPT with them, plan schedules, run a checked demo step, render layouts, benchmark kernels",
    after_help = "Examples:\n  ltd train --compare           baseline vs Random-LTD on the embedded corpus, with the saving\n  ltd demo                      one checked Random-LTD + sparse-attention training step\n  ltd plan                      the schedule and layout of the embedded GPT-3 1.3B example\n  ltd plan ds_config.json --png r.png\n  ltd layout --mode bigbird --seq 1024 --heads 2\n  ltd bench --quick"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a small GPT with and without Random-LTD on the embedded corpus and report the saving.
    Train(train::TrainArgs),
    /// Read a DeepSpeed config and print the Random-LTD schedule, layer-token budget and sparse layout.
    Plan(plan::PlanArgs),
    /// Run one small Random-LTD + sparse-attention training step and check it against the reference.
    Demo(demo::DemoArgs),
    /// Render or export a block-sparse attention layout.
    Layout(layout::LayoutArgs),
    /// Benchmark the kernels on this machine and print ratio tables (design section 5).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Train(args) => train::run(&args, &mut out),
        Command::Plan(args) => plan::run(&args, &mut out),
        Command::Demo(args) => demo::run(&args, &mut out),
        Command::Layout(args) => layout::run(&args, &mut out),
        Command::Bench(args) => bench::run(&args, &mut out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `ltd plan | head`: the reader went away; that is not a failure.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
