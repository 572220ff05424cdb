//! Fused flash-style block-sparse self-attention ([`SparseSelfAttention`], [`attention_forward`],
//! [`attention_backward`]) on the CPU.
//!
//! Forward: for every (batch, head, query block-row) in parallel (rayon), an online softmax over
//! the row's active key blocks (CSR table); score tiles are never stored. It writes the output
//! and the per-row logsumexp `lse = m + ln(Σ exp(s - m))` of the scaled, biased, masked scores.
//! Backward recomputes the scores from `lse`: dQ (and dbias) in parallel over query block-rows
//! with the CSR table, dK and dV in parallel over key block-columns with the CSC table, so every
//! output element has one writer (no atomics, no races). All arithmetic is in the element type's
//! accumulator ([`CpuElement::Acc`]): `f32` for `f32`, `f16` and `bf16`, `f64` for `f64` (whose
//! logsumexp is then `f64` too).
//!
//! Scores: `s[i,j] = scale * q_i·k_j + bias[i,j] + kpm[j]`, restricted to the layout's active
//! tiles, to `j <= i` when `causal`, and to `j < L`. A row with no admissible key (all masked)
//! gets a zero output, `lse = -inf`, and contributes zero to every gradient. A row with a NaN or
//! `+inf` score (a NaN or Inf in `q`, `k`, the bias or the key-padding mask) gets a NaN output and
//! `lse = NaN`, and its NaN reaches the gradients, as PyTorch's softmax gives NaN for such a row:
//! a diverging run is never turned into zeros.
//!
//! Sequence lengths that are not a multiple of the block are handled inside: the layout has
//! `ceil(L / b)` blocks and the keys past `L` are masked out, so callers never pad.

use crate::cache::LayoutCache;
use crate::error::{Result, SparseAttnError};
use crate::layout::{Layout, SparsityConfig};
use crate::ops::{axpy, check_len, dot, widen};
use ltd_core::{Accumulator, ConstOne, ConstZero, CpuElement, Float};
use rayon::prelude::*;
use std::sync::Arc;

pub use crate::attention_args::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, KeyPaddingMask,
};

/// Everything the kernels read, validated and widened to the accumulator type `A`.
struct Prepared<A> {
    b: usize,
    h: usize,
    l: usize,
    d: usize,
    blk: usize,
    nb: usize,
    scale: A,
    causal: bool,
    q: Vec<A>,
    k: Vec<A>,
    v: Vec<A>,
    kpm: Option<Vec<A>>,
    bias: Option<Vec<A>>,
}

impl<A: Accumulator> Prepared<A> {
    fn new<T: CpuElement<Acc = A>>(
        layout: &Layout,
        shape: AttentionShape,
        inputs: &AttentionInputs<'_, T>,
        options: &AttentionOptions<'_, T>,
    ) -> Result<Self> {
        if shape.heads != layout.num_heads() {
            return Err(SparseAttnError::HeadMismatch {
                expected: layout.num_heads(),
                actual: shape.heads,
            });
        }
        let needed = shape.seq_len.div_ceil(layout.block());
        if needed != layout.num_blocks() {
            return Err(SparseAttnError::LayoutLengthMismatch {
                seq_len: shape.seq_len,
                block: layout.block(),
                needed,
                num_blocks: layout.num_blocks(),
            });
        }
        let scale = check_inputs(shape, inputs, options)?;
        let (b, h, l, d) = (shape.batch, shape.heads, shape.seq_len, shape.head_dim);
        Ok(Prepared {
            b,
            h,
            l,
            d,
            blk: layout.block(),
            nb: layout.num_blocks(),
            scale,
            causal: options.causal,
            q: widen(inputs.q),
            k: widen(inputs.k),
            v: widen(inputs.v),
            kpm: options
                .key_padding_mask
                .as_ref()
                .map(KeyPaddingMask::additive::<A>),
            bias: options.bias.map(widen),
        })
    }

    /// Rows of block `i` that exist (the last block may be partial).
    fn rows(&self, i: usize) -> std::ops::Range<usize> {
        i * self.blk..((i + 1) * self.blk).min(self.l)
    }

    /// The score of query `qi` and key `kj` of `(batch, head) = bh`, or `-inf` if masked.
    #[inline]
    fn score(&self, bh: usize, qi: usize, kj: usize) -> A {
        if self.causal && kj > qi {
            return A::neg_infinity();
        }
        let (l, d) = (self.l, self.d);
        let mut s = self.scale
            * dot(
                &self.q[(bh * l + qi) * d..][..d],
                &self.k[(bh * l + kj) * d..][..d],
            );
        if let Some(bias) = &self.bias {
            s += bias[(bh * l + qi) * l + kj];
        }
        if let Some(kpm) = &self.kpm {
            s += kpm[(bh / self.h) * l + kj];
        }
        s
    }

    /// Whether block `j` holds any key that query rows of block `i` may see causally.
    #[inline]
    fn causally_visible(&self, i: usize, j: usize) -> bool {
        !self.causal || j <= i
    }
}

/// Checks `head_dim`, the lengths of `q`, `k`, `v`, the mask and the bias against `shape`, and the
/// scale; returns the scale. Needs no layout, so callers that build one run it first (a huge
/// `seq_len` with short buffers is then a length error, not a huge allocation).
pub(crate) fn check_inputs<T: CpuElement>(
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, T>,
    options: &AttentionOptions<'_, T>,
) -> Result<T::Acc> {
    if shape.head_dim == 0 {
        return Err(SparseAttnError::InvalidArgument {
            what: "head_dim".into(),
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    let (b, h, l, d) = (shape.batch, shape.heads, shape.seq_len, shape.head_dim);
    for (what, x) in [("q", inputs.q), ("k", inputs.k), ("v", inputs.v)] {
        check_len(what, x.len(), &[b, h, l, d], "[B,H,L,D]")?;
    }
    if let Some(m) = &options.key_padding_mask {
        check_len("key_padding_mask", m.len(), &[b, l], "[B,L]")?;
    }
    if let Some(bias) = options.bias {
        check_len("bias", bias.len(), &[b, h, l, l], "[B,H,L,L]")?;
    }
    let scale = match options.scale {
        Some(s) => T::Acc::from_f32(s),
        None => T::Acc::ONE / T::Acc::from_usize(d).sqrt(),
    };
    if !scale.is_finite() {
        return Err(SparseAttnError::InvalidArgument {
            what: "scale".into(),
            value: scale.to_string(),
            expected: "a finite number".into(),
        });
    }
    Ok(scale)
}

/// Checks the lengths of `[B, H, L, D]` and `[B, H, L]` buffers named in `bhld` and `bhl`.
pub(crate) fn check_output_lens(
    shape: AttentionShape,
    bhld: &[(&str, usize)],
    bhl: &[(&str, usize)],
) -> Result<()> {
    let (b, h, l, d) = (shape.batch, shape.heads, shape.seq_len, shape.head_dim);
    for &(what, len) in bhld {
        check_len(what, len, &[b, h, l, d], "[B,H,L,D]")?;
    }
    for &(what, len) in bhl {
        check_len(what, len, &[b, h, l], "[B,H,L]")?;
    }
    Ok(())
}

/// Tasks over `(batch*head, block)` pieces: splits a `[B*H, L, width]` buffer into per-block
/// pieces of `rows * width` elements.
fn block_pieces<T>(buf: &mut [T], bh: usize, l: usize, blk: usize, width: usize) -> Vec<&mut [T]> {
    let nb = l.div_ceil(blk);
    let lengths = (0..bh * nb).map(move |t| {
        let i = t % nb;
        (((i + 1) * blk).min(l) - i * blk) * width
    });
    crate::ops::split_lengths(buf, lengths)
}

/// Fused block-sparse attention forward on a given layout: writes `out` (`[B, H, L, D]`) and
/// `lse` (`[B, H, L]`, natural-log logsumexp of each row's scores; `-inf` for a fully masked
/// row, whose output is zero; NaN, with a NaN output, for a row with a NaN or `+inf` score).
/// `lse` is of the accumulator type: `f32` for `f32`, `f16` and `bf16` inputs, `f64` for `f64`.
///
/// Errors: head count different from the layout's, a layout with a block count other than
/// `ceil(L / b)`, `D = 0`, a buffer or mask of the wrong length, a non-finite scale.
///
/// ```
/// use ltd_sparse_attn::{AttentionInputs, AttentionOptions, AttentionShape, DenseConfig, attention_forward};
/// let layout = DenseConfig::new(1).make_layout(20).unwrap(); // 2 blocks of 16, last partial
/// let shape = AttentionShape { batch: 1, heads: 1, seq_len: 20, head_dim: 4 };
/// let q = vec![0.0f32; shape.qkv_len()];
/// let v: Vec<f32> = (0..shape.qkv_len()).map(|i| (i % 4) as f32).collect();
/// let mut out = vec![f32::NAN; shape.qkv_len()];
/// let mut lse = vec![f32::NAN; shape.lse_len()];
/// let inputs = AttentionInputs { q: &q, k: &q, v: &v };
/// attention_forward(&layout, shape, &inputs, &AttentionOptions::new(), &mut out, &mut lse).unwrap();
/// assert!((out[5] - 1.0).abs() < 1e-6); // uniform average of the 20 values of column 1
/// assert!((lse[0] - (20.0f32).ln()).abs() < 1e-6);
///
/// // f64 inputs compute in f64 and give an f64 logsumexp.
/// let (q, v): (Vec<f64>, Vec<f64>) = (q.iter().map(|&x| x.into()).collect(), v.iter().map(|&x| x.into()).collect());
/// let (mut out, mut lse) = (vec![f64::NAN; shape.qkv_len()], vec![f64::NAN; shape.lse_len()]);
/// let inputs = AttentionInputs { q: &q, k: &q, v: &v };
/// attention_forward(&layout, shape, &inputs, &AttentionOptions::new(), &mut out, &mut lse).unwrap();
/// assert!((lse[0] - 20f64.ln()).abs() < 1e-15);
/// ```
pub fn attention_forward<T: CpuElement>(
    layout: &Layout,
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, T>,
    options: &AttentionOptions<'_, T>,
    out: &mut [T],
    lse: &mut [T::Acc],
) -> Result<()> {
    let p = Prepared::new(layout, shape, inputs, options)?;
    check_len("out", out.len(), &[p.b, p.h, p.l, p.d], "[B,H,L,D]")?;
    check_len("lse", lse.len(), &[p.b, p.h, p.l], "[B,H,L]")?;
    if p.b * p.h * p.l == 0 {
        return Ok(());
    }
    let out_pieces = block_pieces(out, p.b * p.h, p.l, p.blk, p.d);
    let lse_pieces = block_pieces(lse, p.b * p.h, p.l, p.blk, 1);
    out_pieces
        .into_par_iter()
        .zip(lse_pieces)
        .enumerate()
        .for_each(|(task, (o, ls))| {
            let (bh, i) = (task / p.nb, task % p.nb);
            let head = bh % p.h;
            let (start, end) = layout.row_range(head, i);
            let cols = &layout.row_columns()[start..end];
            let d = p.d;
            let mut acc = vec![T::Acc::ZERO; d];
            let mut scores = vec![T::Acc::ZERO; p.blk];
            for (r, qi) in p.rows(i).enumerate() {
                acc.fill(T::Acc::ZERO);
                let (mut m, mut sum) = (T::Acc::neg_infinity(), T::Acc::ZERO);
                // A NaN or +inf score makes the whole softmax row NaN (f32::max skips NaN, so
                // it must be caught explicitly, not left to the running maximum).
                let mut poisoned = false;
                for &j in cols {
                    let j = j as usize;
                    if !p.causally_visible(i, j) {
                        continue;
                    }
                    let keys = p.rows(j);
                    let n = keys.len();
                    let mut block_max = T::Acc::neg_infinity();
                    for (c, kj) in keys.clone().enumerate() {
                        let s = p.score(bh, qi, kj);
                        scores[c] = s;
                        block_max = block_max.max(s);
                        poisoned |= s.is_nan() || s == T::Acc::infinity();
                    }
                    if poisoned {
                        break;
                    }
                    if block_max == T::Acc::neg_infinity() {
                        continue;
                    }
                    let m_new = m.max(block_max);
                    let alpha = if m == T::Acc::neg_infinity() {
                        T::Acc::ZERO
                    } else {
                        (m - m_new).exp()
                    };
                    if alpha != T::Acc::ONE {
                        sum *= alpha;
                        acc.iter_mut().for_each(|a| *a *= alpha);
                    }
                    for (c, kj) in keys.enumerate().take(n) {
                        let e = (scores[c] - m_new).exp();
                        if e != T::Acc::ZERO {
                            sum += e;
                            axpy(e, &p.v[(bh * p.l + kj) * d..][..d], &mut acc);
                        }
                    }
                    m = m_new;
                }
                let orow = &mut o[r * d..(r + 1) * d];
                if poisoned {
                    orow.fill(T::from_acc(T::Acc::nan()));
                    ls[r] = T::Acc::nan();
                } else if sum > T::Acc::ZERO {
                    let inv = T::Acc::ONE / sum;
                    for (x, &a) in orow.iter_mut().zip(&acc) {
                        *x = T::from_acc(a * inv);
                    }
                    ls[r] = m + sum.ln();
                } else {
                    orow.fill(T::from_acc(T::Acc::ZERO));
                    ls[r] = T::Acc::neg_infinity();
                }
            }
        });
    Ok(())
}

/// Fused block-sparse attention backward on a given layout. Needs the forward's `out` and `lse`
/// and the output gradient `dout`; writes dq, dk, dv and (if given) dbias, computing in the
/// accumulator type as the forward does. Fully masked rows contribute nothing. Errors as
/// [`attention_forward`], plus wrong lengths of `out`, `dout`, `lse` or any gradient buffer.
///
/// ```
/// use ltd_sparse_attn::*;
/// let layout = FixedConfig::new(1).make_layout(64).unwrap();
/// let shape = AttentionShape { batch: 1, heads: 1, seq_len: 64, head_dim: 8 };
/// let x: Vec<f32> = (0..shape.qkv_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
/// let inputs = AttentionInputs { q: &x, k: &x, v: &x };
/// let opts = AttentionOptions { causal: true, ..AttentionOptions::new() };
/// let (mut out, mut lse) = (vec![0.0f32; x.len()], vec![0.0f32; shape.lse_len()]);
/// attention_forward(&layout, shape, &inputs, &opts, &mut out, &mut lse).unwrap();
/// let dout = vec![1.0f32; x.len()];
/// let (mut dq, mut dk, mut dv) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
/// let grads = AttentionGrads { dq: &mut dq, dk: &mut dk, dv: &mut dv, dbias: None };
/// attention_backward(&layout, shape, &inputs, &opts, &out, &dout, &lse, grads).unwrap();
/// // Each output row is a convex combination of v rows, so dv sums to the number of rows per column.
/// let total: f32 = dv.iter().sum();
/// assert!((total - (64 * 8) as f32).abs() < 1e-2);
/// assert!(dq.iter().all(|g| g.is_finite()));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: CpuElement>(
    layout: &Layout,
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, T>,
    options: &AttentionOptions<'_, T>,
    out: &[T],
    dout: &[T],
    lse: &[T::Acc],
    grads: AttentionGrads<'_, T>,
) -> Result<()> {
    let p = Prepared::new(layout, shape, inputs, options)?;
    let (b, h, l, d) = (p.b, p.h, p.l, p.d);
    check_len("out", out.len(), &[b, h, l, d], "[B,H,L,D]")?;
    check_len("dout", dout.len(), &[b, h, l, d], "[B,H,L,D]")?;
    check_len("lse", lse.len(), &[b, h, l], "[B,H,L]")?;
    check_len("dq", grads.dq.len(), &[b, h, l, d], "[B,H,L,D]")?;
    check_len("dk", grads.dk.len(), &[b, h, l, d], "[B,H,L,D]")?;
    check_len("dv", grads.dv.len(), &[b, h, l, d], "[B,H,L,D]")?;
    if let Some(db) = &grads.dbias {
        check_len("dbias", db.len(), &[b, h, l, l], "[B,H,L,L]")?;
    }
    if b * h * l == 0 {
        return Ok(());
    }
    let dout = widen(dout);
    // delta_i = dO_i · O_i (rows with lse = -inf have O = 0).
    let delta: Vec<T::Acc> = out
        .chunks(d)
        .zip(dout.chunks(d))
        .map(|(o, g)| o.iter().zip(g).map(|(x, &y)| x.to_acc() * y).sum())
        .collect();
    let bhn = b * h;

    // Pass 1: dQ and dbias, one task per (batch, head, query block-row).
    let dq_pieces = block_pieces(grads.dq, bhn, l, p.blk, d);
    let dbias_pieces: Vec<Option<&mut [T]>> = match grads.dbias {
        Some(db) => block_pieces(db, bhn, l, p.blk, l)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..dq_pieces.len()).map(|_| None).collect(),
    };
    dq_pieces
        .into_par_iter()
        .zip(dbias_pieces)
        .enumerate()
        .for_each(|(task, (dq, mut dbias))| {
            let (bh, i) = (task / p.nb, task % p.nb);
            let head = bh % h;
            let (start, end) = layout.row_range(head, i);
            let cols = &layout.row_columns()[start..end];
            let mut acc = vec![T::Acc::ZERO; d];
            let mut ds_row = vec![T::Acc::ZERO; if dbias.is_some() { l } else { 0 }];
            for (r, qi) in p.rows(i).enumerate() {
                acc.fill(T::Acc::ZERO);
                ds_row.fill(T::Acc::ZERO);
                let row_lse = lse[bh * l + qi];
                if row_lse != T::Acc::neg_infinity() {
                    let go = &dout[(bh * l + qi) * d..][..d];
                    let di = delta[bh * l + qi];
                    for &j in cols {
                        let j = j as usize;
                        if !p.causally_visible(i, j) {
                            continue;
                        }
                        for kj in p.rows(j) {
                            let s = p.score(bh, qi, kj);
                            if s == T::Acc::neg_infinity() {
                                continue;
                            }
                            let prob = (s - row_lse).exp();
                            let dp = dot(go, &p.v[(bh * l + kj) * d..][..d]);
                            let ds = prob * (dp - di);
                            axpy(p.scale * ds, &p.k[(bh * l + kj) * d..][..d], &mut acc);
                            if !ds_row.is_empty() {
                                ds_row[kj] = ds;
                            }
                        }
                    }
                }
                for (x, a) in dq[r * d..(r + 1) * d].iter_mut().zip(&acc) {
                    *x = T::from_acc(*a);
                }
                if let Some(db) = dbias.as_deref_mut() {
                    for (x, g) in db[r * l..(r + 1) * l].iter_mut().zip(&ds_row) {
                        *x = T::from_acc(*g);
                    }
                }
            }
        });

    // Pass 2: dK and dV, one task per (batch, head, key block-column), via the CSC table.
    let dk_pieces = block_pieces(grads.dk, bhn, l, p.blk, d);
    let dv_pieces = block_pieces(grads.dv, bhn, l, p.blk, d);
    dk_pieces
        .into_par_iter()
        .zip(dv_pieces)
        .enumerate()
        .for_each(|(task, (dk, dv))| {
            let (bh, j) = (task / p.nb, task % p.nb);
            let head = bh % h;
            let (start, end) = layout.column_range(head, j);
            let qblocks = &layout.column_rows()[start..end];
            let keys = p.rows(j);
            let n = keys.len();
            let mut gk = vec![T::Acc::ZERO; n * d];
            let mut gv = vec![T::Acc::ZERO; n * d];
            for &i in qblocks {
                let i = i as usize;
                if !p.causally_visible(i, j) {
                    continue;
                }
                for qi in p.rows(i) {
                    let row_lse = lse[bh * l + qi];
                    if row_lse == T::Acc::neg_infinity() {
                        continue;
                    }
                    let go = &dout[(bh * l + qi) * d..][..d];
                    let qrow = &p.q[(bh * l + qi) * d..][..d];
                    let di = delta[bh * l + qi];
                    for (c, kj) in keys.clone().enumerate() {
                        let s = p.score(bh, qi, kj);
                        if s == T::Acc::neg_infinity() {
                            continue;
                        }
                        let prob = (s - row_lse).exp();
                        let dp = dot(go, &p.v[(bh * l + kj) * d..][..d]);
                        let ds = prob * (dp - di);
                        axpy(prob, go, &mut gv[c * d..(c + 1) * d]);
                        axpy(p.scale * ds, qrow, &mut gk[c * d..(c + 1) * d]);
                    }
                }
            }
            for (x, g) in dk.iter_mut().zip(&gk) {
                *x = T::from_acc(*g);
            }
            for (x, g) in dv.iter_mut().zip(&gv) {
                *x = T::from_acc(*g);
            }
        });
    Ok(())
}

/// Block-sparse self-attention with a per-instance layout cache (upstream
/// `SparseSelfAttention`, fused and on any length).
///
/// The layout for each sequence length is built for that length (not cropped) and cached in this
/// instance only. Inputs are `[B, H, L, D]` with `H` equal to the config's `num_heads` (checked;
/// upstream does not check). Unlike upstream: any `L` (padded internally), f32/f16/bf16 (f32
/// compute) and, on the CPU, f64 (f64 compute), token-level causal option, additive bias with
/// gradient, zero output for fully masked rows, no dropout.
///
/// ```
/// use ltd_sparse_attn::*;
/// let attn = SparseSelfAttention::new(BSLongformerConfig::new(2).into()).unwrap();
/// let shape = AttentionShape { batch: 1, heads: 2, seq_len: 100, head_dim: 16 };
/// let x: Vec<half::bf16> = (0..shape.qkv_len()).map(|i| half::bf16::from_f32((i % 5) as f32 * 0.1)).collect();
/// let mut out = vec![half::bf16::NAN; shape.qkv_len()];
/// let mut lse = vec![f32::NAN; shape.lse_len()];
/// attn.forward(shape, &AttentionInputs { q: &x, k: &x, v: &x }, &AttentionOptions::new(), &mut out, &mut lse).unwrap();
/// assert!(out.iter().all(|v| v.is_finite()));
/// assert_eq!(attn.layout(100).unwrap().num_blocks(), 7);
/// ```
#[derive(Debug)]
pub struct SparseSelfAttention {
    cache: LayoutCache,
    /// The layouts' GPU kernel tables, uploaded once per (device, length); see
    /// `SparseSelfAttention::cuda_layout` (feature `cuda`).
    #[cfg(feature = "cuda")]
    pub(crate) cuda_tables: crate::cuda::CudaLayoutCache,
}

impl SparseSelfAttention {
    /// An attention module for `config` (validated now).
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
    /// let mut c = FixedConfig::new(4);
    /// c.num_global_blocks = 3;
    /// assert!(SparseSelfAttention::new(c.into()).is_err()); // 4 % 3 != 0
    /// ```
    pub fn new(config: SparsityConfig) -> Result<Self> {
        Ok(SparseSelfAttention {
            cache: LayoutCache::new(config)?,
            #[cfg(feature = "cuda")]
            cuda_tables: crate::cuda::CudaLayoutCache::default(),
        })
    }

    /// The layout config.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparseSelfAttention};
    /// let a = SparseSelfAttention::new(DenseConfig::new(2).into()).unwrap();
    /// assert_eq!(a.config().num_heads(), 2);
    /// ```
    pub fn config(&self) -> &SparsityConfig {
        self.cache.config()
    }

    /// The (cached) layout for sequence length `seq_len`.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparseSelfAttention};
    /// let a = SparseSelfAttention::new(DenseConfig::new(2).into()).unwrap();
    /// assert_eq!(a.layout(64).unwrap().num_blocks(), 4);
    /// ```
    pub fn layout(&self, seq_len: usize) -> Result<Arc<Layout>> {
        self.cache.get(seq_len)
    }

    /// The layout cache of this instance.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparseSelfAttention};
    /// let a = SparseSelfAttention::new(DenseConfig::new(1).into()).unwrap();
    /// assert!(a.cache().is_empty());
    /// ```
    pub fn cache(&self) -> &LayoutCache {
        &self.cache
    }

    /// [`attention_forward`] with this instance's layout for `shape.seq_len`.
    ///
    /// ```
    /// use ltd_sparse_attn::*;
    /// let a = SparseSelfAttention::new(DenseConfig::new(2).into()).unwrap();
    /// let shape = AttentionShape { batch: 1, heads: 3, seq_len: 16, head_dim: 4 };
    /// let x = vec![0.0f32; shape.qkv_len()];
    /// let (mut o, mut l) = (x.clone(), vec![0.0; shape.lse_len()]);
    /// let err = a.forward(shape, &AttentionInputs { q: &x, k: &x, v: &x }, &AttentionOptions::new(), &mut o, &mut l);
    /// assert!(matches!(err, Err(SparseAttnError::HeadMismatch { expected: 2, actual: 3 })));
    /// ```
    pub fn forward<T: CpuElement>(
        &self,
        shape: AttentionShape,
        inputs: &AttentionInputs<'_, T>,
        options: &AttentionOptions<'_, T>,
        out: &mut [T],
        lse: &mut [T::Acc],
    ) -> Result<()> {
        self.check_heads(shape)?;
        // Every length before the layout: a huge seq_len with short buffers must not build one.
        check_inputs(shape, inputs, options)?;
        check_output_lens(shape, &[("out", out.len())], &[("lse", lse.len())])?;
        if shape.lse_len() == 0 {
            return Ok(());
        }
        let layout = self.layout(shape.seq_len)?;
        attention_forward(&layout, shape, inputs, options, out, lse)
    }

    /// [`attention_backward`] with this instance's layout for `shape.seq_len`.
    ///
    /// ```
    /// use ltd_sparse_attn::*;
    /// let a = SparseSelfAttention::new(DenseConfig::new(1).into()).unwrap();
    /// let shape = AttentionShape { batch: 1, heads: 1, seq_len: 16, head_dim: 4 };
    /// let x = vec![0.5f32; shape.qkv_len()];
    /// let inputs = AttentionInputs { q: &x, k: &x, v: &x };
    /// let (mut o, mut l) = (x.clone(), vec![0.0; shape.lse_len()]);
    /// a.forward(shape, &inputs, &AttentionOptions::new(), &mut o, &mut l).unwrap();
    /// let (mut dq, mut dk, mut dv) = (x.clone(), x.clone(), x.clone());
    /// let g = AttentionGrads { dq: &mut dq, dk: &mut dk, dv: &mut dv, dbias: None };
    /// a.backward(shape, &inputs, &AttentionOptions::new(), &o, &x, &l, g).unwrap();
    /// assert!(dq.iter().all(|v| v.abs() < 1e-6)); // all scores equal: no gradient to q
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: CpuElement>(
        &self,
        shape: AttentionShape,
        inputs: &AttentionInputs<'_, T>,
        options: &AttentionOptions<'_, T>,
        out: &[T],
        dout: &[T],
        lse: &[T::Acc],
        grads: AttentionGrads<'_, T>,
    ) -> Result<()> {
        self.check_heads(shape)?;
        check_inputs(shape, inputs, options)?;
        let bhld = [
            ("out", out.len()),
            ("dout", dout.len()),
            ("dq", grads.dq.len()),
            ("dk", grads.dk.len()),
            ("dv", grads.dv.len()),
        ];
        check_output_lens(shape, &bhld, &[("lse", lse.len())])?;
        if let Some(db) = &grads.dbias {
            let (b, h, l) = (shape.batch, shape.heads, shape.seq_len);
            check_len("dbias", db.len(), &[b, h, l, l], "[B,H,L,L]")?;
        }
        if shape.lse_len() == 0 {
            return Ok(());
        }
        let layout = self.layout(shape.seq_len)?;
        attention_backward(&layout, shape, inputs, options, out, dout, lse, grads)
    }

    pub(crate) fn check_heads(&self, shape: AttentionShape) -> Result<()> {
        let expected = self.config().num_heads();
        if shape.heads != expected {
            return Err(SparseAttnError::HeadMismatch {
                expected,
                actual: shape.heads,
            });
        }
        Ok(())
    }
}
