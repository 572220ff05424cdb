//! Fused flash-style block-sparse self-attention ([`SparseSelfAttention`], [`attention_forward`],
//! [`attention_backward`]) on the CPU.
//!
//! Forward: for every (batch, head, query block-row) in parallel (rayon), an online softmax over
//! the row's active key blocks (CSR table); score tiles are never stored. It writes the output
//! and the per-row logsumexp `lse = m + ln(Σ exp(s - m))` of the scaled, biased, masked scores.
//! Backward recomputes the scores from `lse`: dQ (and dbias) in parallel over query block-rows
//! with the CSR table, dK and dV in parallel over key block-columns with the CSC table, so every
//! output element has one writer (no atomics, no races). All arithmetic is `f32`.
//!
//! Scores: `s[i,j] = scale * q_i·k_j + bias[i,j] + kpm[j]`, restricted to the layout's active
//! tiles, to `j <= i` when `causal`, and to `j < L`. A row with no admissible key (all masked)
//! gets a zero output, `lse = -inf`, and contributes zero to every gradient.
//!
//! Sequence lengths that are not a multiple of the block are handled inside: the layout has
//! `ceil(L / b)` blocks and the keys past `L` are masked out, so callers never pad.

use crate::cache::LayoutCache;
use crate::error::{Result, SparseAttnError};
use crate::layout::{Layout, SparsityConfig};
use crate::ops::{axpy, check_len, dot, widen};
use ltd_core::Element;
use rayon::prelude::*;
use std::sync::Arc;

/// Sizes of the `[B, H, L, D]` query, key, value and output tensors.
///
/// ```
/// let s = ltd_sparse_attn::AttentionShape { batch: 2, heads: 4, seq_len: 100, head_dim: 32 };
/// assert_eq!(s.qkv_len(), 2 * 4 * 100 * 32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionShape {
    /// Batch `B`.
    pub batch: usize,
    /// Heads `H` (must equal the layout's).
    pub heads: usize,
    /// Sequence length `L` (any value; padded to whole blocks internally).
    pub seq_len: usize,
    /// Head dimension `D` (at least 1).
    pub head_dim: usize,
}

impl AttentionShape {
    /// Elements of one `[B, H, L, D]` tensor.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 1, heads: 1, seq_len: 3, head_dim: 2 };
    /// assert_eq!(s.qkv_len(), 6);
    /// ```
    pub fn qkv_len(&self) -> usize {
        self.lse_len().saturating_mul(self.head_dim)
    }

    /// Elements of the `[B, H, L]` logsumexp.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 2, heads: 3, seq_len: 5, head_dim: 8 };
    /// assert_eq!(s.lse_len(), 30);
    /// ```
    pub fn lse_len(&self) -> usize {
        self.batch
            .saturating_mul(self.heads)
            .saturating_mul(self.seq_len)
    }

    /// Elements of a `[B, H, L, L]` bias.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 1, heads: 2, seq_len: 5, head_dim: 8 };
    /// assert_eq!(s.bias_len(), 50);
    /// ```
    pub fn bias_len(&self) -> usize {
        self.lse_len().saturating_mul(self.seq_len)
    }
}

/// A key-padding mask over `[B, L]`.
///
/// ```
/// use ltd_sparse_attn::KeyPaddingMask;
/// let keep = [true, true, false];
/// let m = KeyPaddingMask::Keep(&keep);
/// assert_eq!(m.len(), 3);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum KeyPaddingMask<'a> {
    /// Added to the scores (`0` keeps a key, `-inf` drops it; upstream's `add` mode, as BERT's
    /// extended mask).
    Additive(&'a [f32]),
    /// `true` keeps the key (a real token), `false` drops it (padding).
    Keep(&'a [bool]),
}

impl KeyPaddingMask<'_> {
    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::KeyPaddingMask::Additive(&[0.0; 4]).len(), 4);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            KeyPaddingMask::Additive(m) => m.len(),
            KeyPaddingMask::Keep(m) => m.len(),
        }
    }

    /// Whether the mask is empty.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::KeyPaddingMask::Keep(&[]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn additive(&self) -> Vec<f32> {
        match self {
            KeyPaddingMask::Additive(m) => m.to_vec(),
            KeyPaddingMask::Keep(m) => m
                .iter()
                .map(|&k| if k { 0.0 } else { f32::NEG_INFINITY })
                .collect(),
        }
    }
}

/// Options of one attention call.
///
/// ```
/// use ltd_sparse_attn::AttentionOptions;
/// let o = AttentionOptions::<f32> { causal: true, ..AttentionOptions::new() };
/// assert!(o.scale.is_none() && o.bias.is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttentionOptions<'a, T> {
    /// Score scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Token-level causality: query `i` sees keys `j <= i` only (on top of the layout).
    pub causal: bool,
    /// Key-padding mask `[B, L]`.
    pub key_padding_mask: Option<KeyPaddingMask<'a>>,
    /// Additive bias `[B, H, L, L]` (for example a relative-position bias), added after scaling;
    /// [`attention_backward`] can return its gradient.
    pub bias: Option<&'a [T]>,
}

impl<T> AttentionOptions<'_, T> {
    /// Default scale, not causal, no mask, no bias.
    ///
    /// ```
    /// assert!(!ltd_sparse_attn::AttentionOptions::<f32>::new().causal);
    /// ```
    pub fn new() -> Self {
        AttentionOptions {
            scale: None,
            causal: false,
            key_padding_mask: None,
            bias: None,
        }
    }
}

impl<T> Default for AttentionOptions<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The `[B, H, L, D]` inputs of attention. All three share one element type, so a dtype
/// mismatch between them (or with the bias and the outputs) cannot be expressed:
///
/// ```
/// let (q, k, v) = (vec![0.0f32; 4], vec![0.0f32; 4], vec![0.0f32; 4]);
/// let x = ltd_sparse_attn::AttentionInputs { q: &q, k: &k, v: &v };
/// assert_eq!(x.q.len(), 4);
/// ```
///
/// ```compile_fail
/// let (q, k) = (vec![0.0f32; 4], vec![half::f16::ZERO; 4]);
/// let x = ltd_sparse_attn::AttentionInputs { q: &q, k: &k, v: &q }; // f16 keys, f32 queries
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a, T> {
    /// Queries `[B, H, L, D]`.
    pub q: &'a [T],
    /// Keys `[B, H, L, D]`.
    pub k: &'a [T],
    /// Values `[B, H, L, D]`.
    pub v: &'a [T],
}

/// Gradient outputs of [`attention_backward`]; every element is written.
///
/// ```
/// let (mut a, mut b, mut c) = (vec![0.0f32; 1], vec![0.0f32; 1], vec![0.0f32; 1]);
/// let g = ltd_sparse_attn::AttentionGrads { dq: &mut a, dk: &mut b, dv: &mut c, dbias: None };
/// assert!(g.dbias.is_none());
/// ```
#[derive(Debug)]
pub struct AttentionGrads<'a, T> {
    /// dL/dq `[B, H, L, D]`.
    pub dq: &'a mut [T],
    /// dL/dk `[B, H, L, D]`.
    pub dk: &'a mut [T],
    /// dL/dv `[B, H, L, D]`.
    pub dv: &'a mut [T],
    /// dL/dbias `[B, H, L, L]` (zero outside the active, unmasked entries), if wanted.
    pub dbias: Option<&'a mut [T]>,
}

/// Everything the kernels read, validated and widened to f32.
struct Prepared {
    b: usize,
    h: usize,
    l: usize,
    d: usize,
    blk: usize,
    nb: usize,
    scale: f32,
    causal: bool,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    kpm: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

impl Prepared {
    fn new<T: Element>(
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
        let scale = options.scale.unwrap_or(1.0 / (d as f32).sqrt());
        if !scale.is_finite() {
            return Err(SparseAttnError::InvalidArgument {
                what: "scale".into(),
                value: scale.to_string(),
                expected: "a finite number".into(),
            });
        }
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
                .map(KeyPaddingMask::additive),
            bias: options.bias.map(widen),
        })
    }

    /// Rows of block `i` that exist (the last block may be partial).
    fn rows(&self, i: usize) -> std::ops::Range<usize> {
        i * self.blk..((i + 1) * self.blk).min(self.l)
    }

    /// The score of query `qi` and key `kj` of `(batch, head) = bh`, or `-inf` if masked.
    #[inline]
    fn score(&self, bh: usize, qi: usize, kj: usize) -> f32 {
        if self.causal && kj > qi {
            return f32::NEG_INFINITY;
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
/// row, whose output is zero).
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
/// ```
pub fn attention_forward<T: Element>(
    layout: &Layout,
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, T>,
    options: &AttentionOptions<'_, T>,
    out: &mut [T],
    lse: &mut [f32],
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
            let mut acc = vec![0.0f32; d];
            let mut scores = vec![0.0f32; p.blk];
            for (r, qi) in p.rows(i).enumerate() {
                acc.fill(0.0);
                let (mut m, mut sum) = (f32::NEG_INFINITY, 0.0f32);
                for &j in cols {
                    let j = j as usize;
                    if !p.causally_visible(i, j) {
                        continue;
                    }
                    let keys = p.rows(j);
                    let n = keys.len();
                    let mut block_max = f32::NEG_INFINITY;
                    for (c, kj) in keys.clone().enumerate() {
                        let s = p.score(bh, qi, kj);
                        scores[c] = s;
                        // NaN-propagating max: a NaN score must reach the output.
                        if s.is_nan() || s > block_max {
                            block_max = s;
                        }
                    }
                    if block_max == f32::NEG_INFINITY {
                        continue;
                    }
                    let m_new = if block_max.is_nan() || m.is_nan() {
                        f32::NAN
                    } else {
                        m.max(block_max)
                    };
                    let alpha = if m == f32::NEG_INFINITY {
                        0.0
                    } else {
                        (m - m_new).exp()
                    };
                    if alpha != 1.0 {
                        sum *= alpha;
                        acc.iter_mut().for_each(|a| *a *= alpha);
                    }
                    for (c, kj) in keys.enumerate().take(n) {
                        let e = (scores[c] - m_new).exp();
                        if e != 0.0 {
                            sum += e;
                            axpy(e, &p.v[(bh * p.l + kj) * d..][..d], &mut acc);
                        }
                    }
                    m = m_new;
                }
                let orow = &mut o[r * d..(r + 1) * d];
                if sum > 0.0 || sum.is_nan() {
                    let inv = 1.0 / sum;
                    for (x, a) in orow.iter_mut().zip(&acc) {
                        *x = T::from_f32_lossy(a * inv);
                    }
                    ls[r] = m + sum.ln();
                } else {
                    orow.fill(T::from_f32_lossy(0.0));
                    ls[r] = f32::NEG_INFINITY;
                }
            }
        });
    Ok(())
}

/// Fused block-sparse attention backward on a given layout. Needs the forward's `out` and `lse`
/// and the output gradient `dout`; writes dq, dk, dv and (if given) dbias. Fully masked rows
/// contribute nothing. Errors as [`attention_forward`], plus wrong lengths of `out`, `dout`,
/// `lse` or any gradient buffer.
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
pub fn attention_backward<T: Element>(
    layout: &Layout,
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, T>,
    options: &AttentionOptions<'_, T>,
    out: &[T],
    dout: &[T],
    lse: &[f32],
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
    let delta: Vec<f32> = out
        .chunks(d)
        .zip(dout.chunks(d))
        .map(|(o, g)| o.iter().zip(g).map(|(x, y)| x.to_f32() * y).sum())
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
            let mut acc = vec![0.0f32; d];
            let mut ds_row = vec![0.0f32; if dbias.is_some() { l } else { 0 }];
            for (r, qi) in p.rows(i).enumerate() {
                acc.fill(0.0);
                ds_row.fill(0.0);
                let row_lse = lse[bh * l + qi];
                if row_lse != f32::NEG_INFINITY {
                    let go = &dout[(bh * l + qi) * d..][..d];
                    let di = delta[bh * l + qi];
                    for &j in cols {
                        let j = j as usize;
                        if !p.causally_visible(i, j) {
                            continue;
                        }
                        for kj in p.rows(j) {
                            let s = p.score(bh, qi, kj);
                            if s == f32::NEG_INFINITY {
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
                    *x = T::from_f32_lossy(*a);
                }
                if let Some(db) = dbias.as_deref_mut() {
                    for (x, g) in db[r * l..(r + 1) * l].iter_mut().zip(&ds_row) {
                        *x = T::from_f32_lossy(*g);
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
            let mut gk = vec![0.0f32; n * d];
            let mut gv = vec![0.0f32; n * d];
            for &i in qblocks {
                let i = i as usize;
                if !p.causally_visible(i, j) {
                    continue;
                }
                for qi in p.rows(i) {
                    let row_lse = lse[bh * l + qi];
                    if row_lse == f32::NEG_INFINITY {
                        continue;
                    }
                    let go = &dout[(bh * l + qi) * d..][..d];
                    let qrow = &p.q[(bh * l + qi) * d..][..d];
                    let di = delta[bh * l + qi];
                    for (c, kj) in keys.clone().enumerate() {
                        let s = p.score(bh, qi, kj);
                        if s == f32::NEG_INFINITY {
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
                *x = T::from_f32_lossy(*g);
            }
            for (x, g) in dv.iter_mut().zip(&gv) {
                *x = T::from_f32_lossy(*g);
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
/// compute), token-level causal option, additive bias with gradient, zero output for fully
/// masked rows, no dropout.
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
    pub fn forward<T: Element>(
        &self,
        shape: AttentionShape,
        inputs: &AttentionInputs<'_, T>,
        options: &AttentionOptions<'_, T>,
        out: &mut [T],
        lse: &mut [f32],
    ) -> Result<()> {
        self.check_heads(shape)?;
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
    pub fn backward<T: Element>(
        &self,
        shape: AttentionShape,
        inputs: &AttentionInputs<'_, T>,
        options: &AttentionOptions<'_, T>,
        out: &[T],
        dout: &[T],
        lse: &[f32],
        grads: AttentionGrads<'_, T>,
    ) -> Result<()> {
        self.check_heads(shape)?;
        let layout = self.layout(shape.seq_len)?;
        attention_backward(&layout, shape, inputs, options, out, dout, lse, grads)
    }

    fn check_heads(&self, shape: AttentionShape) -> Result<()> {
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
