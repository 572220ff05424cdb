//! Train a small byte-level GPT with and without Random-LTD and block-sparse attention, on the
//! CPU (or CUDA with feature `cuda`), and measure what Random-LTD saves.
//!
//! - [`Corpus`], [`Dataset`]: the embedded public-domain text or a user's UTF-8 file, a seeded
//!   train/validation split and a seeded batch order that depends only on the step.
//! - [`Gpt`]: decoder-only GPT (rotary positions, pre-LN blocks, tied head) whose Random-LTD
//!   layers run on the kept tokens at their true positions.
//! - [`AdamW`]: AdamW over candle `Var`s with a state that can be saved and restored.
//! - [`LrSchedule`]: DeepSpeed's `WarmupLR` / `WarmupDecayLR` / `WarmupCosineLR`.
//! - [`DataParallel`], [`GradientReducer`]: data-parallel training, one process per device,
//!   gradients averaged across ranks (through NCCL with feature `nccl`).

#![warn(missing_docs)]

mod attention;
mod checkpoint;
mod config;
mod corpus;
mod ds_sections;
mod error;
mod fsutil;
mod lr;
mod model;
mod optim;
mod parallel;
mod params;
mod profile;
mod report;
mod rotary;
mod routing;
mod trainer;

pub use attention::{AttentionKind, CausalAttention};
pub use checkpoint::{MODEL_FILE, OPTIMIZER_FILE, STATE_FILE};
pub use config::{DEFAULT_DEEPSPEED_CONFIG, DEFAULT_MODEL, Overrides, TrainConfig};
pub use corpus::{Corpus, Dataset, EMBEDDED_CORPUS, TokenBatch};
pub use error::{Result, TrainError};
pub use fsutil::write_atomic;
pub use lr::{LrSchedule, Warmup};
pub use model::{ForwardTrace, Gpt, GptConfig, VOCAB};
pub use optim::{AdamW, AdamWParams, grad_norm};
pub use parallel::{DataParallel, GradientReducer, SingleProcess};
#[cfg(feature = "nccl")]
pub use parallel::{NcclId, NcclReducer};
pub use params::Params;
pub use profile::take_profile;
pub use report::{CSV_HEADER, RunResult, SaveEvery, csv, drive};
pub use rotary::{Rotary, RotaryAt};
pub use routing::{KeptTokens, gather_tokens, route};
pub use trainer::{StepRecord, Trainer, Variant};
