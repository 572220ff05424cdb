//! The attention's forward and backward as two plain functions, for callers that drive the
//! backward themselves (their own autograd, activation recomputation, a custom training step):
//! the same kernels and glue as [`sparse_attention`](super::sparse_attention), with the
//! log-sum-exp handed back to the caller instead of kept in candle's graph.

use candle_core::{DType, Tensor};

use super::{LayoutSource, SparseAttentionOptions, call_context, lock};
use crate::check::{same_device, same_dtype};
use crate::{LtdCandleError, Result};

/// The gradients [`sparse_attention_backward`] returns, in the inputs' order and dtype.
///
/// ```
/// # use candle_core::{Device, Tensor};
/// # use ltd_candle::*;
/// # use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
/// # let attn = SparseSelfAttention::new(FixedConfig::new(1).into()).unwrap();
/// # let q = Tensor::ones((1, 1, 16, 4), candle_core::DType::F32, &Device::Cpu)?;
/// # let opts = SparseAttentionOptions::default();
/// # let (out, lse) = sparse_attention_forward(&q, &q, &q, &attn, &opts)?;
/// let g = sparse_attention_backward(&q, &q, &q, &out, &lse, &out, &attn, &opts)?;
/// assert!(g.dbias.is_none()); // no bias in `opts`
/// assert_eq!(g.dq.dims(), q.dims());
/// # Ok::<(), LtdCandleError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SparseAttentionGrads {
    /// Gradient of `q`.
    pub dq: Tensor,
    /// Gradient of `k`.
    pub dk: Tensor,
    /// Gradient of `v`.
    pub dv: Tensor,
    /// Gradient of the bias, `[B, H, L, L]`, when the options carry one.
    pub dbias: Option<Tensor>,
}

/// The attention's forward alone: the output (as [`sparse_attention`](super::sparse_attention)
/// gives it, but with no autograd history) and the per-row log-sum-exp, f32 `[B, H, L]` on the
/// inputs' device, that [`sparse_attention_backward`] needs. Same arguments, checks, kernels and
/// copies (none for contiguous `[B, H, L, D]` CUDA tensors) as the autograd op.
///
/// # Errors
/// As [`sparse_attention`](super::sparse_attention).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_candle::{SparseAttentionOptions, sparse_attention_forward};
/// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
/// let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
/// let q = Tensor::randn(0f32, 1.0, (1, 2, 40, 8), &Device::Cpu)?;
/// let opts = SparseAttentionOptions { causal: true, ..Default::default() };
/// let (out, lse) = sparse_attention_forward(&q, &q, &q, &attn, &opts)?;
/// assert_eq!((out.dims(), lse.dims()), (&[1, 2, 40, 8][..], &[1, 2, 40][..]));
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn sparse_attention_forward<S: LayoutSource + ?Sized>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    source: &S,
    opts: &SparseAttentionOptions,
) -> Result<(Tensor, Tensor)> {
    let (ctx, _) = call_context(q, k, v, source, opts)?;
    let core = super::AttnCore { ctx: ctx.clone() };
    let out = q
        .apply_op3_no_bwd(k, v, &core)
        .map_err(|e| ctx.take_error(e))?;
    let lse = lock(&ctx.lse)
        .take()
        .ok_or_else(|| LtdCandleError::State("the attention forward left no log-sum-exp".into()))?;
    Ok((out, lse))
}

/// The attention's backward alone: dq, dk, dv (and dbias when `opts` has a bias) from the
/// inputs, the forward's output and log-sum-exp ([`sparse_attention_forward`]) and the output's
/// gradient `dout`. `q`, `k`, `v`, `opts` and `source` must be those of the forward. One fused
/// backward, nothing recomputed; the gradients are new tensors (not accumulated anywhere).
///
/// # Errors
/// As [`sparse_attention`](super::sparse_attention) for `q`, `k`, `v` and `opts`;
/// [`LtdCandleError::Shape`], [`LtdCandleError::DTypeMismatch`] or
/// [`LtdCandleError::DeviceMismatch`] when `out` or `dout` is not like `q`, or `lse` is not f32
/// `[B, H, L]` on `q`'s device.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_candle::*;
/// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
/// let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
/// let q = Tensor::randn(0f32, 1.0, (1, 2, 40, 8), &Device::Cpu)?;
/// let opts = SparseAttentionOptions { causal: true, ..Default::default() };
/// let (out, lse) = sparse_attention_forward(&q, &q, &q, &attn, &opts)?;
/// let dout = out.ones_like()?;
/// let g = sparse_attention_backward(&q, &q, &q, &out, &lse, &dout, &attn, &opts)?;
/// assert_eq!(g.dk.dims(), &[1, 2, 40, 8]);
/// # Ok::<(), LtdCandleError>(())
/// ```
#[allow(clippy::too_many_arguments)] // the backward's inputs, as flash-attention's own
pub fn sparse_attention_backward<S: LayoutSource + ?Sized>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    source: &S,
    opts: &SparseAttentionOptions,
) -> Result<SparseAttentionGrads> {
    let (ctx, _) = call_context(q, k, v, source, opts)?;
    for (what, t) in [("out", out), ("dout", dout)] {
        if t.dims() != q.dims() {
            return Err(LtdCandleError::Shape {
                what,
                got: t.dims().to_vec(),
                expected: format!("{:?} (the shape of q)", q.dims()),
            });
        }
        same_dtype(what, t, q.dtype(), "q")?;
        same_device(what, t, q.device(), "q")?;
    }
    let s = ctx.shape;
    if lse.dims() != [s.batch, s.heads, s.seq_len] {
        return Err(LtdCandleError::Shape {
            what: "lse",
            got: lse.dims().to_vec(),
            expected: format!("[B={}, H={}, L={}]", s.batch, s.heads, s.seq_len),
        });
    }
    same_dtype("lse", lse, DType::F32, "the forward's log-sum-exp")?;
    same_device("lse", lse, q.device(), "q")?;
    *lock(&ctx.lse) = Some(lse.contiguous()?);
    let (dq, dk, dv, dbias) = ctx.run_backward([q, k, v], out, dout, opts.bias.is_some())?;
    Ok(SparseAttentionGrads { dq, dk, dv, dbias })
}
