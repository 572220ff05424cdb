//! The CUDA side of the attention op (feature `cuda`): `ltd_sparse_attn`'s fused kernels on
//! candle's stream. The kernels read contiguous `[B, H, L, D]` buffers starting 16-byte aligned,
//! so an input that is one (at any offset in its storage that keeps that alignment: a narrow
//! along B or H, a slice of a bigger buffer) is read in place through a view, and anything else
//! (`[B, L, H, D]`, a strided view such as a narrow along D, an offset that breaks the
//! alignment) is copied into one on the same device first; outputs in `[B, L, H, D]` order are
//! copied back into that order. Masks and biases are read through views at any offset.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Layout, Shape, Storage, Tensor};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};
use ltd_core::Element;
use ltd_core::cuda::DeviceBuf;
use ltd_sparse_attn::AttentionShape;
use ltd_sparse_attn::cuda::{
    ATTENTION_TENSOR_ALIGN, CudaAttentionGrads, CudaAttentionOptions, attention_backward_cuda,
    attention_forward_cuda,
};

use super::{AttnCtx, QkvLayout, lock};
use crate::cuda::{alloc_output, count_copy, ltd_device, tensor_from_slice};
use crate::{LtdCandleError, Result};

/// Checks that the GPU kernels run this dtype and head dim.
pub(super) fn check_supported(dtype: DType, shape: AttentionShape) -> Result<()> {
    if !matches!(dtype, DType::F16 | DType::BF16) {
        return Err(LtdCandleError::Unsupported {
            what: "CUDA attention dtype",
            got: format!("{dtype:?}"),
            expected: "f16 or bf16 (the GPU kernels' types; f32 attention runs on the CPU)".into(),
        });
    }
    if !matches!(shape.head_dim, 64 | 128) {
        return Err(LtdCandleError::Unsupported {
            what: "CUDA attention head dim",
            got: shape.head_dim.to_string(),
            expected: "64 or 128 (the GPU kernels' head dims)".into(),
        });
    }
    Ok(())
}

/// A tensor's elements, contiguous in the kernels' order: a view of its own storage when it
/// already is that, else a copy on the same device.
enum Exact<'a> {
    View {
        storage: &'a CudaStorage,
        start: usize,
        len: usize,
    },
    Owned(CudaStorage),
}

impl Exact<'_> {
    fn buf<T: CudaDType>(&self) -> Result<DeviceBuf<'_, T>> {
        Ok(match self {
            Exact::View {
                storage,
                start,
                len,
            } => {
                let slice = storage.as_cuda_slice::<T>()?;
                let view = slice.try_slice(*start..*start + *len).ok_or_else(|| {
                    LtdCandleError::State(format!(
                        "a tensor's elements {start}..{} lie outside its storage of {}",
                        start + len,
                        slice.len()
                    ))
                })?;
                view.into()
            }
            Exact::Owned(s) => s.as_cuda_slice::<T>()?.into(),
        })
    }
}

/// `s` read through `l` with its dims permuted by `perm` (the kernels' order), as an exact
/// contiguous buffer whose start is a multiple of `align` bytes: a view when the layout is
/// contiguous in that order at such an offset, else a copy (counted).
fn exact<'a, T: CudaDType + DeviceRepr>(
    dev: &ltd_core::CudaDevice,
    s: &'a CudaStorage,
    l: &Layout,
    perm: &[usize],
    align: usize,
) -> Result<Exact<'a>> {
    let n = l.shape().elem_count();
    let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
    let start = l.start_offset();
    let aligned = (start * std::mem::size_of::<T>()).is_multiple_of(align);
    if identity && l.is_contiguous() && aligned && start + n <= s.as_cuda_slice::<T>()?.len() {
        return Ok(Exact::View {
            storage: s,
            start,
            len: n,
        });
    }
    let permuted = l.permute(perm)?;
    count_copy();
    let mut dst = CudaStorage::wrap_cuda_slice(alloc_output::<T>(dev, n)?, s.device.clone());
    s.copy_strided_src(&mut dst, 0, &permuted)?;
    Ok(Exact::Owned(dst))
}

fn cuda_storage(s: &Storage) -> Result<&CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        _ => Err(LtdCandleError::Unsupported {
            what: "attention tensor",
            got: "a non-CUDA storage".into(),
            expected: "CUDA tensors on the CUDA path".into(),
        }),
    }
}

/// A `[B, H, L, D]` result as a storage in the inputs' order.
fn to_user_order<T: CudaDType + DeviceRepr>(
    ctx: &AttnCtx,
    dev: &ltd_core::CudaDevice,
    cdev: &candle_core::CudaDevice,
    x: CudaSlice<T>,
) -> Result<CudaStorage> {
    let s = ctx.shape;
    let x = CudaStorage::wrap_cuda_slice(x, cdev.clone());
    match ctx.order {
        QkvLayout::Bhld => Ok(x),
        QkvLayout::Blhd => {
            let l =
                Layout::contiguous((s.batch, s.heads, s.seq_len, s.head_dim)).transpose(1, 2)?;
            let mut dst =
                CudaStorage::wrap_cuda_slice(alloc_output::<T>(dev, s.qkv_len())?, cdev.clone());
            count_copy();
            x.copy_strided_src(&mut dst, 0, &l)?;
            Ok(dst)
        }
    }
}

fn unsupported(d: DType) -> LtdCandleError {
    LtdCandleError::Unsupported {
        what: "CUDA attention dtype",
        got: format!("{d:?}"),
        expected: "f16 or bf16".into(),
    }
}

/// The forward on CUDA storages: the output in the inputs' order; keeps the log-sum-exp.
pub(super) fn forward(
    ctx: &AttnCtx,
    args: [(&CudaStorage, &Layout); 3],
) -> Result<(CudaStorage, Shape)> {
    match args[0].0.dtype() {
        DType::F16 => forward_t::<f16>(ctx, args),
        DType::BF16 => forward_t::<bf16>(ctx, args),
        d => Err(unsupported(d)),
    }
}

fn cuda_layout(ctx: &AttnCtx) -> Result<&ltd_sparse_attn::cuda::CudaAttentionLayout> {
    ctx.cuda_layout
        .as_deref()
        .ok_or_else(|| LtdCandleError::State("the attention call has no GPU layout tables".into()))
}

/// Reads the key-padding mask and the bias of `ctx` as exact buffers (inside `f`).
fn with_modifiers<T: CudaDType + DeviceRepr, R>(
    ctx: &AttnCtx,
    dev: &ltd_core::CudaDevice,
    f: impl FnOnce(CudaAttentionOptions<'_, T>) -> Result<R>,
) -> Result<R> {
    let kpm_guard = ctx.kpm.as_ref().map(Tensor::storage_and_layout);
    let bias_guard = ctx.bias.as_ref().map(Tensor::storage_and_layout);
    // Read element by element (a bias that is not 16-byte aligned takes the per-element
    // kernel): any offset will do.
    let kpm = match &kpm_guard {
        Some((s, l)) => Some(exact::<f32>(dev, cuda_storage(s)?, l, &[0, 1], 1)?),
        None => None,
    };
    let bias = match &bias_guard {
        Some((s, l)) => Some(exact::<T>(dev, cuda_storage(s)?, l, &[0, 1, 2, 3], 1)?),
        None => None,
    };
    let options = CudaAttentionOptions {
        scale: ctx.scale,
        causal: ctx.causal,
        key_padding_mask: kpm.as_ref().map(Exact::buf::<f32>).transpose()?,
        bias: bias.as_ref().map(Exact::buf::<T>).transpose()?,
        kernel: Default::default(),
    };
    f(options)
}

fn forward_t<T: CudaDType + DeviceRepr + Element>(
    ctx: &AttnCtx,
    [(sq, lq), (sk, lk), (sv, lv)]: [(&CudaStorage, &Layout); 3],
) -> Result<(CudaStorage, Shape)> {
    let dev = ltd_device(&sq.device)?;
    let perm = ctx.order.perm();
    let a = ATTENTION_TENSOR_ALIGN;
    let (q, k, v) = (
        exact::<T>(&dev, sq, lq, &perm, a)?,
        exact::<T>(&dev, sk, lk, &perm, a)?,
        exact::<T>(&dev, sv, lv, &perm, a)?,
    );
    let mut out = alloc_output::<T>(&dev, ctx.shape.qkv_len())?;
    let mut lse = alloc_output::<f32>(&dev, ctx.shape.lse_len())?;
    with_modifiers::<T, _>(ctx, &dev, |options| {
        let qkv = (q.buf::<T>()?, k.buf::<T>()?, v.buf::<T>()?);
        Ok(attention_forward_cuda(
            &dev,
            cuda_layout(ctx)?,
            ctx.shape,
            qkv,
            &options,
            &mut out,
            &mut lse,
        )?)
    })?;
    let s = ctx.shape;
    *lock(&ctx.lse) = Some(tensor_from_slice(
        lse,
        &sq.device,
        (s.batch, s.heads, s.seq_len),
    ));
    Ok((to_user_order(ctx, &dev, &sq.device, out)?, ctx.out_shape()))
}

/// The backward on CUDA tensors: dq, dk, dv in the inputs' order, dbias `[B, H, L, L]`.
pub(super) fn backward(
    ctx: &AttnCtx,
    qkv: [&Tensor; 3],
    out: &Tensor,
    dout: &Tensor,
    want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    match qkv[0].dtype() {
        DType::F16 => backward_t::<f16>(ctx, qkv, out, dout, want_dbias),
        DType::BF16 => backward_t::<bf16>(ctx, qkv, out, dout, want_dbias),
        d => Err(unsupported(d)),
    }
}

fn backward_t<T: CudaDType + DeviceRepr + Element + ValidAsZeroBits>(
    ctx: &AttnCtx,
    [q, k, v]: [&Tensor; 3],
    out: &Tensor,
    dout: &Tensor,
    want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    let candle_core::Device::Cuda(cdev) = q.device() else {
        return Err(LtdCandleError::State(
            "the CUDA attention backward got a non-CUDA tensor".into(),
        ));
    };
    let dev = ltd_device(cdev)?;
    let perm = ctx.order.perm();
    let guards = [q, k, v, out, dout].map(Tensor::storage_and_layout);
    let mut bufs = Vec::with_capacity(5);
    for (s, l) in &guards {
        bufs.push(exact::<T>(
            &dev,
            cuda_storage(s)?,
            l,
            &perm,
            ATTENTION_TENSOR_ALIGN,
        )?);
    }
    let s = ctx.shape;
    let (mut dq, mut dk, mut dv) = (
        alloc_output::<T>(&dev, s.qkv_len())?,
        alloc_output::<T>(&dev, s.qkv_len())?,
        alloc_output::<T>(&dev, s.qkv_len())?,
    );
    let mut dbias = match want_dbias {
        true => Some(alloc_output::<T>(&dev, s.bias_len())?),
        false => None,
    };
    {
        let lse = lock(&ctx.lse).clone().ok_or_else(|| {
            LtdCandleError::State(
                "the attention backward found no log-sum-exp from its forward".into(),
            )
        })?;
        let (lse_storage, lse_layout) = lse.storage_and_layout();
        let lse = exact::<f32>(&dev, cuda_storage(&lse_storage)?, lse_layout, &[0, 1, 2], 1)?;
        with_modifiers::<T, _>(ctx, &dev, |options| {
            let grads = CudaAttentionGrads {
                dbias: dbias.as_mut().map(Into::into),
                ..CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv)
            };
            Ok(attention_backward_cuda(
                &dev,
                cuda_layout(ctx)?,
                s,
                (bufs[0].buf()?, bufs[1].buf()?, bufs[2].buf()?),
                (bufs[3].buf()?, lse.buf()?),
                bufs[4].buf()?,
                &options,
                grads,
            )?)
        })?;
    }
    let shape = ctx.out_shape();
    let t = |x: CudaSlice<T>| -> Result<Tensor> {
        let st = to_user_order(ctx, &dev, cdev, x)?;
        Ok(Tensor::from_storage(
            Storage::Cuda(st),
            shape.clone(),
            BackpropOp::none(),
            false,
        ))
    };
    let dbias = dbias.map(|x| {
        let st = CudaStorage::wrap_cuda_slice(x, cdev.clone());
        let dims = (s.batch, s.heads, s.seq_len, s.seq_len);
        Tensor::from_storage(Storage::Cuda(st), dims, BackpropOp::none(), false)
    });
    Ok((t(dq)?, t(dk)?, t(dv)?, dbias))
}
