//! [`SparseSelfAttention`] on the GPU: [`SparseSelfAttention::forward_cuda`] and
//! [`SparseSelfAttention::backward_cuda`] check every length before the layout is built (a huge
//! `seq_len` with short buffers is a length error, not a huge upload), skip empty calls, then
//! run the fused kernels with the cached tables of [`SparseSelfAttention::cuda_layout`].

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
use ltd_core::{CudaDevice, Element};

use super::{
    CudaAttentionGrads, CudaAttentionOptions, attention_backward_cuda, attention_forward_cuda,
};
use crate::attention::check_output_lens;
use crate::ops::check_len;
use crate::{AttentionShape, Result, SparseSelfAttention};

/// The key-padding mask is `[B, L]` and the bias `[B, H, L, L]`.
fn check_modifiers<T>(shape: AttentionShape, options: &CudaAttentionOptions<'_, T>) -> Result<()> {
    let (b, h, l) = (shape.batch, shape.heads, shape.seq_len);
    if let Some(m) = &options.key_padding_mask {
        check_len("key_padding_mask", m.len(), &[b, l], "[B,L]")?;
    }
    if let Some(bias) = &options.bias {
        check_len("bias", bias.len(), &[b, h, l, l], "[B,H,L,L]")?;
    }
    Ok(())
}

impl SparseSelfAttention {
    /// [`attention_forward_cuda`] with this instance's layout for `shape.seq_len` (its GPU
    /// tables cached per device): the heads and every buffer length are checked first, and a
    /// call with no rows (`B`, `H` or `L` zero) returns at once. Buffers as
    /// [`attention_forward_cuda`]'s: whole slices, views at offsets or raw pointers.
    ///
    /// # Errors
    /// As [`attention_forward_cuda`].
    ///
    /// ```no_run
    /// use half::bf16;
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{AttentionShape, FixedConfig, SparseSelfAttention};
    /// use ltd_sparse_attn::cuda::CudaAttentionOptions;
    /// let dev = CudaDevice::new(0)?;
    /// let attn = SparseSelfAttention::new(FixedConfig::new(4).into())?;
    /// let shape = AttentionShape { batch: 2, heads: 4, seq_len: 512, head_dim: 64 };
    /// let x = dev.upload(&vec![bf16::from_f32(0.5); shape.qkv_len()])?;
    /// let mut out = dev.upload(&vec![bf16::ZERO; shape.qkv_len()])?;
    /// let mut lse = dev.upload(&vec![0.0f32; shape.lse_len()])?;
    /// attn.forward_cuda(&dev, shape, (&x, &x, &x), &CudaAttentionOptions::default(), &mut out, &mut lse)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn forward_cuda<'b, T: Element + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        shape: AttentionShape,
        (q, k, v): (
            impl Into<DeviceBuf<'b, T>>,
            impl Into<DeviceBuf<'b, T>>,
            impl Into<DeviceBuf<'b, T>>,
        ),
        options: &CudaAttentionOptions<'_, T>,
        out: impl Into<DeviceBufMut<'b, T>>,
        lse: impl Into<DeviceBufMut<'b, f32>>,
    ) -> Result<()> {
        let (q, k, v) = (q.into(), k.into(), v.into());
        let (out, lse) = (out.into(), lse.into());
        self.check_heads(shape)?;
        let bhld = [
            ("q", q.len()),
            ("k", k.len()),
            ("v", v.len()),
            ("out", out.len()),
        ];
        check_output_lens(shape, &bhld, &[("lse", lse.len())])?;
        check_modifiers(shape, options)?;
        if shape.lse_len() == 0 {
            return Ok(());
        }
        let layout = self.cuda_layout(dev, shape.seq_len)?;
        attention_forward_cuda(dev, &layout, shape, (q, k, v), options, out, lse)
    }

    /// [`attention_backward_cuda`] with this instance's layout for `shape.seq_len`, checked
    /// and skipped when empty as [`SparseSelfAttention::forward_cuda`].
    ///
    /// # Errors
    /// As [`attention_backward_cuda`].
    ///
    /// ```no_run
    /// use half::bf16;
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{AttentionShape, FixedConfig, SparseSelfAttention};
    /// use ltd_sparse_attn::cuda::{CudaAttentionGrads, CudaAttentionOptions};
    /// let dev = CudaDevice::new(0)?;
    /// let attn = SparseSelfAttention::new(FixedConfig::new(4).into())?;
    /// let shape = AttentionShape { batch: 1, heads: 4, seq_len: 256, head_dim: 64 };
    /// let n = shape.qkv_len();
    /// let x = dev.upload(&vec![bf16::from_f32(0.5); n])?;
    /// let (mut out, mut lse) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![0.0f32; shape.lse_len()])?);
    /// let opts = CudaAttentionOptions::default();
    /// attn.forward_cuda(&dev, shape, (&x, &x, &x), &opts, &mut out, &mut lse)?;
    /// let mut g = dev.upload(&vec![bf16::ZERO; 3 * n])?;
    /// let (dq, mut rest) = g.split_at_mut(n);
    /// let (dk, dv) = rest.split_at_mut(n);
    /// attn.backward_cuda(&dev, shape, (&x, &x, &x), (&out, &lse), &x, &opts, CudaAttentionGrads::new(dq, dk, dv))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward_cuda<'b, T: Element + DeviceRepr + ValidAsZeroBits>(
        &self,
        dev: &CudaDevice,
        shape: AttentionShape,
        (q, k, v): (
            impl Into<DeviceBuf<'b, T>>,
            impl Into<DeviceBuf<'b, T>>,
            impl Into<DeviceBuf<'b, T>>,
        ),
        (out, lse): (impl Into<DeviceBuf<'b, T>>, impl Into<DeviceBuf<'b, f32>>),
        dout: impl Into<DeviceBuf<'b, T>>,
        options: &CudaAttentionOptions<'_, T>,
        grads: CudaAttentionGrads<'_, T>,
    ) -> Result<()> {
        let (q, k, v) = (q.into(), k.into(), v.into());
        let (out, lse, dout) = (out.into(), lse.into(), dout.into());
        self.check_heads(shape)?;
        let bhld = [
            ("q", q.len()),
            ("k", k.len()),
            ("v", v.len()),
            ("out", out.len()),
            ("dout", dout.len()),
            ("dq", grads.dq.len()),
            ("dk", grads.dk.len()),
            ("dv", grads.dv.len()),
        ];
        check_output_lens(shape, &bhld, &[("lse", lse.len())])?;
        check_modifiers(shape, options)?;
        if let Some(db) = &grads.dbias {
            let (b, h, l) = (shape.batch, shape.heads, shape.seq_len);
            check_len("dbias", db.len(), &[b, h, l, l], "[B,H,L,L]")?;
        }
        if shape.lse_len() == 0 {
            return Ok(());
        }
        let layout = self.cuda_layout(dev, shape.seq_len)?;
        attention_backward_cuda(
            dev,
            &layout,
            shape,
            (q, k, v),
            (out, lse),
            dout,
            options,
            grads,
        )
    }
}
