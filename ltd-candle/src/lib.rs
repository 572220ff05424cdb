//! Block-sparse attention and Random-LTD (random layerwise token dropping) as candle tensor ops
//! with autograd, on the CPU and (feature `cuda`) on candle's own CUDA stream.
//!
//! - [`sparse_attention`]: fused block-sparse self-attention over `[B, H, L, D]` (or
//!   `[B, L, H, D]`) tensors with scale, token-level causality, key padding and an additive
//!   bias; `backward()` gives dq, dk, dv and dbias; the forward's log-sum-exp is kept for the
//!   backward. Layouts come from `ltd_sparse_attn` (one per sequence length, cached).
//!   [`sparse_attention_forward`] and [`sparse_attention_backward`] are the same op as two plain
//!   functions for callers that drive the backward themselves.
//! - [`sample_token_indices`], [`gather_tokens`], [`route`] / [`scatter_tokens`]: Random-LTD's
//!   sampler (U32 `[L, B, r]` indices, bit-identical on CPU and GPU) and its token moves with
//!   exact gradients (upstream-semantics.md §1.4 "net effect" for the wrapper's graph).
//! - [`RandomLtd`] and [`RandomLayerTokenDrop`]: the layer wrapper driven by DeepSpeed's
//!   `random_ltd` JSON config through `ltd_scheduler::RandomLtdScheduler`.
//!
//! Dtypes: f32, f16 and bf16 on the CPU (computing in f32); on CUDA the dtypes the kernels
//! support. A dtype, device or combination that cannot run is an [`LtdCandleError`], never a
//! silent fallback or a copy to another device.
//!
//! # CUDA (feature `cuda`)
//! The feature turns on candle-core's `cuda` and ours in one build: our cudarc dependency yields
//! to candle's choice to link the CUDA libraries (used alone, `ltd-core` loads the driver at run
//! time and needs no toolkit). Building therefore needs what candle links: `eval "$(bash
//! scripts/install-cuda-libs.sh)"` installs cuBLAS, cuRAND, NVRTC 13.0 from PyPI, a link stub of
//! the driver and nvcc, and sets `CUDA_COMPUTE_CAP=90` for candle-kernels. Running needs the
//! NVIDIA driver and those libraries on the loader's path. Every op runs on candle's own stream
//! (`ltd_core::CudaDevice::from_stream`), reads tensors at their offsets, and allocates nothing
//! besides its outputs; the attention kernels read exact contiguous `[B, H, L, D]` buffers, so
//! other inputs are copied on the device first (`cuda_device_copies()` counts those copies).
//!
//! A transformer block's attention and MLP on the kept tokens, forward and backward:
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use ltd_candle::*;
//! use ltd_core::HiddenOrder;
//! use ltd_sparse_attn::{BigBirdConfig, SparseSelfAttention};
//!
//! let (b, s, heads, d) = (2, 64, 2, 8);
//! let dev = Device::Cpu;
//! let attn = SparseSelfAttention::new(BigBirdConfig::new(heads).into())?;
//! let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, s, heads * d), &dev)?)?;
//! // Keep 40 of the 64 tokens of every row (one LTD layer, step 0).
//! let idx = sample_token_indices(1234, 0, 1, b, s, 40, &dev)?.get(0)?;
//! let x = gather_tokens(&h, &idx, HiddenOrder::BatchSeq)?; // [B, r, C]
//! // Heads as [B, r, H, D]: no transpose needed.
//! let qkv = x.reshape((b, 40, heads, d))?;
//! let opts = SparseAttentionOptions { causal: true, layout: QkvLayout::Blhd, ..Default::default() };
//! let a = sparse_attention(&qkv, &qkv, &qkv, &attn, &opts)?.reshape((b, 40, heads * d))?;
//! let y = route(&h, &(x + a)?, &idx, HiddenOrder::BatchSeq)?; // residual, back into [B, S, C]
//! let grads = y.sqr()?.sum_all()?.backward()?;
//! assert_eq!(grads.get(&h).unwrap().dims(), &[b, s, heads * d]);
//! # Ok::<(), LtdCandleError>(())
//! ```

#![deny(missing_docs)]

mod attention;
mod check;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod error;
mod ltd;
mod tokens;

pub use attention::{
    LayoutSource, QkvLayout, SparseAttentionGrads, SparseAttentionOptions, sparse_attention,
    sparse_attention_backward, sparse_attention_forward,
};
#[cfg(feature = "cuda")]
pub use cuda::cuda_device_copies;
pub use error::{LtdCandleError, Result};
pub use ltd::{LayerContext, LayerMask, MaskArg, RandomLayerTokenDrop, RandomLtd};
pub use tokens::{gather_tokens, route, sample_token_indices, scatter_tokens};
