//! The `ltd` command as a library: the argument parser and the subcommands, so the binary, the
//! tests and the fuzz targets share one entry point. `src/main.rs` only maps errors to exit
//! codes (2 for usage errors, 1 for failures).

#![forbid(unsafe_code)]

mod bench;
mod block;
mod config;
mod demo;
mod error;
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "cuda")]
mod gpu;
mod layout;
mod plan;
mod plot;
mod timing;
mod train;
mod train_parallel;

use std::io::Write;

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
pub struct Cli {
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
    /// Benchmark the kernels on this machine and print ratio tables (targets: docs/design.md).
    Bench(bench::BenchArgs),
}

/// Runs the subcommand `cli` names, writing its output to `out`.
///
/// # Errors
/// The subcommand's [`CliError`]; [`CliError::exit_code`] gives the process exit status.
///
/// ```no_run
/// use clap::Parser;
/// let cli = ltd_cli::Cli::parse_from(["ltd", "plan"]);
/// ltd_cli::run(cli, &mut std::io::stdout()).unwrap();
/// ```
pub fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args, out),
        Command::Plan(args) => plan::run(&args, out),
        Command::Demo(args) => demo::run(&args, out),
        Command::Layout(args) => layout::run(&args, out),
        Command::Bench(args) => bench::run(&args, out),
    }
}
