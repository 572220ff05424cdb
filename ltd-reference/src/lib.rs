//! Pure-CPU test oracles for Random-LTD and block-sparse attention.
//!
//! Every function here is written for obviousness, not speed: plain nested loops, inputs widened
//! to `f64`, all accumulation in `f64`, one rounding to the caller's element type at the end. The
//! crate depends on no other `ltd` crate, so an oracle never shares a bug with the code it checks.
//!
//! # Conventions
//! - **Tensors** are flat, contiguous, row-major slices; their dimensions are passed explicitly
//!   (grouped in small `Copy` structs such as [`Hidden`], [`AttnDims`], [`MatmulDims`],
//!   [`Layout`]).
//! - **Element types** are `f32`, `half::f16`, `half::bf16` and `f64` ([`RefElement`]); `f64`
//!   results are the `f64` computation itself, unrounded. Ops that only
//!   move data (gathers, scatters, mask gathers, [`dense_to_sparse`], [`sparse_to_dense`]) accept
//!   any `T: Copy`.
//! - **Hidden states** are `[B, S, C]` ([`HiddenOrder::BatchSeq`]) or `[S, B, C]`
//!   ([`HiddenOrder::SeqBatch`]); one layer's kept indices are `[B, r]` i32, all LTD layers'
//!   indices `[L, B, r]`.
//! - **Block-sparse tensors** are `[Z, nnz, b, b]` with the active tiles of a layout
//!   `[H, block_rows, block_cols]` in lexicographic `(head, block_row, block_col)` order over all
//!   heads (upstream's `layout.nonzero()` order); see [`Layout::tiles`].
//! - **Scores** are modified in upstream's order: scale, then additive bias (rpe), then the
//!   key-padding mask, then the attention mask; each mask in [`MaskMode::Add`] (add the value) or
//!   [`MaskMode::Mul`] (`-inf` where the value is 0, else 0).
//! - **Empty rows**: a softmax row whose keys are all excluded or `-inf` gives zero
//!   probabilities, zero output and zero gradients, and logsumexp `-inf` (upstream gives NaN).
//! - **NaN and Inf propagate**: a softmax row with a NaN or `+inf` score is NaN throughout (its
//!   logsumexp too), as `torch.softmax` gives; keys of zero probability contribute nothing (a NaN
//!   value at an excluded key does not leak in).
//! - **Sizes**: a buffer sized from the arguments that could never fit this machine's memory is
//!   [`RefError::AllocationTooLarge`], not an abort.
//! - **Errors**: every public function validates its inputs (zero sizes, lengths, index ranges,
//!   layout values and fit, block divisibility) and returns [`RefError`]; nothing panics on
//!   caller input.
//!
//! ```
//! use ltd_reference::{gather, scatter, Hidden, HiddenOrder};
//! let dims = Hidden { batch: 1, seq: 4, channels: 1, order: HiddenOrder::BatchSeq };
//! let h = [0.0f32, 1.0, 2.0, 3.0];
//! let part = gather(&h, dims, &[1, 3], 2)?;
//! let layer_out: Vec<f32> = part.iter().map(|x| x * 10.0).collect();
//! assert_eq!(scatter(&h, dims, &layer_out, &[1, 3], 2)?, vec![0.0, 10.0, 2.0, 30.0]);
//! # Ok::<(), ltd_reference::RefError>(())
//! ```
#![deny(missing_docs)]
// Index loops mirror the formulas (out[i][j] = Σ_k ...); iterator chains would hide them.
#![allow(clippy::needless_range_loop)]

mod alloc;
mod attention;
mod block_sparse;
mod element;
mod error;
mod gather;
mod indices;
mod layout;
mod mask;
mod modifiers;
mod sampler_check;

pub use attention::{
    AttentionGrads, AttentionOptions, AttentionOutput, AttnDims, attention_backward,
    attention_forward,
};
pub use block_sparse::{
    MatmulDims, SoftmaxOptions, block_sparse_softmax, block_sparse_softmax_backward, dds,
    dds_backward, dense_to_sparse, dsd, dsd_backward, sdd, sdd_backward, sparse_to_dense,
};
pub use element::{RefElement, from_f64_vec, to_f64_vec};
pub use error::{IndexLocation, IndexProblem, RefError, Result};
pub use gather::{Hidden, HiddenOrder, gather, gather_backward, scatter, scatter_backward};
pub use layout::Layout;
pub use mask::{EncoderMaskForm, decoder_mask_gather, encoder_mask_gather};
pub use modifiers::{Mask, MaskMode};
pub use sampler_check::check_sampled_indices;
