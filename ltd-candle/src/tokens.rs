//! Random-LTD's token ops on candle tensors, differentiable: [`gather_tokens`], [`route`]
//! (= [`scatter_tokens`]) and the sampler [`sample_token_indices`].
//!
//! Indices are **U32** tensors: `[L, B, r]` from the sampler, `[B, r]` for one layer
//! (`indices.get(layer)`), each row strictly ascending and below `S`. U32 is candle's own index
//! dtype (`index_select`, `gather`, `index_add` take it on every backend), so the kept positions
//! can feed a RoPE table or an embedding lookup directly. The values are the i32 positions of
//! `ltd_core::TokenSampler` (and of the GPU sampler, bit for bit).
//!
//! Gradients (spec §1.4 "net effect"). Candle adds up the gradients that reach a tensor, so each
//! op returns its own exact gradient and their sum is upstream's net effect:
//! - [`gather_tokens`]: `g_h[b, idx[b, k]] = g_part[b, k]`, zero at the other rows;
//! - [`route`]: `g_h = g_y` at dropped rows and zero at kept rows (they were overwritten),
//!   `g_layer_out = gather(g_y)`.
//!
//! So for `y = route(h, layer(gather_tokens(h, idx)), idx)`: `dL/dh[dropped] = g_y[dropped]`
//! (the skip path) and `dL/dh[kept] = J_layerᵀ · g_y[kept]`, and a pass-through `h` that also
//! feeds other ops gets their gradients added too (upstream's overwrite would drop them).

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor};
use half::{bf16, f16};
use ltd_core::{HiddenOrder, IndexView, TokenSampler, gather_tensor, route_tensor};

use crate::check::{float_dtype, rank, same_device, same_dtype, supported_device};
use crate::cpu::{cpu_storage, hidden_view, index_rows};
use crate::error::to_candle;
use crate::{LtdCandleError, Result};

/// `[B, S, C]` / `[S, B, C]` dims as `(B, S, C)`.
pub(crate) fn bsc(dims: &[usize], order: HiddenOrder) -> (usize, usize, usize) {
    match order {
        HiddenOrder::BatchSeq => (dims[0], dims[1], dims[2]),
        HiddenOrder::SeqBatch => (dims[1], dims[0], dims[2]),
    }
}

/// The dims of a hidden tensor of `batch`, `seq`, `channels` in `order`.
pub(crate) fn hidden_dims(order: HiddenOrder, batch: usize, seq: usize, channels: usize) -> Shape {
    match order {
        HiddenOrder::BatchSeq => (batch, seq, channels).into(),
        HiddenOrder::SeqBatch => (seq, batch, channels).into(),
    }
}

/// `[B, S, C]` or `[S, B, C]`.
pub(crate) fn order_name(order: HiddenOrder) -> &'static str {
    match order {
        HiddenOrder::BatchSeq => "[B, S, C]",
        HiddenOrder::SeqBatch => "[S, B, C]",
    }
}

/// Makes the channel stride 1 (the ops' only layout requirement), copying only if needed.
fn channels_contiguous(t: &Tensor) -> Result<Tensor> {
    let st = t.stride();
    Ok(if st[2] == 1 || t.dims()[2] == 1 {
        t.clone()
    } else {
        t.contiguous()?
    })
}

/// Checks hidden states and one layer's indices; returns `(B, S, C, r)`.
fn check_hidden_and_indices(
    h: &Tensor,
    idx: &Tensor,
    order: HiddenOrder,
) -> Result<(usize, usize, usize, usize)> {
    let dims = rank("hidden states", h, 3, order_name(order))?;
    float_dtype("hidden states dtype", h)?;
    supported_device("hidden states", h.device())?;
    let (b, s, c) = bsc(dims, order);
    same_device("indices", idx, h.device(), "the hidden states")?;
    if idx.dtype() != DType::U32 {
        return Err(LtdCandleError::Unsupported {
            what: "indices",
            got: format!("dtype {:?}", idx.dtype()),
            expected: "u32 (as sample_token_indices writes them)".into(),
        });
    }
    let idims = idx.dims();
    if idims.len() != 2 || idims[0] != b || idims[1] == 0 || idims[1] > s {
        return Err(LtdCandleError::Shape {
            what: "indices",
            got: idims.to_vec(),
            expected: format!("[B={b}, r] with 1 <= r <= S={s} (one layer's indices)"),
        });
    }
    if let Device::Cpu = idx.device() {
        let (st, l) = idx.storage_and_layout();
        index_rows(cpu_storage("indices", &st)?, l, s)?;
    }
    Ok((b, s, c, idims[1]))
}

/// The kept rows of the hidden states, `part[b, k] = h[b, idx[b, k]]`: `[B, r, C]` for
/// [`HiddenOrder::BatchSeq`], `[r, B, C]` for [`HiddenOrder::SeqBatch`], contiguous, with
/// autograd (the gradient goes to the kept rows of `h`).
///
/// `h` may be any strided view whose channel stride is 1 (others are made contiguous first);
/// `idx` is one layer's U32 `[B, r]` indices (strictly ascending rows, below `S`).
///
/// # Errors
/// [`LtdCandleError::Shape`], [`LtdCandleError::Unsupported`] (dtype other than f32 / f16 / bf16,
/// indices not U32, a device this build does not run on), [`LtdCandleError::DeviceMismatch`],
/// [`LtdCandleError::InvalidIndex`] (checked on the CPU).
///
/// ```
/// use candle_core::{Device, IndexOp, Tensor};
/// use ltd_candle::{gather_tokens, sample_token_indices};
/// use ltd_core::HiddenOrder;
/// let h = Tensor::arange(0f32, 24.0, &Device::Cpu)?.reshape((2, 4, 3))?; // [B=2, S=4, C=3]
/// let idx = Tensor::new(&[[0u32, 3], [1, 2]], &Device::Cpu)?;
/// let part = gather_tokens(&h, &idx, HiddenOrder::BatchSeq)?;
/// assert_eq!(part.i((1, 0))?.to_vec1::<f32>()?, vec![15.0, 16.0, 17.0]); // h[1, 1]
/// let all = sample_token_indices(7, 0, 3, 2, 4, 2, &Device::Cpu)?; // [L=3, B=2, r=2]
/// assert_eq!(gather_tokens(&h, &all.i(1)?, HiddenOrder::BatchSeq)?.dims(), &[2, 2, 3]);
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn gather_tokens(h: &Tensor, idx: &Tensor, order: HiddenOrder) -> Result<Tensor> {
    check_hidden_and_indices(h, idx, order)?;
    let h = channels_contiguous(h)?;
    Ok(h.apply_op2(idx, GatherTokens { order })?)
}

/// The fused out-of-place route: `y = h` with the kept rows replaced by the layer's output,
/// `y[b, idx[b, k]] = layer_out[b, k]`, every row of `y` written once (no clone of `h` first),
/// with autograd: `h` gets `g_y` at the dropped rows, `layer_out` gets `g_y` at the kept rows.
///
/// `layer_out` is `[B, r, C]` / `[r, B, C]` (the shape of [`gather_tokens`]' result).
///
/// # Errors
/// As [`gather_tokens`], plus [`LtdCandleError::Shape`] / [`LtdCandleError::DTypeMismatch`] /
/// [`LtdCandleError::DeviceMismatch`] for a `layer_out` that does not match.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_candle::route;
/// use ltd_core::HiddenOrder;
/// let h = Tensor::zeros((1, 4, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let out = Tensor::ones((1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let idx = Tensor::new(&[[1u32, 3]], &Device::Cpu)?;
/// let y = route(&h, &out, &idx, HiddenOrder::BatchSeq)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 0., 1., 1., 0., 0., 1., 1.]);
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn route(h: &Tensor, layer_out: &Tensor, idx: &Tensor, order: HiddenOrder) -> Result<Tensor> {
    let (b, _, c, r) = check_hidden_and_indices(h, idx, order)?;
    rank("layer output", layer_out, 3, &order.describe(b, "r", r, c))?;
    same_dtype("layer output", layer_out, h.dtype(), "the hidden states")?;
    same_device("layer output", layer_out, h.device(), "the hidden states")?;
    if bsc(layer_out.dims(), order) != (b, r, c) {
        return Err(LtdCandleError::Shape {
            what: "layer output",
            got: layer_out.dims().to_vec(),
            expected: order.describe(b, "r", r, c),
        });
    }
    let h = channels_contiguous(h)?;
    let part = channels_contiguous(layer_out)?;
    Ok(h.apply_op3(&part, idx, RouteTokens { order })?)
}

/// Upstream's `ScatterTokens` forward, `y = h` with `y[b, idx[b, k]] = part[b, k]`: the same op
/// as [`route`] (and the same gradients, see the module docs for why upstream's pass-all
/// gradient to `h` cannot be kept in an autograd that adds gradients up).
///
/// # Errors
/// As [`route`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_candle::scatter_tokens;
/// use ltd_core::HiddenOrder;
/// let h = Tensor::new(&[[[1f32], [2.], [3.]]], &Device::Cpu)?; // [B=1, S=3, C=1]
/// let part = Tensor::new(&[[[9f32]]], &Device::Cpu)?;
/// let y = scatter_tokens(&h, &part, &Tensor::new(&[[2u32]], &Device::Cpu)?, HiddenOrder::BatchSeq)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![1., 2., 9.]);
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn scatter_tokens(
    h: &Tensor,
    part: &Tensor,
    idx: &Tensor,
    order: HiddenOrder,
) -> Result<Tensor> {
    route(h, part, idx, order)
}

/// The kept positions of `layers` LTD layers for `step`: U32 `[L, B, r]`, each row strictly
/// ascending, sampled with `ltd_core::TokenSampler` (keyed ChaCha8, seed and step only, so a
/// recomputation gets the same indices). On a CUDA device (feature `cuda`) the GPU sampler
/// writes them on candle's stream, bit for bit the CPU's.
///
/// # Errors
/// [`LtdCandleError::Core`] for `r = 0`, `r > S`, zero sizes; [`LtdCandleError::Unsupported`]
/// for a device this build does not run on.
///
/// ```
/// use candle_core::Device;
/// let idx = ltd_candle::sample_token_indices(42, 100, 2, 3, 16, 5, &Device::Cpu)?;
/// assert_eq!(idx.dims(), &[2, 3, 5]);
/// let rows = idx.flatten_to(1)?.to_vec2::<u32>()?;
/// assert!(rows.iter().all(|r| r.windows(2).all(|w| w[0] < w[1]) && r[4] < 16));
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
pub fn sample_token_indices(
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
    device: &Device,
) -> Result<Tensor> {
    supported_device("sampler device", device)?;
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => {
            crate::cuda::sample_indices(dev, seed, step, layers, batch, seq, reserved)
        }
        _ => {
            let idx = TokenSampler::new(seed).sample(step, layers, batch, seq, reserved)?;
            // Positions are in [0, S) with S <= i32::MAX + 1: non-negative, so the cast is exact.
            let data: Vec<u32> = idx.into_vec().into_iter().map(|x| x as u32).collect();
            Ok(Tensor::from_vec(data, (layers, batch, reserved), device)?)
        }
    }
}

fn zeros_broadcast(like: &Tensor) -> candle_core::Result<Tensor> {
    let c = like.dims()[2];
    Tensor::zeros(c, like.dtype(), like.device())?
        .reshape((1, 1, c))?
        .broadcast_as(like.shape())
}

/// `gather` without autograd (a backward building block).
fn gather_raw(h: &Tensor, idx: &Tensor, order: HiddenOrder) -> candle_core::Result<Tensor> {
    let h = channels_contiguous(h).map_err(to_candle)?;
    h.apply_op2_no_bwd(idx, &GatherTokens { order })
}

/// `route` without autograd (a backward building block).
fn route_raw(
    h: &Tensor,
    part: &Tensor,
    idx: &Tensor,
    order: HiddenOrder,
) -> candle_core::Result<Tensor> {
    let h = channels_contiguous(h).map_err(to_candle)?;
    let part = channels_contiguous(part).map_err(to_candle)?;
    h.apply_op3_no_bwd(&part, idx, &RouteTokens { order })
}

macro_rules! dispatch_float {
    ($dtype:expr, $f:ident, $($arg:expr),*) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F16 => $f::<f16>($($arg),*),
            DType::BF16 => $f::<bf16>($($arg),*),
            d => Err(LtdCandleError::Unsupported {
                what: "hidden states dtype",
                got: format!("{d:?}"),
                expected: crate::check::FLOAT_DTYPES.into(),
            }),
        }
    };
}

fn gather_cpu<T: candle_core::WithDType + ltd_core::Element>(
    order: HiddenOrder,
    (sh, lh): (&CpuStorage, &Layout),
    (si, li): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    let h = hidden_view::<T>("hidden states", sh, lh, order)?;
    let l = *h.layout();
    let rows = index_rows(si, li, l.seq())?;
    let r = li.dims()[1];
    let part = gather_tensor(&h, &IndexView::new(&rows, l.batch(), r)?)?;
    let shape = hidden_dims(order, l.batch(), r, l.channels());
    Ok((T::to_cpu_storage_owned(part.into_vec()), shape))
}

fn route_cpu<T: candle_core::WithDType + ltd_core::Element>(
    order: HiddenOrder,
    (sh, lh): (&CpuStorage, &Layout),
    (sp, lp): (&CpuStorage, &Layout),
    (si, li): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    let h = hidden_view::<T>("hidden states", sh, lh, order)?;
    let part = hidden_view::<T>("layer output", sp, lp, order)?;
    let l = *h.layout();
    let rows = index_rows(si, li, l.seq())?;
    let idx = IndexView::new(&rows, l.batch(), li.dims()[1])?;
    let y = route_tensor(&h, &part, &idx)?;
    let shape = hidden_dims(order, l.batch(), l.seq(), l.channels());
    Ok((T::to_cpu_storage_owned(y.into_vec()), shape))
}

/// `(h, idx) -> part`, gradient to `h` only.
struct GatherTokens {
    order: HiddenOrder,
}

impl CustomOp2 for GatherTokens {
    fn name(&self) -> &'static str {
        "ltd-gather-tokens"
    }

    fn cpu_fwd(
        &self,
        sh: &CpuStorage,
        lh: &Layout,
        si: &CpuStorage,
        li: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_float!(sh.dtype(), gather_cpu, self.order, (sh, lh), (si, li)).map_err(to_candle)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        sh: &CudaStorage,
        lh: &Layout,
        si: &CudaStorage,
        li: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        crate::cuda::gather_rows(self.order, (sh, lh), (si, li)).map_err(to_candle)
    }

    fn bwd(
        &self,
        h: &Tensor,
        idx: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g_h = route_raw(&zeros_broadcast(h)?, grad, idx, self.order)?;
        Ok((Some(g_h), None))
    }
}

/// `(h, layer_out, idx) -> y`, gradients to `h` and `layer_out`.
struct RouteTokens {
    order: HiddenOrder,
}

impl CustomOp3 for RouteTokens {
    fn name(&self) -> &'static str {
        "ltd-route-tokens"
    }

    fn cpu_fwd(
        &self,
        sh: &CpuStorage,
        lh: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        si: &CpuStorage,
        li: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_float!(
            sh.dtype(),
            route_cpu,
            self.order,
            (sh, lh),
            (sp, lp),
            (si, li)
        )
        .map_err(to_candle)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        sh: &CudaStorage,
        lh: &Layout,
        sp: &CudaStorage,
        lp: &Layout,
        si: &CudaStorage,
        li: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        crate::cuda::route_rows(self.order, (sh, lh), (sp, lp), (si, li)).map_err(to_candle)
    }

    fn bwd(
        &self,
        _h: &Tensor,
        part: &Tensor,
        idx: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g_h = route_raw(grad, &zeros_broadcast(part)?, idx, self.order)?;
        let g_part = gather_raw(grad, idx, self.order)?;
        Ok((Some(g_h), Some(g_part), None))
    }
}
