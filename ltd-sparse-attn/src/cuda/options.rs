//! The arguments of a GPU attention call besides its tensors: [`CudaAttentionOptions`] and the
//! gradient buffers [`CudaAttentionGrads`]. Every buffer is a [`DeviceBuf`] / [`DeviceBufMut`]:
//! a whole `CudaSlice` (`(&x).into()`), a cudarc view at an offset (`x.slice(off..).into()`),
//! or a raw device pointer ([`DeviceBuf::from_raw`]).

use ltd_core::cuda::{DeviceBuf, DeviceBufMut};

use super::CudaAttentionKernel;

/// Options of a GPU attention call (`T`: the element type of the inputs, for the bias).
///
/// ```
/// use half::bf16;
/// let o = ltd_sparse_attn::cuda::CudaAttentionOptions::<bf16> { causal: true, ..Default::default() };
/// assert!(o.scale.is_none() && o.key_padding_mask.is_none() && o.bias.is_none());
/// ```
///
/// A mask that lives in a bigger buffer is passed as a view, with no copy:
///
/// ```no_run
/// # use half::bf16;
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let masks = dev.upload(&vec![0.0f32; 3 * 2 * 128])?; // three [B=2, L=128] masks
/// let o = ltd_sparse_attn::cuda::CudaAttentionOptions::<bf16> {
///     key_padding_mask: Some(masks.slice(256..512).into()), // the second one
///     ..Default::default()
/// };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct CudaAttentionOptions<'a, T> {
    /// Softmax scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Hide keys after the query (token-level causality inside diagonal blocks).
    pub causal: bool,
    /// Additive key-padding mask `[B, L]` in f32 (`0` keeps a key, `-inf` drops it; convert a
    /// boolean mask with `if keep { 0.0 } else { f32::NEG_INFINITY }`), 4-byte aligned.
    pub key_padding_mask: Option<DeviceBuf<'a, f32>>,
    /// Additive bias `[B, H, L, L]` (upstream's `rpe`), added after the scale; its gradient is
    /// [`CudaAttentionGrads::dbias`]. Quadratic memory, as upstream's. The kernels read it one
    /// 64 x 64 tile per (query tile, key chunk) when `L` is a multiple of 8 (except the
    /// `mma.sync` forward where the tiles would cost it CTAs per SM, as on an A100), and element
    /// by element otherwise, which is markedly slower: prefer `L % 8 == 0` with a bias. The
    /// tiles need a 16-byte aligned base; a bias view that starts elsewhere (any element
    /// offset that is not a multiple of 8) is read element by element too, never refused.
    pub bias: Option<DeviceBuf<'a, T>>,
    /// Which kernel family runs, forward and backward ([`CudaAttentionKernel::Auto`] unless
    /// you are comparing them).
    pub kernel: CudaAttentionKernel,
}

/// Gradients of [`attention_backward_cuda`](super::attention_backward_cuda), written in place
/// (`[B, H, L, D]` each, 16-byte aligned as the inputs).
///
/// ```no_run
/// # use half::bf16;
/// # let dev = ltd_core::CudaDevice::new(0)?;
/// let n = 1 * 4 * 128 * 64;
/// let (mut dq, mut dk, mut dv) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?);
/// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv);
/// // or, into one [3, B, H, L, D] buffer with no copy afterwards:
/// let mut dqkv = dev.upload(&vec![bf16::ZERO; 3 * n])?;
/// let (dq, mut rest) = dqkv.split_at_mut(n);
/// let (dk, dv) = rest.split_at_mut(n);
/// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads::new(dq, dk, dv);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaAttentionGrads<'a, T> {
    /// Gradient of the queries.
    pub dq: DeviceBufMut<'a, T>,
    /// Gradient of the keys.
    pub dk: DeviceBufMut<'a, T>,
    /// Gradient of the values.
    pub dv: DeviceBufMut<'a, T>,
    /// Gradient of the additive bias, `[B, H, L, L]` (zero outside the layout and at masked
    /// positions), or `None` to skip it.
    pub dbias: Option<DeviceBufMut<'a, T>>,
}

impl<'a, T> CudaAttentionGrads<'a, T> {
    /// dq, dk and dv (each a `&mut CudaSlice`, a view or a [`DeviceBufMut`]), no dbias.
    ///
    /// ```no_run
    /// # use half::f16;
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// let mut g = dev.upload(&vec![f16::ZERO; 3 * 8192])?;
    /// let (dq, mut rest) = g.split_at_mut(8192);
    /// let (dk, dv) = rest.split_at_mut(8192);
    /// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads::new(dq, dk, dv);
    /// assert!(grads.dbias.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        dq: impl Into<DeviceBufMut<'a, T>>,
        dk: impl Into<DeviceBufMut<'a, T>>,
        dv: impl Into<DeviceBufMut<'a, T>>,
    ) -> Self {
        CudaAttentionGrads {
            dq: dq.into(),
            dk: dk.into(),
            dv: dv.into(),
            dbias: None,
        }
    }

    /// The same gradients, with dbias written too.
    ///
    /// ```no_run
    /// # use half::f16;
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// let (mut dq, mut dk, mut dv) = (dev.upload(&[f16::ZERO; 64])?, dev.upload(&[f16::ZERO; 64])?, dev.upload(&[f16::ZERO; 64])?);
    /// let mut db = dev.upload(&[f16::ZERO; 1])?;
    /// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv).with_dbias(&mut db);
    /// assert!(grads.dbias.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_dbias(self, dbias: impl Into<DeviceBufMut<'a, T>>) -> Self {
        CudaAttentionGrads {
            dbias: Some(dbias.into()),
            ..self
        }
    }
}
