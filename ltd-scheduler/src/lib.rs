//! Random-LTD's reserved-length scheduler, layer-token accounting and LayerToken learning rate,
//! with a strict parser for DeepSpeed's `data_efficiency.data_routing.random_ltd` JSON section.
//!
//! - [`ReservedLengthSchedule`]: the pure `step -> r` function of DeepSpeed's `fixed_linear`
//!   schedule (and `fixed_root`), evaluated in `f64` exactly as upstream, with the later
//!   revision's floor fix (`r` is never below the first multiple of `seq_per_step` at or above
//!   `min_value`, so never 0).
//! - [`RandomLtdScheduler`]: upstream's stateful `RandomLTDScheduler` (`update_seq`, consumed
//!   layer-tokens, state dict with upstream's key names) plus budget helpers that do not mutate
//!   state and Megatron's effective sequence length.
//! - [`LayerTokenLrSchedule`]: the learning-rate schedule indexed by consumed layer-tokens that
//!   upstream never shipped.
//! - [`DataEfficiencyConfig`] / [`RandomLtdConfig`]: DeepSpeed's JSON, validated, with errors that
//!   name the key path ([`SchedulerError`]).
//!
//! ```
//! use ltd_scheduler::{DataEfficiencyConfig, GPT3_1_3B_EXAMPLE, RandomLtdScheduler};
//!
//! let config = DataEfficiencyConfig::from_deepspeed_json(GPT3_1_3B_EXAMPLE)?
//!     .random_ltd
//!     .expect("random-LTD is enabled in the example");
//! let mut scheduler = RandomLtdScheduler::new(&config)?;
//! for step in [0, 50_000, 100_000, 200_000] {
//!     let r = scheduler.update_seq(step)?;
//!     println!("step {step}: keep {r} of 2048 tokens in layers 1..=22");
//! }
//! assert_eq!(scheduler.current_value(), 2048);
//! # Ok::<(), ltd_scheduler::SchedulerError>(())
//! ```

#![warn(missing_docs)]

mod config;
mod error;
mod json;
mod kinds;
mod lr;
mod schedule;
mod scheduler;

pub use config::{
    DataEfficiencyConfig, GPT3_1_3B_EXAMPLE, HiddenStateOrder, ModelType, RANDOM_LTD_KEY_PATH,
    RandomLtdConfig,
};
pub use error::{Result, SchedulerError};
pub use json::{ConfigWarning, MAX_NESTING, parse_deepspeed_text};
pub use lr::{DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, WarmupType};
pub use schedule::{ReservedLengthSchedule, ReservedLengthScheduleConfig, ScheduleType};
pub use scheduler::{RandomLtdScheduler, RandomLtdState, megatron_effective_seq_len};
