//! The CPU side of the attention op: `ltd_sparse_attn::attention_forward` / `_backward` on the
//! storages, in `[B, H, L, D]` order, with the inputs' order restored on the way out.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, WithDType};
use half::{bf16, f16};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, KeyPaddingMask, attention_backward,
    attention_forward,
};

use super::{AttnCtx, QkvLayout, lock};
use crate::cpu::{cpu_storage, permuted4, swap12, tensor_permuted4};
use crate::{LtdCandleError, Result};

type Arg<'a> = (&'a CpuStorage, &'a Layout);

/// The additive key-padding mask as a host vector.
fn kpm_host(ctx: &AttnCtx) -> Result<Option<Vec<f32>>> {
    Ok(match &ctx.kpm {
        Some(m) => Some(m.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    })
}

/// The bias in `[B, H, L, L]` order as a host vector.
fn bias_host<T: WithDType>(ctx: &AttnCtx) -> Result<Option<Vec<T>>> {
    ctx.bias
        .as_ref()
        .map(|b| tensor_permuted4::<T>(b, [0, 1, 2, 3]))
        .transpose()
}

/// A `[B, H, L, D]` buffer in the inputs' order.
fn to_user_order<T: Copy>(ctx: &AttnCtx, x: Vec<T>) -> Vec<T> {
    let s = ctx.shape;
    match ctx.order {
        QkvLayout::Bhld => x,
        QkvLayout::Blhd => swap12(&x, [s.batch, s.heads, s.seq_len, s.head_dim]),
    }
}

fn unsupported(d: DType) -> LtdCandleError {
    LtdCandleError::Unsupported {
        what: "attention dtype",
        got: format!("{d:?}"),
        expected: crate::check::FLOAT_DTYPES.into(),
    }
}

/// The forward on CPU storages: the output in the inputs' order; keeps the log-sum-exp.
pub(super) fn forward(ctx: &AttnCtx, args: [Arg<'_>; 3]) -> Result<(CpuStorage, Shape)> {
    match args[0].0.dtype() {
        DType::F32 => forward_t::<f32>(ctx, args),
        DType::F16 => forward_t::<f16>(ctx, args),
        DType::BF16 => forward_t::<bf16>(ctx, args),
        d => Err(unsupported(d)),
    }
}

fn forward_t<T: WithDType + ltd_core::Element>(
    ctx: &AttnCtx,
    [(sq, lq), (sk, lk), (sv, lv)]: [Arg<'_>; 3],
) -> Result<(CpuStorage, Shape)> {
    let perm = ctx.order.perm();
    let q = permuted4::<T>(sq, lq, perm)?;
    let k = permuted4::<T>(sk, lk, perm)?;
    let v = permuted4::<T>(sv, lv, perm)?;
    let kpm = kpm_host(ctx)?;
    let bias = bias_host::<T>(ctx)?;
    let options = AttentionOptions {
        scale: ctx.scale,
        causal: ctx.causal,
        key_padding_mask: kpm.as_deref().map(KeyPaddingMask::Additive),
        bias: bias.as_deref(),
    };
    let mut out = vec![T::from_f64(0.0); ctx.shape.qkv_len()];
    let mut lse = vec![0.0f32; ctx.shape.lse_len()];
    let inputs = AttentionInputs {
        q: &q,
        k: &k,
        v: &v,
    };
    attention_forward(
        &ctx.layout,
        ctx.shape,
        &inputs,
        &options,
        &mut out,
        &mut lse,
    )?;
    let s = ctx.shape;
    let lse = Tensor::from_vec(
        lse,
        (s.batch, s.heads, s.seq_len),
        &candle_core::Device::Cpu,
    )?;
    *lock(&ctx.lse) = Some(lse);
    Ok((
        T::to_cpu_storage_owned(to_user_order(ctx, out)),
        ctx.out_shape(),
    ))
}

/// The backward on CPU tensors: dq, dk, dv in the inputs' order, dbias `[B, H, L, L]`.
pub(super) fn backward(
    ctx: &AttnCtx,
    qkv: [&Tensor; 3],
    out: &Tensor,
    dout: &Tensor,
    want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    match qkv[0].dtype() {
        DType::F32 => backward_t::<f32>(ctx, qkv, out, dout, want_dbias),
        DType::F16 => backward_t::<f16>(ctx, qkv, out, dout, want_dbias),
        DType::BF16 => backward_t::<bf16>(ctx, qkv, out, dout, want_dbias),
        d => Err(unsupported(d)),
    }
}

fn backward_t<T: WithDType + ltd_core::Element>(
    ctx: &AttnCtx,
    [q, k, v]: [&Tensor; 3],
    out: &Tensor,
    dout: &Tensor,
    want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    let perm = ctx.order.perm();
    let guards = [q, k, v, out, dout].map(|t| t.storage_and_layout());
    let mut bufs = Vec::with_capacity(5);
    for (s, l) in &guards {
        bufs.push(permuted4::<T>(cpu_storage("attention input", s)?, l, perm)?);
    }
    let kpm = kpm_host(ctx)?;
    let bias = bias_host::<T>(ctx)?;
    let options = AttentionOptions {
        scale: ctx.scale,
        causal: ctx.causal,
        key_padding_mask: kpm.as_deref().map(KeyPaddingMask::Additive),
        bias: bias.as_deref(),
    };
    let s = ctx.shape;
    let zero = T::from_f64(0.0);
    let (mut dq, mut dk, mut dv) = (
        vec![zero; s.qkv_len()],
        vec![zero; s.qkv_len()],
        vec![zero; s.qkv_len()],
    );
    let mut dbias = want_dbias.then(|| vec![zero; s.bias_len()]);
    let lse = lock(&ctx.lse).clone().ok_or_else(|| {
        LtdCandleError::State("the attention backward found no log-sum-exp from its forward".into())
    })?;
    let (lse_storage, lse_layout) = lse.storage_and_layout();
    let lse = match lse_layout.contiguous_offsets() {
        Some((a, b)) => &cpu_storage("log-sum-exp", &lse_storage)?.as_slice::<f32>()?[a..b],
        None => {
            return Err(LtdCandleError::State(
                "the attention backward got a strided log-sum-exp".into(),
            ));
        }
    };
    let inputs = AttentionInputs {
        q: &bufs[0],
        k: &bufs[1],
        v: &bufs[2],
    };
    let grads = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: dbias.as_deref_mut(),
    };
    attention_backward(
        &ctx.layout,
        s,
        &inputs,
        &options,
        &bufs[3],
        &bufs[4],
        lse,
        grads,
    )?;
    let dev = q.device();
    let shape = ctx.out_shape();
    let t = |x: Vec<T>| Tensor::from_vec(to_user_order(ctx, x), shape.clone(), dev);
    let dbias = dbias
        .map(|x| Tensor::from_vec(x, (s.batch, s.heads, s.seq_len, s.seq_len), dev))
        .transpose()?;
    Ok((t(dq)?, t(dk)?, t(dv)?, dbias))
}
