//! Random-LTD's token ops on DLPack tensors: the sampler, gather and route (the out-of-place
//! scatter, which is also gather's backward). The Python layer (`ltd.torch.GatherTokens`,
//! `ScatterTokens`, `gpt_sample_tokens`, `bert_sample_tokens`) allocates the outputs.
//!
//! Hidden states are contiguous `[B, S, C]` (`batch_first`) or `[S, B, C]`, float32 / float16 /
//! bfloat16 on the CPU or CUDA, or float64 on the CPU; indices are int32 `[B, r]` (one layer)
//! or `[L, B, r]` (the sampler's output), each row strictly ascending for route.

use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView};
use pyo3::prelude::*;

use crate::dlpack::{
    CPU_DTYPES, Device, Dt, Tensor, check_disjoint, cpu_float_dispatch, unsupported,
};
use crate::error::{BindingError, Result};

/// The shape of a hidden-state tensor: `(B, S, C)`.
fn dims(t: &Tensor, order: HiddenOrder) -> Result<(usize, usize, usize)> {
    match (&t.shape[..], order) {
        (&[b, s, c], HiddenOrder::BatchSeq) => Ok((b, s, c)),
        (&[s, b, c], HiddenOrder::SeqBatch) => Ok((b, s, c)),
        _ => Err(BindingError::tensor(
            t.what,
            format!("shape {:?}", t.shape),
            match order {
                HiddenOrder::BatchSeq => "3 dimensions [B, S, C] (batch_first)",
                HiddenOrder::SeqBatch => "3 dimensions [S, B, C] (not batch_first)",
            },
        )),
    }
}

fn order(batch_first: bool) -> HiddenOrder {
    if batch_first {
        HiddenOrder::BatchSeq
    } else {
        HiddenOrder::SeqBatch
    }
}

/// The checked tensors of a gather or route.
struct Moves {
    order: HiddenOrder,
    b: usize,
    s: usize,
    r: usize,
    c: usize,
    idx: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the CUDA paths' stream
    stream: u64,
}

impl Moves {
    /// Checks `full` (`[B, S, C]`), `idx` (`[B, r]` int32) and `part` (`[B, r, C]`).
    fn new(
        full: &Tensor,
        idx: Tensor,
        part: &Tensor,
        batch_first: bool,
        stream: u64,
    ) -> Result<Self> {
        let order = order(batch_first);
        let (b, s, c) = dims(full, order)?;
        let [ib, r] = idx.shape[..] else {
            return Err(BindingError::tensor(
                "sorted_indices",
                format!("shape {:?}", idx.shape),
                "2 dimensions [B, r] (one layer's indices)",
            ));
        };
        if ib != b {
            return Err(BindingError::tensor(
                "sorted_indices",
                format!("batch {ib}"),
                format!("the hidden states' batch {b}"),
            ));
        }
        idx.expect_dtype(Dt::I32, "token positions")?;
        idx.expect_device(full.device)?;
        part.expect_shape(&order.shape(b, r, c), "the kept tokens")?;
        part.expect_dtype(full.dtype, "the dtype of the hidden states")?;
        part.expect_device(full.device)?;
        Ok(Moves {
            order,
            b,
            s,
            r,
            c,
            idx,
            stream,
        })
    }
}

/// `part[b, k] = h[b, idx[b, k]]`: writes the kept tokens of one layer into `part`.
///
/// ```text
/// >>> ltd._ltd.gather(h.__dlpack__(), idx.__dlpack__(), part.__dlpack__(), True, stream)
/// ```
#[pyfunction]
#[pyo3(signature = (h, idx, part, batch_first, stream=0))]
pub fn gather(
    py: Python<'_>,
    h: &Bound<'_, PyAny>,
    idx: &Bound<'_, PyAny>,
    part: &Bound<'_, PyAny>,
    batch_first: bool,
    stream: u64,
) -> PyResult<()> {
    let h = Tensor::read("activations", h)?;
    let part = Tensor::read("output", part)?;
    let m = Moves::new(
        &h,
        Tensor::read("sorted_indices", idx)?,
        &part,
        batch_first,
        stream,
    )?;
    check_disjoint(&[&part], &[&h, &m.idx])?;
    py.detach(|| match h.device {
        Device::Cpu => cpu_float_dispatch!(h, T => gather_cpu::<T>(&m, &h, &part), else unsupported(&h, "the CPU", CPU_DTYPES)),
        Device::Cuda(_) => gpu::gather(&m, &h, &part),
    })?;
    Ok(())
}

/// `y = h` with `y[b, idx[b, k]] = part[b, k]`: the scatter of one layer's output (and gather's
/// backward), out of place.
///
/// ```text
/// >>> ltd._ltd.route(h.__dlpack__(), part.__dlpack__(), idx.__dlpack__(), y.__dlpack__(), True, stream)
/// ```
#[pyfunction]
#[pyo3(signature = (h, part, idx, out, batch_first, stream=0))]
pub fn route(
    py: Python<'_>,
    h: &Bound<'_, PyAny>,
    part: &Bound<'_, PyAny>,
    idx: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    batch_first: bool,
    stream: u64,
) -> PyResult<()> {
    let h = Tensor::read("all_activations", h)?;
    let part = Tensor::read("layer_activations", part)?;
    let out = Tensor::read("output", out)?;
    let m = Moves::new(
        &h,
        Tensor::read("sorted_indices", idx)?,
        &part,
        batch_first,
        stream,
    )?;
    out.expect_shape(&h.shape, "the shape of all_activations")?;
    out.expect_dtype(h.dtype, "the dtype of all_activations")?;
    out.expect_device(h.device)?;
    check_disjoint(&[&out], &[&h, &part, &m.idx])?;
    py.detach(|| match h.device {
        Device::Cpu => cpu_float_dispatch!(h, T => route_cpu::<T>(&m, &h, &part, &out), else unsupported(&h, "the CPU", CPU_DTYPES)),
        Device::Cuda(_) => gpu::route(&m, &h, &part, &out),
    })?;
    Ok(())
}

/// Samples `[layers, batch, reserved]` sorted distinct positions in `[0, seq)` into the int32
/// tensor `out`, from `seed` and `step` (the same values on the CPU and on CUDA).
///
/// ```text
/// >>> ltd._ltd.sample_tokens(seed, 0, layers, batch, seq, reserved, out.__dlpack__(), stream)
/// ```
#[pyfunction]
#[pyo3(signature = (seed, step, layers, batch, seq, reserved, out, stream=0))]
#[allow(clippy::too_many_arguments)] // the sampler's sizes, as upstream's signature
pub fn sample_tokens(
    py: Python<'_>,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
    out: &Bound<'_, PyAny>,
    stream: u64,
) -> PyResult<()> {
    let out = Tensor::read("indices", out)?;
    out.expect_shape(&[layers, batch, reserved], "[L, B, r]")?;
    out.expect_dtype(Dt::I32, "token positions")?;
    py.detach(|| -> Result<()> {
        match out.device {
            Device::Cpu => {
                // SAFETY: a live int32 CPU tensor of exactly L * B * r elements, written only here.
                let dst = unsafe { out.host_mut::<i32>() };
                let sampler = ltd_core::TokenSampler::new(seed);
                Ok(sampler.sample_into(step, layers, batch, seq, reserved, dst)?)
            }
            Device::Cuda(_) => {
                gpu::sample(seed, step, [layers, batch, seq, reserved], &out, stream)
            }
        }
    })?;
    Ok(())
}

fn gather_cpu<T: ltd_core::CpuElement>(m: &Moves, h: &Tensor, part: &Tensor) -> Result<()> {
    // SAFETY: CPU tensors of the dtype `T` selects (part and h checked equal) and int32
    // indices, alive for the call; `part` is disjoint from the inputs.
    let (hs, is, ps) = unsafe { (h.host::<T>(), m.idx.host::<i32>(), part.host_mut::<T>()) };
    let hv = HiddenView::new(hs, m.order, m.b, m.s, m.c)?;
    let iv = IndexView::new(is, m.b, m.r)?;
    let mut pv = HiddenViewMut::new(ps, m.order, m.b, m.r, m.c)?;
    Ok(ltd_core::gather(&hv, &iv, &mut pv)?)
}

fn route_cpu<T: ltd_core::CpuElement>(
    m: &Moves,
    h: &Tensor,
    part: &Tensor,
    out: &Tensor,
) -> Result<()> {
    // SAFETY: as in `gather_cpu`; `out` is disjoint from every input.
    let (hs, ps, is, os) = unsafe {
        (
            h.host::<T>(),
            part.host::<T>(),
            m.idx.host::<i32>(),
            out.host_mut::<T>(),
        )
    };
    let hv = HiddenView::new(hs, m.order, m.b, m.s, m.c)?;
    let pv = HiddenView::new(ps, m.order, m.b, m.r, m.c)?;
    let iv = IndexView::new(is, m.b, m.r)?;
    let mut ov = HiddenViewMut::new(os, m.order, m.b, m.s, m.c)?;
    Ok(ltd_core::route(&hv, &pv, &iv, &mut ov)?)
}

#[cfg(not(feature = "cuda"))]
mod gpu {
    use super::Moves;
    use crate::dlpack::{Tensor, no_cuda};
    use crate::error::Result;

    pub(super) fn gather(_: &Moves, h: &Tensor, _: &Tensor) -> Result<()> {
        Err(no_cuda(h))
    }

    pub(super) fn route(_: &Moves, h: &Tensor, _: &Tensor, _: &Tensor) -> Result<()> {
        Err(no_cuda(h))
    }

    pub(super) fn sample(_: u64, _: u64, _: [usize; 4], out: &Tensor, _: u64) -> Result<()> {
        Err(no_cuda(out))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use cudarc::driver::DeviceRepr;
    use ltd_core::HiddenLayout;
    use ltd_core::cuda::{CudaHidden, CudaHiddenMut, CudaIndices, IndexBuf};

    use super::Moves;
    use crate::cuda::{buf, buf_mut, cuda_ordinal, device};
    use crate::dlpack::{GPU_DTYPES, Tensor, float_dispatch, unsupported};
    use crate::error::Result;

    /// One layer's `[B, r]` indices as the GPU ops' `[1, B, r]`.
    fn indices<'a>(m: &Moves, idx: &Tensor) -> Result<CudaIndices<'a>> {
        // SAFETY: an int32 tensor on the op's device (checked in `Moves::new`), alive for the call.
        let data = IndexBuf::I32(unsafe { buf::<i32>(idx) });
        Ok(CudaIndices::new(data, 1, m.b, m.r, m.s)?)
    }

    pub(super) fn gather(m: &Moves, h: &Tensor, part: &Tensor) -> Result<()> {
        float_dispatch!(h, T => gather_t::<T>(m, h, part), else unsupported(h, "CUDA", GPU_DTYPES))
    }

    fn gather_t<T: ltd_core::Element + DeviceRepr>(
        m: &Moves,
        h: &Tensor,
        part: &Tensor,
    ) -> Result<()> {
        let dev = device(cuda_ordinal(h)?, m.stream)?;
        let full = HiddenLayout::contiguous(m.order, m.b, m.s, m.c)?;
        let kept = HiddenLayout::contiguous(m.order, m.b, m.r, m.c)?;
        // SAFETY: tensors of dtype `T` on this device, alive for the call, `part` disjoint.
        let (hb, pb) = unsafe { (buf::<T>(h), buf_mut::<T>(part)) };
        let idx = indices(m, &m.idx)?;
        ltd_core::cuda::gather_cuda(
            &dev,
            CudaHidden::new(hb, full)?,
            &idx,
            0,
            CudaHiddenMut::new(pb, kept)?,
        )?;
        Ok(())
    }

    pub(super) fn route(m: &Moves, h: &Tensor, part: &Tensor, out: &Tensor) -> Result<()> {
        float_dispatch!(h, T => route_t::<T>(m, h, part, out), else unsupported(h, "CUDA", GPU_DTYPES))
    }

    fn route_t<T: ltd_core::Element + DeviceRepr>(
        m: &Moves,
        h: &Tensor,
        part: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        let dev = device(cuda_ordinal(h)?, m.stream)?;
        let full = HiddenLayout::contiguous(m.order, m.b, m.s, m.c)?;
        let kept = HiddenLayout::contiguous(m.order, m.b, m.r, m.c)?;
        // SAFETY: as in `gather_t`; `out` is disjoint from the inputs.
        let (hb, pb, ob) = unsafe { (buf::<T>(h), buf::<T>(part), buf_mut::<T>(out)) };
        let idx = indices(m, &m.idx)?;
        ltd_core::cuda::route_cuda(
            &dev,
            CudaHidden::new(hb, full)?,
            CudaHidden::new(pb, kept)?,
            &idx,
            0,
            CudaHiddenMut::new(ob, full)?,
        )?;
        Ok(())
    }

    pub(super) fn sample(
        seed: u64,
        step: u64,
        sizes: [usize; 4],
        out: &Tensor,
        stream: u64,
    ) -> Result<()> {
        let [layers, batch, seq, reserved] = sizes;
        let dev = device(cuda_ordinal(out)?, stream)?;
        // SAFETY: an int32 CUDA tensor of L * B * r elements (checked), written only by this op.
        let dst = unsafe { buf_mut::<i32>(out) };
        Ok(ltd_core::cuda::sample_tokens_cuda_into(
            &dev, seed, step, layers, batch, seq, reserved, dst,
        )?)
    }
}
