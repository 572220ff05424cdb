//! CUDA glue (feature `cuda`): candle's CUDA storages to `ltd-core`'s kernels, on candle's own
//! stream (`ltd_core::CudaDevice::from_stream`), reading tensors at their offsets with no copy.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Shape, Storage, Tensor};
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use half::{bf16, f16};
use ltd_core::cuda::{
    CudaHidden, CudaHiddenMut, CudaIndices, MaskForm, gather_cuda, mask_gather_cuda, route_cuda,
    sample_tokens_cuda_into,
};
use ltd_core::{Element, HiddenLayout, HiddenOrder};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cpu::hidden_layout;
use crate::tokens::hidden_dims;
use crate::{LtdCandleError, Result};

/// Device-to-device copies made by the CUDA glue so far.
static COPIES: AtomicU64 = AtomicU64::new(0);

/// Counts one device-to-device copy of ours.
pub(crate) fn count_copy() {
    COPIES.fetch_add(1, Ordering::Relaxed);
}

/// How many device-to-device copies the CUDA glue has made in this process (feature `cuda`):
/// inputs the GPU attention kernels cannot read in place (`[B, L, H, D]`, strided views,
/// slices at an offset) and outputs returned in `[B, L, H, D]` order, masks that were not
/// contiguous, and the pass-through of the output when a bias is given. Zero for contiguous
/// `[B, H, L, D]` attention and for every Random-LTD op. For benchmarks and tests.
///
/// ```no_run
/// let before = ltd_candle::cuda_device_copies();
/// // ... run ops on CUDA tensors ...
/// println!("{} copies", ltd_candle::cuda_device_copies() - before);
/// ```
pub fn cuda_device_copies() -> u64 {
    COPIES.load(Ordering::Relaxed)
}

/// Our device handle on candle's context and stream: every launch is ordered with candle's
/// work by the stream alone; kernel images load once per context.
pub(crate) fn ltd_device(dev: &CudaDevice) -> Result<ltd_core::CudaDevice> {
    Ok(ltd_core::CudaDevice::from_stream(dev.cuda_stream())?)
}

/// A tensor built on a CUDA slice of ours (no autograd history).
pub(crate) fn tensor_from_slice<T: CudaDType + DeviceRepr>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    let storage = CudaStorage::wrap_cuda_slice(slice, dev.clone());
    Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
}

/// A new uninitialised buffer of `n` elements on candle's stream, for an output our kernel
/// writes completely.
pub(crate) fn alloc_output<T: DeviceRepr>(
    dev: &ltd_core::CudaDevice,
    n: usize,
) -> Result<CudaSlice<T>> {
    // SAFETY: only called for outputs that the next kernel on the same stream writes in full
    // (gather: every kept row; route: every row once; the sampler: every index; attention:
    // every output, lse and gradient element), before anything reads them.
    unsafe { dev.stream().alloc::<T>(n.max(1)) }.map_err(|source| {
        LtdCandleError::Core(ltd_core::CoreError::Cuda {
            during: "allocating an output",
            source,
        })
    })
}

/// The elements of a storage from its layout's start offset on.
pub(crate) fn view_from<'a, T: CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<CudaView<'a, T>> {
    Ok(s.as_cuda_slice::<T>()?.slice(l.start_offset()..))
}

/// `[B, r]` U32 indices of one layer at their offset (rows must be contiguous).
fn layer_indices<'a>(s: &'a CudaStorage, l: &Layout, seq: usize) -> Result<CudaIndices<'a>> {
    let (dims, st) = (l.dims(), l.stride());
    let (b, r) = (dims[0], dims[1]);
    if (r > 1 && st[1] != 1) || (b > 1 && st[0] != r) {
        return Err(LtdCandleError::Unsupported {
            what: "CUDA indices",
            got: format!("strides {st:?}"),
            expected: format!("contiguous [B={b}, r={r}] rows (call .contiguous())"),
        });
    }
    let start = l.start_offset();
    let view = s.as_cuda_slice::<u32>()?.slice(start..start + b * r);
    Ok(CudaIndices::new(view, 1, b, r, seq)?)
}

fn unsupported_dtype(d: DType) -> LtdCandleError {
    LtdCandleError::Unsupported {
        what: "hidden states dtype",
        got: format!("{d:?}"),
        expected: crate::check::FLOAT_DTYPES.into(),
    }
}

/// GPU gather: `(h, idx) -> part`, contiguous in `order`.
pub(crate) fn gather_rows(
    order: HiddenOrder,
    h: (&CudaStorage, &Layout),
    idx: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    match h.0.dtype() {
        DType::F32 => gather_t::<f32>(order, h, idx),
        DType::F16 => gather_t::<f16>(order, h, idx),
        DType::BF16 => gather_t::<bf16>(order, h, idx),
        d => Err(unsupported_dtype(d)),
    }
}

fn gather_t<T: CudaDType + DeviceRepr + Element>(
    order: HiddenOrder,
    (sh, lh): (&CudaStorage, &Layout),
    (si, li): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = ltd_device(&sh.device)?;
    let hl = hidden_layout("hidden states", lh, order)?;
    let idx = layer_indices(si, li, hl.seq())?;
    let (b, r, c) = (hl.batch(), idx.reserved(), hl.channels());
    let pl = HiddenLayout::contiguous(order, b, r, c)?;
    let mut part = alloc_output::<T>(&dev, b * r * c)?;
    gather_cuda(
        &dev,
        CudaHidden::new(view_from::<T>(sh, lh)?, hl)?,
        &idx,
        0,
        CudaHiddenMut::new(&mut part, pl)?,
    )?;
    let storage = CudaStorage::wrap_cuda_slice(part, sh.device.clone());
    Ok((storage, hidden_dims(order, b, r, c)))
}

/// GPU route: `(h, part, idx) -> y`, contiguous in `order`.
pub(crate) fn route_rows(
    order: HiddenOrder,
    h: (&CudaStorage, &Layout),
    part: (&CudaStorage, &Layout),
    idx: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    match h.0.dtype() {
        DType::F32 => route_t::<f32>(order, h, part, idx),
        DType::F16 => route_t::<f16>(order, h, part, idx),
        DType::BF16 => route_t::<bf16>(order, h, part, idx),
        d => Err(unsupported_dtype(d)),
    }
}

fn route_t<T: CudaDType + DeviceRepr + Element>(
    order: HiddenOrder,
    (sh, lh): (&CudaStorage, &Layout),
    (sp, lp): (&CudaStorage, &Layout),
    (si, li): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = ltd_device(&sh.device)?;
    let hl = hidden_layout("hidden states", lh, order)?;
    let pl = hidden_layout("layer output", lp, order)?;
    let idx = layer_indices(si, li, hl.seq())?;
    let (b, s, c) = (hl.batch(), hl.seq(), hl.channels());
    let yl = HiddenLayout::contiguous(order, b, s, c)?;
    let mut y = alloc_output::<T>(&dev, b * s * c)?;
    route_cuda(
        &dev,
        CudaHidden::new(view_from::<T>(sh, lh)?, hl)?,
        CudaHidden::new(view_from::<T>(sp, lp)?, pl)?,
        &idx,
        0,
        CudaHiddenMut::new(&mut y, yl)?,
    )?;
    let storage = CudaStorage::wrap_cuda_slice(y, sh.device.clone());
    Ok((storage, hidden_dims(order, b, s, c)))
}

/// The GPU sampler into a new U32 `[L, B, r]` tensor on candle's stream.
pub(crate) fn sample_indices(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
) -> Result<Tensor> {
    let ltd = ltd_device(dev)?;
    let n = layers
        .checked_mul(batch)
        .and_then(|x| x.checked_mul(reserved))
        .ok_or(ltd_core::CoreError::SizeOverflow {
            what: "sampled indices",
        })?;
    let mut out = alloc_output::<u32>(&ltd, n)?;
    sample_tokens_cuda_into(
        &ltd,
        seed,
        step,
        layers,
        batch,
        seq,
        reserved,
        out.slice_mut(..n),
    )?;
    Ok(tensor_from_slice(out, dev, (layers, batch, reserved)))
}

/// The masks of every LTD layer at the kept positions: `[L, B, 1, rows, r]` (one launch).
pub(crate) fn gather_masks(
    dev: &CudaDevice,
    mask: &Tensor,
    indices: &Tensor,
    reserved: usize,
) -> Result<Tensor> {
    match mask.dtype() {
        DType::U8 => gather_masks_t::<u8>(dev, mask, indices, reserved),
        DType::F32 => gather_masks_t::<f32>(dev, mask, indices, reserved),
        DType::F16 => gather_masks_t::<f16>(dev, mask, indices, reserved),
        DType::BF16 => gather_masks_t::<bf16>(dev, mask, indices, reserved),
        d => Err(LtdCandleError::Unsupported {
            what: "mask",
            got: format!("dtype {d:?}"),
            expected: "u8, f32, f16 or bf16".into(),
        }),
    }
}

fn cuda_storage<'a>(what: &'static str, s: &'a Storage) -> Result<&'a CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        _ => Err(LtdCandleError::Unsupported {
            what,
            got: "a non-CUDA storage".into(),
            expected: "a CUDA tensor on the CUDA path".into(),
        }),
    }
}

fn gather_masks_t<M: CudaDType + DeviceRepr>(
    dev: &CudaDevice,
    mask: &Tensor,
    indices: &Tensor,
    reserved: usize,
) -> Result<Tensor> {
    let ltd = ltd_device(dev)?;
    // The kernel reads a contiguous mask: a strided one is made contiguous once per step.
    if !mask.is_contiguous() {
        count_copy();
    }
    let mask = mask.contiguous()?;
    let indices = indices.contiguous()?;
    let (b, _, rows, s) = mask.dims4()?;
    let layers = indices.dims()[0];
    let form = if rows == 1 && s != 1 {
        MaskForm::KeyPadding
    } else {
        MaskForm::Full
    };
    let out_rows = if form == MaskForm::Full { reserved } else { 1 };
    let n = layers * b * out_rows * reserved;
    let mut out = alloc_output::<M>(&ltd, n)?;
    {
        let (ms, ml) = mask.storage_and_layout();
        let (is, il) = indices.storage_and_layout();
        let (ms, is) = (cuda_storage("mask", &ms)?, cuda_storage("indices", &is)?);
        let m = ms.as_cuda_slice::<M>()?;
        let m = m.slice(ml.start_offset()..ml.start_offset() + mask.elem_count());
        let i = is.as_cuda_slice::<u32>()?;
        let i = i.slice(il.start_offset()..il.start_offset() + layers * b * reserved);
        let idx = CudaIndices::new(i, layers, b, reserved, s)?;
        mask_gather_cuda(&ltd, m, form, &idx, out.slice_mut(..n))?;
    }
    Ok(tensor_from_slice(
        out,
        dev,
        (layers, b, 1, out_rows, reserved),
    ))
}
