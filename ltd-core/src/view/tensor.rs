//! [`HiddenTensor`]: an owned contiguous hidden-state tensor.

use super::{HiddenLayout, HiddenOrder, HiddenView, HiddenViewMut};
use crate::{ConstZero, CoreError, CpuElement, Result};

/// An owned, contiguous hidden-state tensor (what the allocating ops and the router return).
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenTensor};
/// let t = HiddenTensor::<f32>::zeros(HiddenOrder::SeqBatch, 2, 3, 4)?;
/// assert_eq!(t.layout().shape(), [3, 2, 4]);
/// assert_eq!(t.as_slice().len(), 24);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenTensor<T> {
    pub(super) layout: HiddenLayout,
    pub(super) data: Vec<T>,
}

impl<T: CpuElement> HiddenTensor<T> {
    /// A tensor filled with `value`.
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow); [`CoreError::AllocationFailed`](crate::CoreError::AllocationFailed)
    /// when the buffer would not fit in memory.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let t = HiddenTensor::full(f32::NAN, HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert!(t.as_slice().iter().all(|v| v.is_nan()));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn full(
        value: T,
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
    ) -> Result<Self> {
        let layout = HiddenLayout::contiguous(order, batch, seq, channels)?;
        let data = crate::try_vec("hidden tensor", layout.min_buffer_len(), value)?;
        Ok(HiddenTensor { layout, data })
    }

    /// A tensor of zeros.
    ///
    /// # Errors
    /// As [`full`](Self::full).
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let t = HiddenTensor::<half::bf16>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(t.as_slice()[0], half::bf16::ZERO);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn zeros(order: HiddenOrder, batch: usize, seq: usize, channels: usize) -> Result<Self> {
        HiddenTensor::full(T::from_acc(T::Acc::ZERO), order, batch, seq, channels)
    }

    /// Wraps a vector holding a contiguous tensor of the given shape.
    ///
    /// # Errors
    /// [`CoreError::ShapeMismatch`](crate::CoreError::ShapeMismatch) when `data.len() != batch * seq * channels`.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let t = HiddenTensor::from_vec(vec![1.0f32; 6], HiddenOrder::BatchSeq, 1, 3, 2)?;
    /// assert_eq!(t.into_vec().len(), 6);
    /// assert!(HiddenTensor::from_vec(vec![1.0f32; 5], HiddenOrder::BatchSeq, 1, 3, 2).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn from_vec(
        data: Vec<T>,
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
    ) -> Result<Self> {
        let layout = HiddenLayout::contiguous(order, batch, seq, channels)?;
        if data.len() != layout.min_buffer_len() {
            return Err(CoreError::ShapeMismatch {
                what: "tensor data",
                got: vec![data.len()],
                expected: format!(
                    "{} elements for {}",
                    layout.min_buffer_len(),
                    order.describe(batch, "S", seq, channels)
                ),
            });
        }
        Ok(HiddenTensor { layout, data })
    }

    /// The (contiguous) layout.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// assert!(HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?.layout().is_contiguous());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layout(&self) -> &HiddenLayout {
        &self.layout
    }

    /// A read-only view.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let t = HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(t.view().layout(), t.layout());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn view(&self) -> HiddenView<'_, T> {
        HiddenView {
            layout: self.layout,
            data: &self.data,
        }
    }

    /// A mutable view.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let mut t = HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(t.view_mut().layout().seq(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn view_mut(&mut self) -> HiddenViewMut<'_, T> {
        HiddenViewMut {
            layout: self.layout,
            data: &mut self.data,
            batch_outer: self.layout.order == HiddenOrder::BatchSeq,
        }
    }

    /// The elements, in the layout's order.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// assert_eq!(HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?.as_slice(), &[0.0; 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutable.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let mut t = HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// t.as_mut_slice()[3] = 1.0;
    /// assert_eq!(t.view().row(0, 1), Some(&[0.0f32, 1.0][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements as a vector.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// assert_eq!(HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?.into_vec(), vec![0.0; 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
}
