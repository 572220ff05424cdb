//! Views: a shape, strides and a borrowed buffer for hidden states (`[B,S,C]` or `[S,B,C]`), an
//! owned contiguous hidden-state tensor, and the `[B,r]` / `[L,B,r]` index tensors.
//!
//! The shape-and-strides part ([`HiddenLayout`]) is separate from the buffer, so a GPU view can
//! reuse it with device memory in place of the slice.

mod hidden;
mod index;
mod layout;
mod tensor;

#[cfg(test)]
mod tests;

pub use hidden::{HiddenView, HiddenViewMut};
pub use index::{IndexView, LayerIndicesView, SampledIndices};
pub use layout::{HiddenLayout, HiddenOrder};
pub use tensor::HiddenTensor;
