//! Shared test helpers: candle's own dense attention with the layout as a mask, value checks.
#![allow(dead_code)]

use candle_core::{D, DType, Device, Result, Tensor};
use ltd_sparse_attn::Layout;

/// The additive `[H, L, L]` mask of a block layout (plus token-level causality): 0 where a
/// key is visible, -inf elsewhere.
pub fn layout_mask(layout: &Layout, seq: usize, causal: bool, dev: &Device) -> Result<Tensor> {
    let (h, blk) = (layout.num_heads(), layout.block());
    let mut m = vec![f32::NEG_INFINITY; h * seq * seq];
    for head in 0..h {
        for i in 0..seq {
            for j in 0..seq {
                if layout.is_active(head, i / blk, j / blk) && (!causal || j <= i) {
                    m[(head * seq + i) * seq + j] = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(m, (h, seq, seq), dev)
}

#[allow(clippy::too_many_arguments)]
/// Dense attention through candle ops, in f32, on `[B, H, L, D]` inputs:
/// `softmax(q kᵀ * scale + bias + kpm + layout mask) v`, with a fully masked row giving zeros
/// (the max is detached: softmax does not depend on it).
pub fn dense_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: &Layout,
    scale: f32,
    causal: bool,
    kpm: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, _, l, _) = q.dims4()?;
    let (q, k, v) = (
        q.to_dtype(DType::F32)?,
        k.to_dtype(DType::F32)?,
        v.to_dtype(DType::F32)?,
    );
    let mut s = (q.matmul(&k.t()?)? * f64::from(scale))?;
    if let Some(bias) = bias {
        s = (s + bias.to_dtype(DType::F32)?)?;
    }
    if let Some(kpm) = kpm {
        s = s.broadcast_add(&kpm.reshape((b, 1, 1, l))?)?;
    }
    s = s.broadcast_add(&layout_mask(layout, l, causal, q.device())?.unsqueeze(0)?)?;
    let max = s.max_keepdim(D::Minus1)?.detach();
    let max = max.where_cond_finite()?;
    let e = s.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    // An empty row sums to 0: divide by 1 there (a clamp would square to 0 in the backward).
    let empty = sum.eq(0f32)?.to_dtype(DType::F32)?.detach();
    let sum = (sum + empty)?;
    e.broadcast_div(&sum)?.matmul(&v)
}

/// `where(isfinite(x), x, 0)` for a detached max.
pub trait WhereFinite: Sized {
    fn where_cond_finite(&self) -> Result<Self>;
}

impl WhereFinite for Tensor {
    fn where_cond_finite(&self) -> Result<Tensor> {
        let v: Vec<f32> = self.flatten_all()?.to_vec1()?;
        let v: Vec<f32> = v
            .into_iter()
            .map(|x| if x.is_finite() { x } else { 0.0 })
            .collect();
        Tensor::from_vec(v, self.shape(), self.device())
    }
}

/// Max |a - b| / (atol + rtol * |b|) over all elements (<= 1 passes); NaN fails.
pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a: Vec<f32> = a
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = b
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let ok = (x - y).abs() <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan()) || x == y;
        assert!(ok, "{what}[{i}]: {x} vs {y} (atol {atol}, rtol {rtol})");
    }
}

/// Tolerances `(atol, rtol)` of a dtype against an f32 computation.
pub fn tolerance(dtype: DType) -> (f32, f32) {
    match dtype {
        DType::F32 => (2e-5, 2e-4),
        DType::F16 => (4e-3, 1e-2),
        _ => (3e-2, 3e-2),
    }
}

/// A deterministic pseudo-random buffer in [-1, 1) of `dims`' element count.
pub fn values(dims: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
