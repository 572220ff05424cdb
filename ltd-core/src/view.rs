//! Views: a shape, strides and a borrowed buffer for hidden states (`[B,S,C]` or `[S,B,C]`), an
//! owned contiguous hidden-state tensor, and the `[B,r]` / `[L,B,r]` index tensors.
//!
//! The shape-and-strides part ([`HiddenLayout`]) is separate from the buffer, so a GPU view can
//! reuse it with device memory in place of the slice.

use crate::{CoreError, Element, Result};

/// The order of the hidden-state dimensions.
///
/// ```
/// use ltd_core::HiddenOrder;
/// assert_eq!(HiddenOrder::BatchSeq.shape(2, 8, 4), [2, 8, 4]);
/// assert_eq!(HiddenOrder::SeqBatch.shape(2, 8, 4), [8, 2, 4]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HiddenOrder {
    /// `[B, S, C]` (DeepSpeed's `batch_seq_dim`, `batch_first = true`).
    BatchSeq,
    /// `[S, B, C]` (DeepSpeed's `seq_batch_dim`, Megatron's layout).
    SeqBatch,
}

impl HiddenOrder {
    /// The shape of a tensor in this order: `[batch, seq, channels]` or `[seq, batch, channels]`.
    ///
    /// ```
    /// assert_eq!(ltd_core::HiddenOrder::SeqBatch.shape(1, 2, 3), [2, 1, 3]);
    /// ```
    pub const fn shape(self, batch: usize, seq: usize, channels: usize) -> [usize; 3] {
        match self {
            HiddenOrder::BatchSeq => [batch, seq, channels],
            HiddenOrder::SeqBatch => [seq, batch, channels],
        }
    }

    /// The shape in words with the dimension names, e.g. `"[B=2, S=8, C=4]"`.
    ///
    /// ```
    /// assert_eq!(ltd_core::HiddenOrder::SeqBatch.describe(2, "r", 8, 4), "[r=8, B=2, C=4]");
    /// ```
    pub fn describe(self, batch: usize, seq_name: &str, seq: usize, channels: usize) -> String {
        match self {
            HiddenOrder::BatchSeq => format!("[B={batch}, {seq_name}={seq}, C={channels}]"),
            HiddenOrder::SeqBatch => format!("[{seq_name}={seq}, B={batch}, C={channels}]"),
        }
    }
}

/// Shape and strides of a hidden-state tensor: element `(b, s, c)` (batch `b`, sequence position
/// `s`, channel `c`) lives at `b * batch_stride + s * seq_stride + c`.
///
/// The channel stride is always 1 (each row of `C` channels is contiguous); the batch and sequence
/// strides are arbitrary, so transposed, padded, sliced and broadcast (stride 0) inputs work.
/// Output views additionally need rows that do not overlap (checked by [`HiddenViewMut`]).
///
/// ```
/// use ltd_core::{HiddenLayout, HiddenOrder};
/// // A contiguous [S=8, B=2, C=4] tensor.
/// let l = HiddenLayout::contiguous(HiddenOrder::SeqBatch, 2, 8, 4)?;
/// assert_eq!((l.batch_stride(), l.seq_stride()), (4, 8));
/// assert_eq!(l.min_buffer_len(), 64);
/// // Read it as [B, S, C] instead: same strides, the other order.
/// let t = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 8, 4, 4, 8)?;
/// assert_eq!(t.offset(1, 3), 1 * 4 + 3 * 8);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HiddenLayout {
    order: HiddenOrder,
    batch: usize,
    seq: usize,
    channels: usize,
    batch_stride: usize,
    seq_stride: usize,
}

impl HiddenLayout {
    /// The dense layout of the shape `order.shape(batch, seq, channels)`.
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`] when the element count overflows `usize`.
    ///
    /// ```
    /// use ltd_core::{HiddenLayout, HiddenOrder};
    /// let l = HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 8, 4)?;
    /// assert_eq!((l.batch_stride(), l.seq_stride()), (32, 4));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn contiguous(
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
    ) -> Result<HiddenLayout> {
        let overflow = || CoreError::SizeOverflow {
            what: "hidden layout",
        };
        let (batch_stride, seq_stride) = match order {
            HiddenOrder::BatchSeq => (seq.checked_mul(channels).ok_or_else(overflow)?, channels),
            HiddenOrder::SeqBatch => (channels, batch.checked_mul(channels).ok_or_else(overflow)?),
        };
        HiddenLayout::strided(order, batch, seq, channels, batch_stride, seq_stride)
    }

    /// A layout with the given batch and sequence strides (in elements; channel stride 1).
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`] when the last element's offset overflows `usize`.
    ///
    /// ```
    /// use ltd_core::{HiddenLayout, HiddenOrder};
    /// // Rows padded to a pitch of 6 elements for C = 5.
    /// let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 5, 18, 6)?;
    /// assert_eq!(l.min_buffer_len(), 18 + 2 * 6 + 5);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn strided(
        order: HiddenOrder,
        batch: usize,
        seq: usize,
        channels: usize,
        batch_stride: usize,
        seq_stride: usize,
    ) -> Result<HiddenLayout> {
        let layout = HiddenLayout {
            order,
            batch,
            seq,
            channels,
            batch_stride,
            seq_stride,
        };
        layout.checked_min_len().ok_or(CoreError::SizeOverflow {
            what: "hidden layout",
        })?;
        Ok(layout)
    }

    fn checked_min_len(&self) -> Option<usize> {
        if self.batch == 0 || self.seq == 0 || self.channels == 0 {
            return Some(0);
        }
        let last_b = (self.batch - 1).checked_mul(self.batch_stride)?;
        let last_s = (self.seq - 1).checked_mul(self.seq_stride)?;
        last_b.checked_add(last_s)?.checked_add(self.channels)
    }

    /// The dimension order.
    ///
    /// ```
    /// use ltd_core::{HiddenLayout, HiddenOrder};
    /// let l = HiddenLayout::contiguous(HiddenOrder::SeqBatch, 1, 1, 1)?;
    /// assert_eq!(l.order(), HiddenOrder::SeqBatch);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn order(&self) -> HiddenOrder {
        self.order
    }

    /// Batch size `B`.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sequence length of this tensor (`S` for hidden states, `r` for the kept part).
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.seq(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Channels (hidden size) `C`.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.channels(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Distance between consecutive batch entries, in elements.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.batch_stride(), 12);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch_stride(&self) -> usize {
        self.batch_stride
    }

    /// Distance between consecutive sequence positions, in elements.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::SeqBatch, 2, 3, 4)?.seq_stride(), 8);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq_stride(&self) -> usize {
        self.seq_stride
    }

    /// The shape in this layout's order.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::SeqBatch, 2, 3, 4)?.shape(), [3, 2, 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn shape(&self) -> [usize; 3] {
        self.order.shape(self.batch, self.seq, self.channels)
    }

    /// The fewest elements a buffer needs to hold this layout (0 if any dimension is 0).
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.min_buffer_len(), 24);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn min_buffer_len(&self) -> usize {
        // Checked at construction.
        self.checked_min_len().unwrap_or(usize::MAX)
    }

    /// Offset of the first channel of row `(b, s)`. Callers keep `b < batch` and `s < seq`.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert_eq!(HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 3, 4)?.offset(1, 2), 20);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn offset(&self, b: usize, s: usize) -> usize {
        b * self.batch_stride + s * self.seq_stride
    }

    /// `true` when the layout is the dense layout of its shape and order.
    ///
    /// ```
    /// # use ltd_core::{HiddenLayout, HiddenOrder};
    /// assert!(HiddenLayout::contiguous(HiddenOrder::SeqBatch, 2, 3, 4)?.is_contiguous());
    /// assert!(!HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 4, 8)?.is_contiguous());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn is_contiguous(&self) -> bool {
        HiddenLayout::contiguous(self.order, self.batch, self.seq, self.channels)
            .is_ok_and(|c| c == *self)
    }

    /// The rows as (outer, inner) loops in increasing offset order, or an error when two rows
    /// share elements. Returns `(outer_is_batch)`.
    pub(crate) fn check_rows_disjoint(&self, what: &'static str) -> Result<bool> {
        let c = self.channels;
        // Candidate loop orders: batch outer, then seq outer.
        let fits = |outer_n: usize, outer_stride: usize, inner_n: usize, inner_stride: usize| {
            let inner_ok = inner_n <= 1 || inner_stride >= c;
            let span = (inner_n.saturating_sub(1))
                .saturating_mul(inner_stride)
                .saturating_add(c);
            let outer_ok = outer_n <= 1 || outer_stride >= span;
            inner_ok && outer_ok
        };
        if self.batch == 0 || self.seq == 0 || c == 0 {
            return Ok(true);
        }
        if fits(self.batch, self.batch_stride, self.seq, self.seq_stride) {
            Ok(true)
        } else if fits(self.seq, self.seq_stride, self.batch, self.batch_stride) {
            Ok(false)
        } else {
            Err(CoreError::OverlappingRows {
                what,
                detail: format!(
                    "B={} S={} C={} with batch stride {} and sequence stride {}",
                    self.batch, self.seq, c, self.batch_stride, self.seq_stride
                ),
            })
        }
    }
}

fn check_buffer(what: &'static str, got: usize, layout: &HiddenLayout) -> Result<()> {
    let needed = layout.min_buffer_len();
    if got < needed {
        return Err(CoreError::BufferTooSmall { what, got, needed });
    }
    Ok(())
}

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
    layout: HiddenLayout,
    data: &'a [T],
}

impl<'a, T: Element> HiddenView<'a, T> {
    /// A contiguous view of `data` with shape `order.shape(batch, seq, channels)`.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`] when `data` is shorter than `batch * seq * channels`;
    /// [`CoreError::SizeOverflow`].
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
    /// [`CoreError::BufferTooSmall`] when `data` does not cover the layout.
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
    layout: HiddenLayout,
    data: &'a mut [T],
    batch_outer: bool,
}

impl<'a, T: Element> HiddenViewMut<'a, T> {
    /// A contiguous mutable view of `data`.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`], [`CoreError::SizeOverflow`].
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
    /// [`CoreError::BufferTooSmall`]; [`CoreError::OverlappingRows`] when two `(b, s)` rows
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
    layout: HiddenLayout,
    data: Vec<T>,
}

impl<T: Element> HiddenTensor<T> {
    /// A tensor filled with `value`.
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`].
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
        Ok(HiddenTensor {
            layout,
            data: vec![value; layout.min_buffer_len()],
        })
    }

    /// A tensor of zeros.
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, HiddenTensor};
    /// let t = HiddenTensor::<half::bf16>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?;
    /// assert_eq!(t.as_slice()[0], half::bf16::ZERO);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn zeros(order: HiddenOrder, batch: usize, seq: usize, channels: usize) -> Result<Self> {
        HiddenTensor::full(T::from_f32_lossy(0.0), order, batch, seq, channels)
    }

    /// Wraps a vector holding a contiguous tensor of the given shape.
    ///
    /// # Errors
    /// [`CoreError::ShapeMismatch`] when `data.len() != batch * seq * channels`.
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

/// One layer's kept positions: an `i32` tensor `[B, r]` (row `b` lists the positions kept in
/// batch entry `b`). Rows may be padded (`row_stride >= r`); positions within a row are contiguous.
///
/// The view remembers which layer of an `[L, B, r]` tensor it came from, for error messages.
///
/// ```
/// use ltd_core::IndexView;
/// let idx = [0, 2, 1, 3];
/// let v = IndexView::new(&idx, 2, 2)?;
/// assert_eq!(v.row(1), Some(&[1, 3][..]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct IndexView<'a> {
    data: &'a [i32],
    batch: usize,
    reserved: usize,
    row_stride: usize,
    layer: usize,
}

impl<'a> IndexView<'a> {
    /// A contiguous `[batch, reserved]` view.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`], [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// # use ltd_core::IndexView;
    /// assert!(IndexView::new(&[0, 1, 2], 1, 3).is_ok());
    /// assert!(IndexView::new(&[0, 1, 2], 2, 3).is_err());
    /// ```
    pub fn new(data: &'a [i32], batch: usize, reserved: usize) -> Result<Self> {
        IndexView::with_row_stride(data, batch, reserved, reserved)
    }

    /// A `[batch, reserved]` view whose rows start `row_stride` elements apart.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] when `row_stride < reserved` and `batch > 1` (rows would
    /// overlap); [`CoreError::BufferTooSmall`]; [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// # use ltd_core::IndexView;
    /// // Keep positions 0 and 2 of every row of a [B=2, 3]-padded buffer.
    /// let v = IndexView::with_row_stride(&[0, 2, -1, 0, 2], 2, 2, 3)?;
    /// assert_eq!(v.row(1), Some(&[0, 2][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn with_row_stride(
        data: &'a [i32],
        batch: usize,
        reserved: usize,
        row_stride: usize,
    ) -> Result<Self> {
        if batch > 1 && row_stride < reserved {
            return Err(CoreError::InvalidArgument {
                what: "index row stride",
                got: row_stride.to_string(),
                expected: format!("at least r = {reserved}"),
            });
        }
        let needed = if batch == 0 || reserved == 0 {
            0
        } else {
            (batch - 1)
                .checked_mul(row_stride)
                .and_then(|x| x.checked_add(reserved))
                .ok_or(CoreError::SizeOverflow {
                    what: "index tensor",
                })?
        };
        if data.len() < needed {
            return Err(CoreError::BufferTooSmall {
                what: "index",
                got: data.len(),
                needed,
            });
        }
        Ok(IndexView {
            data,
            batch,
            reserved,
            row_stride,
            layer: 0,
        })
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[0, 1], 2, 1)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[0, 1], 1, 2)?.reserved(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The layer of the `[L, B, r]` tensor this view came from (0 for a view made directly).
    ///
    /// ```
    /// let all = ltd_core::LayerIndicesView::new(&[0, 1, 1, 2], 2, 1, 2)?;
    /// assert_eq!(all.layer(1)?.layer_index(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer_index(&self) -> usize {
        self.layer
    }

    /// Row `b` (its `r` positions), or `None` when `b >= B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[4, 5], 1, 2)?.row(0), Some(&[4, 5][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn row(&self, b: usize) -> Option<&'a [i32]> {
        (b < self.batch).then(|| self.row_unchecked(b))
    }

    #[inline]
    pub(crate) fn row_unchecked(&self, b: usize) -> &'a [i32] {
        &self.data[b * self.row_stride..b * self.row_stride + self.reserved]
    }
}

/// All LTD layers' kept positions: a contiguous `i32` tensor `[L, B, r]`.
///
/// ```
/// use ltd_core::LayerIndicesView;
/// let idx = [0, 1, 0, 2, 1, 2, 0, 1]; // L = 2, B = 2, r = 2
/// let all = LayerIndicesView::new(&idx, 2, 2, 2)?;
/// assert_eq!(all.layer(1)?.row(0), Some(&[1, 2][..]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LayerIndicesView<'a> {
    data: &'a [i32],
    layers: usize,
    batch: usize,
    reserved: usize,
}

impl<'a> LayerIndicesView<'a> {
    /// A contiguous `[layers, batch, reserved]` view.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`], [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// assert!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 2, 2).is_ok());
    /// assert!(ltd_core::LayerIndicesView::new(&[0; 7], 2, 2, 2).is_err());
    /// ```
    pub fn new(data: &'a [i32], layers: usize, batch: usize, reserved: usize) -> Result<Self> {
        let needed = layers
            .checked_mul(batch)
            .and_then(|x| x.checked_mul(reserved))
            .ok_or(CoreError::SizeOverflow {
                what: "index tensor",
            })?;
        if data.len() < needed {
            return Err(CoreError::BufferTooSmall {
                what: "index",
                got: data.len(),
                needed,
            });
        }
        Ok(LayerIndicesView {
            data,
            layers,
            batch,
            reserved,
        })
    }

    /// Number of layers `L`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 2, 2)?.layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 4, 1)?.batch(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 1, 2, 4)?.reserved(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Layer `l`'s `[B, r]` indices.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`] when `l >= L`.
    ///
    /// ```
    /// let all = ltd_core::LayerIndicesView::new(&[0, 1, 2, 3], 2, 1, 2)?;
    /// assert_eq!(all.layer(1)?.row(0), Some(&[2, 3][..]));
    /// assert!(all.layer(2).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer(&self, l: usize) -> Result<IndexView<'a>> {
        if l >= self.layers {
            return Err(CoreError::InvalidSize {
                what: "layer",
                got: l,
                expected: format!("below the number of sampled layers L = {}", self.layers),
            });
        }
        let per_layer = self.batch * self.reserved;
        let data = &self.data[l * per_layer..(l + 1) * per_layer];
        Ok(IndexView {
            data,
            batch: self.batch,
            reserved: self.reserved,
            row_stride: self.reserved,
            layer: l,
        })
    }

    /// The elements, `[L, B, r]` row-major.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[3, 4], 1, 1, 2)?.as_slice(), &[3, 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &'a [i32] {
        &self.data[..self.layers * self.batch * self.reserved]
    }
}

/// Owned sampled indices `[L, B, r]` (what the samplers return): each row sorted ascending,
/// distinct, in `[0, S)`.
///
/// ```
/// use ltd_core::TokenSampler;
/// let idx = TokenSampler::new(7).sample(0, 2, 4, 16, 8)?;
/// assert_eq!((idx.layers(), idx.batch(), idx.reserved(), idx.seq()), (2, 4, 8, 16));
/// let row = idx.layer(1)?.row(3).unwrap();
/// assert!(row.windows(2).all(|w| w[0] < w[1]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledIndices {
    pub(crate) data: Vec<i32>,
    pub(crate) layers: usize,
    pub(crate) batch: usize,
    pub(crate) reserved: usize,
    pub(crate) seq: usize,
}

impl SampledIndices {
    /// Number of layers `L`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.layers(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.batch(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.reserved(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The full sequence length `S` the positions index.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.seq(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// A view of all layers.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?;
    /// assert_eq!(idx.view().layers(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn view(&self) -> LayerIndicesView<'_> {
        LayerIndicesView {
            data: &self.data,
            layers: self.layers,
            batch: self.batch,
            reserved: self.reserved,
        }
    }

    /// Layer `l`'s `[B, r]` indices.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`] when `l >= L`.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?;
    /// assert_eq!(idx.layer(2)?.reserved(), 2);
    /// assert!(idx.layer(3).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer(&self, l: usize) -> Result<IndexView<'_>> {
        self.view().layer(l)
    }

    /// The elements, `[L, B, r]` row-major.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 1, 1, 3, 3)?;
    /// assert_eq!(idx.as_slice(), &[0, 1, 2]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &[i32] {
        &self.data
    }

    /// The elements as a vector.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 1, 1, 3, 3)?;
    /// assert_eq!(idx.into_vec(), vec![0, 1, 2]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn into_vec(self) -> Vec<i32> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_mut_cover_every_row_once_in_both_loop_orders() {
        for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
            let (b, s, c) = (3, 5, 2);
            let mut data = vec![0u32; b * s * c + 20];
            let layout = match order {
                // Padded batch-outer.
                HiddenOrder::BatchSeq => {
                    HiddenLayout::strided(order, b, s, c, s * c + 1, c).unwrap()
                }
                // Seq-outer with a pitch.
                HiddenOrder::SeqBatch => {
                    HiddenLayout::strided(order, b, s, c, c, b * c + 2).unwrap()
                }
            };
            let mut data_f: Vec<f32> = data.iter().map(|&x| x as f32).collect();
            let mut v = HiddenViewMut::strided(&mut data_f, layout).unwrap();
            let mut rows = v.rows_mut();
            let n = rows.rows.len();
            assert_eq!(n, b * s);
            for k in 0..n {
                let (bb, ss) = rows.coords(k);
                rows.rows[k].fill((bb * 100 + ss) as f32);
            }
            let view = v.as_view();
            for bb in 0..b {
                for ss in 0..s {
                    assert!(
                        view.row(bb, ss)
                            .unwrap()
                            .iter()
                            .all(|&x| x == (bb * 100 + ss) as f32)
                    );
                }
            }
            data.clear();
        }
    }

    #[test]
    fn overlapping_output_rows_are_refused() {
        let mut d = vec![0.0f32; 100];
        let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 12, 3).unwrap();
        let e = HiddenViewMut::strided(&mut d, l).unwrap_err();
        assert!(matches!(e, CoreError::OverlappingRows { .. }), "{e}");
        // A transposed output is fine.
        let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 4, 8).unwrap();
        assert!(HiddenViewMut::strided(&mut d, l).is_ok());
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(matches!(
            HiddenLayout::strided(HiddenOrder::BatchSeq, 3, 1, 1, usize::MAX, 1),
            Err(CoreError::SizeOverflow { .. })
        ));
        assert!(matches!(
            HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, usize::MAX, 2),
            Err(CoreError::SizeOverflow { .. })
        ));
    }
}
