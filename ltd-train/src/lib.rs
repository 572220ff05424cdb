//! Train a small byte-level GPT with and without Random-LTD and block-sparse attention, on the
//! CPU (or CUDA with feature `cuda`), and measure what Random-LTD saves.
//!
//! - [`Corpus`], [`Dataset`]: the embedded public-domain text or a user's UTF-8 file, a seeded
//!   train/validation split and a seeded batch order that depends only on the step.
//! - [`Gpt`]: decoder-only GPT (rotary positions, pre-LN blocks, tied head) whose Random-LTD
//!   layers run on the kept tokens at their true positions.
//! - [`AdamW`]: AdamW over candle `Var`s with a state that can be saved and restored.
//! - [`LrSchedule`]: DeepSpeed's `WarmupLR` / `WarmupDecayLR` / `WarmupCosineLR`.

#![warn(missing_docs)]

mod attention;
mod corpus;
mod error;
mod lr;
mod model;
mod params;
mod rotary;
mod routing;

pub use attention::{AttentionKind, CausalAttention};
pub use corpus::{Corpus, Dataset, EMBEDDED_CORPUS, TokenBatch};
pub use error::{Result, TrainError};
pub use lr::{LrSchedule, Warmup};
pub use model::{ForwardTrace, Gpt, GptConfig, VOCAB};
pub use params::Params;
pub use rotary::{Rotary, RotaryAt};
pub use routing::{KeptTokens, gather_tokens, route};
