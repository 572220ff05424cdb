//! Fuzz target `cli_args`: see `ltd_cli::fuzz::cli_args` (the corpus replay test runs the same function).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ltd_cli::fuzz::cli_args(data));
