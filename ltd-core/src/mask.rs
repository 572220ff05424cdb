//! Attention masks at the kept positions.
//!
//! A mask is `[B, 1, S, S]` (a full mask: causal, padding, per-document, anything) or
//! `[B, 1, 1, S]` (a broadcast key-padding mask). Gathering it at one layer's kept positions gives
//! `[B, 1, r, r]` with `out[b, 0, i, j] = mask[b, 0, idx[b, i], idx[b, j]]`, or `[B, 1, 1, r]`
//! with `out[b, 0, 0, j] = mask[b, 0, 0, idx[b, j]]`. The gathers only move values, so any
//! convention works (boolean, 0/1, additive `0 / -inf`) and the element type is any
//! [`MaskElement`].
//!
//! Decoders gather at the kept positions too (upstream took the top-left `[:r, :r]` corner, which
//! is right only for a pure causal mask); a pure causal decoder mask needs no tensor at all:
//! [`DecoderMask::Causal`].

use rayon::prelude::*;

use crate::check::{IndexRule, check_indices, nonzero, reserved_in_range};
use crate::{CoreError, IndexView, LayerIndicesView, PARALLEL_MIN_ELEMENTS, Result};

mod sealed {
    pub trait Sealed {
        /// The element's bits, for content fingerprints (bitwise, so NaN equals itself).
        fn bits(self) -> u32;
    }
    impl Sealed for bool {
        fn bits(self) -> u32 {
            u32::from(self)
        }
    }
    impl Sealed for u8 {
        fn bits(self) -> u32 {
            u32::from(self)
        }
    }
    impl Sealed for f32 {
        fn bits(self) -> u32 {
            self.to_bits()
        }
    }
    impl Sealed for half::f16 {
        fn bits(self) -> u32 {
            u32::from(self.to_bits())
        }
    }
    impl Sealed for half::bf16 {
        fn bits(self) -> u32 {
            u32::from(self.to_bits())
        }
    }
}

/// A mask element type: `bool`, `u8`, `f32`, `half::f16` or `half::bf16`. Mask gathers do no
/// arithmetic, so boolean and additive masks are treated alike.
///
/// ```
/// fn takes_mask<M: ltd_core::MaskElement>(_: &[M]) {}
/// takes_mask(&[true, false]);
/// takes_mask(&[0.0f32, f32::NEG_INFINITY]);
/// ```
pub trait MaskElement:
    sealed::Sealed + Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static
{
}
impl MaskElement for bool {}
impl MaskElement for u8 {}
impl MaskElement for f32 {}
impl MaskElement for half::f16 {}
impl MaskElement for half::bf16 {}

/// A read-only mask `[B, 1, rows, cols]` with `rows` = `cols` (a full mask) or `rows` = 1
/// (broadcast key padding). Element `(b, i, j)` lives at `b * batch_stride + i * row_stride + j`:
/// column stride 1, batch and row strides arbitrary (0 broadcasts one mask to every batch entry).
///
/// ```
/// use ltd_core::MaskView;
/// // One causal 3x3 mask shared by B = 2 batch entries (batch stride 0).
/// let causal = [1u8, 0, 0, 1, 1, 0, 1, 1, 1];
/// let m = MaskView::strided(&causal, 2, 3, 3, 0, 3)?;
/// assert_eq!(m.get(1, 2, 0), Some(1));
/// assert_eq!(m.get(1, 0, 2), Some(0));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MaskView<'a, M> {
    data: &'a [M],
    batch: usize,
    rows: usize,
    cols: usize,
    batch_stride: usize,
    row_stride: usize,
}

impl<'a, M: MaskElement> MaskView<'a, M> {
    /// A contiguous `[batch, 1, rows, cols]` mask.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`], [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// let pad = [true, true, false];
    /// let m = ltd_core::MaskView::new(&pad, 1, 1, 3)?; // [B=1, 1, 1, S=3]
    /// assert_eq!(m.get(0, 0, 2), Some(false));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(data: &'a [M], batch: usize, rows: usize, cols: usize) -> Result<Self> {
        let row_stride = cols;
        let batch_stride = rows
            .checked_mul(cols)
            .ok_or(CoreError::SizeOverflow { what: "mask" })?;
        MaskView::strided(data, batch, rows, cols, batch_stride, row_stride)
    }

    /// A `[batch, 1, rows, cols]` mask with explicit batch and row strides (in elements).
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`] when `data` does not cover the shape and strides;
    /// [`CoreError::SizeOverflow`].
    ///
    /// ```
    /// // A [B=1, 1, 2, 2] mask stored with a row pitch of 3.
    /// let m = ltd_core::MaskView::strided(&[1.0f32, 2.0, 0.0, 3.0, 4.0], 1, 2, 2, 6, 3)?;
    /// assert_eq!(m.get(0, 1, 1), Some(4.0));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn strided(
        data: &'a [M],
        batch: usize,
        rows: usize,
        cols: usize,
        batch_stride: usize,
        row_stride: usize,
    ) -> Result<Self> {
        let needed = if batch == 0 || rows == 0 || cols == 0 {
            Some(0)
        } else {
            (batch - 1)
                .checked_mul(batch_stride)
                .and_then(|x| {
                    (rows - 1)
                        .checked_mul(row_stride)
                        .and_then(|y| x.checked_add(y))
                })
                .and_then(|x| x.checked_add(cols))
        };
        let needed = needed.ok_or(CoreError::SizeOverflow { what: "mask" })?;
        if data.len() < needed {
            return Err(CoreError::BufferTooSmall {
                what: "mask",
                got: data.len(),
                needed,
            });
        }
        Ok(MaskView {
            data,
            batch,
            rows,
            cols,
            batch_stride,
            row_stride,
        })
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::MaskView::new(&[0u8; 8], 2, 2, 2)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Query rows: `S` for a full mask, 1 for a key-padding mask.
    ///
    /// ```
    /// assert_eq!(ltd_core::MaskView::new(&[0u8; 4], 1, 1, 4)?.rows(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Key columns, `S`.
    ///
    /// ```
    /// assert_eq!(ltd_core::MaskView::new(&[0u8; 4], 1, 1, 4)?.cols(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The shape as `[B, 1, rows, cols]`.
    ///
    /// ```
    /// assert_eq!(ltd_core::MaskView::new(&[0u8; 4], 1, 1, 4)?.shape(), [1, 1, 1, 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn shape(&self) -> [usize; 4] {
        [self.batch, 1, self.rows, self.cols]
    }

    /// Element `(b, 0, i, j)`, or `None` out of range.
    ///
    /// ```
    /// let m = ltd_core::MaskView::new(&[1u8, 2, 3, 4], 1, 2, 2)?;
    /// assert_eq!(m.get(0, 1, 0), Some(3));
    /// assert_eq!(m.get(0, 2, 0), None);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn get(&self, b: usize, i: usize, j: usize) -> Option<M> {
        (b < self.batch && i < self.rows && j < self.cols)
            .then(|| self.data[b * self.batch_stride + i * self.row_stride + j])
    }

    /// A 64-bit fingerprint of the shape and every element's bits (not of the strides: two views
    /// of equal contents match). The router uses it to see that a step's mask changed.
    pub(crate) fn fingerprint(&self) -> u64 {
        // FNV-1a over 32-bit words: not cryptographic, only to tell masks apart.
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |word: u64| hash = (hash ^ word).wrapping_mul(PRIME);
        for size in [self.batch, self.rows, self.cols] {
            mix(size as u64);
        }
        for b in 0..self.batch {
            for i in 0..self.rows {
                for &m in self.row_unchecked(b, i) {
                    mix(u64::from(m.bits()));
                }
            }
        }
        hash
    }

    #[inline]
    fn row_unchecked(&self, b: usize, i: usize) -> &'a [M] {
        let start = b * self.batch_stride + i * self.row_stride;
        &self.data[start..start + self.cols]
    }
}

/// Owned gathered masks of all LTD layers, contiguous `[L, B, 1, rows, cols]` with `rows` = `r`
/// (full masks) or 1 (key padding) and `cols` = `r`.
///
/// ```
/// use ltd_core::{MaskView, TokenSampler, gather_masks};
/// let mask = [1u8; 16]; // [B=1, 1, S=4, S=4]
/// let idx = TokenSampler::new(3).sample(0, 2, 1, 4, 2)?;
/// let out = gather_masks(&MaskView::new(&mask, 1, 4, 4)?, &idx.view())?;
/// assert_eq!(out.shape(), [2, 1, 1, 2, 2]);
/// assert_eq!(out.layer(1)?.shape(), [1, 1, 2, 2]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MaskTensor<M> {
    data: Vec<M>,
    layers: usize,
    batch: usize,
    rows: usize,
    cols: usize,
}

impl<M: MaskElement> MaskTensor<M> {
    /// The shape `[L, B, 1, rows, cols]`.
    ///
    /// ```
    /// # use ltd_core::{MaskView, LayerIndicesView, gather_masks};
    /// let out = gather_masks(&MaskView::new(&[0u8; 3], 1, 1, 3)?, &LayerIndicesView::new(&[0, 2], 1, 1, 2)?)?;
    /// assert_eq!(out.shape(), [1, 1, 1, 1, 2]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn shape(&self) -> [usize; 5] {
        [self.layers, self.batch, 1, self.rows, self.cols]
    }

    /// Layer `l`'s `[B, 1, rows, cols]` mask.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`] when `l >= L`.
    ///
    /// ```
    /// # use ltd_core::{MaskView, LayerIndicesView, gather_masks};
    /// let out = gather_masks(&MaskView::new(&[5u8, 6, 7], 1, 1, 3)?, &LayerIndicesView::new(&[0, 2], 1, 1, 2)?)?;
    /// assert_eq!(out.layer(0)?.get(0, 0, 1), Some(7));
    /// assert!(out.layer(1).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer(&self, l: usize) -> Result<MaskView<'_, M>> {
        if l >= self.layers {
            return Err(CoreError::InvalidSize {
                what: "layer",
                got: l,
                expected: format!("below the number of gathered layers L = {}", self.layers),
            });
        }
        let per = self.batch * self.rows * self.cols;
        MaskView::new(
            &self.data[l * per..(l + 1) * per],
            self.batch,
            self.rows,
            self.cols,
        )
    }

    /// The elements, row-major `[L, B, 1, rows, cols]`.
    ///
    /// ```
    /// # use ltd_core::{MaskView, LayerIndicesView, gather_masks};
    /// let out = gather_masks(&MaskView::new(&[5u8, 6, 7], 1, 1, 3)?, &LayerIndicesView::new(&[0, 2], 1, 1, 2)?)?;
    /// assert_eq!(out.as_slice(), &[5, 7]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &[M] {
        &self.data
    }

    /// The elements as a vector.
    ///
    /// ```
    /// # use ltd_core::{MaskView, LayerIndicesView, gather_masks};
    /// let out = gather_masks(&MaskView::new(&[5u8, 6, 7], 1, 1, 3)?, &LayerIndicesView::new(&[1, 2], 1, 1, 2)?)?;
    /// assert_eq!(out.into_vec(), vec![6, 7]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn into_vec(self) -> Vec<M> {
        self.data
    }
}

/// The mask a decoder (GPT-style) model gives its layers.
///
/// ```
/// use ltd_core::{DecoderMask, MaskView};
/// let causal_only: DecoderMask<'_, bool> = DecoderMask::Causal;
/// let mask = [1u8, 0, 1, 1];
/// let general = DecoderMask::Tensor(MaskView::new(&mask, 1, 2, 2)?);
/// assert!(matches!(causal_only, DecoderMask::Causal));
/// assert!(matches!(general, DecoderMask::Tensor(_)));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum DecoderMask<'a, M> {
    /// A pure causal mask, identical for every row. Kept positions are sorted, so causality among
    /// them is again causal: nothing to gather, the layer keeps its causal flag.
    Causal,
    /// Any `[B, 1, S, S]` (or `[B, 1, 1, S]`) mask: causal plus padding, per-document resets, ...
    /// Gathered at the kept positions.
    Tensor(MaskView<'a, M>),
}

/// Decoder masks at the kept positions.
///
/// ```
/// use ltd_core::{DecoderMask, GatheredDecoderMask, TokenSampler};
/// let (_, masks) = TokenSampler::new(1).sample_decoder::<bool>(0, 2, 1, 8, 4, &DecoderMask::Causal)?;
/// assert!(matches!(masks, GatheredDecoderMask::Causal));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum GatheredDecoderMask<M> {
    /// Still causal (from [`DecoderMask::Causal`]): no tensor.
    Causal,
    /// `[L, B, 1, r, r]` (or `[L, B, 1, 1, r]`) gathered masks.
    Tensor(MaskTensor<M>),
}

/// Checks a mask against indices of batch `batch` and length `r`, returns the output rows per
/// batch entry (`r` or 1).
fn check_mask<M: MaskElement>(
    mask: &MaskView<'_, M>,
    batch: usize,
    reserved: usize,
) -> Result<usize> {
    let s = mask.cols;
    nonzero("B (batch)", batch)?;
    let expected = || format!("[B={batch}, 1, S, S] or [B={batch}, 1, 1, S] with S >= 1");
    if mask.batch != batch || s == 0 || (mask.rows != s && mask.rows != 1) {
        return Err(CoreError::ShapeMismatch {
            what: "mask",
            got: mask.shape().to_vec(),
            expected: expected(),
        });
    }
    reserved_in_range(reserved, s)?;
    Ok(if mask.rows == 1 && s != 1 {
        1
    } else {
        reserved
    })
}

/// Gathers the rows of one layer into `out` (`B * out_rows * r` elements).
fn gather_layer<M: MaskElement>(
    mask: &MaskView<'_, M>,
    idx: &IndexView<'_>,
    out_rows: usize,
    out: &mut [M],
) {
    let r = idx.reserved();
    let fill = |n: usize, dst: &mut [M]| {
        let (b, i) = (n / out_rows, n % out_rows);
        let row_idx = idx.row_unchecked(b);
        // A key-padding mask has one row for every query; a full mask is gathered by rows too.
        let src = if mask.rows == 1 {
            mask.row_unchecked(b, 0)
        } else {
            mask.row_unchecked(b, row_idx[i] as usize)
        };
        for (d, &j) in dst.iter_mut().zip(row_idx) {
            *d = src[j as usize];
        }
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(r)
            .with_min_len((4096 / r).max(1))
            .enumerate()
            .for_each(|(n, d)| fill(n, d));
    } else {
        out.chunks_mut(r).enumerate().for_each(|(n, d)| fill(n, d));
    }
}

/// Gathers one layer's mask at its kept positions into `out`: a `[B, 1, S, S]` mask gives
/// `[B, 1, r, r]` (`out[b, 0, i, j] = mask[b, 0, idx[b, i], idx[b, j]]`), a `[B, 1, 1, S]` mask
/// gives `[B, 1, 1, r]`. `out` is contiguous and must have exactly that many elements. Indices
/// must be in `[0, S)`; they may repeat.
///
/// # Errors
/// [`CoreError::InvalidSize`] for `B = 0`, `r = 0` or `r > S`; [`CoreError::ShapeMismatch`] for a
/// mask that is neither form, a batch that differs from the indices', or a wrong `out` length;
/// [`CoreError::InvalidIndex`] for an index outside `[0, S)`.
///
/// ```
/// use ltd_core::{IndexView, MaskView, gather_mask};
/// // Causal 3x3 (1 = may attend) plus padding of position 1: keep positions 0 and 2.
/// let mask = [1u8, 0, 0,
///             1, 0, 0,
///             1, 0, 1];
/// let mut out = [9u8; 4];
/// gather_mask(&MaskView::new(&mask, 1, 3, 3)?, &IndexView::new(&[0, 2], 1, 2)?, &mut out)?;
/// assert_eq!(out, [1, 0, 1, 1]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_mask<M: MaskElement>(
    mask: &MaskView<'_, M>,
    idx: &IndexView<'_>,
    out: &mut [M],
) -> Result<()> {
    let r = idx.reserved();
    let out_rows = check_mask(mask, idx.batch(), r)?;
    let needed = idx.batch() * out_rows * r;
    if out.len() != needed {
        return Err(CoreError::ShapeMismatch {
            what: "mask output",
            got: vec![out.len()],
            expected: format!(
                "{needed} elements ([B={}, 1, {out_rows}, r={r}])",
                idx.batch()
            ),
        });
    }
    check_indices("indices", idx, mask.cols, IndexRule::InRange)?;
    gather_layer(mask, idx, out_rows, out);
    Ok(())
}

/// Gathers the mask for all LTD layers in one call into `out`, contiguous `[L, B, 1, r, r]` (from
/// a `[B, 1, S, S]` mask) or `[L, B, 1, 1, r]` (from `[B, 1, 1, S]`):
/// `out[l, b, 0, i, j] = mask[b, 0, idx[l, b, i], idx[l, b, j]]`.
///
/// # Errors
/// As [`gather_mask`], plus [`CoreError::InvalidSize`] for `L = 0`.
///
/// ```
/// use ltd_core::{LayerIndicesView, MaskView, gather_masks_into};
/// let kpm = [0.0f32, 0.0, f32::NEG_INFINITY, 0.0]; // [B=1, 1, 1, S=4] additive key padding
/// let idx = [0, 2, 1, 3]; // L = 2, B = 1, r = 2
/// let mut out = [f32::NAN; 4];
/// gather_masks_into(&MaskView::new(&kpm, 1, 1, 4)?, &LayerIndicesView::new(&idx, 2, 1, 2)?, &mut out)?;
/// assert_eq!(out, [0.0, f32::NEG_INFINITY, 0.0, 0.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_masks_into<M: MaskElement>(
    mask: &MaskView<'_, M>,
    indices: &LayerIndicesView<'_>,
    out: &mut [M],
) -> Result<()> {
    nonzero("L (layers)", indices.layers())?;
    let r = indices.reserved();
    let out_rows = check_mask(mask, indices.batch(), r)?;
    let per_layer = indices.batch() * out_rows * r;
    let needed = indices.layers() * per_layer;
    if out.len() != needed {
        return Err(CoreError::ShapeMismatch {
            what: "mask output",
            got: vec![out.len()],
            expected: format!(
                "{needed} elements ([L={}, B={}, 1, {out_rows}, r={r}])",
                indices.layers(),
                indices.batch()
            ),
        });
    }
    for l in 0..indices.layers() {
        check_indices("indices", &indices.layer(l)?, mask.cols, IndexRule::InRange)?;
    }
    for (l, chunk) in out.chunks_mut(per_layer).enumerate() {
        gather_layer(mask, &indices.layer(l)?, out_rows, chunk);
    }
    Ok(())
}

/// [`gather_masks_into`] into a new [`MaskTensor`]. This is the encoder (BERT-style) mask gather
/// for both mask forms, and the decoder gather for a mask tensor.
///
/// # Errors
/// As [`gather_masks_into`].
///
/// ```
/// use ltd_core::{LayerIndicesView, MaskView, gather_masks};
/// let mask = [true, false, true, true]; // [B=1, 1, 2, 2]
/// let out = gather_masks(&MaskView::new(&mask, 1, 2, 2)?, &LayerIndicesView::new(&[1], 1, 1, 1)?)?;
/// assert_eq!(out.as_slice(), &[true]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_masks<M: MaskElement>(
    mask: &MaskView<'_, M>,
    indices: &LayerIndicesView<'_>,
) -> Result<MaskTensor<M>> {
    nonzero("L (layers)", indices.layers())?;
    let r = indices.reserved();
    let out_rows = check_mask(mask, indices.batch(), r)?;
    let len = indices
        .layers()
        .checked_mul(indices.batch() * out_rows)
        .and_then(|x| x.checked_mul(r))
        .ok_or(CoreError::SizeOverflow {
            what: "gathered masks",
        })?;
    let mut data = crate::try_vec("gathered masks", len, M::default())?;
    gather_masks_into(mask, indices, &mut data)?;
    Ok(MaskTensor {
        data,
        layers: indices.layers(),
        batch: indices.batch(),
        rows: out_rows,
        cols: r,
    })
}

/// Decoder masks for all LTD layers: [`DecoderMask::Causal`] stays causal with no work; a mask
/// tensor is gathered at the kept positions as in [`gather_masks`].
///
/// # Errors
/// As [`gather_masks`] for a tensor; none for `Causal`.
///
/// ```
/// use ltd_core::{DecoderMask, GatheredDecoderMask, LayerIndicesView, MaskView, gather_decoder_masks};
/// // Two documents in one row: positions {0, 1} and {2, 3}; attention stays within a document.
/// let doc = [1u8, 0, 0, 0,
///            1, 1, 0, 0,
///            0, 0, 1, 0,
///            0, 0, 1, 1];
/// let idx = LayerIndicesView::new(&[1, 2], 1, 1, 2)?;
/// let got = gather_decoder_masks(&DecoderMask::Tensor(MaskView::new(&doc, 1, 4, 4)?), &idx)?;
/// let GatheredDecoderMask::Tensor(t) = got else { unreachable!() };
/// // Position 2 must not see position 1 (another document): upstream's [:2, :2] slice would allow it.
/// assert_eq!(t.as_slice(), &[1, 0, 0, 1]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_decoder_masks<M: MaskElement>(
    mask: &DecoderMask<'_, M>,
    indices: &LayerIndicesView<'_>,
) -> Result<GatheredDecoderMask<M>> {
    match mask {
        DecoderMask::Causal => Ok(GatheredDecoderMask::Causal),
        DecoderMask::Tensor(m) => gather_masks(m, indices).map(GatheredDecoderMask::Tensor),
    }
}
