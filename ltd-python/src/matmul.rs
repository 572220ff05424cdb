//! `ltd._ltd.BlockSparseMatMul`: upstream's block-sparse `MatMul` primitive (`sdd`, `dsd`,
//! `dds`, with transposes) on DLPack tensors, forward and backward. The Python layer
//! (`ltd.torch.MatMul`) validates upstream's way, pads rectangular layouts to square ones,
//! allocates every output with torch and wraps the two calls in a `torch.autograd.Function`.
//!
//! Shapes (square layout of `nb` blocks of `b`, `S = nb * b`, `F` the one free size, a dense
//! operand with its trans flag stored transposed): `sdd`: op(A) `[Z, H, S, F]`, op(B)
//! `[Z, H, F, S]`, C `[Z, nnz, b, b]`; `dsd`: A `[Z, nnz, b, b]`, op(B) `[Z, H, S, F]`, C
//! `[Z, H, S, F]`; `dds`: op(A) `[Z, H, F, S]`, B `[Z, nnz, b, b]`, C `[Z, H, F, S]`.
//! float32 / float16 / bfloat16 on the CPU (accumulating in float32) and on CUDA; float64 on the
//! CPU only (accumulating in float64). Anything else is a `ValueError`.

use ltd_sparse_attn::{BlockSparseMatMul, Layout, MatMulMode};
use pyo3::prelude::*;

use crate::dlpack::{CPU_DTYPES, Device, Tensor, check_disjoint, cpu_float_dispatch, unsupported};
use crate::error::{BindingError, Result};

/// The checked operands of one call, with the sizes the layout does not fix.
struct Call {
    a: Tensor,
    b: Tensor,
    /// `Z`.
    batch: usize,
    /// `F`: K of `sdd`, N of `dsd`, M of `dds`.
    dense_dim: usize,
    /// The shape of C.
    c_shape: [usize; 4],
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the CUDA paths' stream
    stream: u64,
}

/// A block-sparse matmul of one layout, mode and pair of trans flags.
///
/// ```text
/// >>> m = ltd._ltd.BlockSparseMatMul(heads, nb, block, mask, "sdd", False, True)
/// >>> m.forward(a.__dlpack__(), b.__dlpack__(), c.__dlpack__())
/// ```
#[pyclass(name = "BlockSparseMatMul", module = "ltd._ltd", frozen)]
pub struct PyMatMul {
    layout: Layout,
    op: BlockSparseMatMul,
    #[cfg(feature = "cuda")]
    tables: crate::cuda::PerDevice<ltd_sparse_attn::CudaMatMulLayout>,
}

#[pymethods]
impl PyMatMul {
    /// The product of `mode` (`"sdd"`, `"dsd"`, `"dds"`) over the square layout `mask`
    /// (row-major `[heads, num_blocks, num_blocks]` of 0 / 1, blocks of `block`).
    #[new]
    #[pyo3(signature = (heads, num_blocks, block, mask, mode, trans_a=false, trans_b=false))]
    fn new(
        heads: usize,
        num_blocks: usize,
        block: usize,
        mask: Vec<u8>,
        mode: &str,
        trans_a: bool,
        trans_b: bool,
    ) -> PyResult<Self> {
        let layout =
            Layout::from_mask(heads, num_blocks, block, mask).map_err(BindingError::from)?;
        let mode = MatMulMode::parse(mode).map_err(BindingError::from)?;
        Ok(PyMatMul {
            layout,
            op: BlockSparseMatMul::new(mode, trans_a, trans_b),
            #[cfg(feature = "cuda")]
            tables: Default::default(),
        })
    }

    /// Number of tiles of the layout (the `nnz` of sparse operands).
    fn nnz(&self) -> usize {
        self.layout.nnz()
    }

    /// The shape of C for operands `a` and `b` (validated as [`PyMatMul::forward`] does).
    fn output_shape(&self, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let call = self.call(Tensor::read("a", a)?, Tensor::read("b", b)?, 0)?;
        Ok(call.c_shape.to_vec())
    }

    /// `C = op(A) op(B)` into `c` (every element written), on the CPU or on CUDA `stream`.
    #[pyo3(signature = (a, b, c, stream=0))]
    fn forward(
        &self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
        c: &Bound<'_, PyAny>,
        stream: u64,
    ) -> PyResult<()> {
        let call = self.call(Tensor::read("a", a)?, Tensor::read("b", b)?, stream)?;
        let c = Tensor::read("c", c)?;
        call.like_a(&c, &call.c_shape, "the product's shape")?;
        check_disjoint(&[&c], &[&call.a, &call.b])?;
        // The tensors stay alive in the caller's frame (their capsules are borrowed above).
        py.detach(|| match call.a.device {
            Device::Cpu => cpu_float_dispatch!(call.a, T => forward_cpu::<T>(self, &call, &c), else unsupported(&call.a, "the CPU", CPU_DTYPES)),
            Device::Cuda(_) => gpu::forward(self, &call, &c),
        })?;
        Ok(())
    }

    /// The gradients `da` (shaped like `a`) and `db` (like `b`) from C's gradient `dc`; sparse
    /// gradients hold the layout's tiles only.
    #[pyo3(signature = (a, b, dc, da, db, stream=0))]
    #[allow(clippy::too_many_arguments)] // the op's tensors and stream
    fn backward(
        &self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
        dc: &Bound<'_, PyAny>,
        da: &Bound<'_, PyAny>,
        db: &Bound<'_, PyAny>,
        stream: u64,
    ) -> PyResult<()> {
        let call = self.call(Tensor::read("a", a)?, Tensor::read("b", b)?, stream)?;
        let dc = Tensor::read("dc", dc)?;
        let grads = [Tensor::read("da", da)?, Tensor::read("db", db)?];
        call.like_a(&dc, &call.c_shape, "the product's shape")?;
        call.like_a(&grads[0], &call.a.shape, "the shape of a")?;
        call.like_a(&grads[1], &call.b.shape, "the shape of b")?;
        check_disjoint(&[&grads[0], &grads[1]], &[&call.a, &call.b, &dc])?;
        py.detach(|| match call.a.device {
            Device::Cpu => cpu_float_dispatch!(call.a, T => backward_cpu::<T>(self, &call, &dc, &grads), else unsupported(&call.a, "the CPU", CPU_DTYPES)),
            Device::Cuda(_) => gpu::backward(self, &call, &dc, &grads),
        })?;
        Ok(())
    }
}

impl PyMatMul {
    /// Checks `a` and `b` against the layout and trans flags; reads `Z` and `F` from the dense
    /// operand (`a` for `sdd` and `dds`, `b` for `dsd`).
    fn call(&self, a: Tensor, b: Tensor, stream: u64) -> Result<Call> {
        let (ta, tb) = (self.op.trans_a, self.op.trans_b);
        let dense = if self.op.mode == MatMulMode::Dsd {
            &b
        } else {
            &a
        };
        let [z, _, rows, cols] = dense.shape[..] else {
            return Err(BindingError::tensor(
                dense.what,
                format!("shape {:?}", dense.shape),
                "4 dimensions [Z, H, rows, cols] (the dense operand)",
            ));
        };
        let (h, bl) = (self.layout.num_heads(), self.layout.block());
        let s = self.layout.num_blocks() * bl;
        // F is the side of op(dense) the layout does not fix.
        let f = match (self.op.mode, ta, tb) {
            (MatMulMode::Sdd, true, _) | (MatMulMode::Dsd, _, true) => rows,
            (MatMulMode::Sdd, false, _) | (MatMulMode::Dsd, _, false) => cols,
            (MatMulMode::Dds, true, _) => cols,
            (MatMulMode::Dds, false, _) => rows,
        };
        let stored = |trans: bool, r: usize, c: usize| {
            if trans { [z, h, c, r] } else { [z, h, r, c] }
        };
        let sparse = [z, self.layout.nnz(), bl, bl];
        let (a_shape, b_shape, c_shape) = match self.op.mode {
            MatMulMode::Sdd => (stored(ta, s, f), stored(tb, f, s), sparse),
            MatMulMode::Dsd => (sparse, stored(tb, s, f), [z, h, s, f]),
            MatMulMode::Dds => (stored(ta, f, s), sparse, [z, h, f, s]),
        };
        let meaning = |t: &[usize; 4]| {
            if t == &sparse {
                format!(
                    "sparse [Z, nnz, block, block] of the layout's {} tiles",
                    sparse[1]
                )
            } else {
                format!(
                    "dense [Z, H, rows, cols] of the layout's {h} heads and {s} = blocks x block rows or columns"
                )
            }
        };
        a.expect_shape(&a_shape, &meaning(&a_shape))?;
        let call = Call {
            a,
            b,
            batch: z,
            dense_dim: f,
            c_shape,
            stream,
        };
        call.like_a(&call.b, &b_shape, &meaning(&b_shape))?;
        Ok(call)
    }
}

impl Call {
    /// Checks that `t` has `shape` and a's dtype and device.
    fn like_a(&self, t: &Tensor, shape: &[usize], meaning: &str) -> Result<()> {
        t.expect_shape(shape, meaning)?;
        t.expect_dtype(self.a.dtype, "the dtype of a")?;
        t.expect_device(self.a.device)
    }
}

fn forward_cpu<T: ltd_core::CpuElement>(m: &PyMatMul, call: &Call, c: &Tensor) -> Result<()> {
    // SAFETY: CPU tensors of the dtype `T` selects (b and c checked equal to a), alive for the
    // call; `c` is disjoint from the inputs.
    let (a, b, c) = unsafe { (call.a.host::<T>(), call.b.host::<T>(), c.host_mut::<T>()) };
    Ok(m.op.forward(&m.layout, a, b, call.batch, call.dense_dim, c)?)
}

fn backward_cpu<T: ltd_core::CpuElement>(
    m: &PyMatMul,
    call: &Call,
    dc: &Tensor,
    grads: &[Tensor; 2],
) -> Result<()> {
    // SAFETY: as in `forward_cpu`; da and db are distinct tensors disjoint from the inputs.
    let (a, b, dc, da, db) = unsafe {
        (
            call.a.host::<T>(),
            call.b.host::<T>(),
            dc.host::<T>(),
            grads[0].host_mut::<T>(),
            grads[1].host_mut::<T>(),
        )
    };
    let (z, f) = (call.batch, call.dense_dim);
    Ok(m.op.backward(&m.layout, a, b, dc, z, f, da, db)?)
}

#[cfg(not(feature = "cuda"))]
mod gpu {
    use super::{Call, PyMatMul};
    use crate::dlpack::{Tensor, no_cuda};
    use crate::error::Result;

    pub(super) fn forward(_: &PyMatMul, call: &Call, _: &Tensor) -> Result<()> {
        Err(no_cuda(&call.a))
    }

    pub(super) fn backward(_: &PyMatMul, call: &Call, _: &Tensor, _: &[Tensor; 2]) -> Result<()> {
        Err(no_cuda(&call.a))
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use std::sync::Arc;

    use cudarc::driver::DeviceRepr;
    use ltd_core::CudaDevice;
    use ltd_sparse_attn::{CudaMatMulLayout, matmul_backward_cuda, matmul_forward_cuda};

    use super::{Call, PyMatMul};
    use crate::cuda::{buf, buf_mut, cuda_ordinal, device};
    use crate::dlpack::{GPU_DTYPES, Tensor, float_dispatch, unsupported};
    use crate::error::Result;

    /// The device of the call and the layout's tables on it (uploaded on first use).
    fn setup(m: &PyMatMul, call: &Call) -> Result<(CudaDevice, Arc<CudaMatMulLayout>)> {
        let dev = device(cuda_ordinal(&call.a)?, call.stream)?;
        let tables = m
            .tables
            .get_or_build(&dev, |d| Ok(CudaMatMulLayout::new(d, &m.layout)?))?;
        Ok((dev, tables))
    }

    pub(super) fn forward(m: &PyMatMul, call: &Call, c: &Tensor) -> Result<()> {
        float_dispatch!(call.a, T => forward_t::<T>(m, call, c), else unsupported(&call.a, "CUDA", GPU_DTYPES))
    }

    fn forward_t<T: ltd_core::Element + DeviceRepr>(
        m: &PyMatMul,
        call: &Call,
        c: &Tensor,
    ) -> Result<()> {
        let (dev, tables) = setup(m, call)?;
        // SAFETY: tensors of dtype `T` on this device (checked against a), alive for the call,
        // the work queued on torch's current stream; `c` is disjoint from the inputs.
        let (a, b, c) = unsafe { (buf::<T>(&call.a), buf::<T>(&call.b), buf_mut::<T>(c)) };
        let (z, f) = (call.batch, call.dense_dim);
        Ok(matmul_forward_cuda(&dev, &tables, m.op, z, f, a, b, c)?)
    }

    pub(super) fn backward(
        m: &PyMatMul,
        call: &Call,
        dc: &Tensor,
        grads: &[Tensor; 2],
    ) -> Result<()> {
        float_dispatch!(call.a, T => backward_t::<T>(m, call, dc, grads), else unsupported(&call.a, "CUDA", GPU_DTYPES))
    }

    fn backward_t<T: ltd_core::Element + DeviceRepr>(
        m: &PyMatMul,
        call: &Call,
        dc: &Tensor,
        grads: &[Tensor; 2],
    ) -> Result<()> {
        let (dev, tables) = setup(m, call)?;
        // SAFETY: as in `forward_t`; da and db are distinct tensors disjoint from the inputs.
        let (a, b, dc, da, db) = unsafe {
            (
                buf::<T>(&call.a),
                buf::<T>(&call.b),
                buf::<T>(dc),
                buf_mut::<T>(&grads[0]),
                buf_mut::<T>(&grads[1]),
            )
        };
        let (z, f) = (call.batch, call.dense_dim);
        Ok(matmul_backward_cuda(
            &dev, &tables, m.op, z, f, a, b, dc, da, db,
        )?)
    }
}
