//! Shared helpers for integration tests.

/// The repository README's Rust examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
mod readme {}
