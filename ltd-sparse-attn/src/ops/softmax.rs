//! Block-sparse softmax with scale, relative-position bias and masks (upstream-semantics.md §2.7).

use super::{check_len, split_lengths};
use crate::error::{Result, SparseAttnError};
use crate::layout::Layout;
use ltd_core::{Accumulator, ConstOne, ConstZero, CpuElement, Float};
use rayon::prelude::*;

/// How a mask is applied (upstream `key_padding_mask_mode` / `attn_mask_mode`).
///
/// ```
/// use ltd_sparse_attn::MaskMode;
/// assert_eq!(MaskMode::Mul.bias(0.0f32), f32::NEG_INFINITY);
/// assert_eq!(MaskMode::Mul.bias(1.0f32), 0.0);
/// assert_eq!(MaskMode::Add.bias(-2.5f32), -2.5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MaskMode {
    /// The mask value is added to the score.
    #[default]
    Add,
    /// A zero masks the key out (adds −inf); any other value adds 0.
    Mul,
}

impl MaskMode {
    /// The amount a mask value `v` adds to a score, in `v`'s type (`f32` or `f64`).
    ///
    /// ```
    /// use ltd_sparse_attn::MaskMode;
    /// assert_eq!(MaskMode::Add.bias(3.0f32), 3.0);
    /// assert_eq!(MaskMode::Mul.bias(0.0f64), f64::NEG_INFINITY);
    /// ```
    pub fn bias<A: Accumulator>(self, v: A) -> A {
        match self {
            MaskMode::Add => v,
            MaskMode::Mul => {
                if v == A::ZERO {
                    A::neg_infinity()
                } else {
                    A::ZERO
                }
            }
        }
    }

    /// Parses upstream's `"add"` / `"mul"`.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::MaskMode::parse("mul").is_ok());
    /// assert!(ltd_sparse_attn::MaskMode::parse("xor").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "add" => Ok(MaskMode::Add),
            "mul" => Ok(MaskMode::Mul),
            other => Err(SparseAttnError::InvalidArgument {
                what: "mask mode".into(),
                value: format!("{other:?}"),
                expected: "\"add\" or \"mul\"".into(),
            }),
        }
    }
}

/// Options of the block-sparse softmax. With `S = nb * b` and `Z` = batch:
/// `rpe` is `[Z, H, S, S]`, `key_padding_mask` is `[Z, S]`, `attn_mask` is `[S, S]` (shared
/// over batch and heads), all of the scores' element type (as upstream requires).
///
/// ```
/// use ltd_sparse_attn::{MaskMode, SoftmaxOptions};
/// let o: SoftmaxOptions<'_, f32> = SoftmaxOptions { scale: 0.5, ..SoftmaxOptions::new() };
/// assert_eq!(o.attn_mask_mode, MaskMode::Add);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxOptions<'a, T> {
    /// Multiplies the scores first (default 1).
    pub scale: f32,
    /// Relative-position bias `[Z, H, S, S]`, added after scaling (no gradient, as upstream).
    pub rpe: Option<&'a [T]>,
    /// Key-padding mask `[Z, S]`.
    pub key_padding_mask: Option<&'a [T]>,
    /// How the key-padding mask is applied (default add).
    pub key_padding_mask_mode: MaskMode,
    /// Attention mask `[S, S]`.
    pub attn_mask: Option<&'a [T]>,
    /// How the attention mask is applied (default add).
    pub attn_mask_mode: MaskMode,
}

impl<T> SoftmaxOptions<'_, T> {
    /// Scale 1, no bias, no masks, `add` modes (upstream's defaults).
    ///
    /// ```
    /// let o = ltd_sparse_attn::SoftmaxOptions::<f32>::new();
    /// assert_eq!(o.scale, 1.0);
    /// ```
    pub fn new() -> Self {
        SoftmaxOptions {
            scale: 1.0,
            rpe: None,
            key_padding_mask: None,
            key_padding_mask_mode: MaskMode::Add,
            attn_mask: None,
            attn_mask_mode: MaskMode::Add,
        }
    }
}

impl<T> Default for SoftmaxOptions<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}

fn check_sparse(what: &str, len: usize, layout: &Layout, batch: usize) -> Result<()> {
    let b = layout.block();
    check_len(what, len, &[batch, layout.nnz(), b, b], "[Z,nnz,b,b]")
}

/// Lengths of the per-(z, head, block-row) pieces of a sparse tensor, in memory order.
fn row_piece_lengths(layout: &Layout, batch: usize) -> impl Iterator<Item = usize> + '_ {
    let bb = layout.block() * layout.block();
    let rows = layout.num_heads() * layout.num_blocks();
    (0..batch * rows).map(move |i| {
        let hr = i % rows;
        let n = (layout.row_offsets()[hr + 1] - layout.row_offsets()[hr]) as usize;
        n * bb
    })
}

/// Block-sparse softmax, in place on `x` (`[Z, nnz, b, b]`, as upstream, which marks `x`
/// dirty). For query `i` the softmax runs over the keys of the active tiles of its block-row, on
/// `s = x * scale + rpe[z,h,i,j] + kpm[z,j] + am[i,j]` (masks per their mode), in `f32` for
/// `f32`, `f16` and `bf16` and in `f64` for `f64` (the `f32` scale widened).
///
/// Unlike upstream, a row whose active keys are all masked (or a block-row with no tiles)
/// gives zeros, not NaN; bf16 works too. A row with a NaN or `+inf` score is NaN throughout, as
/// `torch.softmax` gives.
///
/// ```
/// use ltd_sparse_attn::{Layout, SoftmaxOptions, softmax_forward_in_place};
/// let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
/// let mut x = vec![0.0f32; 256];
/// softmax_forward_in_place(&layout, &mut x, 1, &SoftmaxOptions::new()).unwrap();
/// assert!(x.iter().all(|&p| (p - 1.0 / 16.0).abs() < 1e-7));
/// ```
pub fn softmax_forward_in_place<T: CpuElement>(
    layout: &Layout,
    x: &mut [T],
    batch: usize,
    options: &SoftmaxOptions<'_, T>,
) -> Result<()> {
    check_sparse("x", x.len(), layout, batch)?;
    let s = layout.padded_len();
    let h = layout.num_heads();
    if let Some(rpe) = options.rpe {
        check_len("rpe", rpe.len(), &[batch, h, s, s], "[Z,H,S,S]")?;
    }
    if let Some(kpm) = options.key_padding_mask {
        check_len("key_padding_mask", kpm.len(), &[batch, s], "[Z,S]")?;
    }
    if let Some(am) = options.attn_mask {
        check_len("attn_mask", am.len(), &[s, s], "[S,S]")?;
    }
    if !options.scale.is_finite() {
        return Err(SparseAttnError::InvalidArgument {
            what: "scale".into(),
            value: options.scale.to_string(),
            expected: "a finite number".into(),
        });
    }
    let b = layout.block();
    let bb = b * b;
    let nb = layout.num_blocks();
    let scale = T::Acc::from_f32(options.scale);
    let pieces = split_lengths(x, row_piece_lengths(layout, batch));
    pieces.into_par_iter().enumerate().for_each(|(idx, piece)| {
        let (z, hr) = (idx / (h * nb), idx % (h * nb));
        let (head, i) = (hr / nb, hr % nb);
        let start = layout.row_offsets()[hr] as usize;
        let cols = &layout.row_columns()[start..start + piece.len() / bb];
        let mut row = vec![T::Acc::ZERO; cols.len() * b];
        for r in 0..b {
            let q = i * b + r;
            for (n, &jb) in cols.iter().enumerate() {
                for c in 0..b {
                    let k = jb as usize * b + c;
                    let mut v = piece[n * bb + r * b + c].to_acc() * scale;
                    if let Some(rpe) = options.rpe {
                        v += rpe[((z * h + head) * s + q) * s + k].to_acc();
                    }
                    if let Some(kpm) = options.key_padding_mask {
                        v += options.key_padding_mask_mode.bias(kpm[z * s + k].to_acc());
                    }
                    if let Some(am) = options.attn_mask {
                        v += options.attn_mask_mode.bias(am[q * s + k].to_acc());
                    }
                    row[n * b + c] = v;
                }
            }
            let max = row
                .iter()
                .copied()
                .fold(T::Acc::neg_infinity(), T::Acc::max);
            // max skips NaN: a NaN or +inf score must make the row NaN, as torch.softmax.
            if row.iter().any(|v| v.is_nan() || *v == T::Acc::infinity()) {
                row.fill(T::Acc::nan());
            } else if max == T::Acc::neg_infinity() {
                row.fill(T::Acc::ZERO);
            } else {
                let mut sum = T::Acc::ZERO;
                for v in row.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                let inv = T::Acc::ONE / sum;
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
            for n in 0..cols.len() {
                for c in 0..b {
                    piece[n * bb + r * b + c] = T::from_acc(row[n * b + c]);
                }
            }
        }
    });
    Ok(())
}

/// [`softmax_forward_in_place`] writing to `out` and leaving `x` untouched.
///
/// ```
/// use ltd_sparse_attn::{Layout, SoftmaxOptions, softmax_forward};
/// use half::f16;
/// let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
/// let x = vec![f16::ZERO; 256];
/// let mut y = vec![f16::NAN; 256];
/// let kpm = vec![f16::NEG_INFINITY; 16]; // every key padded: rows of zeros, not NaN
/// let opts = SoftmaxOptions { key_padding_mask: Some(&kpm), ..SoftmaxOptions::new() };
/// softmax_forward(&layout, &x, 1, &opts, &mut y).unwrap();
/// assert!(y.iter().all(|v| v.to_f32() == 0.0));
/// ```
pub fn softmax_forward<T: CpuElement>(
    layout: &Layout,
    x: &[T],
    batch: usize,
    options: &SoftmaxOptions<'_, T>,
    out: &mut [T],
) -> Result<()> {
    check_sparse("x", x.len(), layout, batch)?;
    check_sparse("out", out.len(), layout, batch)?;
    out.copy_from_slice(x);
    softmax_forward_in_place(layout, out, batch, options)
}

/// Gradient of the softmax: `dx = y ⊙ (dy − Σ_j y_j dy_j) · scale`, the sum over the active keys
/// of each row, in the accumulator type (as the forward). No gradient flows to `rpe` or the masks
/// (as upstream). A non-finite `scale` is an error, as in the forward.
///
/// ```
/// use ltd_sparse_attn::{Layout, softmax_backward};
/// let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
/// let y = vec![1.0f32 / 16.0; 256];
/// let dy = vec![1.0f32; 256];
/// let mut dx = vec![f32::NAN; 256];
/// softmax_backward(&layout, &y, &dy, 1, 0.5, &mut dx).unwrap();
/// assert!(dx.iter().all(|&g| g.abs() < 1e-7)); // a constant upstream gradient cancels
/// ```
pub fn softmax_backward<T: CpuElement>(
    layout: &Layout,
    y: &[T],
    dy: &[T],
    batch: usize,
    scale: f32,
    dx: &mut [T],
) -> Result<()> {
    check_sparse("y", y.len(), layout, batch)?;
    check_sparse("dy", dy.len(), layout, batch)?;
    check_sparse("dx", dx.len(), layout, batch)?;
    if !scale.is_finite() {
        return Err(SparseAttnError::InvalidArgument {
            what: "scale".into(),
            value: scale.to_string(),
            expected: "a finite number (as softmax_forward requires)".into(),
        });
    }
    let scale = T::Acc::from_f32(scale);
    let b = layout.block();
    let bb = b * b;
    let lengths: Vec<usize> = row_piece_lengths(layout, batch).collect();
    let pieces = split_lengths(dx, lengths.iter().copied());
    let mut offsets = Vec::with_capacity(lengths.len());
    let mut acc = 0;
    for &l in &lengths {
        offsets.push(acc);
        acc += l;
    }
    pieces
        .into_par_iter()
        .zip(offsets)
        .for_each(|(piece, off)| {
            let ntiles = piece.len() / bb;
            let (yp, dyp) = (&y[off..off + piece.len()], &dy[off..off + piece.len()]);
            for r in 0..b {
                let mut dot = T::Acc::ZERO;
                for n in 0..ntiles {
                    for c in 0..b {
                        let k = n * bb + r * b + c;
                        dot += yp[k].to_acc() * dyp[k].to_acc();
                    }
                }
                for n in 0..ntiles {
                    for c in 0..b {
                        let k = n * bb + r * b + c;
                        let g = yp[k].to_acc() * (dyp[k].to_acc() - dot) * scale;
                        piece[k] = T::from_acc(g);
                    }
                }
            }
        });
    Ok(())
}
