//! Gather, scatter and the fused out-of-place route, forward and backward (upstream-semantics.md §1.4), for both
//! hidden orders, any `C`, strided inputs and outputs.
//!
//! One layer's kept positions are an [`IndexView`] `[B, r]`. The kept part has the hidden states'
//! order with `S` replaced by `r`: `[B, r, C]` or `[r, B, C]`.
//!
//! | op | result |
//! |---|---|
//! | [`gather`] | `part[b, k] = h[b, idx[b, k]]` |
//! | [`scatter`] / [`route`] | `y = h`, then `y[b, idx[b, k]] = part[b, k]`, each row of `y` written once |
//! | [`scatter_in_place`] | `h[b, idx[b, k]] = part[b, k]` |
//! | [`gather_backward`] | `g_h = g_pass` with `g_h[b, idx[b, k]] = g_part[b, k]` |
//! | [`scatter_backward`] | `g_part = gather(g_y)` (the gradient of the full input is `g_y` itself) |
//! | [`route_backward_to_layer`] | `g_layer_out = gather(g_y)` |
//! | [`route_backward_to_hidden`] | `g_h = g_y` with `g_h[b, idx[b, k]] = g_layer_in[b, k]` |
//!
//! Gathers accept any in-range indices (repeats and any order are harmless); everything that
//! writes kept rows (scatters, routes, backward merges) needs every row of indices strictly
//! ascending, as the sampler produces them, so each output row is written exactly once.
//!
//! The ops only move rows, so they take every [`CpuElement`]: `f32`, `f16`, `bf16` and `f64`
//! (the CUDA ones take the three [`Element`](crate::Element) types).
//!
//! ```
//! use ltd_core::{HiddenOrder, HiddenView, IndexView, gather_tensor, route_tensor};
//! let h: Vec<f64> = (0..6).map(|x| x as f64 / 3.0).collect(); // [B=1, S=3, C=2]
//! let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 3, 2)?;
//! let idx = [1, 2];
//! let part = gather_tensor(&hidden, &IndexView::new(&idx, 1, 2)?)?;
//! assert_eq!(part.as_slice(), &h[2..]);
//! let y = route_tensor(&hidden, &part.view(), &IndexView::new(&idx, 1, 2)?)?;
//! assert_eq!(y.as_slice(), &h[..]);
//! # Ok::<(), ltd_core::CoreError>(())
//! ```
//!
//! Rows are copied with `copy_from_slice` (in fixed-size pieces); calls that move at least [`PARALLEL_MIN_ELEMENTS`]
//! elements run on the rayon pool, row by row.

use rayon::prelude::*;

use crate::check::{IndexRule, check_indices, nonzero, reserved_in_range};
use crate::{
    CoreError, CpuElement, HiddenLayout, HiddenTensor, HiddenView, HiddenViewMut, IndexView, Result,
};

/// Ops that move at least this many elements run in parallel on the rayon pool; smaller calls
/// stay on the calling thread.
///
/// ```
/// assert!(ltd_core::PARALLEL_MIN_ELEMENTS >= 1024);
/// ```
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Copies one row. `copy_from_slice` on fixed-size pieces: the compiler inlines each piece as a
/// few vector moves. (A plain `copy_from_slice` of a whole 2 KiB row calls `memcpy`, which on some
/// CPUs takes a slow path for mid-sized copies.)
#[inline(always)]
fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    const PIECE: usize = 64;
    let mut d = dst.chunks_exact_mut(PIECE);
    let mut s = src.chunks_exact(PIECE);
    for (a, b) in (&mut d).zip(&mut s) {
        a.copy_from_slice(b);
    }
    d.into_remainder().copy_from_slice(s.remainder());
}

/// Rows handed to one rayon task at least (keeps task overhead small for short rows).
fn min_rows_per_task(channels: usize) -> usize {
    (4096 / channels.max(1)).max(1)
}

/// Checks the full-length tensor `full` against `idx` and returns `(B, S, C)`.
fn check_full(
    what: &'static str,
    full: &HiddenLayout,
    idx: &IndexView<'_>,
) -> Result<(usize, usize, usize)> {
    let (b, s, c) = (full.batch(), full.seq(), full.channels());
    nonzero("B (batch)", b)?;
    nonzero("S (sequence length)", s)?;
    nonzero("C (channels)", c)?;
    if i32::try_from(s - 1).is_err() {
        return Err(CoreError::InvalidSize {
            what: "S (sequence length)",
            got: s,
            expected: format!("at most {} (positions are i32)", i64::from(i32::MAX) + 1),
        });
    }
    if idx.batch() != b {
        return Err(CoreError::ShapeMismatch {
            what: "indices",
            got: vec![idx.batch(), idx.reserved()],
            expected: format!("[B={b}, r] (B from the {what})"),
        });
    }
    reserved_in_range(idx.reserved(), s)?;
    Ok((b, s, c))
}

/// Checks a tensor that must have the full tensor's shape and order (`S` rows).
fn check_same_shape(what: &'static str, got: &HiddenLayout, full: &HiddenLayout) -> Result<()> {
    if got.order() != full.order()
        || got.batch() != full.batch()
        || got.seq() != full.seq()
        || got.channels() != full.channels()
    {
        return Err(CoreError::ShapeMismatch {
            what,
            got: got.shape().to_vec(),
            expected: full
                .order()
                .describe(full.batch(), "S", full.seq(), full.channels()),
        });
    }
    Ok(())
}

/// Checks a kept-part tensor: the full tensor's order, `B`, `C`, and `r` rows.
fn check_part(
    what: &'static str,
    part: &HiddenLayout,
    full: &HiddenLayout,
    r: usize,
) -> Result<()> {
    if part.order() != full.order()
        || part.batch() != full.batch()
        || part.seq() != r
        || part.channels() != full.channels()
    {
        return Err(CoreError::ShapeMismatch {
            what,
            got: part.shape().to_vec(),
            expected: full.order().describe(full.batch(), "r", r, full.channels()),
        });
    }
    Ok(())
}

/// `slot[b * S + s]` = the `k` with `idx[b, k] = s`, or `u32::MAX` for a dropped position.
/// The indices must already be checked strictly ascending and in range.
fn kept_slots(idx: &IndexView<'_>, seq: usize) -> Result<Vec<u32>> {
    // A broadcast (zero-stride) hidden view can describe B * S rows with a tiny buffer.
    let len = idx
        .batch()
        .checked_mul(seq)
        .ok_or(CoreError::SizeOverflow {
            what: "kept-position table",
        })?;
    let mut slots = crate::try_vec("kept-position table", len, u32::MAX)?;
    for b in 0..idx.batch() {
        for (k, &s) in idx.row_unchecked(b).iter().enumerate() {
            // k < r <= S <= 2^31, so it fits below u32::MAX.
            slots[b * seq + s as usize] = k as u32;
        }
    }
    Ok(slots)
}

/// Runs `f(n, row)` for every output row, in parallel when `elements` is large.
fn for_each_row<T: CpuElement>(
    rows: &mut [&mut [T]],
    elements: usize,
    channels: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if elements >= PARALLEL_MIN_ELEMENTS {
        rows.par_iter_mut()
            .enumerate()
            .with_min_len(min_rows_per_task(channels))
            .for_each(|(n, row)| f(n, row));
    } else {
        rows.iter_mut().enumerate().for_each(|(n, row)| f(n, row));
    }
}

fn gather_impl<T: CpuElement>(
    what: &'static str,
    hidden: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    out: &mut HiddenViewMut<'_, T>,
    rule: IndexRule,
) -> Result<()> {
    let (_, s, c) = check_full(what, hidden.layout(), idx)?;
    let r = idx.reserved();
    check_part("output", out.layout(), hidden.layout(), r)?;
    check_indices("indices", idx, s, rule)?;
    let elements = out.layout().batch() * r * c;
    let mut rows = out.rows_mut();
    let coords = rows.coords_fn();
    let (hidden, idx) = (*hidden, *idx);
    for_each_row(&mut rows.rows, elements, c, move |n, dst| {
        let (b, k) = coords(n);
        let pos = idx.row_unchecked(b)[k] as usize;
        copy_row(dst, hidden.row_unchecked(b, pos));
    });
    Ok(())
}

/// Writes every row of `out` (shape of `full`) once: from `part` at kept positions, from `full`
/// elsewhere.
fn route_impl<T: CpuElement>(
    full_what: &'static str,
    part_what: &'static str,
    full: &HiddenView<'_, T>,
    part: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    out: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    let (b, s, c) = check_full(full_what, full.layout(), idx)?;
    let r = idx.reserved();
    check_part(part_what, part.layout(), full.layout(), r)?;
    check_same_shape("output", out.layout(), full.layout())?;
    check_indices("indices", idx, s, IndexRule::StrictlyAscending)?;
    let slots = kept_slots(idx, s)?;
    let mut rows = out.rows_mut();
    let coords = rows.coords_fn();
    let (full, part, slots) = (*full, *part, &slots);
    for_each_row(&mut rows.rows, b * s * c, c, move |n, dst| {
        let (bb, ss) = coords(n);
        let slot = slots[bb * s + ss];
        let src = if slot == u32::MAX {
            full.row_unchecked(bb, ss)
        } else {
            part.row_unchecked(bb, slot as usize)
        };
        copy_row(dst, src);
    });
    Ok(())
}

/// Forward gather: `out[b, k, :] = hidden[b, idx[b, k], :]`.
///
/// `hidden` is `[B, S, C]` or `[S, B, C]`, `idx` is `[B, r]`, `out` is `[B, r, C]` or `[r, B, C]`
/// (the order of `hidden`). Indices may repeat and come in any order; each must be in `[0, S)`.
/// Every element of `out` is written.
///
/// # Errors
/// [`CoreError::InvalidSize`] for `B`, `S` or `C` = 0 and for `r = 0` or `r > S`;
/// [`CoreError::ShapeMismatch`] when `idx` or `out` do not fit `hidden`;
/// [`CoreError::InvalidIndex`] for an index outside `[0, S)`.
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, gather};
/// // B = 1, S = 3, C = 2; keep positions 0 and 2.
/// let h = [0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0];
/// let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 3, 2)?;
/// let idx = [0, 2];
/// let mut part = [f32::NAN; 4];
/// gather(&hidden, &IndexView::new(&idx, 1, 2)?, &mut HiddenViewMut::new(&mut part, HiddenOrder::BatchSeq, 1, 2, 2)?)?;
/// assert_eq!(part, [0.0, 1.0, 20.0, 21.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather<T: CpuElement>(
    hidden: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    out: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    gather_impl("hidden states", hidden, idx, out, IndexRule::InRange)
}

/// Forward gather into a new contiguous tensor (`[B, r, C]` or `[r, B, C]`); see [`gather`].
///
/// # Errors
/// As [`gather`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, IndexView, gather_tensor};
/// // S = 3, B = 1, C = 1 in [S, B, C] order.
/// let hidden = HiddenView::new(&[5.0f32, 6.0, 7.0], HiddenOrder::SeqBatch, 1, 3, 1)?;
/// let part = gather_tensor(&hidden, &IndexView::new(&[1, 2], 1, 2)?)?;
/// assert_eq!(part.as_slice(), &[6.0, 7.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_tensor<T: CpuElement>(
    hidden: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
) -> Result<HiddenTensor<T>> {
    let l = hidden.layout();
    check_full("hidden states", l, idx)?;
    let mut out = crate::alloc::hidden_zeros(
        "gathered tokens",
        l.order(),
        l.batch(),
        idx.reserved(),
        l.channels(),
    )?;
    gather(hidden, idx, &mut out.view_mut())?;
    Ok(out)
}

/// Forward scatter, out of place: `out = hidden` with `out[b, idx[b, k], :] = part[b, k, :]`.
///
/// Each row of `out` is written exactly once, from `part` at kept positions and from `hidden`
/// elsewhere (no full clone first). The same op as [`route`]. Each row of `idx` must be strictly
/// ascending and in `[0, S)`.
///
/// # Errors
/// As [`gather`], plus [`CoreError::InvalidIndex`] for unsorted or repeated indices and
/// [`CoreError::ShapeMismatch`] when `part` is not `[B, r, C]` / `[r, B, C]` or `out` is not the
/// shape of `hidden`.
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, scatter};
/// let hidden = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// let part = HiddenView::new(&[9.0f32], HiddenOrder::BatchSeq, 1, 1, 1)?;
/// let mut y = [f32::NAN; 3];
/// scatter(&hidden, &part, &IndexView::new(&[1], 1, 1)?, &mut HiddenViewMut::new(&mut y, HiddenOrder::BatchSeq, 1, 3, 1)?)?;
/// assert_eq!(y, [1.0, 9.0, 3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn scatter<T: CpuElement>(
    hidden: &HiddenView<'_, T>,
    part: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    out: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    route_impl("hidden states", "part", hidden, part, idx, out)
}

/// Forward scatter in place: `hidden[b, idx[b, k], :] = part[b, k, :]`; other rows untouched.
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, scatter_in_place};
/// let mut h = [1.0f32, 2.0, 3.0, 4.0];
/// let part = HiddenView::new(&[8.0f32, 9.0], HiddenOrder::BatchSeq, 1, 2, 1)?;
/// let mut hidden = HiddenViewMut::new(&mut h, HiddenOrder::BatchSeq, 1, 4, 1)?;
/// scatter_in_place(&mut hidden, &part, &IndexView::new(&[0, 3], 1, 2)?)?;
/// assert_eq!(h, [8.0, 2.0, 3.0, 9.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn scatter_in_place<T: CpuElement>(
    hidden: &mut HiddenViewMut<'_, T>,
    part: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
) -> Result<()> {
    let full = *hidden.layout();
    let (_, s, c) = check_full("hidden states", &full, idx)?;
    let r = idx.reserved();
    check_part("part", part.layout(), &full, r)?;
    check_indices("indices", idx, s, IndexRule::StrictlyAscending)?;
    let slots = kept_slots(idx, s)?;
    let rows = hidden.rows_mut();
    let coords = rows.coords_fn();
    // Only the kept rows are written: hand exactly those to the workers.
    let mut kept: Vec<(&mut [T], usize, usize)> = rows
        .rows
        .into_iter()
        .enumerate()
        .filter_map(|(n, row)| {
            let (b, ss) = coords(n);
            let slot = slots[b * s + ss];
            (slot != u32::MAX).then_some((row, b, slot as usize))
        })
        .collect();
    let part = *part;
    let copy =
        |(dst, b, k): &mut (&mut [T], usize, usize)| copy_row(dst, part.row_unchecked(*b, *k));
    if full.batch() * r * c >= PARALLEL_MIN_ELEMENTS {
        kept.par_iter_mut()
            .with_min_len(min_rows_per_task(c))
            .for_each(copy);
    } else {
        kept.iter_mut().for_each(copy);
    }
    Ok(())
}

/// The fused out-of-place route: `out = hidden` with the kept rows replaced by the layer's output,
/// `out[b, idx[b, k], :] = layer_out[b, k, :]`; every row of `out` written exactly once.
///
/// This is the forward of the Random-LTD layer wrapper (gather → layer → scatter) without
/// upstream's full-size clone. Each row of `idx` must be strictly ascending and in `[0, S)`.
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, route};
/// // [S=3, B=1, C=2]; the layer ran on positions 0 and 2.
/// let h = [1.0f32, 1.0, 2.0, 2.0, 3.0, 3.0];
/// let out = [10.0f32, 10.0, 30.0, 30.0];
/// let hidden = HiddenView::new(&h, HiddenOrder::SeqBatch, 1, 3, 2)?;
/// let layer_out = HiddenView::new(&out, HiddenOrder::SeqBatch, 1, 2, 2)?;
/// let mut y = [f32::NAN; 6];
/// route(&hidden, &layer_out, &IndexView::new(&[0, 2], 1, 2)?, &mut HiddenViewMut::new(&mut y, HiddenOrder::SeqBatch, 1, 3, 2)?)?;
/// assert_eq!(y, [10.0, 10.0, 2.0, 2.0, 30.0, 30.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route<T: CpuElement>(
    hidden: &HiddenView<'_, T>,
    layer_out: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    out: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    route_impl("hidden states", "layer output", hidden, layer_out, idx, out)
}

/// [`route`] into a new contiguous tensor in the order of `hidden`.
///
/// # Errors
/// As [`route`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, IndexView, route_tensor};
/// let hidden = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// let layer_out = HiddenView::new(&[20.0f32], HiddenOrder::BatchSeq, 1, 1, 1)?;
/// let y = route_tensor(&hidden, &layer_out, &IndexView::new(&[1], 1, 1)?)?;
/// assert_eq!(y.as_slice(), &[1.0, 20.0, 3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route_tensor<T: CpuElement>(
    hidden: &HiddenView<'_, T>,
    layer_out: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
) -> Result<HiddenTensor<T>> {
    let l = hidden.layout();
    check_full("hidden states", l, idx)?;
    let mut out = crate::alloc::hidden_zeros(
        "routed hidden states",
        l.order(),
        l.batch(),
        l.seq(),
        l.channels(),
    )?;
    route(hidden, layer_out, idx, &mut out.view_mut())?;
    Ok(out)
}

/// Backward of the gather (upstream-semantics.md §1.4): `grad_hidden = grad_pass` with the kept rows
/// **overwritten** by `grad_part` (`grad_hidden[b, idx[b, k]] = grad_part[b, k]`), out of place.
///
/// `grad_pass` is the gradient reaching upstream's pass-through output (shape of the hidden
/// states), `grad_part` the gradient of the kept part. As upstream, whatever `grad_pass` held at
/// kept rows is discarded. Each row of `idx` must be strictly ascending and in range.
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, gather_backward};
/// let g_pass = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// let g_part = HiddenView::new(&[7.0f32, 8.0], HiddenOrder::BatchSeq, 1, 2, 1)?;
/// let mut g_h = [f32::NAN; 3];
/// gather_backward(&g_pass, &g_part, &IndexView::new(&[0, 2], 1, 2)?, &mut HiddenViewMut::new(&mut g_h, HiddenOrder::BatchSeq, 1, 3, 1)?)?;
/// assert_eq!(g_h, [7.0, 2.0, 8.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_backward<T: CpuElement>(
    grad_pass: &HiddenView<'_, T>,
    grad_part: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    grad_hidden: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    route_impl(
        "gradient of the pass-through",
        "gradient of the part",
        grad_pass,
        grad_part,
        idx,
        grad_hidden,
    )
}

/// Backward of the scatter (upstream-semantics.md §1.4): `grad_part = gather(grad_out, idx)`. The gradient of the
/// scatter's full-size input is all of `grad_out` (kept rows are not zeroed), so there is nothing
/// to compute for it: use `grad_out` itself. Each row of `idx` must be strictly ascending and in
/// range (as for the forward scatter).
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, scatter_backward};
/// let g_y = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// let mut g_part = [f32::NAN; 1];
/// scatter_backward(&g_y, &IndexView::new(&[1], 1, 1)?, &mut HiddenViewMut::new(&mut g_part, HiddenOrder::BatchSeq, 1, 1, 1)?)?;
/// assert_eq!(g_part, [2.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn scatter_backward<T: CpuElement>(
    grad_out: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    grad_part: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    gather_impl(
        "gradient of the output",
        grad_out,
        idx,
        grad_part,
        IndexRule::StrictlyAscending,
    )
}

/// First half of the route's backward: the gradient reaching the layer's output,
/// `grad_layer_out = gather(grad_y, idx)` (`[B, r, C]` or `[r, B, C]`). Feed it to the layer's
/// backward, then call [`route_backward_to_hidden`] with the result.
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, route_backward_to_layer};
/// let g_y = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// let mut g_layer_out = [f32::NAN; 2];
/// let idx = IndexView::new(&[0, 2], 1, 2)?;
/// route_backward_to_layer(&g_y, &idx, &mut HiddenViewMut::new(&mut g_layer_out, HiddenOrder::BatchSeq, 1, 2, 1)?)?;
/// assert_eq!(g_layer_out, [1.0, 3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route_backward_to_layer<T: CpuElement>(
    grad_y: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    grad_layer_out: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    gather_impl(
        "gradient of the routed output",
        grad_y,
        idx,
        grad_layer_out,
        IndexRule::StrictlyAscending,
    )
}

/// Second half of the route's backward (upstream-semantics.md §1.4 "net effect"): `grad_hidden = grad_y` at
/// dropped rows (the identity path) and `grad_layer_in` (the layer's vector-Jacobian product for
/// `grad_layer_out`) at kept rows; every row written once.
///
/// # Errors
/// As [`scatter`].
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, route_backward_to_hidden};
/// let g_y = HiddenView::new(&[1.0f32, 2.0, 3.0], HiddenOrder::BatchSeq, 1, 3, 1)?;
/// // The layer doubled its input, so its VJP doubles the gradient of the kept rows 0 and 2.
/// let g_layer_in = HiddenView::new(&[2.0f32, 6.0], HiddenOrder::BatchSeq, 1, 2, 1)?;
/// let mut g_h = [f32::NAN; 3];
/// let idx = IndexView::new(&[0, 2], 1, 2)?;
/// route_backward_to_hidden(&g_y, &g_layer_in, &idx, &mut HiddenViewMut::new(&mut g_h, HiddenOrder::BatchSeq, 1, 3, 1)?)?;
/// assert_eq!(g_h, [2.0, 2.0, 6.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route_backward_to_hidden<T: CpuElement>(
    grad_y: &HiddenView<'_, T>,
    grad_layer_in: &HiddenView<'_, T>,
    idx: &IndexView<'_>,
    grad_hidden: &mut HiddenViewMut<'_, T>,
) -> Result<()> {
    route_impl(
        "gradient of the routed output",
        "gradient of the layer input",
        grad_y,
        grad_layer_in,
        idx,
        grad_hidden,
    )
}
