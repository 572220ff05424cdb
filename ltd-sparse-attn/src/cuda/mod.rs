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
//! key chunks. `Auto` picks per device and layout ([`CudaAttentionKernel::backward_pairs`]).
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
pub use backward::attention_backward_cuda;
pub use choice::{AUTO_BACKWARD_PAIR_SHARING, CudaAttentionKernel};
pub use forward::attention_forward_cuda;
pub use options::{CudaAttentionGrads, CudaAttentionOptions};
pub use softmax::{CudaSoftmaxOptions, softmax_backward_cuda, softmax_forward_cuda};
pub use upload::{CudaAttentionLayout, CudaLayoutCache};
