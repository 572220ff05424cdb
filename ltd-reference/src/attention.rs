//! Dense attention with scale, additive bias, key-padding and attention masks, token-level
//! causality and an optional block-layout restriction; forward (output and logsumexp) and
//! backward (dq, dk, dv, dbias). All in f64.
//!
//! For batch `b`, head `h`, query `i` and key `j` the score is, in this order (upstream-semantics.md §2.7):
//! `s = (q_i · k_j) * scale`, `+ bias[b,h,i,j]`, `+ kpm term(b, j)`, `+ attn-mask term(i, j)`;
//! keys excluded by `causal` (`j > i`) or by an inactive layout tile `(h, i / b, j / b)` get
//! `-inf`. Then `P = softmax_j(s)`, `out_i = Σ_j P_ij v_j`. A row whose scores are all `-inf`
//! gives zeros (output and gradients) and logsumexp `-inf`.

use crate::alloc::check_alloc;
use crate::element::{RefElement, from_f64_vec, to_f64_vec};
use crate::error::{RefError, Result, check_len, nonzero, product, same_dim};
use crate::layout::Layout;
use crate::modifiers::{Mask, MaskMode, Modifiers, softmax_row};

/// Dimensions of `q`, `k`, `v`: `[batch, heads, seq, head_dim]` (`[B, H, L, D]`).
///
/// ```
/// use ltd_reference::AttnDims;
/// let dims = AttnDims { batch: 1, heads: 2, seq: 3, head_dim: 4 };
/// assert_eq!(dims.numel(), 24);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnDims {
    /// Batch `B`.
    pub batch: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Sequence length `L` (queries and keys; self-attention).
    pub seq: usize,
    /// Head dimension `D`.
    pub head_dim: usize,
}

impl AttnDims {
    /// `B * H * L * D` (saturating).
    ///
    /// ```
    /// use ltd_reference::AttnDims;
    /// assert_eq!(AttnDims { batch: 2, heads: 1, seq: 5, head_dim: 3 }.numel(), 30);
    /// ```
    pub fn numel(&self) -> usize {
        self.batch
            .saturating_mul(self.heads)
            .saturating_mul(self.seq)
            .saturating_mul(self.head_dim)
    }

    fn at(&self, b: usize, h: usize, i: usize, d: usize) -> usize {
        ((b * self.heads + h) * self.seq + i) * self.head_dim + d
    }
}

/// What modifies the scores of [`attention_forward`] / [`attention_backward`].
///
/// Shapes: `bias` `[B, H, L, L]`, `key_padding` `[B, L]`, `attn_mask` `[L, L]`; `layout`
/// `[H, nb, nb]` with `nb = ceil(L / block)` (the last block may be partial).
///
/// ```
/// use ltd_reference::{AttentionOptions, Mask, MaskMode};
/// let kpm = [1.0f32, 0.0];
/// let opts = AttentionOptions {
///     causal: true,
///     key_padding: Some(Mask { values: &kpm, mode: MaskMode::Mul }),
///     ..AttentionOptions::new(0.125)
/// };
/// assert!(opts.bias.is_none() && opts.layout.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionOptions<'a, T> {
    /// Multiplies `q · k` (first). Must be finite.
    pub scale: f64,
    /// Additive bias (relative-position bias), `[B, H, L, L]`, added after scaling.
    pub bias: Option<&'a [T]>,
    /// Key-padding mask `[B, L]`, applied after the bias.
    pub key_padding: Option<Mask<'a, T>>,
    /// Attention mask `[L, L]` shared by batch and heads, applied last.
    pub attn_mask: Option<Mask<'a, T>>,
    /// Token-level causality: key `j > i` is excluded for query `i`.
    pub causal: bool,
    /// Only tiles active in this layout are computed; other keys are excluded.
    pub layout: Option<Layout<'a>>,
}

impl<T> AttentionOptions<'_, T> {
    /// Options with the given scale and nothing else.
    ///
    /// ```
    /// use ltd_reference::AttentionOptions;
    /// let opts = AttentionOptions::<f32>::new(0.5);
    /// assert_eq!(opts.scale, 0.5);
    /// assert!(!opts.causal);
    /// ```
    pub fn new(scale: f64) -> Self {
        AttentionOptions {
            scale,
            bias: None,
            key_padding: None,
            attn_mask: None,
            causal: false,
            layout: None,
        }
    }
}

/// Result of [`attention_forward`].
///
/// ```
/// use ltd_reference::{attention_forward, AttentionOptions, AttnDims};
/// let dims = AttnDims { batch: 1, heads: 1, seq: 1, head_dim: 1 };
/// let res = attention_forward(&[1.0f32], &[2.0], &[3.0], dims, &AttentionOptions::new(1.0))?;
/// assert_eq!(res.out, vec![3.0]);
/// assert_eq!(res.lse, vec![2.0]); // log(exp(1 * 2))
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionOutput<T> {
    /// `[B, H, L, D]`.
    pub out: Vec<T>,
    /// `[B, H, L]`: natural-log logsumexp of each row's final scores; `-inf` for an empty row.
    pub lse: Vec<f64>,
}

/// Result of [`attention_backward`].
///
/// ```
/// use ltd_reference::{attention_backward, AttentionOptions, AttnDims};
/// let dims = AttnDims { batch: 1, heads: 1, seq: 1, head_dim: 1 };
/// let g = attention_backward(&[1.0f32], &[2.0], &[3.0], &[1.0], dims, &AttentionOptions::new(1.0))?;
/// assert_eq!((g.dq, g.dk, g.dv, g.dbias), (vec![0.0], vec![0.0], vec![1.0], vec![0.0]));
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionGrads<T> {
    /// `[B, H, L, D]`.
    pub dq: Vec<T>,
    /// `[B, H, L, D]`.
    pub dk: Vec<T>,
    /// `[B, H, L, D]`.
    pub dv: Vec<T>,
    /// Gradient with respect to the additive bias, `[B, H, L, L]`:
    /// `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, zero at excluded keys. Returned even without a bias.
    pub dbias: Vec<T>,
}

/// The validated problem in f64.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem<'a> {
    pub q: &'a [f64],
    pub k: &'a [f64],
    pub v: &'a [f64],
    pub dims: AttnDims,
    pub mods: Modifiers<'a>,
    pub causal: bool,
    pub layout: Option<Layout<'a>>,
}

impl Problem<'_> {
    fn excluded(&self, h: usize, i: usize, j: usize) -> bool {
        if self.causal && j > i {
            return true;
        }
        match self.layout {
            Some(layout) => !layout.is_active(h, i / layout.block, j / layout.block),
            None => false,
        }
    }

    /// Probabilities `[L, L]` and logsumexp `[L]` of (b, h).
    fn probs(&self, b: usize, h: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let AttnDims {
            heads,
            seq,
            head_dim,
            ..
        } = self.dims;
        let mut p = Vec::with_capacity(seq);
        let mut lse = Vec::with_capacity(seq);
        for i in 0..seq {
            let mut s = vec![f64::NEG_INFINITY; seq];
            for (j, s_ij) in s.iter_mut().enumerate() {
                if self.excluded(h, i, j) {
                    continue;
                }
                let mut dot = 0.0;
                for d in 0..head_dim {
                    dot += self.q[self.dims.at(b, h, i, d)] * self.k[self.dims.at(b, h, j, d)];
                }
                *s_ij = self.mods.apply(dot, b, h, i, j, heads, seq);
            }
            let (row, row_lse) = softmax_row(&s);
            p.push(row);
            lse.push(row_lse);
        }
        (p, lse)
    }
}

/// Forward in f64: `(out [B,H,L,D], lse [B,H,L])`.
pub(crate) fn forward_f64(pb: &Problem<'_>) -> (Vec<f64>, Vec<f64>) {
    let dims = pb.dims;
    let mut out = vec![0.0; dims.numel()];
    let mut lse = Vec::with_capacity(dims.batch * dims.heads * dims.seq);
    for b in 0..dims.batch {
        for h in 0..dims.heads {
            let (p, row_lse) = pb.probs(b, h);
            lse.extend(row_lse);
            for i in 0..dims.seq {
                for j in 0..dims.seq {
                    // A key of zero probability contributes nothing, even with a NaN value.
                    if p[i][j] == 0.0 {
                        continue;
                    }
                    for d in 0..dims.head_dim {
                        out[dims.at(b, h, i, d)] += p[i][j] * pb.v[dims.at(b, h, j, d)];
                    }
                }
            }
        }
    }
    (out, lse)
}

/// Backward in f64: `(dq, dk, dv, dbias)`.
pub(crate) fn backward_f64(
    pb: &Problem<'_>,
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let dims = pb.dims;
    let (l, dd) = (dims.seq, dims.head_dim);
    let mut dq = vec![0.0; dims.numel()];
    let mut dk = vec![0.0; dims.numel()];
    let mut dv = vec![0.0; dims.numel()];
    let mut dbias = vec![0.0; dims.batch * dims.heads * l * l];
    for b in 0..dims.batch {
        for h in 0..dims.heads {
            let (p, _) = pb.probs(b, h);
            for i in 0..l {
                // dP_ij = dout_i · v_j
                let mut dp = vec![0.0; l];
                for (j, dp_ij) in dp.iter_mut().enumerate() {
                    for d in 0..dd {
                        *dp_ij += dout[dims.at(b, h, i, d)] * pb.v[dims.at(b, h, j, d)];
                    }
                }
                let row_dot: f64 = (0..l)
                    .filter(|&j| p[i][j] != 0.0)
                    .map(|j| p[i][j] * dp[j])
                    .sum();
                for j in 0..l {
                    if p[i][j] == 0.0 {
                        continue;
                    }
                    let ds = p[i][j] * (dp[j] - row_dot);
                    dbias[((b * dims.heads + h) * l + i) * l + j] = ds;
                    for d in 0..dd {
                        dv[dims.at(b, h, j, d)] += p[i][j] * dout[dims.at(b, h, i, d)];
                        dq[dims.at(b, h, i, d)] += pb.mods.scale * ds * pb.k[dims.at(b, h, j, d)];
                        dk[dims.at(b, h, j, d)] += pb.mods.scale * ds * pb.q[dims.at(b, h, i, d)];
                    }
                }
            }
        }
    }
    (dq, dk, dv, dbias)
}

/// Inputs converted to f64 after validation.
struct Converted {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    bias: Option<Vec<f64>>,
    key_padding: Option<(Vec<f64>, MaskMode)>,
    attn_mask: Option<(Vec<f64>, MaskMode)>,
}

impl Converted {
    fn problem<'a, T>(&'a self, dims: AttnDims, opts: &AttentionOptions<'a, T>) -> Problem<'a> {
        Problem {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            dims,
            mods: Modifiers {
                scale: opts.scale,
                bias: self.bias.as_deref(),
                key_padding: self.key_padding.as_ref().map(|(m, mode)| (&m[..], *mode)),
                attn_mask: self.attn_mask.as_ref().map(|(m, mode)| (&m[..], *mode)),
            },
            causal: opts.causal,
            layout: opts.layout,
        }
    }
}

fn validate_and_convert<T: RefElement>(
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
    opts: &AttentionOptions<'_, T>,
) -> Result<Converted> {
    let AttnDims {
        batch,
        heads,
        seq,
        head_dim,
    } = dims;
    nonzero("batch", batch)?;
    nonzero("heads", heads)?;
    nonzero("seq", seq)?;
    nonzero("head_dim", head_dim)?;
    let qkv = [batch, heads, seq, head_dim];
    check_len("q", q, &qkv)?;
    check_len("k", k, &qkv)?;
    check_len("v", v, &qkv)?;
    product("scores [B, H, L, L]", &[batch, heads, seq, seq])?;
    if !opts.scale.is_finite() {
        return Err(RefError::NonFiniteScale(opts.scale));
    }
    if let Some(bias) = opts.bias {
        check_len("bias", bias, &[batch, heads, seq, seq])?;
    }
    if let Some(m) = opts.key_padding {
        check_len("key_padding", m.values, &[batch, seq])?;
    }
    if let Some(m) = opts.attn_mask {
        check_len("attn_mask", m.values, &[seq, seq])?;
    }
    if let Some(layout) = opts.layout {
        layout.validate()?;
        same_dim("layout heads", layout.heads, heads)?;
        let nb = seq.div_ceil(layout.block);
        same_dim("layout block rows (ceil(L / block))", layout.block_rows, nb)?;
        same_dim("layout block cols (ceil(L / block))", layout.block_cols, nb)?;
    }
    let mask = |m: Option<Mask<'_, T>>| m.map(|m| (to_f64_vec(m.values), m.mode));
    Ok(Converted {
        q: to_f64_vec(q),
        k: to_f64_vec(k),
        v: to_f64_vec(v),
        bias: opts.bias.map(to_f64_vec),
        key_padding: mask(opts.key_padding),
        attn_mask: mask(opts.attn_mask),
    })
}

/// Dense (optionally layout-restricted) attention forward.
///
/// `q`, `k`, `v` are `[B, H, L, D]`; see [`AttentionOptions`] for the rest. Returns the output
/// `[B, H, L, D]` (rounded to `T`) and the per-row logsumexp `[B, H, L]` (f64). Errors on zero
/// sizes, length mismatches, a non-finite scale, and a layout that is malformed or does not fit
/// (`heads != H`, `block_rows != ceil(L / block)`).
///
/// ```
/// use ltd_reference::{attention_forward, AttentionOptions, AttnDims};
/// // L = 2, D = 1, q = k = 0: uniform attention over both keys (causal: query 0 sees key 0 only).
/// let dims = AttnDims { batch: 1, heads: 1, seq: 2, head_dim: 1 };
/// let (q, k, v) = ([0.0f32, 0.0], [0.0f32, 0.0], [2.0f32, 4.0]);
/// let full = attention_forward(&q, &k, &v, dims, &AttentionOptions::new(1.0))?;
/// assert_eq!(full.out, vec![3.0, 3.0]);
/// let causal = attention_forward(&q, &k, &v, dims, &AttentionOptions { causal: true, ..AttentionOptions::new(1.0) })?;
/// assert_eq!(causal.out, vec![2.0, 3.0]);
/// assert_eq!(causal.lse, vec![0.0, 2f64.ln()]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn attention_forward<T: RefElement>(
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
    opts: &AttentionOptions<'_, T>,
) -> Result<AttentionOutput<T>> {
    // Before converting anything: a length past memory must answer at once.
    let seq = dims.seq as u128;
    check_alloc("attention probabilities [L, L] (f64)", seq * seq, 8)?;
    let conv = validate_and_convert(q, k, v, dims, opts)?;
    let (out, lse) = forward_f64(&conv.problem(dims, opts));
    Ok(AttentionOutput {
        out: from_f64_vec(&out),
        lse,
    })
}

/// Dense (optionally layout-restricted) attention backward: given `dout [B, H, L, D]`, returns
/// `dq`, `dk`, `dv` (`[B, H, L, D]`) and `dbias` (`[B, H, L, L]`).
///
/// With `P` the probabilities and `dP_ij = dout_i · v_j`: `dv_j = Σ_i P_ij dout_i`,
/// `dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)`, `dq_i = scale Σ_j dS_ij k_j`,
/// `dk_j = scale Σ_i dS_ij q_i`, `dbias = dS`. Masks get no gradient. Fully masked rows give
/// zeros. Validation as [`attention_forward`], plus `dout`'s length.
///
/// ```
/// use ltd_reference::{attention_backward, AttentionOptions, AttnDims};
/// // q = k = 0 (uniform P = 1/2), v = [2, 4], dout = [1, 0]:
/// // dv = [1/2, 1/2], dP_0 = [2, 4], dS_0 = 1/2 * ([2, 4] - 3) = [-1/2, 1/2].
/// let dims = AttnDims { batch: 1, heads: 1, seq: 2, head_dim: 1 };
/// let g = attention_backward(&[0.0f32, 0.0], &[0.0, 0.0], &[2.0, 4.0], &[1.0, 0.0], dims,
///                            &AttentionOptions::new(1.0))?;
/// assert_eq!(g.dv, vec![0.5, 0.5]);
/// assert_eq!(g.dbias, vec![-0.5, 0.5, 0.0, 0.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn attention_backward<T: RefElement>(
    q: &[T],
    k: &[T],
    v: &[T],
    dout: &[T],
    dims: AttnDims,
    opts: &AttentionOptions<'_, T>,
) -> Result<AttentionGrads<T>> {
    let (b, h, l) = (dims.batch as u128, dims.heads as u128, dims.seq as u128);
    check_alloc("dbias [B, H, L, L] (f64)", (b * h).saturating_mul(l * l), 8)?;
    let conv = validate_and_convert(q, k, v, dims, opts)?;
    check_len(
        "dout",
        dout,
        &[dims.batch, dims.heads, dims.seq, dims.head_dim],
    )?;
    let (dq, dk, dv, dbias) = backward_f64(&conv.problem(dims, opts), &to_f64_vec(dout));
    Ok(AttentionGrads {
        dq: from_f64_vec(&dq),
        dk: from_f64_vec(&dk),
        dv: from_f64_vec(&dv),
        dbias: from_f64_vec(&dbias),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    fn loss(pb: &Problem<'_>, dout: &[f64]) -> f64 {
        let (out, _) = forward_f64(pb);
        out.iter().zip(dout).map(|(o, g)| o * g).sum()
    }

    /// Central difference of `loss` with respect to element `e` of the buffer that `with`
    /// substitutes into the problem.
    fn central(buf: &[f64], e: usize, eval: &dyn Fn(&[f64]) -> f64) -> f64 {
        let h = 1e-6;
        let mut plus = buf.to_vec();
        plus[e] += h;
        let mut minus = buf.to_vec();
        minus[e] -= h;
        (eval(&plus) - eval(&minus)) / (2.0 * h)
    }

    fn assert_near(analytic: f64, numeric: f64, what: &str, e: usize) {
        assert!(
            (analytic - numeric).abs() <= 1e-7 * (1.0 + numeric.abs()),
            "{what}[{e}]: analytic {analytic}, finite difference {numeric}"
        );
    }

    #[test]
    fn gradients_match_central_differences() {
        // B=1, H=2, L=5, D=3, with everything on: bias, key padding (add), attention mask (mul,
        // with a fully masked row), causal, and a layout with a partial last block (block 2).
        let dims = AttnDims {
            batch: 1,
            heads: 2,
            seq: 5,
            head_dim: 3,
        };
        let n = dims.numel();
        let (q, k, v, dout) = (values(n, 1), values(n, 2), values(n, 3), values(n, 4));
        let bias = values(2 * 5 * 5, 5);
        let kpm = values(5, 6);
        let mut am = vec![1.0; 25];
        am[2 * 5] = 0.0; // row 2 loses key 0
        am[3 * 5..4 * 5].fill(0.0); // row 3 fully masked
        #[rustfmt::skip]
        let layout_values = [1u8, 0, 0,  1, 1, 0,  0, 1, 1,
                             1, 1, 1,  1, 1, 1,  1, 0, 1];
        let layout = Layout::square(&layout_values, 2, 3, 2);
        let problem = |q: &'_ [f64], k: &'_ [f64], v: &'_ [f64], bias: &'_ [f64]| -> f64 {
            let pb = Problem {
                q,
                k,
                v,
                dims,
                mods: Modifiers {
                    scale: 0.8,
                    bias: Some(bias),
                    key_padding: Some((&kpm, MaskMode::Add)),
                    attn_mask: Some((&am, MaskMode::Mul)),
                },
                causal: true,
                layout: Some(layout),
            };
            loss(&pb, &dout)
        };
        let pb = Problem {
            q: &q,
            k: &k,
            v: &v,
            dims,
            mods: Modifiers {
                scale: 0.8,
                bias: Some(&bias),
                key_padding: Some((&kpm, MaskMode::Add)),
                attn_mask: Some((&am, MaskMode::Mul)),
            },
            causal: true,
            layout: Some(layout),
        };
        let (dq, dk, dv, dbias) = backward_f64(&pb, &dout);
        for e in 0..n {
            assert_near(
                dq[e],
                central(&q, e, &|x| problem(x, &k, &v, &bias)),
                "dq",
                e,
            );
            assert_near(
                dk[e],
                central(&k, e, &|x| problem(&q, x, &v, &bias)),
                "dk",
                e,
            );
            assert_near(
                dv[e],
                central(&v, e, &|x| problem(&q, &k, x, &bias)),
                "dv",
                e,
            );
        }
        for e in 0..bias.len() {
            assert_near(
                dbias[e],
                central(&bias, e, &|x| problem(&q, &k, &v, x)),
                "dbias",
                e,
            );
        }
        // The fully masked row 3 of head 0 and excluded keys have zero dbias.
        assert!(dbias[3 * 5..4 * 5].iter().all(|&x| x == 0.0));
        assert_eq!(dbias[4], 0.0); // head 0, row 0, key 4: causal
        // And some gradients are genuinely nonzero.
        assert!(dq.iter().any(|&x| x.abs() > 1e-3));
        assert!(dbias.iter().any(|&x| x.abs() > 1e-3));
    }

    #[test]
    fn probabilities_sum_to_one_and_lse_matches() {
        let dims = AttnDims {
            batch: 2,
            heads: 1,
            seq: 4,
            head_dim: 2,
        };
        let n = dims.numel();
        let (q, k) = (values(n, 7), values(n, 8));
        let pb = Problem {
            q: &q,
            k: &k,
            v: &q,
            dims,
            mods: Modifiers {
                scale: 1.3,
                bias: None,
                key_padding: None,
                attn_mask: None,
            },
            causal: false,
            layout: None,
        };
        for b in 0..2 {
            let (p, lse) = pb.probs(b, 0);
            for i in 0..4 {
                let sum: f64 = p[i].iter().sum();
                assert!((sum - 1.0).abs() < 1e-12);
                // lse = log Σ exp(s); check against the raw scores.
                let direct: f64 = (0..4)
                    .map(|j| {
                        let s: f64 = (0..2)
                            .map(|d| q[dims.at(b, 0, i, d)] * k[dims.at(b, 0, j, d)])
                            .sum();
                        (1.3 * s).exp()
                    })
                    .sum::<f64>()
                    .ln();
                assert!((lse[i] - direct).abs() < 1e-12);
            }
        }
    }
}
