//! Block-sparse self-attention as a candle op with autograd ([`sparse_attention`]).
//!
//! The forward runs `ltd-sparse-attn`'s fused attention (CPU, or the GPU kernels with feature
//! `cuda`) and keeps the per-row log-sum-exp in the op of that call; the backward reads it (it
//! is never recomputed) and runs the fused backward once for dq, dk, dv (and dbias).
//!
//! How the pieces sit in candle's graph: one `CustomOp3` over `(q, k, v)` produces the output.
//! With a bias, a second op over `(output, bias)` passes the output through (one copy of the
//! `[B, H, L, D]` output, small next to the `[B, H, L, L]` bias) so that candle routes a gradient
//! to the bias; its backward runs the fused backward with dbias and hands dq, dk, dv to the first
//! op, so the backward still runs once.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod functional;

pub use functional::{SparseAttentionGrads, sparse_attention_backward, sparse_attention_forward};

use std::sync::{Arc, Mutex};

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use ltd_sparse_attn::{
    AttentionShape, Layout as SparseLayout, SparseAttnError, SparseSelfAttention,
};

use crate::check::{float_dtype, rank, same_device, same_dtype, supported_device};
use crate::error::to_candle;
use crate::{LtdCandleError, Result};

/// Memory order of `q`, `k`, `v` and of the output (which has the inputs' order).
///
/// ```
/// use ltd_candle::QkvLayout;
/// assert_eq!(QkvLayout::default(), QkvLayout::Bhld);
/// assert_eq!(QkvLayout::Blhd.shape_of(&[2, 100, 4, 64]).heads, 4);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QkvLayout {
    /// `[B, H, L, D]` (the kernels' own order).
    #[default]
    Bhld,
    /// `[B, L, H, D]` (the order a `[B, L, H*D]` projection reshapes to, without a transpose).
    Blhd,
}

impl QkvLayout {
    /// The order of the dims of a tensor in this layout as `[B, H, L, D]` positions.
    fn perm(self) -> [usize; 4] {
        match self {
            QkvLayout::Bhld => [0, 1, 2, 3],
            QkvLayout::Blhd => [0, 2, 1, 3],
        }
    }

    /// The attention sizes of a rank-4 tensor in this layout.
    ///
    /// ```
    /// use ltd_candle::QkvLayout;
    /// let s = QkvLayout::Bhld.shape_of(&[2, 4, 100, 64]);
    /// assert_eq!((s.batch, s.heads, s.seq_len, s.head_dim), (2, 4, 100, 64));
    /// ```
    pub fn shape_of(self, dims: &[usize]) -> AttentionShape {
        let p = self.perm();
        AttentionShape {
            batch: dims[p[0]],
            heads: dims[p[1]],
            seq_len: dims[p[2]],
            head_dim: dims[p[3]],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            QkvLayout::Bhld => "[B, H, L, D]",
            QkvLayout::Blhd => "[B, L, H, D]",
        }
    }
}

/// Where the block layout for a sequence length comes from: a [`SparseSelfAttention`] (its
/// per-length cache, and on the GPU its per-device kernel tables) or one fixed layout.
///
/// ```
/// use ltd_candle::LayoutSource;
/// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
/// let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
/// assert_eq!(attn.layout_for(100).unwrap().num_blocks(), 7); // built for L = 100, cached
/// let fixed = std::sync::Arc::new(FixedConfig::new(2).make_layout(64).unwrap());
/// assert!(fixed.layout_for(64).is_ok());
/// assert!(fixed.layout_for(100).is_err()); // a fixed layout fits one block count only
/// ```
pub trait LayoutSource {
    /// The layout for sequence length `seq_len`.
    ///
    /// # Errors
    /// The layout cannot be built for `seq_len`, or a fixed layout has another block count.
    fn layout_for(&self, seq_len: usize) -> Result<Arc<SparseLayout>>;

    /// The layout's GPU kernel tables on `dev` (feature `cuda`).
    ///
    /// # Errors
    /// As [`layout_for`](Self::layout_for), or the upload fails.
    #[cfg(feature = "cuda")]
    fn cuda_layout_for(
        &self,
        dev: &ltd_core::CudaDevice,
        seq_len: usize,
    ) -> Result<Arc<ltd_sparse_attn::cuda::CudaAttentionLayout>>;
}

impl LayoutSource for SparseSelfAttention {
    fn layout_for(&self, seq_len: usize) -> Result<Arc<SparseLayout>> {
        Ok(self.layout(seq_len)?)
    }

    #[cfg(feature = "cuda")]
    fn cuda_layout_for(
        &self,
        dev: &ltd_core::CudaDevice,
        seq_len: usize,
    ) -> Result<Arc<ltd_sparse_attn::cuda::CudaAttentionLayout>> {
        Ok(self.cuda_layout(dev, seq_len)?)
    }
}

/// A fixed layout: fits only the lengths with its block count. On the GPU its kernel tables
/// are uploaded on every call; use a [`SparseSelfAttention`] to cache them.
impl LayoutSource for Arc<SparseLayout> {
    fn layout_for(&self, seq_len: usize) -> Result<Arc<SparseLayout>> {
        let needed = seq_len.div_ceil(self.block());
        if needed != self.num_blocks() {
            return Err(SparseAttnError::LayoutLengthMismatch {
                seq_len,
                block: self.block(),
                needed,
                num_blocks: self.num_blocks(),
            }
            .into());
        }
        Ok(self.clone())
    }

    #[cfg(feature = "cuda")]
    fn cuda_layout_for(
        &self,
        dev: &ltd_core::CudaDevice,
        seq_len: usize,
    ) -> Result<Arc<ltd_sparse_attn::cuda::CudaAttentionLayout>> {
        let layout = self.layout_for(seq_len)?;
        Ok(Arc::new(ltd_sparse_attn::cuda::CudaAttentionLayout::new(
            dev, &layout,
        )?))
    }
}

/// Options of [`sparse_attention`].
///
/// ```
/// use ltd_candle::{QkvLayout, SparseAttentionOptions};
/// let o = SparseAttentionOptions { causal: true, layout: QkvLayout::Blhd, ..Default::default() };
/// assert!(o.scale.is_none() && o.bias.is_none() && o.key_padding_mask.is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SparseAttentionOptions {
    /// Score scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Token-level causality on top of the layout: query `i` sees keys `j <= i` only.
    pub causal: bool,
    /// Key-padding mask `[B, L]`: `u8` (non-zero keeps the key, zero drops it) or f32 / f16 /
    /// bf16 added to the scores (`0` keeps, `-inf` drops). Gets no gradient.
    pub key_padding_mask: Option<Tensor>,
    /// Additive bias `[B, H, L, L]` (the dtype of `q`), added after the scale; gets a gradient.
    /// A broadcast bias (`[1, H, L, L].broadcast_as(..)`) works: candle sums its gradient.
    pub bias: Option<Tensor>,
    /// The order of `q`, `k`, `v` and the output.
    pub layout: QkvLayout,
}

/// Block-sparse self-attention `softmax(q kᵀ · scale + bias + mask) v` restricted to the layout's
/// active tiles (and to `j <= i` when causal), as a candle op with autograd: `backward()` gives
/// dq, dk, dv and dbias. A row whose keys are all masked gives zeros (and zero gradients); NaN
/// and infinities in the inputs propagate.
///
/// - `q`, `k`, `v`: the same shape, `[B, H, L, D]` or `[B, L, H, D]` ([`SparseAttentionOptions::layout`]),
///   the same dtype (f32, f16, bf16) and device. `H` must be the layout's head count. Any `L`:
///   the layout for `L` comes from `source` (a [`SparseSelfAttention`] caches one per length).
/// - CPU: any strides are honoured (transposed, narrowed, broadcast views); the kernels compute
///   in f32 and read the inputs once into f32, so there is no extra copy to avoid.
/// - CUDA (feature `cuda`): f16 and bf16, `D` 64 or 128, on candle's own stream. The kernels read
///   contiguous `[B, H, L, D]` buffers in place at any 16-byte-aligned offset (a narrow along B
///   or H, a slice of a bigger buffer); other inputs are copied into one first on the same device
///   (`[B, L, H, D]`, a transposed or strided view, a misaligned offset), and the output and
///   gradients come back in the inputs' order.
///
/// # Errors
/// [`LtdCandleError::Unsupported`] for another dtype or device (or a dtype / head dim the GPU
/// kernels lack), [`LtdCandleError::Shape`], [`LtdCandleError::DTypeMismatch`],
/// [`LtdCandleError::DeviceMismatch`] for inconsistent arguments, [`LtdCandleError::SparseAttn`]
/// for a head count other than the layout's.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use ltd_candle::{SparseAttentionOptions, sparse_attention};
/// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
/// let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
/// let q = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 2, 40, 8), &Device::Cpu)?)?;
/// let opts = SparseAttentionOptions { causal: true, ..Default::default() };
/// let out = sparse_attention(&q, &q, &q, &attn, &opts)?;
/// let grads = out.sqr()?.sum_all()?.backward()?;
/// assert_eq!(grads.get(&q).unwrap().dims(), &[1, 2, 40, 8]);
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn sparse_attention<S: LayoutSource + ?Sized>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    source: &S,
    opts: &SparseAttentionOptions,
) -> Result<Tensor> {
    let (ctx, bias) = call_context(q, k, v, source, opts)?;
    let out = q
        .apply_op3_arc(k, v, Arc::new(Box::new(AttnCore { ctx: ctx.clone() })))
        .map_err(|e| ctx.take_error(e))?;
    match bias {
        Some(bias) => Ok(out.apply_op2(&bias, BiasTap { ctx: ctx.clone() })?),
        None => Ok(out),
    }
}

/// Checks one call's arguments and gathers what its forward and backward share (the layout,
/// its GPU tables, the mask as an additive f32 tensor); also returns the checked bias.
fn call_context<S: LayoutSource + ?Sized>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    source: &S,
    opts: &SparseAttentionOptions,
) -> Result<(Arc<AttnCtx>, Option<Tensor>)> {
    let order = opts.layout;
    let dims = rank("q", q, 4, order.describe())?.to_vec();
    let dtype = float_dtype("q dtype", q)?;
    supported_device("q", q.device())?;
    for (what, t) in [("k", k), ("v", v)] {
        if t.dims() != dims.as_slice() {
            return Err(LtdCandleError::Shape {
                what,
                got: t.dims().to_vec(),
                expected: format!("{dims:?} (the shape of q)"),
            });
        }
        same_dtype(what, t, dtype, "q")?;
        same_device(what, t, q.device(), "q")?;
    }
    let shape = order.shape_of(&dims);
    let layout = source.layout_for(shape.seq_len)?;
    if layout.num_heads() != shape.heads {
        return Err(SparseAttnError::HeadMismatch {
            expected: layout.num_heads(),
            actual: shape.heads,
        }
        .into());
    }
    let kpm = opts
        .key_padding_mask
        .as_ref()
        .map(|m| additive_key_padding(m, q, shape))
        .transpose()?;
    let bias = opts
        .bias
        .as_ref()
        .map(|b| check_bias(b, q, shape))
        .transpose()?;
    #[cfg(feature = "cuda")]
    let cuda_layout = match q.device() {
        candle_core::Device::Cuda(dev) => {
            let ltd_dev = crate::cuda::ltd_device(dev)?;
            cuda::check_supported(dtype, shape)?;
            Some(source.cuda_layout_for(&ltd_dev, shape.seq_len)?)
        }
        _ => None,
    };
    let ctx = Arc::new(AttnCtx {
        layout,
        #[cfg(feature = "cuda")]
        cuda_layout,
        shape,
        order,
        scale: opts.scale,
        causal: opts.causal,
        kpm,
        bias: bias.as_ref().map(Tensor::detach),
        inputs: bias.as_ref().map(|_| [q.detach(), k.detach(), v.detach()]),
        lse: Mutex::new(None),
        stash: Mutex::new(None),
        error: Mutex::new(None),
    });
    Ok((ctx, bias))
}

/// Checks a key-padding mask and turns it into an additive contiguous f32 `[B, L]` tensor.
fn additive_key_padding(m: &Tensor, q: &Tensor, shape: AttentionShape) -> Result<Tensor> {
    same_device("key_padding_mask", m, q.device(), "q")?;
    if m.dims() != [shape.batch, shape.seq_len] {
        return Err(LtdCandleError::Shape {
            what: "key_padding_mask",
            got: m.dims().to_vec(),
            expected: format!("[B={}, L={}]", shape.batch, shape.seq_len),
        });
    }
    let additive = match m.dtype() {
        DType::U8 => {
            let zeros = Tensor::zeros(m.shape(), DType::F32, m.device())?;
            let neg = Tensor::full(f32::NEG_INFINITY, m.shape(), m.device())?;
            m.ne(0u8)?.where_cond(&zeros, &neg)?
        }
        DType::F32 | DType::F16 | DType::BF16 => m.to_dtype(DType::F32)?,
        d => {
            return Err(LtdCandleError::Unsupported {
                what: "key_padding_mask",
                got: format!("dtype {d:?}"),
                expected: "u8 (keep / drop) or f32, f16, bf16 (additive)".into(),
            });
        }
    };
    Ok(additive.contiguous()?)
}

/// Checks the bias's shape, dtype and device.
fn check_bias(b: &Tensor, q: &Tensor, shape: AttentionShape) -> Result<Tensor> {
    same_device("bias", b, q.device(), "q")?;
    same_dtype("bias", b, q.dtype(), "q")?;
    let want = [shape.batch, shape.heads, shape.seq_len, shape.seq_len];
    if b.dims() != want {
        return Err(LtdCandleError::Shape {
            what: "bias",
            got: b.dims().to_vec(),
            expected: format!("{want:?} ([B, H, L, L]; broadcast_as a smaller bias)"),
        });
    }
    Ok(b.clone())
}

/// Everything one attention call shares between its forward and backward.
pub(crate) struct AttnCtx {
    pub(crate) layout: Arc<SparseLayout>,
    #[cfg(feature = "cuda")]
    pub(crate) cuda_layout: Option<Arc<ltd_sparse_attn::cuda::CudaAttentionLayout>>,
    pub(crate) shape: AttentionShape,
    pub(crate) order: QkvLayout,
    pub(crate) scale: Option<f32>,
    pub(crate) causal: bool,
    /// Additive f32 `[B, L]`, contiguous, on the inputs' device.
    pub(crate) kpm: Option<Tensor>,
    /// The bias, detached (read by the forward and backward).
    pub(crate) bias: Option<Tensor>,
    /// Detached q, k, v: only with a bias, whose op runs the backward.
    inputs: Option<[Tensor; 3]>,
    /// The forward's log-sum-exp, f32 `[B, H, L]` on the inputs' device, for the backward.
    pub(crate) lse: Mutex<Option<Tensor>>,
    /// dq, dk, dv computed by the bias op's backward for the attention op's backward.
    stash: Mutex<Option<[Tensor; 3]>>,
    /// The typed error of a failed forward (candle's callbacks only carry its message).
    error: Mutex<Option<LtdCandleError>>,
}

/// Locks a mutex, ignoring poisoning (the data are plain values, valid after any panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AttnCtx {
    /// Keeps a typed error for [`sparse_attention`] to return, and gives candle its message.
    fn record<T>(&self, r: Result<T>) -> candle_core::Result<T> {
        r.map_err(|e| {
            let c = candle_core::Error::Msg(e.to_string());
            *lock(&self.error) = Some(e);
            c
        })
    }

    fn take_error(&self, e: candle_core::Error) -> LtdCandleError {
        lock(&self.error)
            .take()
            .unwrap_or(LtdCandleError::Candle(e))
    }

    /// The output and dims of a `[B, H, L, D]` result in the inputs' order.
    pub(crate) fn out_shape(&self) -> Shape {
        let s = self.shape;
        match self.order {
            QkvLayout::Bhld => (s.batch, s.heads, s.seq_len, s.head_dim).into(),
            QkvLayout::Blhd => (s.batch, s.seq_len, s.heads, s.head_dim).into(),
        }
    }

    /// The fused backward: dq, dk, dv in the inputs' order and (if asked) dbias `[B, H, L, L]`.
    fn backward(
        &self,
        qkv: [&Tensor; 3],
        out: &Tensor,
        dout: &Tensor,
        want_dbias: bool,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        self.run_backward(qkv, out, dout, want_dbias)
            .map_err(to_candle)
    }

    /// [`backward`](Self::backward) with our typed error.
    fn run_backward(
        &self,
        [q, k, v]: [&Tensor; 3],
        out: &Tensor,
        dout: &Tensor,
        want_dbias: bool,
    ) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        match q.device() {
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(_) => cuda::backward(self, [q, k, v], out, dout, want_dbias),
            _ => cpu::backward(self, [q, k, v], out, dout, want_dbias),
        }
    }
}

/// The attention op over `(q, k, v)`.
struct AttnCore {
    ctx: Arc<AttnCtx>,
}

impl CustomOp3 for AttnCore {
    fn name(&self) -> &'static str {
        "ltd-sparse-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let r = cpu::forward(&self.ctx, [(s1, l1), (s2, l2), (s3, l3)]);
        self.ctx.record(r)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let r = cuda::forward(&self.ctx, [(s1, l1), (s2, l2), (s3, l3)]);
        self.ctx.record(r)
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if let Some([dq, dk, dv]) = lock(&self.ctx.stash).take() {
            return Ok((Some(dq), Some(dk), Some(dv)));
        }
        let (dq, dk, dv, _) = self.ctx.backward([q, k, v], res, grad_res, false)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Passes the attention output through so that candle gives the bias a gradient.
struct BiasTap {
    ctx: Arc<AttnCtx>,
}

impl CustomOp2 for BiasTap {
    fn name(&self) -> &'static str {
        "ltd-sparse-attention-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s1.try_clone(l1)?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        crate::cuda::count_copy();
        Ok((s1.try_clone(l1)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _out: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some([q, k, v]) = &self.ctx.inputs else {
            return Err(candle_core::Error::Msg(
                "ltd-sparse-attention-bias: the call kept no inputs".into(),
            ));
        };
        let (dq, dk, dv, dbias) = self.ctx.backward([q, k, v], res, grad_res, true)?;
        *lock(&self.ctx.stash) = Some([dq, dk, dv]);
        Ok((Some(grad_res.clone()), dbias))
    }
}
