//! Fuzz target `deepspeed_config`: see `ltd_cli::fuzz::deepspeed_config` (the corpus replay test runs the same function).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ltd_cli::fuzz::deepspeed_config(data));
