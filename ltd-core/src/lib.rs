//! Random-LTD core ops: tensor views, the keyed-ChaCha token samplers, gather / scatter / route
//! (forward and backward), mask gathers and the layer wrapper, on the CPU (and CUDA devices).
//!
//! A step of Random-LTD on the CPU, by hand:
//!
//! ```
//! use ltd_core::*;
//! let (b, s, c, r) = (2, 16, 8, 6);
//! let h: Vec<f32> = (0..b * s * c).map(|x| x as f32).collect();
//! let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, b, s, c)?;
//! // Sample the kept positions of 3 LTD layers for step 100, and take layer 1's.
//! let idx = TokenSampler::new(42).sample(100, 3, b, s, r)?;
//! let idx1 = idx.layer(1)?;
//! // Gather the kept tokens, run a "layer" on them, route its output back.
//! let mut part = gather_tensor(&hidden, &idx1)?;
//! part.as_mut_slice().iter_mut().for_each(|x| *x = -*x);
//! let y = route_tensor(&hidden, &part.view(), &idx1)?;
//! let kept = idx1.row(0).unwrap()[0] as usize;
//! assert_eq!(y.view().row(0, kept).unwrap()[0], -hidden.row(0, kept).unwrap()[0]);
//! # Ok::<(), ltd_core::CoreError>(())
//! ```
//!
//! # Conventions
//! - Hidden states are `[B, S, C]` ([`HiddenOrder::BatchSeq`]) or `[S, B, C]`
//!   ([`HiddenOrder::SeqBatch`]); the kept part has the same order with `r` rows: `[B, r, C]` or
//!   `[r, B, C]`. Channels are contiguous (channel stride 1); batch and sequence strides are free
//!   (transposed, padded and, for inputs, broadcast views work).
//! - One layer's kept positions are `[B, r]` i32 ([`IndexView`]); all LTD layers' are `[L, B, r]`
//!   ([`LayerIndicesView`], [`SampledIndices`]).
//! - Every public function validates its arguments and returns a [`CoreError`] that names the
//!   bad value and the expected one; none panics on caller input.

mod alloc;
pub mod chacha;
mod check;
mod copy;
#[cfg(feature = "cuda")]
pub mod cuda;
mod dtype;
mod dynamic;
mod error;
mod files;
mod float;
mod gather;
mod mask;
mod rank;
mod router;
mod sampler;
mod view;

pub use alloc::{check_allocation, memory_limit_bytes, try_reserve, try_vec, try_with_capacity};
pub use copy::{StridedLayout2d, copy_strided_2d};
#[cfg(feature = "cuda")]
pub use cuda::{CudaDevice, copy_strided_2d_cuda};
pub use dtype::{DType, Element};
pub use dynamic::{
    AnyHiddenView, AnyHiddenViewMut, gather_any, gather_backward_any, route_any,
    scatter_backward_any,
};
pub use error::{CoreError, CudaDriverError, Result};
pub use files::write_file_atomic;
pub use float::{Accumulator, CpuElement};
pub use gather::{
    PARALLEL_MIN_ELEMENTS, gather, gather_backward, gather_tensor, route, route_backward_to_hidden,
    route_backward_to_layer, route_tensor, scatter, scatter_backward, scatter_in_place,
};
pub use mask::{
    DecoderMask, GatheredDecoderMask, MaskElement, MaskTensor, MaskView, gather_decoder_masks,
    gather_mask, gather_masks, gather_masks_into,
};
// `Accumulator`'s supertraits: code that names `T::Acc` needs them in scope to call their methods,
// and takes them from here rather than from a num-traits dependency of its own.
#[doc(no_inline)]
pub use num_traits::{ConstOne, ConstZero, Float};
pub use rank::ParallelRank;
pub use router::{
    Layer, LayerInput, LayerMask, LayerOutput, ModelKind, ModelMask, RouterConfig, TokenDropRouter,
    TokenPositions,
};
pub use sampler::{MAX_SEQ_LEN, TokenSampler};
pub use view::{
    HiddenLayout, HiddenOrder, HiddenTensor, HiddenView, HiddenViewMut, IndexView,
    LayerIndicesView, SampledIndices,
};
