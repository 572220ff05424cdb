//! The small transformer block of `ltd demo`, written with plain loops so that the same code runs
//! in `f32` (the path under test) and in `f64` (the oracle):
//!
//! ```text
//! a = x + Attn(x Wq, x Wk, x Wv) Wo          (heads split along channels, causal)
//! y = a + gelu(a W1 + b1) W2 + b2
//! ```
//!
//! Attention is pluggable ([`AttentionBackend`]): the fused block-sparse op of `ltd-sparse-attn`
//! for the path under test, the dense layout-restricted oracle of `ltd-reference` for the check.
//! Tokens are rows `n = b * r + k` of `[B * r, C]` matrices.

use std::ops::{Add, AddAssign, Mul, Neg, Sub};

use crate::error::Result;

/// The scalar types the block runs in.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// Converts from `f64` (rounding).
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        f64::from(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

/// `a [m, k] x b [k, n]`.
pub fn matmul<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::default(); m * n];
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let aip = a[i * k + p];
            for (cj, &bj) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cj += aip * bj;
            }
        }
    }
    c
}

/// `a [m, k] x b^T` with `b [n, k]` (transposes `b`, then [`matmul`], whose inner loop
/// vectorizes).
pub fn matmul_bt<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut bt = vec![T::default(); k * n];
    for j in 0..n {
        for p in 0..k {
            bt[p * n + j] = b[j * k + p];
        }
    }
    matmul(a, &bt, m, k, n)
}

/// `a^T x b` with `a [m, k]`, `b [m, n]`: `[k, n]`.
pub fn matmul_at<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::default(); k * n];
    for i in 0..m {
        for p in 0..k {
            let aip = a[i * k + p];
            for (cj, &bj) in c[p * n..(p + 1) * n].iter_mut().zip(&b[i * n..(i + 1) * n]) {
                *cj += aip * bj;
            }
        }
    }
    c
}

fn add<T: Real>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().zip(b).map(|(&x, &y)| x + y).collect()
}

fn add_bias<T: Real>(x: &mut [T], bias: &[T]) {
    for row in x.chunks_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

fn column_sums<T: Real>(x: &[T], n: usize) -> Vec<T> {
    let mut s = vec![T::default(); n];
    for row in x.chunks(n) {
        for (a, &v) in s.iter_mut().zip(row) {
            *a += v;
        }
    }
    s
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)
const GELU_A: f64 = 0.044_715;

/// GELU, tanh approximation.
pub fn gelu<T: Real>(x: T) -> T {
    let inner = T::of(GELU_C) * (x + T::of(GELU_A) * x * x * x);
    T::of(0.5) * x * (T::of(1.0) + inner.tanh())
}

/// d gelu / dx.
pub fn gelu_grad<T: Real>(x: T) -> T {
    let inner = T::of(GELU_C) * (x + T::of(GELU_A) * x * x * x);
    let t = inner.tanh();
    let dinner = T::of(GELU_C) * (T::of(1.0) + T::of(3.0 * GELU_A) * x * x);
    T::of(0.5) * (T::of(1.0) + t) + T::of(0.5) * x * (T::of(1.0) - t * t) * dinner
}

/// Sizes of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch `B`.
    pub batch: usize,
    /// Tokens per sequence the block sees (`r` when dropping).
    pub tokens: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Heads `H` (`C / H` per head).
    pub heads: usize,
    /// MLP width.
    pub ffn: usize,
}

impl Dims {
    /// Rows of the token matrices, `B * r`.
    pub fn rows(&self) -> usize {
        self.batch * self.tokens
    }
    /// Channels per head.
    pub fn head_dim(&self) -> usize {
        self.channels / self.heads
    }
}

/// The parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<T> {
    /// `[C, C]` each.
    pub wq: Vec<T>,
    /// Keys.
    pub wk: Vec<T>,
    /// Values.
    pub wv: Vec<T>,
    /// Output projection.
    pub wo: Vec<T>,
    /// `[C, F]`.
    pub w1: Vec<T>,
    /// `[F]`.
    pub b1: Vec<T>,
    /// `[F, C]`.
    pub w2: Vec<T>,
    /// `[C]`.
    pub b2: Vec<T>,
}

impl<T: Real> Weights<T> {
    /// Deterministic pseudo-random weights scaled by `1 / sqrt(fan_in)`.
    pub fn init(dims: Dims, seed: u64) -> Self {
        let (c, f) = (dims.channels, dims.ffn);
        let mut rng = SplitMix(seed);
        let mut mat = |n: usize, fan_in: usize| -> Vec<T> {
            let s = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| T::of(rng.uniform() * s)).collect()
        };
        Weights {
            wq: mat(c * c, c),
            wk: mat(c * c, c),
            wv: mat(c * c, c),
            wo: mat(c * c, c),
            w1: mat(c * f, c),
            b1: mat(f, 10),
            w2: mat(f * c, f),
            b2: mat(c, 10),
        }
    }

    /// The same weights in another scalar type.
    pub fn cast<U: Real>(&self) -> Weights<U> {
        let f = |v: &[T]| v.iter().map(|x| U::of(x.f64())).collect();
        Weights {
            wq: f(&self.wq),
            wk: f(&self.wk),
            wv: f(&self.wv),
            wo: f(&self.wo),
            w1: f(&self.w1),
            b1: f(&self.b1),
            w2: f(&self.w2),
            b2: f(&self.b2),
        }
    }

    /// `(name, values)` of every parameter, for reports.
    pub fn named(&self) -> [(&'static str, &[T]); 8] {
        [
            ("Wq", &self.wq),
            ("Wk", &self.wk),
            ("Wv", &self.wv),
            ("Wo", &self.wo),
            ("W1", &self.w1),
            ("b1", &self.b1),
            ("W2", &self.w2),
            ("b2", &self.b2),
        ]
    }
}

/// A tiny deterministic generator (SplitMix64) for demo data.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Attention over `[B, H, r, D]` queries, keys and values.
pub trait AttentionBackend<T> {
    /// The output `[B, H, r, D]`.
    fn forward(&mut self, q: &[T], k: &[T], v: &[T]) -> Result<Vec<T>>;
    /// `(dq, dk, dv)` for `dout`, after a `forward` with the same inputs.
    fn backward(
        &mut self,
        q: &[T],
        k: &[T],
        v: &[T],
        out: &[T],
        dout: &[T],
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)>;
}

/// `[B*r, C]` rows to `[B, H, r, D]`.
pub fn split_heads<T: Real>(x: &[T], d: Dims) -> Vec<T> {
    let (hd, c) = (d.head_dim(), d.channels);
    let mut out = vec![T::default(); x.len()];
    for b in 0..d.batch {
        for k in 0..d.tokens {
            for h in 0..d.heads {
                let src = (b * d.tokens + k) * c + h * hd;
                let dst = ((b * d.heads + h) * d.tokens + k) * hd;
                out[dst..dst + hd].copy_from_slice(&x[src..src + hd]);
            }
        }
    }
    out
}

/// `[B, H, r, D]` to `[B*r, C]` rows.
pub fn merge_heads<T: Real>(x: &[T], d: Dims) -> Vec<T> {
    let (hd, c) = (d.head_dim(), d.channels);
    let mut out = vec![T::default(); x.len()];
    for b in 0..d.batch {
        for k in 0..d.tokens {
            for h in 0..d.heads {
                let dst = (b * d.tokens + k) * c + h * hd;
                let src = ((b * d.heads + h) * d.tokens + k) * hd;
                out[dst..dst + hd].copy_from_slice(&x[src..src + hd]);
            }
        }
    }
    out
}

/// What the forward keeps for the backward.
#[derive(Debug, Clone)]
pub struct Activations<T> {
    x: Vec<T>,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    attn: Vec<T>,
    attn_rows: Vec<T>,
    a: Vec<T>,
    u: Vec<T>,
    g: Vec<T>,
}

/// Gradients of one backward.
#[derive(Debug, Clone)]
pub struct Grads<T> {
    /// dL/dx, `[B*r, C]`.
    pub dx: Vec<T>,
    /// dL/d(every parameter).
    pub weights: Weights<T>,
}

/// Time spent inside attention during a forward or backward.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnTime(pub std::time::Duration);

/// The forward: returns `y [B*r, C]`, the activations, and the time spent in attention.
pub fn forward<T: Real>(
    w: &Weights<T>,
    d: Dims,
    x: &[T],
    attn: &mut impl AttentionBackend<T>,
) -> Result<(Vec<T>, Activations<T>, AttnTime)> {
    let (n, c, f) = (d.rows(), d.channels, d.ffn);
    let q = split_heads(&matmul(x, &w.wq, n, c, c), d);
    let k = split_heads(&matmul(x, &w.wk, n, c, c), d);
    let v = split_heads(&matmul(x, &w.wv, n, c, c), d);
    let (o, t) = crate::timing::timed(|| attn.forward(&q, &k, &v));
    let o = o?;
    let attn_rows = merge_heads(&o, d);
    let a = add(x, &matmul(&attn_rows, &w.wo, n, c, c));
    let mut u = matmul(&a, &w.w1, n, c, f);
    add_bias(&mut u, &w.b1);
    let g: Vec<T> = u.iter().map(|&z| gelu(z)).collect();
    let mut m = matmul(&g, &w.w2, n, f, c);
    add_bias(&mut m, &w.b2);
    let y = add(&a, &m);
    let acts = Activations {
        x: x.to_vec(),
        q,
        k,
        v,
        attn: o,
        attn_rows,
        a,
        u,
        g,
    };
    Ok((y, acts, AttnTime(t)))
}

/// The backward for `dy [B*r, C]`.
pub fn backward<T: Real>(
    w: &Weights<T>,
    d: Dims,
    acts: &Activations<T>,
    dy: &[T],
    attn: &mut impl AttentionBackend<T>,
) -> Result<(Grads<T>, AttnTime)> {
    let (n, c, f) = (d.rows(), d.channels, d.ffn);
    // MLP.
    let dw2 = matmul_at(&acts.g, dy, n, f, c);
    let db2 = column_sums(dy, c);
    let dg = matmul_bt(dy, &w.w2, n, c, f);
    let du: Vec<T> = dg
        .iter()
        .zip(&acts.u)
        .map(|(&gr, &z)| gr * gelu_grad(z))
        .collect();
    let dw1 = matmul_at(&acts.a, &du, n, c, f);
    let db1 = column_sums(&du, f);
    let da = add(dy, &matmul_bt(&du, &w.w1, n, f, c));
    // Attention.
    let dwo = matmul_at(&acts.attn_rows, &da, n, c, c);
    let d_attn = split_heads(&matmul_bt(&da, &w.wo, n, c, c), d);
    let (grads, t) =
        crate::timing::timed(|| attn.backward(&acts.q, &acts.k, &acts.v, &acts.attn, &d_attn));
    let (dq, dk, dv) = grads?;
    let (dq, dk, dv) = (
        merge_heads(&dq, d),
        merge_heads(&dk, d),
        merge_heads(&dv, d),
    );
    let dwq = matmul_at(&acts.x, &dq, n, c, c);
    let dwk = matmul_at(&acts.x, &dk, n, c, c);
    let dwv = matmul_at(&acts.x, &dv, n, c, c);
    let mut dx = da;
    for (proj, wt) in [(&dq, &w.wq), (&dk, &w.wk), (&dv, &w.wv)] {
        for (a, b) in dx.iter_mut().zip(matmul_bt(proj, wt, n, c, c)) {
            *a += b;
        }
    }
    Ok((
        Grads {
            dx,
            weights: Weights {
                wq: dwq,
                wk: dwk,
                wv: dwv,
                wo: dwo,
                w1: dw1,
                b1: db1,
                w2: dw2,
                b2: db2,
            },
        },
        AttnTime(t),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain causal softmax attention in f64, for the finite-difference check.
    struct Dense {
        d: Dims,
    }

    impl Dense {
        fn probs(&self, q: &[f64], k: &[f64], bh: usize, i: usize) -> Vec<f64> {
            let (r, hd) = (self.d.tokens, self.d.head_dim());
            let scale = 1.0 / (hd as f64).sqrt();
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|e| q[(bh * r + i) * hd + e] * k[(bh * r + j) * hd + e])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            s.iter().map(|x| (x - m).exp() / z).collect()
        }
    }

    impl AttentionBackend<f64> for Dense {
        fn forward(&mut self, q: &[f64], k: &[f64], v: &[f64]) -> Result<Vec<f64>> {
            let (r, hd) = (self.d.tokens, self.d.head_dim());
            let mut out = vec![0.0; q.len()];
            for bh in 0..self.d.batch * self.d.heads {
                for i in 0..r {
                    let p = self.probs(q, k, bh, i);
                    for (j, pj) in p.iter().enumerate() {
                        for e in 0..hd {
                            out[(bh * r + i) * hd + e] += pj * v[(bh * r + j) * hd + e];
                        }
                    }
                }
            }
            Ok(out)
        }
        fn backward(
            &mut self,
            q: &[f64],
            k: &[f64],
            v: &[f64],
            _out: &[f64],
            dout: &[f64],
        ) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
            let (r, hd) = (self.d.tokens, self.d.head_dim());
            let scale = 1.0 / (hd as f64).sqrt();
            let (mut dq, mut dk, mut dv) =
                (vec![0.0; q.len()], vec![0.0; q.len()], vec![0.0; q.len()]);
            for bh in 0..self.d.batch * self.d.heads {
                for i in 0..r {
                    let p = self.probs(q, k, bh, i);
                    let dp: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..hd)
                                .map(|e| dout[(bh * r + i) * hd + e] * v[(bh * r + j) * hd + e])
                                .sum()
                        })
                        .collect();
                    let rowsum: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                    for j in 0..=i {
                        let ds = p[j] * (dp[j] - rowsum) * scale;
                        for e in 0..hd {
                            dv[(bh * r + j) * hd + e] += p[j] * dout[(bh * r + i) * hd + e];
                            dq[(bh * r + i) * hd + e] += ds * k[(bh * r + j) * hd + e];
                            dk[(bh * r + j) * hd + e] += ds * q[(bh * r + i) * hd + e];
                        }
                    }
                }
            }
            Ok((dq, dk, dv))
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let d = Dims {
            batch: 2,
            tokens: 3,
            channels: 4,
            heads: 2,
            ffn: 6,
        };
        let w = Weights::<f64>::init(d, 3);
        let mut rng = SplitMix(9);
        let x: Vec<f64> = (0..d.rows() * d.channels).map(|_| rng.uniform()).collect();
        let dy: Vec<f64> = (0..x.len()).map(|_| rng.uniform()).collect();
        let mut attn = Dense { d };
        let loss = |w: &Weights<f64>, x: &[f64], attn: &mut Dense| -> f64 {
            let (y, _, _) = forward(w, d, x, attn).unwrap();
            y.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let (_, acts, _) = forward(&w, d, &x, &mut attn).unwrap();
        let (g, _) = backward(&w, d, &acts, &dy, &mut attn).unwrap();
        let eps = 1e-6;
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (loss(&w, &xp, &mut attn) - loss(&w, &xm, &mut attn)) / (2.0 * eps);
            assert!(
                (fd - g.dx[i]).abs() < 1e-6,
                "dx[{i}]: fd {fd} vs {}",
                g.dx[i]
            );
        }
        // A few entries of every parameter.
        let names = ["wq", "wk", "wv", "wo", "w1", "b1", "w2", "b2"];
        for (pi, name) in names.iter().enumerate() {
            for idx in [0usize, 1, 3] {
                let bump = |delta: f64| {
                    let mut wp = w.clone();
                    let p: &mut Vec<f64> = match pi {
                        0 => &mut wp.wq,
                        1 => &mut wp.wk,
                        2 => &mut wp.wv,
                        3 => &mut wp.wo,
                        4 => &mut wp.w1,
                        5 => &mut wp.b1,
                        6 => &mut wp.w2,
                        _ => &mut wp.b2,
                    };
                    p[idx] += delta;
                    wp
                };
                let fd = (loss(&bump(eps), &x, &mut attn) - loss(&bump(-eps), &x, &mut attn))
                    / (2.0 * eps);
                let an = g.weights.named()[pi].1[idx];
                assert!((fd - an).abs() < 1e-6, "{name}[{idx}]: fd {fd} vs {an}");
            }
        }
    }

    #[test]
    fn heads_round_trip() {
        let d = Dims {
            batch: 2,
            tokens: 3,
            channels: 4,
            heads: 2,
            ffn: 1,
        };
        let x: Vec<f64> = (0..24).map(f64::from).collect();
        let s = split_heads(&x, d);
        assert_eq!(s[..2], [0.0, 1.0]);
        assert_eq!(s[2..4], [4.0, 5.0]); // token 1 of head 0
        assert_eq!(merge_heads(&s, d), x);
    }
}
