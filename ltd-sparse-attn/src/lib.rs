//! Block-sparse self-attention on the CPU and (feature `cuda`) NVIDIA GPUs, compatible with
//! DeepSpeed's `sparse_attention`.
//!
//! - [`layout`]: the six layout families ([`DenseConfig`], [`FixedConfig`], [`VariableConfig`],
//!   [`BigBirdConfig`], [`BSLongformerConfig`], [`LocalSlidingWindowConfig`]) building a
//!   [`Layout`] with CSR/CSC lookup tables; deterministic layouts are bit-identical to upstream,
//!   random blocks come from a seeded ChaCha8 generator.
//! - [`LayoutCache`]: one layout per sequence length, per instance, thread-safe.
//! - [`parse_sparse_attention`]: DeepSpeed's JSON `sparse_attention` section.
//! - [`ops`]: block-sparse `sdd`/`dsd`/`dds` products and softmax, with backward.
//! - [`SparseSelfAttention`], [`attention_forward`], [`attention_backward`]: fused flash-style
//!   attention with causal option, key-padding mask and additive bias.
//! - [`render_text`], [`render_png`], [`write_png`]: pictures of layouts.
//! - [`plan`]: the GPU kernels' view of a layout (64 x 64 tiles with sub-block masks) and their
//!   work plans, host-side.
//! - `cuda` (feature `cuda`): the fused attention forward and backward on the GPU (fp16/bf16,
//!   head dims 64 and 128), with the layout's kernel tables cached per device and length.
//! - `cuda_matmul` (feature `cuda`): the `sdd`/`dsd`/`dds` products on the GPU (f32, f16, bf16,
//!   every transpose, forward and backward), [`BlockSparseMatMul`] semantics.
//!
//! # Differences from upstream DeepSpeed (all deliberate, upstream-semantics.md §2.12)
//! - Any sequence length: layouts have `ceil(L / b)` blocks and the fused op masks the padding
//!   keys itself (upstream raises unless `L % b == 0`).
//! - Layouts are built for each length and cached per instance (upstream crops one
//!   max-length layout and shares its ops cache between all instances).
//! - A row whose keys are all masked gives zeros (output and gradients), not NaN.
//! - bf16 everywhere; f32 accumulation for f32, f16 and bf16, and an f64 CPU path (f64
//!   accumulation) for f64.
//! - Variable's random blocks are causal when unidirectional (upstream leaks the future).
//! - Random blocks come from a documented seeded ChaCha8 generator, not Python's `random`.
//! - Proper errors where upstream crashes: `num_global_blocks = 0`, empty or zero local
//!   windows, unknown JSON keys, negative JSON indices, head-count mismatch.
//! - The fused attention has a token-level causal flag and a bias with a gradient; the
//!   primitives keep upstream's semantics (no gradient to rpe or masks) and square layouts only.
//!
//! All CPU ops take slices (`[B, H, L, D]` row-major) of any [`ltd_core::CpuElement`]: they
//! compute in `f32` for `f32`, `f16` and `bf16`, and in `f64` for `f64` (the attention's
//! logsumexp is then `f64` too, so `torch.autograd.gradcheck` can run on it); they return
//! [`SparseAttnError`] on bad input. The CUDA ops take `f32`/`f16`/`bf16` device buffers
//! ([`ltd_core::Element`]) through the same layouts.
//!
//! ```
//! use ltd_sparse_attn::*;
//! let attn = SparseSelfAttention::new(parse_sparse_attention(r#"{"mode": "fixed"}"#, 2).unwrap()).unwrap();
//! let shape = AttentionShape { batch: 1, heads: 2, seq_len: 50, head_dim: 8 };
//! let x = vec![0.25f32; shape.qkv_len()];
//! let (mut out, mut lse) = (vec![0.0f32; shape.qkv_len()], vec![0.0f32; shape.lse_len()]);
//! attn.forward(shape, &AttentionInputs { q: &x, k: &x, v: &x }, &AttentionOptions::new(), &mut out, &mut lse).unwrap();
//! assert!((out[0] - 0.25).abs() < 1e-6);
//! println!("{}", render_text(&attn.layout(50).unwrap()));
//!
//! // The same call in f64: f64 arithmetic and an f64 logsumexp.
//! let x = vec![0.25f64; shape.qkv_len()];
//! let (mut out, mut lse) = (vec![0.0f64; shape.qkv_len()], vec![0.0f64; shape.lse_len()]);
//! attn.forward(shape, &AttentionInputs { q: &x, k: &x, v: &x }, &AttentionOptions::new(), &mut out, &mut lse).unwrap();
//! assert!((out[0] - 0.25).abs() < 1e-15);
//! ```

#![deny(missing_docs)]

mod attention;
mod attention_args;
mod cache;
mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod cuda_matmul;
mod error;
pub mod layout;
pub mod ops;
pub mod plan;
mod render;

pub use attention::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, KeyPaddingMask,
    SparseSelfAttention, attention_backward, attention_forward,
};
pub use cache::LayoutCache;
pub use config::{
    ConfigWarning, SPARSE_ATTENTION_KEYS, parse_sparse_attention, sparse_attention_from_value,
    sparse_attention_with_warnings,
};
#[cfg(feature = "cuda")]
pub use cuda_matmul::{CudaMatMulLayout, matmul_backward_cuda, matmul_forward_cuda};
pub use error::{Result, SparseAttnError};
pub use layout::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig, Layout,
    LocalSlidingWindowConfig, SUPPORTED_BLOCKS, SparsityConfig, VariableConfig,
};
pub use ops::{
    BlockSparseMatMul, MaskMode, MatMulMode, SoftmaxOptions, softmax_backward, softmax_forward,
    softmax_forward_in_place,
};
pub use render::{PngOptions, render_head_text, render_png, render_text, write_png};
