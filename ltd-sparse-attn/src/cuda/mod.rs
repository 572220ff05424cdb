//! Fused block-sparse attention on the GPU (feature `cuda`): forward and backward, fp16/bf16, head
//! dims 64 and 128, layout blocks 16/32/64/128, token-level causal option, additive or boolean
//! key-padding mask, any sequence length. Same semantics as [`crate::attention_forward`]
//! (including zeros and `lse = -inf` for a row with no visible key).
//!
//! The backward pass ([`attention_backward_cuda`]) gives dq, dk, dv and, with an additive bias,
//! dbias. The block-sparse softmax primitive runs here too ([`softmax_forward_cuda`],
//! [`softmax_backward_cuda`]); the sdd/dsd/dds matmuls are in [`crate::cuda_matmul`]. The fused
//! kernels take fp16/bf16 with head dim 64 or 128; f32 inputs and other head dims return
//! [`SparseAttnError::InvalidArgument`](crate::SparseAttnError::InvalidArgument) pointing to
//! the CPU path (or compose the primitives).
//!
//! The kernels work on 64 x 64 tiles of the layout with a 16-bit mask of their 16 x 16
//! sub-blocks ([`crate::plan`]), so small layout blocks still fill the tensor cores;
//! [`CudaAttentionLayout`] builds and uploads those tables once per layout, with work plans that
//! cut rows and columns much longer than the rest (global blocks) into pieces run in parallel.
//! Two kernel families ([`CudaAttentionKernel`]): `mma.sync` (sm_80 and newer) and, on compute
//! capability 9.0, warpgroup MMAs (`wgmma`) fed by the tensor memory accelerator; the Hopper
//! backward also has a pair kernel whose two warpgroups share the Q / dO tiles of two adjacent
//! key chunks and a warp-specialised kernel whose producer warpgroup issues every copy and dQ
//! reduction for a computing consumer warpgroup, and the Hopper forward a pair kernel whose two
//! warpgroups share the K / V copies of two adjacent query tiles and a gathered kernel that packs
//! the active 16-key slices of sparse chunks four to a chunk. `Auto` picks per device and layout
//! ([`CudaAttentionKernel::backward_pairs`], [`CudaAttentionKernel::backward_warp_specialized`],
//! [`CudaAttentionKernel::forward_pairs`], [`CudaAttentionKernel::forward_gathered`]).
//!
//! # Buffers and the layouts the kernels read
//!
//! Every entry point takes its device buffers as [`ltd_core::cuda::DeviceBuf`] /
//! [`ltd_core::cuda::DeviceBufMut`]: a whole `&CudaSlice` / `&mut CudaSlice`, a cudarc view at an
//! offset (`x.slice(off..off + n)`, `x.slice_mut(..)`, `split_at_mut`), or a raw device pointer
//! with a length (`unsafe` [`ltd_core::cuda::DeviceBuf::from_raw`], for frameworks whose buffers
//! are not cudarc types). A view or pointer costs no copy. The layouts honoured are exactly:
//!
//! - q, k, v, out, dout, dq, dk, dv: `[B, H, L, D]` contiguous row-major (element strides
//!   `H*L*D, L*D, D, 1`), starting [`ATTENTION_TENSOR_ALIGN`] (16) bytes aligned: both kernel
//!   families move rows in 16-byte pieces (`cp.async` on sm_80, TMA on Hopper, whose maps also
//!   need the 16-byte row pitch that `D` = 64 or 128 gives). A misaligned start is
//!   [`SparseAttnError::Misaligned`](crate::SparseAttnError::Misaligned) naming the buffer and
//!   its alignment; no kernel reads such a buffer, so there is no fallback.
//! - lse `[B, H, L]` f32 and the key-padding mask `[B, L]` f32, contiguous, 4-byte aligned.
//! - bias and dbias `[B, H, L, L]` contiguous, element aligned. The bias is read in 16-byte
//!   tiles when it starts 16-byte aligned and `L % 8 == 0`; otherwise (any other offset too)
//!   element by element, with the same result: a bias view is never refused.
//! - the softmax's sparse `[Z, nnz, b, b]` buffers and masks: contiguous, element aligned.
//! - the matmuls' operands: contiguous in their documented shapes, element aligned (rows that
//!   are not 16-byte aligned take the scalar load path); an f16 / bf16 result 4-byte aligned.
//!
//! Other strides (`[B, L, H, D]`, a slice along `D`, any non-unit inner stride) are not read:
//! make the buffer contiguous first (`ltd-candle` does, and counts the copies).
//!
//! Inside, one module per job: `align` (the address alignment each kernel needs), `module`
//! ([`crate::SparseSelfAttention`]'s GPU calls), `choice` ([`CudaAttentionKernel`] and the rule `Auto` follows),
//! `check` (call validation), `upload` (tables in GPU memory and their cache), `kernels` (kernel
//! images and entry-point names), `config` (every launch's threads, grid and shared memory),
//! `launch` (what the launches share), and one typed launch per kernel family: `forward`,
//! `backward`, `softmax`.

pub(crate) mod align;
mod backward;
mod check;
mod choice;
mod config;
mod forward;
pub(crate) mod kernels;
pub(crate) mod launch;
mod module;
mod options;
mod softmax;
mod upload;

pub(crate) use config::{MATMUL_TILE, matmul_dense, matmul_sdd, matmul_tiles_per_block};

pub use crate::plan::{CoarseTables, WorkPlan};
pub use align::ATTENTION_TENSOR_ALIGN;
pub use backward::attention_backward_cuda;
pub use choice::{
    AUTO_BACKWARD_GATHER_RATIO, AUTO_BACKWARD_PAIR_SHARING, AUTO_FORWARD_GATHER_RATIO,
    AUTO_FORWARD_PAIR_SHARING, CudaAttentionKernel,
};
pub use forward::attention_forward_cuda;
pub use options::{CudaAttentionGrads, CudaAttentionOptions};
pub use softmax::{CudaSoftmaxOptions, softmax_backward_cuda, softmax_forward_cuda};
pub use upload::{CudaAttentionLayout, CudaLayoutCache};
