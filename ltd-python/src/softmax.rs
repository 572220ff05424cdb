//! `ltd._ltd.BlockSparseSoftmax`: upstream's block-sparse `Softmax` primitive on DLPack
//! tensors, forward (scale, rpe, key-padding and attention masks) and backward. The Python
//! layer (`ltd.torch.Softmax`) validates upstream's way, allocates the outputs with torch, copies
//! the result back into `x` (upstream works in place) and wraps the calls in a
//! `torch.autograd.Function`.
//!
//! Shapes (square layout of `nb` blocks of `b` over `H` heads, `S = nb * b`): scores `x`, `y`,
//! `dy`, `dx` `[Z, nnz, b, b]`; `rpe` `[Z, H, S, S]`, `key_padding_mask` `[Z, S]`, `attn_mask`
//! `[S, S]`, all in x's dtype. float32 / float16 / bfloat16 on the CPU (computed in float32) and
//! on CUDA; float64 on the CPU only (computed in float64, the float32 `scale` widened). Anything
//! else is a `ValueError`.

use ltd_sparse_attn::{Layout, MaskMode};
use pyo3::prelude::*;

use crate::dlpack::{CPU_DTYPES, Device, Tensor, check_disjoint, cpu_float_dispatch, unsupported};
use crate::error::{BindingError, Result};

/// The forward's optional inputs, read and checked.
struct Extras {
    rpe: Option<Tensor>,
    kpm: Option<Tensor>,
    kpm_mode: MaskMode,
    am: Option<Tensor>,
    am_mode: MaskMode,
}

/// A block-sparse softmax over one square layout.
///
/// ```text
/// >>> sm = ltd._ltd.BlockSparseSoftmax(heads, nb, block, mask)
/// >>> sm.forward(x.__dlpack__(), y.__dlpack__(), scale=0.125)
/// ```
#[pyclass(name = "BlockSparseSoftmax", module = "ltd._ltd", frozen)]
pub struct PySoftmax {
    layout: Layout,
    #[cfg(feature = "cuda")]
    tables: crate::cuda::PerDevice<ltd_sparse_attn::cuda::CudaAttentionLayout>,
}

#[pymethods]
impl PySoftmax {
    /// The softmax over the layout `mask` (row-major `[heads, num_blocks, num_blocks]` of 0 / 1,
    /// blocks of `block`).
    #[new]
    fn new(heads: usize, num_blocks: usize, block: usize, mask: Vec<u8>) -> PyResult<Self> {
        let layout =
            Layout::from_mask(heads, num_blocks, block, mask).map_err(BindingError::from)?;
        Ok(PySoftmax {
            layout,
            #[cfg(feature = "cuda")]
            tables: Default::default(),
        })
    }

    /// Number of tiles of the layout (the `nnz` of the sparse scores).
    fn nnz(&self) -> usize {
        self.layout.nnz()
    }

    /// `y = softmax(x * scale + rpe + masks)` over each row's active keys; a row with no finite
    /// score gives zeros. Mask modes are `"add"` or `"mul"`.
    #[pyo3(signature = (x, y, scale=1.0, rpe=None, key_padding_mask=None, attn_mask=None, key_padding_mask_mode="add", attn_mask_mode="add", stream=0))]
    #[allow(clippy::too_many_arguments)] // upstream's call arguments, plus the output and stream
    fn forward(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        scale: f32,
        rpe: Option<&Bound<'_, PyAny>>,
        key_padding_mask: Option<&Bound<'_, PyAny>>,
        attn_mask: Option<&Bound<'_, PyAny>>,
        key_padding_mask_mode: &str,
        attn_mask_mode: &str,
        stream: u64,
    ) -> PyResult<()> {
        let x = Tensor::read("x", x)?;
        let z = self.batch(&x)?;
        let y = Tensor::read("y", y)?;
        like(&y, &x, &x.shape, "the shape of x")?;
        let read =
            |what, t: Option<&Bound<'_, PyAny>>| t.map(|t| Tensor::read(what, t)).transpose();
        let extras = Extras {
            rpe: read("rpe", rpe)?,
            kpm: read("key_padding_mask", key_padding_mask)?,
            kpm_mode: mode("key_padding_mask_mode", key_padding_mask_mode)?,
            am: read("attn_mask", attn_mask)?,
            am_mode: mode("attn_mask_mode", attn_mask_mode)?,
        };
        let (h, s) = (self.layout.num_heads(), self.layout.padded_len());
        if let Some(t) = &extras.rpe {
            like(t, &x, &[z, h, s, s], "[Z, H, S, S]")?;
        }
        if let Some(t) = &extras.kpm {
            like(t, &x, &[z, s], "[Z, S]")?;
        }
        if let Some(t) = &extras.am {
            like(t, &x, &[s, s], "[S, S]")?;
        }
        let mut inputs = vec![&x];
        inputs.extend(extras.rpe.iter().chain(&extras.kpm).chain(&extras.am));
        check_disjoint(&[&y], &inputs)?;
        py.detach(|| match x.device {
            Device::Cpu => cpu_float_dispatch!(x, T => forward_cpu::<T>(&self.layout, z, scale, &x, &extras, &y), else unsupported(&x, "the CPU", CPU_DTYPES)),
            Device::Cuda(_) => gpu::forward(self, z, scale, &x, &extras, &y, stream),
        })?;
        Ok(())
    }

    /// `dx = y * (dy - sum_row(y * dy)) * scale` over each row's active keys (no gradient to
    /// rpe or the masks, as upstream).
    #[pyo3(signature = (y, dy, dx, scale=1.0, stream=0))]
    #[allow(clippy::too_many_arguments)] // the op's tensors, scale and stream
    fn backward(
        &self,
        py: Python<'_>,
        y: &Bound<'_, PyAny>,
        dy: &Bound<'_, PyAny>,
        dx: &Bound<'_, PyAny>,
        scale: f32,
        stream: u64,
    ) -> PyResult<()> {
        let y = Tensor::read("y", y)?;
        let z = self.batch(&y)?;
        let dy = Tensor::read("dy", dy)?;
        let dx = Tensor::read("dx", dx)?;
        like(&dy, &y, &y.shape, "the shape of y")?;
        like(&dx, &y, &y.shape, "the shape of y")?;
        check_disjoint(&[&dx], &[&y, &dy])?;
        py.detach(|| match y.device {
            Device::Cpu => cpu_float_dispatch!(y, T => backward_cpu::<T>(&self.layout, z, scale, &y, &dy, &dx), else unsupported(&y, "the CPU", CPU_DTYPES)),
            Device::Cuda(_) => gpu::backward(self, z, scale, [&y, &dy, &dx], stream),
        })?;
        Ok(())
    }
}

impl PySoftmax {
    /// `Z` of a sparse `[Z, nnz, b, b]` tensor of this layout.
    fn batch(&self, t: &Tensor) -> Result<usize> {
        let (nnz, b) = (self.layout.nnz(), self.layout.block());
        match t.shape[..] {
            [z, n, r, c] if (n, r, c) == (nnz, b, b) => Ok(z),
            _ => Err(BindingError::tensor(
                t.what,
                format!("shape {:?}", t.shape),
                format!("[Z, {nnz}, {b}, {b}] (sparse [Z, nnz, block, block] of the layout)"),
            )),
        }
    }
}

/// Checks that `t` has `shape` and the dtype and device of `x`.
fn like(t: &Tensor, x: &Tensor, shape: &[usize], meaning: &str) -> Result<()> {
    t.expect_shape(shape, meaning)?;
    t.expect_dtype(x.dtype, "the dtype of x")?;
    t.expect_device(x.device)
}

/// Parses a mask mode argument, naming it in the error.
fn mode(what: &'static str, s: &str) -> Result<MaskMode> {
    MaskMode::parse(s)
        .map_err(|_| BindingError::tensor(what, format!("{s:?}"), "\"add\" or \"mul\""))
}

fn forward_cpu<T: ltd_core::CpuElement>(
    layout: &Layout,
    z: usize,
    scale: f32,
    x: &Tensor,
    e: &Extras,
    y: &Tensor,
) -> Result<()> {
    // SAFETY: CPU tensors of the dtype `T` selects (every one checked against x), alive for
    // the call; `y` is disjoint from the inputs.
    let (xs, ys, rpe, kpm, am) = unsafe {
        (
            x.host::<T>(),
            y.host_mut::<T>(),
            e.rpe.as_ref().map(|t| t.host::<T>()),
            e.kpm.as_ref().map(|t| t.host::<T>()),
            e.am.as_ref().map(|t| t.host::<T>()),
        )
    };
    let options = ltd_sparse_attn::SoftmaxOptions {
        scale,
        rpe,
        key_padding_mask: kpm,
        key_padding_mask_mode: e.kpm_mode,
        attn_mask: am,
        attn_mask_mode: e.am_mode,
    };
    Ok(ltd_sparse_attn::softmax_forward(
        layout, xs, z, &options, ys,
    )?)
}

fn backward_cpu<T: ltd_core::CpuElement>(
    layout: &Layout,
    z: usize,
    scale: f32,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    // SAFETY: as in `forward_cpu`; `dx` is disjoint from y and dy.
    let (ys, dys, dxs) = unsafe { (y.host::<T>(), dy.host::<T>(), dx.host_mut::<T>()) };
    Ok(ltd_sparse_attn::softmax_backward(
        layout, ys, dys, z, scale, dxs,
    )?)
}

#[cfg(not(feature = "cuda"))]
mod gpu {
    use super::{Extras, PySoftmax};
    use crate::dlpack::{Tensor, no_cuda};
    use crate::error::Result;

    pub(super) fn forward(
        _: &PySoftmax,
        _: usize,
        _: f32,
        x: &Tensor,
        _: &Extras,
        _: &Tensor,
        _: u64,
    ) -> Result<()> {
        Err(no_cuda(x))
    }

    pub(super) fn backward(_: &PySoftmax, _: usize, _: f32, t: [&Tensor; 3], _: u64) -> Result<()> {
        Err(no_cuda(t[0]))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use std::sync::Arc;

    use cudarc::driver::DeviceRepr;
    use ltd_core::CudaDevice;
    use ltd_sparse_attn::cuda::{
        CudaAttentionLayout, CudaSoftmaxOptions, softmax_backward_cuda, softmax_forward_cuda,
    };

    use super::{Extras, PySoftmax};
    use crate::cuda::{buf, buf_mut, cuda_ordinal, device};
    use crate::dlpack::{GPU_DTYPES, Tensor, float_dispatch, unsupported};
    use crate::error::Result;

    /// The device of the call and the layout's tables on it (uploaded on first use).
    fn setup(
        sm: &PySoftmax,
        t: &Tensor,
        stream: u64,
    ) -> Result<(CudaDevice, Arc<CudaAttentionLayout>)> {
        let dev = device(cuda_ordinal(t)?, stream)?;
        let tables = sm
            .tables
            .get_or_build(&dev, |d| Ok(CudaAttentionLayout::new(d, &sm.layout)?))?;
        Ok((dev, tables))
    }

    pub(super) fn forward(
        sm: &PySoftmax,
        z: usize,
        scale: f32,
        x: &Tensor,
        e: &Extras,
        y: &Tensor,
        stream: u64,
    ) -> Result<()> {
        float_dispatch!(x, T => forward_t::<T>(sm, z, scale, x, e, y, stream), else unsupported(x, "CUDA", GPU_DTYPES))
    }

    fn forward_t<T: ltd_core::Element + DeviceRepr>(
        sm: &PySoftmax,
        z: usize,
        scale: f32,
        x: &Tensor,
        e: &Extras,
        y: &Tensor,
        stream: u64,
    ) -> Result<()> {
        let (dev, tables) = setup(sm, x, stream)?;
        // SAFETY: tensors of dtype `T` on this device (checked against x), alive for the call,
        // the work queued on torch's current stream; `y` is disjoint from the inputs.
        let options = unsafe {
            CudaSoftmaxOptions {
                scale,
                rpe: e.rpe.as_ref().map(|t| buf::<T>(t)),
                key_padding_mask: e.kpm.as_ref().map(|t| buf::<T>(t)),
                key_padding_mask_mode: e.kpm_mode,
                attn_mask: e.am.as_ref().map(|t| buf::<T>(t)),
                attn_mask_mode: e.am_mode,
            }
        };
        // SAFETY: as above.
        let (xb, yb) = unsafe { (buf::<T>(x), buf_mut::<T>(y)) };
        Ok(softmax_forward_cuda(&dev, &tables, z, xb, &options, yb)?)
    }

    pub(super) fn backward(
        sm: &PySoftmax,
        z: usize,
        scale: f32,
        t: [&Tensor; 3],
        stream: u64,
    ) -> Result<()> {
        float_dispatch!(t[0], T => backward_t::<T>(sm, z, scale, t, stream), else unsupported(t[0], "CUDA", GPU_DTYPES))
    }

    fn backward_t<T: ltd_core::Element + DeviceRepr>(
        sm: &PySoftmax,
        z: usize,
        scale: f32,
        [y, dy, dx]: [&Tensor; 3],
        stream: u64,
    ) -> Result<()> {
        let (dev, tables) = setup(sm, y, stream)?;
        // SAFETY: as in `forward_t`; `dx` is disjoint from y and dy.
        let (yb, dyb, dxb) = unsafe { (buf::<T>(y), buf::<T>(dy), buf_mut::<T>(dx)) };
        Ok(softmax_backward_cuda(
            &dev, &tables, z, yb, dyb, scale, dxb,
        )?)
    }
}
