//! Random-LTD gather and scatter, forward and backward (upstream-semantics.md §1.4), for both hidden orders.
//!
//! One layer's indices are `idx: [B, r]` i32 (row `b` lists the kept positions of batch entry
//! `b`). Hidden states are `[B, S, C]` ([`HiddenOrder::BatchSeq`]) or `[S, B, C]`
//! ([`HiddenOrder::SeqBatch`]); the kept part has the same order with `S` replaced by `r`:
//! `[B, r, C]` or `[r, B, C]`. These ops only move values, so they are generic over any
//! `T: Copy`.

use crate::error::{Result, check_count, check_len, check_reserved, nonzero};
use crate::indices::{Rules, check_indices};

/// The order of the hidden-state dimensions.
///
/// ```
/// use ltd_reference::HiddenOrder;
/// assert_ne!(HiddenOrder::BatchSeq, HiddenOrder::SeqBatch);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HiddenOrder {
    /// `[B, S, C]` (DeepSpeed's `batch_seq_dim`, `batch_first = true`).
    BatchSeq,
    /// `[S, B, C]` (DeepSpeed's `seq_batch_dim`).
    SeqBatch,
}

/// Dimensions of a hidden-state tensor: batch `B`, sequence `S`, channels `C` and their order.
///
/// ```
/// use ltd_reference::{Hidden, HiddenOrder};
/// let dims = Hidden { batch: 2, seq: 3, channels: 4, order: HiddenOrder::SeqBatch };
/// // Element [b=1, s=2, c=3] of an [S, B, C] tensor sits at (2 * 2 + 1) * 4 + 3.
/// assert_eq!(dims.offset(1, 2, 3), 23);
/// assert_eq!(dims.numel(), 24);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hidden {
    /// Batch size `B`.
    pub batch: usize,
    /// Sequence length `S`.
    pub seq: usize,
    /// Channels (hidden size) `C`.
    pub channels: usize,
    /// Dimension order.
    pub order: HiddenOrder,
}

impl Hidden {
    /// Number of elements, `B * S * C` (saturating; the oracles check overflow separately).
    ///
    /// ```
    /// use ltd_reference::{Hidden, HiddenOrder};
    /// assert_eq!(Hidden { batch: 2, seq: 5, channels: 3, order: HiddenOrder::BatchSeq }.numel(), 30);
    /// ```
    pub fn numel(&self) -> usize {
        self.batch
            .saturating_mul(self.seq)
            .saturating_mul(self.channels)
    }

    /// Flat offset of element `[b, s, c]` (batch `b`, sequence position `s`, channel `c`),
    /// whatever the order.
    ///
    /// ```
    /// use ltd_reference::{Hidden, HiddenOrder};
    /// let dims = Hidden { batch: 2, seq: 3, channels: 4, order: HiddenOrder::BatchSeq };
    /// assert_eq!(dims.offset(1, 2, 3), (1 * 3 + 2) * 4 + 3);
    /// ```
    pub fn offset(&self, b: usize, s: usize, c: usize) -> usize {
        let row = match self.order {
            HiddenOrder::BatchSeq => b * self.seq + s,
            HiddenOrder::SeqBatch => s * self.batch + b,
        };
        row * self.channels + c
    }

    /// The dimensions of the kept part: the same with `seq` replaced by `r`.
    ///
    /// ```
    /// use ltd_reference::{Hidden, HiddenOrder};
    /// let dims = Hidden { batch: 2, seq: 8, channels: 4, order: HiddenOrder::SeqBatch };
    /// assert_eq!(dims.part(3).seq, 3);
    /// ```
    pub fn part(&self, r: usize) -> Hidden {
        Hidden { seq: r, ..*self }
    }

    /// Checks the sizes are nonzero and `h` has `B * S * C` elements.
    fn check(&self, what: &'static str, h_len: usize) -> Result<()> {
        nonzero("batch", self.batch)?;
        nonzero("seq", self.seq)?;
        nonzero("channels", self.channels)?;
        check_count(what, h_len, &[self.batch, self.seq, self.channels])
    }
}

/// Checks everything the four ops share: sizes, `1 <= r <= S`, the full tensor's length and the
/// index tensor (with `rules`).
fn check_common(
    dims: Hidden,
    full_what: &'static str,
    full_len: usize,
    idx: &[i32],
    r: usize,
    rules: Rules,
) -> Result<()> {
    dims.check(full_what, full_len)?;
    check_reserved(r, dims.seq)?;
    check_indices("idx", idx, None, dims.batch, r, dims.seq, rules)
}

/// Copies kept row `k` of batch entry `b` from `src` (laid out as `src_dims`, at position
/// `src_s`) to `dst` (laid out as `dst_dims`, at position `dst_s`).
fn copy_row<T: Copy>(
    src: &[T],
    src_dims: Hidden,
    src_s: usize,
    dst: &mut [T],
    dst_dims: Hidden,
    dst_s: usize,
    b: usize,
) {
    for c in 0..src_dims.channels {
        dst[dst_dims.offset(b, dst_s, c)] = src[src_dims.offset(b, src_s, c)];
    }
}

/// Forward gather: `part[b, k, :] = h[b, idx[b, k], :]`.
///
/// `h` has shape `dims` (`[B,S,C]` or `[S,B,C]`); `idx` is `[B, r]`; the result is `[B, r, C]`
/// for [`HiddenOrder::BatchSeq`] and `[r, B, C]` for [`HiddenOrder::SeqBatch`]. Indices may
/// repeat and need not be sorted; each must be in `[0, S)`. Errors on zero sizes, `r > S`,
/// length mismatches and out-of-range indices. (Upstream's gather also returns `h` itself as a
/// pass-through output; that is the caller's own tensor, so it is not returned here.)
///
/// ```
/// use ltd_reference::{gather, Hidden, HiddenOrder};
/// let dims = Hidden { batch: 1, seq: 3, channels: 2, order: HiddenOrder::BatchSeq };
/// let h = [0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0];
/// assert_eq!(gather(&h, dims, &[0, 2], 2)?, vec![0.0, 1.0, 20.0, 21.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn gather<T: Copy>(h: &[T], dims: Hidden, idx: &[i32], r: usize) -> Result<Vec<T>> {
    check_common(dims, "h", h.len(), idx, r, Rules::InRange)?;
    let part_dims = dims.part(r);
    let mut part = vec![h[0]; part_dims.numel()];
    for b in 0..dims.batch {
        for k in 0..r {
            let s = idx[b * r + k] as usize;
            copy_row(h, dims, s, &mut part, part_dims, k, b);
        }
    }
    Ok(part)
}

/// Forward scatter: `y = h_full` with `y[b, idx[b, k], :] = part[b, k, :]`.
///
/// `h_full` has shape `dims`; `part` has shape `dims.part(r)`; `idx` is `[B, r]`. Indices need not
/// be sorted but must be distinct within a row (a repeat would make the result depend on write
/// order) and in `[0, S)`.
///
/// ```
/// use ltd_reference::{scatter, Hidden, HiddenOrder};
/// let dims = Hidden { batch: 1, seq: 3, channels: 1, order: HiddenOrder::BatchSeq };
/// assert_eq!(scatter(&[1.0f32, 2.0, 3.0], dims, &[9.0], &[1], 1)?, vec![1.0, 9.0, 3.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn scatter<T: Copy>(
    h_full: &[T],
    dims: Hidden,
    part: &[T],
    idx: &[i32],
    r: usize,
) -> Result<Vec<T>> {
    check_common(dims, "h_full", h_full.len(), idx, r, Rules::Distinct)?;
    let part_dims = dims.part(r);
    check_len("part", part, &[dims.batch, r, dims.channels])?;
    let mut y = h_full.to_vec();
    for b in 0..dims.batch {
        for k in 0..r {
            let s = idx[b * r + k] as usize;
            copy_row(part, part_dims, k, &mut y, dims, s, b);
        }
    }
    Ok(y)
}

/// Backward of the gather (upstream-semantics.md §1.4): `g_h = g_pass` with the kept rows **overwritten** by
/// `g_part` (`g_h[b, idx[b, k], :] = g_part[b, k, :]`).
///
/// `g_pass` is the gradient reaching the pass-through output (shape `dims`), `g_part` the
/// gradient of the kept part (shape `dims.part(r)`). Indices must be distinct within a row and in
/// range. Note the overwrite discards whatever `g_pass` held at kept rows, exactly as upstream.
///
/// ```
/// use ltd_reference::{gather_backward, Hidden, HiddenOrder};
/// let dims = Hidden { batch: 1, seq: 3, channels: 1, order: HiddenOrder::BatchSeq };
/// let g_h = gather_backward(&[1.0f32, 2.0, 3.0], dims, &[7.0, 8.0], &[0, 2], 2)?;
/// assert_eq!(g_h, vec![7.0, 2.0, 8.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn gather_backward<T: Copy>(
    g_pass: &[T],
    dims: Hidden,
    g_part: &[T],
    idx: &[i32],
    r: usize,
) -> Result<Vec<T>> {
    check_common(dims, "g_pass", g_pass.len(), idx, r, Rules::Distinct)?;
    let part_dims = dims.part(r);
    check_len("g_part", g_part, &[dims.batch, r, dims.channels])?;
    let mut g_h = g_pass.to_vec();
    for b in 0..dims.batch {
        for k in 0..r {
            let s = idx[b * r + k] as usize;
            copy_row(g_part, part_dims, k, &mut g_h, dims, s, b);
        }
    }
    Ok(g_h)
}

/// Backward of the scatter (upstream-semantics.md §1.4): returns `(g_h_full, g_part)` where `g_h_full` is **all of
/// `g_y`** (kept rows are not zeroed) and `g_part = gather(g_y, idx)`.
///
/// `g_y` has shape `dims`; `g_part` has shape `dims.part(r)`. Indices must be distinct within a
/// row and in range (as for the forward scatter).
///
/// ```
/// use ltd_reference::{scatter_backward, Hidden, HiddenOrder};
/// let dims = Hidden { batch: 1, seq: 3, channels: 1, order: HiddenOrder::BatchSeq };
/// let (g_full, g_part) = scatter_backward(&[1.0f32, 2.0, 3.0], dims, &[1], 1)?;
/// assert_eq!(g_full, vec![1.0, 2.0, 3.0]);
/// assert_eq!(g_part, vec![2.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn scatter_backward<T: Copy>(
    g_y: &[T],
    dims: Hidden,
    idx: &[i32],
    r: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    check_common(dims, "g_y", g_y.len(), idx, r, Rules::Distinct)?;
    let part_dims = dims.part(r);
    let mut g_part = vec![g_y[0]; part_dims.numel()];
    for b in 0..dims.batch {
        for k in 0..r {
            let s = idx[b * r + k] as usize;
            copy_row(g_y, dims, s, &mut g_part, part_dims, k, b);
        }
    }
    Ok((g_y.to_vec(), g_part))
}
