//! Fuzz target `layout`: see `ltd_cli::fuzz::layout` (the corpus replay test runs the same function).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ltd_cli::fuzz::layout(data));
