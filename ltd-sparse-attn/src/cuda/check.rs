//! Validation of a GPU attention call: [`AttentionCall`] can only be built by checking the call,
//! so a launcher that holds one knows its buffer lengths, shape and kernel choice are valid.

use ltd_core::{DType, Element};

use super::{CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions};
use crate::{AttentionShape, Result, SparseAttnError};

/// A validated GPU attention call: fp16 / bf16, head dim 64 or 128, the layout's heads and
/// length, every `[B, H, L, D]` buffer of exactly `B*H*L*D` elements, lse of `B*H*L`, the
/// key-padding mask of `B*L`, the bias of `B*H*L*L`, batch and heads at most 65535, L below
/// 2^31, a finite scale, and a kernel family that runs on the device.
#[derive(Clone, Copy, Debug)]
pub(super) struct AttentionCall {
    shape: AttentionShape,
    dtype: DType,
    scale: f32,
    kernel: CudaAttentionKernel,
}

impl AttentionCall {
    /// Checks a call on a device of compute capability `cc`: `tensors` are the call's
    /// `[B, H, L, D]` buffers by name and length, `lse_len` the length of its `[B, H, L]`
    /// logsumexp.
    pub(super) fn check<T: Element>(
        layout: &CudaAttentionLayout,
        shape: AttentionShape,
        tensors: &[(&'static str, usize)],
        lse_len: usize,
        options: &CudaAttentionOptions<'_, T>,
        cc: (i32, i32),
    ) -> Result<AttentionCall> {
        check_kernel_inputs(T::DTYPE, shape.head_dim)?;
        check_shape(layout, shape)?;
        check_lengths(shape, tensors, lse_len)?;
        check_masks(
            shape,
            options.key_padding_mask.as_ref().map(|m| m.len()),
            options.bias.as_ref().map(|b| b.len()),
        )?;
        let scale = options
            .scale
            .unwrap_or(1.0 / (shape.head_dim as f32).sqrt());
        if !scale.is_finite() {
            return Err(SparseAttnError::invalid("scale", scale, "a finite number"));
        }
        if !options.kernel.runs_on(cc) {
            return Err(SparseAttnError::invalid(
                "kernel",
                format!(
                    "{:?} on a device of compute capability {}.{}",
                    options.kernel, cc.0, cc.1
                ),
                "Wgmma only on compute capability 9.0 (use Auto or MmaSync)",
            ));
        }
        Ok(AttentionCall {
            shape,
            dtype: T::DTYPE,
            scale,
            kernel: options.kernel.resolve(cc),
        })
    }

    /// The call's shape.
    pub(super) fn shape(&self) -> AttentionShape {
        self.shape
    }

    /// The element type (f16 or bf16).
    pub(super) fn dtype(&self) -> DType {
        self.dtype
    }

    /// The softmax scale.
    pub(super) fn scale(&self) -> f32 {
        self.scale
    }

    /// The resolved kernel family (never `Auto`).
    pub(super) fn kernel(&self) -> CudaAttentionKernel {
        self.kernel
    }

    /// Elements of a `[B, H, L, L]` bias, or `None` on overflow.
    pub(super) fn bias_len(&self) -> Option<usize> {
        bias_len(self.shape)
    }
}

fn bias_len(shape: AttentionShape) -> Option<usize> {
    shape
        .qkv_len()
        .checked_div(shape.head_dim)
        .and_then(|x| x.checked_mul(shape.seq_len))
}

/// The fused kernels take fp16 / bf16 at head dim 64 or 128.
fn check_kernel_inputs(dtype: DType, head_dim: usize) -> Result<()> {
    if dtype == DType::F32 {
        return Err(SparseAttnError::invalid(
            "dtype",
            "f32",
            "f16 or bf16 on the GPU (fused f32 attention runs on the CPU: attention_forward)",
        ));
    }
    if head_dim != 64 && head_dim != 128 {
        return Err(SparseAttnError::invalid(
            "head_dim",
            head_dim,
            "64 or 128 for the fused GPU kernel (other sizes: the CPU path)",
        ));
    }
    Ok(())
}

/// Heads and length match the layout; the grid limits hold.
fn check_shape(layout: &CudaAttentionLayout, shape: AttentionShape) -> Result<()> {
    let AttentionShape {
        batch,
        heads,
        seq_len,
        ..
    } = shape;
    if heads != layout.heads {
        return Err(SparseAttnError::HeadMismatch {
            expected: layout.heads,
            actual: heads,
        });
    }
    if batch == 0 || seq_len == 0 {
        return Err(SparseAttnError::invalid(
            "batch and seq_len",
            format!("{batch} and {seq_len}"),
            "both at least 1",
        ));
    }
    if seq_len.div_ceil(layout.block) != layout.num_blocks {
        return Err(SparseAttnError::shape(
            "layout",
            format!(
                "{} blocks of {} for L = {seq_len}",
                seq_len.div_ceil(layout.block),
                layout.block
            ),
            format!("{} blocks (built for another length)", layout.num_blocks),
        ));
    }
    if batch > 65_535 || heads > 65_535 || seq_len > i32::MAX as usize {
        return Err(SparseAttnError::invalid(
            "shape",
            format!("{shape:?}"),
            "batch and heads at most 65535, L below 2^31",
        ));
    }
    Ok(())
}

/// Every `[B, H, L, D]` buffer and the lse have their shape's length.
fn check_lengths(
    shape: AttentionShape,
    tensors: &[(&'static str, usize)],
    lse_len: usize,
) -> Result<()> {
    let AttentionShape {
        batch,
        heads,
        seq_len,
        head_dim,
    } = shape;
    let n = shape.qkv_len();
    for &(what, len) in tensors {
        if len != n {
            return Err(SparseAttnError::shape(
                what,
                format!("[B={batch}, H={heads}, L={seq_len}, D={head_dim}] = {n}"),
                len,
            ));
        }
    }
    if lse_len != shape.lse_len() {
        return Err(SparseAttnError::shape(
            "lse",
            format!("[B={batch}, H={heads}, L={seq_len}] = {}", shape.lse_len()),
            lse_len,
        ));
    }
    Ok(())
}

/// The key-padding mask is `[B, L]` and the bias `[B, H, L, L]`.
fn check_masks(shape: AttentionShape, kpm_len: Option<usize>, bias: Option<usize>) -> Result<()> {
    let AttentionShape {
        batch,
        heads,
        seq_len,
        ..
    } = shape;
    if let Some(len) = kpm_len
        && len != batch * seq_len
    {
        return Err(SparseAttnError::shape(
            "key_padding_mask",
            format!("[B={batch}, L={seq_len}]"),
            len,
        ));
    }
    if let Some(len) = bias
        && bias_len(shape) != Some(len)
    {
        return Err(SparseAttnError::shape(
            "bias",
            format!("[B={batch}, H={heads}, L={seq_len}, L={seq_len}]"),
            len,
        ));
    }
    Ok(())
}

/// The backward's dbias, when given, is `[B, H, L, L]`.
pub(super) fn check_dbias(call: &AttentionCall, dbias_len: Option<usize>) -> Result<()> {
    let AttentionShape {
        batch,
        heads,
        seq_len,
        ..
    } = call.shape;
    match dbias_len {
        Some(len) if Some(len) != call.bias_len() => Err(SparseAttnError::shape(
            "dbias",
            format!("[B={batch}, H={heads}, L={seq_len}, L={seq_len}]"),
            len,
        )),
        _ => Ok(()),
    }
}
