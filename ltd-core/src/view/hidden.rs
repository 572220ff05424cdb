//! Borrowed hidden-state views: [`HiddenView`] and [`HiddenViewMut`] over a layout and a slice.

use super::layout::check_buffer;
use super::{HiddenLayout, HiddenOrder};
use crate::{CpuElement, Result};

/// A read-only hidden-state view: a [`HiddenLayout`] over a borrowed CPU buffer.
///
/// ```
/// use ltd_core::{HiddenLayout, HiddenOrder, HiddenView};
/// let data = vec![0.0f32; 2 * 8 * 4];
/// let h = HiddenView::new(&data, HiddenOrder::BatchSeq, 2, 8, 4)?;
/// assert_eq!(h.layout().shape(), [2, 8, 4]);
/// // The same buffer read as [S, B, C] with explicit strides (a transposed view).
/// let t = HiddenView::strided(&data, HiddenLayout::strided(HiddenOrder::SeqBatch, 2, 8, 4, 32, 4)?)?;
/// assert_eq!(t.layout().shape(), [8, 2, 4]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HiddenView<'a, T> {
    pub(super) layout: HiddenLayout,
    pub(super) data: &'a [T],
}

impl<'a, T: CpuElement> HiddenView<'a, T> {
    /// A contiguous view of `data` with shape `order.shape(batch, seq, channels)`.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall) when `data` is shorter than `batch * seq * channels`;
    /// [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow).
    ///
    /// ```
    /// use ltd_core::{HiddenOrder, HiddenView};
    /// let data = [1.0f32; 6];
    /// assert!(HiddenView::new(&data, HiddenOrder::BatchSeq, 1, 3, 2).is_ok());
    /// assert!(HiddenView::new(&data, HiddenOrder::BatchSeq, 1, 4, 2).is_err());
    /// ```
    pub fn new(
        data: &'a [T],
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
    ) -> Result<Self> {
        HiddenView::strided(data, HiddenLayout::contiguous(order, batch, seq, channels)?)
    }

    /// A view of `data` with an explicit layout (any batch and sequence strides, including 0).
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall) when `data` does not cover the layout.
    ///
    /// ```
    /// use ltd_core::{HiddenLayout, HiddenOrder, HiddenView};
    /// // One row of 4 channels broadcast over B = 2, S = 3 (strides 0).
    /// let row = [1.0f32, 2.0, 3.0, 4.0];
    /// let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 0, 0)?;
    /// assert!(HiddenView::strided(&row, l).is_ok());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn strided(data: &'a [T], layout: HiddenLayout) -> Result<Self> {
        check_buffer("hidden", data.len(), &layout)?;
        Ok(HiddenView { layout, data })
    }

    /// The shape and strides.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenView};
    /// let h = HiddenView::new(&[0.0f32; 4], HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(h.layout().seq(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layout(&self) -> &HiddenLayout {
        &self.layout
    }

    /// The borrowed buffer (the whole slice the view was made from).
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenView};
    /// let h = HiddenView::new(&[0.0f32; 4], HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(h.data().len(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The `C` channels of row `(b, s)`, or `None` when `b` or `s` is out of range.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenView};
    /// let data = [0.0f32, 1.0, 2.0, 3.0];
    /// let h = HiddenView::new(&data, HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(h.row(0, 1), Some(&[2.0f32, 3.0][..]));
    /// assert_eq!(h.row(1, 0), None);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn row(&self, b: usize, s: usize) -> Option<&'a [T]> {
        (b < self.layout.batch && s < self.layout.seq).then(|| self.row_unchecked(b, s))
    }

    /// Row `(b, s)`; the caller has checked the range (the buffer is checked at construction).
    #[inline]
    pub(crate) fn row_unchecked(&self, b: usize, s: usize) -> &'a [T] {
        let start = self.layout.offset(b, s);
        &self.data[start..start + self.layout.channels]
    }
}

/// A mutable hidden-state view for outputs: like [`HiddenView`], and its rows must not overlap.
///
/// ```
/// use ltd_core::{HiddenLayout, HiddenOrder, HiddenViewMut};
/// let mut data = vec![0.0f32; 24];
/// let out = HiddenViewMut::new(&mut data, HiddenOrder::SeqBatch, 2, 3, 4)?;
/// assert_eq!(out.layout().shape(), [3, 2, 4]);
/// // Broadcast (stride 0) outputs are refused: two rows would share elements.
/// let mut row = [0.0f32; 4];
/// let bad = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 1, 4, 0, 4)?;
/// assert!(HiddenViewMut::strided(&mut row, bad).is_err());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Debug)]
pub struct HiddenViewMut<'a, T> {
    pub(super) layout: HiddenLayout,
    pub(super) data: &'a mut [T],
    pub(super) batch_outer: bool,
}

impl<'a, T: CpuElement> HiddenViewMut<'a, T> {
    /// A contiguous mutable view of `data`.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall), [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow).
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenViewMut};
    /// let mut data = [0.0f32; 6];
    /// assert!(HiddenViewMut::new(&mut data, HiddenOrder::BatchSeq, 1, 3, 2).is_ok());
    /// ```
    pub fn new(
        data: &'a mut [T],
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
    ) -> Result<Self> {
        HiddenViewMut::strided(data, HiddenLayout::contiguous(order, batch, seq, channels)?)
    }

    /// A mutable view with an explicit layout.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall); [`CoreError::OverlappingRows`](crate::CoreError::OverlappingRows) when two `(b, s)` rows
    /// would share elements (e.g. a zero stride, or a stride below `C`).
    ///
    /// ```
    /// use ltd_core::{HiddenLayout, HiddenOrder, HiddenViewMut};
    /// // Write a [B=2, S=3, C=4] result into a buffer laid out as [S, B, C].
    /// let mut data = vec![0.0f32; 24];
    /// let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 4, 8)?;
    /// assert!(HiddenViewMut::strided(&mut data, l).is_ok());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn strided(data: &'a mut [T], layout: HiddenLayout) -> Result<Self> {
        check_buffer("output", data.len(), &layout)?;
        let batch_outer = layout.check_rows_disjoint("output")?;
        Ok(HiddenViewMut {
            layout,
            data,
            batch_outer,
        })
    }

    /// The shape and strides.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenViewMut};
    /// let mut d = [0.0f32; 4];
    /// assert_eq!(HiddenViewMut::new(&mut d, HiddenOrder::BatchSeq, 1, 2, 2)?.layout().channels(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layout(&self) -> &HiddenLayout {
        &self.layout
    }

    /// A read-only view of the same elements.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenViewMut};
    /// let mut d = [0.0f32; 4];
    /// let m = HiddenViewMut::new(&mut d, HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(m.as_view().row(0, 1), Some(&[0.0f32, 0.0][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_view(&self) -> HiddenView<'_, T> {
        HiddenView {
            layout: self.layout,
            data: self.data,
        }
    }

    /// Splits the buffer into one disjoint `&mut [T]` per row, in increasing offset order.
    pub(crate) fn rows_mut(&mut self) -> RowsMut<'_, T> {
        let l = self.layout;
        let (outer_n, outer_stride, inner_n, inner_stride) = if self.batch_outer {
            (l.batch, l.batch_stride, l.seq, l.seq_stride)
        } else {
            (l.seq, l.seq_stride, l.batch, l.batch_stride)
        };
        let mut rows = Vec::with_capacity(outer_n * inner_n);
        let mut rest: &mut [T] = self.data;
        let mut pos = 0;
        for o in 0..outer_n {
            for i in 0..inner_n {
                let start = o * outer_stride + i * inner_stride;
                let tail = std::mem::take(&mut rest);
                let (_, tail) = tail.split_at_mut(start - pos);
                let (row, tail) = tail.split_at_mut(l.channels);
                rows.push(row);
                rest = tail;
                pos = start + l.channels;
            }
        }
        RowsMut {
            rows,
            batch_outer: self.batch_outer,
            batch: l.batch,
            seq: l.seq,
        }
    }
}

/// The rows of a [`HiddenViewMut`], each its own `&mut [T]`, in offset order.
pub(crate) struct RowsMut<'a, T> {
    pub(crate) rows: Vec<&'a mut [T]>,
    batch_outer: bool,
    batch: usize,
    seq: usize,
}

impl<T> RowsMut<'_, T> {
    /// The `(b, s)` coordinates of the `n`-th row in offset order.
    #[cfg(test)]
    pub(crate) fn coords(&self, n: usize) -> (usize, usize) {
        if self.batch_outer {
            (n / self.seq, n % self.seq)
        } else {
            (n % self.batch, n / self.batch)
        }
    }

    /// A function from the offset-order number to `(b, s)`, shareable across threads.
    pub(crate) fn coords_fn(
        &self,
    ) -> impl Fn(usize) -> (usize, usize) + Sync + Send + Copy + use<T> {
        let (batch_outer, batch, seq) = (self.batch_outer, self.batch, self.seq);
        move |n| {
            if batch_outer {
                (n / seq, n % seq)
            } else {
                (n % batch, n / batch)
            }
        }
    }
}
