//! The arguments of a GPU attention call besides its tensors: [`CudaAttentionOptions`] and the
//! gradient buffers [`CudaAttentionGrads`].

use cudarc::driver::CudaSlice;

use super::CudaAttentionKernel;

/// Options of a GPU attention call (`T`: the element type of the inputs, for the bias).
///
/// ```
/// use half::bf16;
/// let o = ltd_sparse_attn::cuda::CudaAttentionOptions::<bf16> { causal: true, ..Default::default() };
/// assert!(o.scale.is_none() && o.key_padding_mask.is_none() && o.bias.is_none());
/// ```
#[derive(Clone, Copy, Default)]
pub struct CudaAttentionOptions<'a, T> {
    /// Softmax scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Hide keys after the query (token-level causality inside diagonal blocks).
    pub causal: bool,
    /// Additive key-padding mask `[B, L]` in f32 (`0` keeps a key, `-inf` drops it; convert a
    /// boolean mask with `if keep { 0.0 } else { f32::NEG_INFINITY }`).
    pub key_padding_mask: Option<&'a CudaSlice<f32>>,
    /// Additive bias `[B, H, L, L]` (upstream's `rpe`), added after the scale; its gradient is
    /// [`CudaAttentionGrads::dbias`]. Quadratic memory, as upstream's. The kernels read it one
    /// 64 x 64 tile per (query tile, key chunk) when `L` is a multiple of 8 (except the
    /// `mma.sync` forward where the tiles would cost it CTAs per SM, as on an A100), and element
    /// by element otherwise, which is markedly slower: prefer `L % 8 == 0` with a bias.
    pub bias: Option<&'a CudaSlice<T>>,
    /// Which kernel family runs, forward and backward ([`CudaAttentionKernel::Auto`] unless
    /// you are comparing them).
    pub kernel: CudaAttentionKernel,
}

/// Gradients of [`attention_backward_cuda`](super::attention_backward_cuda), written in place
/// (`[B, H, L, D]` each).
///
/// ```no_run
/// # use half::bf16;
/// # let dev = ltd_core::CudaDevice::new(0)?;
/// let n = 1 * 4 * 128 * 64;
/// let (mut dq, mut dk, mut dv) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?);
/// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads { dq: &mut dq, dk: &mut dk, dv: &mut dv, dbias: None };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaAttentionGrads<'a, T> {
    /// Gradient of the queries.
    pub dq: &'a mut CudaSlice<T>,
    /// Gradient of the keys.
    pub dk: &'a mut CudaSlice<T>,
    /// Gradient of the values.
    pub dv: &'a mut CudaSlice<T>,
    /// Gradient of the additive bias, `[B, H, L, L]` (zero outside the layout and at masked
    /// positions), or `None` to skip it.
    pub dbias: Option<&'a mut CudaSlice<T>>,
}
