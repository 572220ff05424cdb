//! [`HiddenOrder`] and [`HiddenLayout`]: the shape and strides of hidden states, without a buffer.

use crate::{CoreError, Result};

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
/// Output views additionally need rows that do not overlap (checked by [`HiddenViewMut`](crate::HiddenViewMut)).
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
    pub(super) order: HiddenOrder,
    pub(super) batch: usize,
    pub(super) seq: usize,
    pub(super) channels: usize,
    pub(super) batch_stride: usize,
    pub(super) seq_stride: usize,
}

impl HiddenLayout {
    /// The dense layout of the shape `order.shape(batch, seq, channels)`.
    ///
    /// # Errors
    /// [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow) when the element count overflows `usize`.
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
    /// [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow) when the last element's offset overflows `usize`.
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

pub(super) fn check_buffer(what: &'static str, got: usize, layout: &HiddenLayout) -> Result<()> {
    let needed = layout.min_buffer_len();
    if got < needed {
        return Err(CoreError::BufferTooSmall { what, got, needed });
    }
    Ok(())
}
