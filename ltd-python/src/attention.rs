//! `ltd._ltd.SparseAttention`: one sparsity config with its layouts (cached per sequence
//! length) and the fused attention's forward and backward on DLPack tensors. The Python layer
//! (`ltd.torch.SparseSelfAttention`) allocates every output with torch and wraps the two calls
//! in a `torch.autograd.Function`.
//!
//! Devices and dtypes: CPU float32 / float16 / bfloat16 (computing in float32) and float64
//! (computing in float64, with a float64 log-sum-exp), any head dim; CUDA float16 / bfloat16 with
//! head dim 64 or 128. Anything else is a `ValueError`.

use ltd_core::CpuElement;
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, KeyPaddingMask,
    SparseSelfAttention,
};
use pyo3::prelude::*;

use crate::dlpack::{Device, Dt, Tensor, check_disjoint, cpu_float_dispatch, unsupported};
use crate::error::{BindingError, Result};

/// The tensors of one call, read and checked.
struct Call {
    shape: AttentionShape,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    kpm: Option<Tensor>,
    bias: Option<Tensor>,
    scale: Option<f32>,
    causal: bool,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the CUDA paths' stream
    stream: u64,
}

fn read_opt(what: &'static str, obj: Option<&Bound<'_, PyAny>>) -> Result<Option<Tensor>> {
    obj.map(|o| Tensor::read(what, o)).transpose()
}

impl Call {
    #[allow(clippy::too_many_arguments)] // the op's tensors and options, as upstream's forward
    fn new(
        q: &Bound<'_, PyAny>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
        kpm: Option<&Bound<'_, PyAny>>,
        bias: Option<&Bound<'_, PyAny>>,
        causal: bool,
        scale: Option<f32>,
        stream: u64,
    ) -> Result<Call> {
        let q = Tensor::read("query", q)?;
        let [b, h, l, d] = q.shape[..] else {
            return Err(BindingError::tensor(
                "query",
                format!("shape {:?}", q.shape),
                "4 dimensions [B, H, L, D]",
            ));
        };
        let shape = AttentionShape {
            batch: b,
            heads: h,
            seq_len: l,
            head_dim: d,
        };
        let (k, v) = (Tensor::read("key", k)?, Tensor::read("value", v)?);
        let kpm = read_opt("key_padding_mask", kpm)?;
        let bias = read_opt("bias (rpe and attn_mask)", bias)?;
        let call = Call {
            shape,
            q,
            k,
            v,
            kpm,
            bias,
            scale,
            causal,
            stream,
        };
        for t in [&call.k, &call.v] {
            call.like_q(t)?;
        }
        if let Some(m) = &call.kpm {
            m.expect_shape(&[b, l], "[B, L]")?;
            m.expect_dtype(Dt::F32, "the additive key-padding mask is float32")?;
            m.expect_device(call.q.device)?;
        }
        if let Some(x) = &call.bias {
            x.expect_shape(&[b, h, l, l], "[B, H, L, L]")?;
            x.expect_dtype(call.q.dtype, "the dtype of query")?;
            x.expect_device(call.q.device)?;
        }
        Ok(call)
    }

    /// Checks a `[B, H, L, D]` tensor against `q`.
    fn like_q(&self, t: &Tensor) -> Result<()> {
        t.expect_shape(&self.q.shape, "the shape of query")?;
        t.expect_dtype(self.q.dtype, "the dtype of query")?;
        t.expect_device(self.q.device)
    }

    /// Checks the `[B, H, L]` log-sum-exp: float64 for float64 inputs, else float32.
    fn check_lse(&self, lse: &Tensor) -> Result<()> {
        let s = self.shape;
        lse.expect_shape(&[s.batch, s.heads, s.seq_len], "[B, H, L]")?;
        if self.q.dtype == Dt::F64 {
            lse.expect_dtype(Dt::F64, "the log-sum-exp of float64 inputs is float64")?;
        } else {
            lse.expect_dtype(Dt::F32, "the log-sum-exp is float32")?;
        }
        lse.expect_device(self.q.device)
    }

    fn inputs(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.q, &self.k, &self.v];
        v.extend(self.kpm.iter().chain(self.bias.iter()));
        v
    }
}

const CPU_DTYPES: &str = "float32, float16, bfloat16 or float64 on the CPU";

/// A sparsity config with its layouts, and the fused attention on DLPack tensors.
///
/// ```text
/// >>> a = ltd._ltd.SparseAttention("fixed", json.dumps(params))
/// >>> a.forward(q.__dlpack__(), k.__dlpack__(), v.__dlpack__(), out.__dlpack__(), lse.__dlpack__())
/// ```
#[pyclass(name = "SparseAttention", module = "ltd._ltd", frozen)]
pub struct PySparseAttention {
    inner: SparseSelfAttention,
}

#[pymethods]
impl PySparseAttention {
    /// A config of `mode` with upstream's parameters (JSON); see `config::sparsity_config`.
    #[new]
    fn new(mode: &str, params: &str) -> PyResult<Self> {
        let config = crate::config::sparsity_config(mode, params)?;
        let inner = SparseSelfAttention::new(config).map_err(BindingError::from)?;
        Ok(PySparseAttention { inner })
    }

    /// Number of heads.
    fn num_heads(&self) -> usize {
        self.inner.config().num_heads()
    }

    /// Block size.
    fn block(&self) -> usize {
        self.inner.config().block()
    }

    /// The layout for `seq_len` tokens: `(heads, blocks, mask)`, the mask row-major
    /// `[heads, blocks, blocks]` bytes (1 = computed tile).
    fn layout(&self, seq_len: usize) -> PyResult<(usize, usize, Vec<u8>)> {
        let l = self.inner.layout(seq_len).map_err(BindingError::from)?;
        Ok((l.num_heads(), l.num_blocks(), l.mask().to_vec()))
    }

    /// The forward: writes `out` (`[B, H, L, D]`, like `q`) and `lse` (`[B, H, L]`, float32, or
    /// float64 for float64 inputs).
    /// `kpm` is an additive float32 `[B, L]` mask, `bias` an additive `[B, H, L, L]` in q's dtype.
    #[pyo3(signature = (q, k, v, out, lse, kpm=None, bias=None, causal=false, scale=None, stream=0))]
    #[allow(clippy::too_many_arguments)] // the op's tensors and options
    fn forward(
        &self,
        py: Python<'_>,
        q: &Bound<'_, PyAny>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        lse: &Bound<'_, PyAny>,
        kpm: Option<&Bound<'_, PyAny>>,
        bias: Option<&Bound<'_, PyAny>>,
        causal: bool,
        scale: Option<f32>,
        stream: u64,
    ) -> PyResult<()> {
        let call = Call::new(q, k, v, kpm, bias, causal, scale, stream)?;
        let out = Tensor::read("out", out)?;
        let lse = Tensor::read("lse", lse)?;
        call.like_q(&out)?;
        call.check_lse(&lse)?;
        check_disjoint(&[&out, &lse], &call.inputs())?;
        // The tensors stay alive in the caller's frame (their capsules are borrowed above).
        py.detach(|| match call.q.device {
            Device::Cpu => {
                cpu_float_dispatch!(call.q, T => forward_cpu::<T>(&self.inner, &call, &out, &lse), else unsupported(&call.q, "the CPU", CPU_DTYPES))
            }
            Device::Cuda(_) => forward_gpu(&self.inner, &call, &out, &lse),
        })?;
        Ok(())
    }

    /// The backward: writes `dq`, `dk`, `dv` (and `dbias` when given) from the forward's
    /// inputs, `out`, `lse` and the output's gradient `dout`.
    #[pyo3(signature = (q, k, v, out, lse, dout, dq, dk, dv, dbias=None, kpm=None, bias=None, causal=false, scale=None, stream=0))]
    #[allow(clippy::too_many_arguments)] // the op's tensors and options
    fn backward(
        &self,
        py: Python<'_>,
        q: &Bound<'_, PyAny>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        lse: &Bound<'_, PyAny>,
        dout: &Bound<'_, PyAny>,
        dq: &Bound<'_, PyAny>,
        dk: &Bound<'_, PyAny>,
        dv: &Bound<'_, PyAny>,
        dbias: Option<&Bound<'_, PyAny>>,
        kpm: Option<&Bound<'_, PyAny>>,
        bias: Option<&Bound<'_, PyAny>>,
        causal: bool,
        scale: Option<f32>,
        stream: u64,
    ) -> PyResult<()> {
        let call = Call::new(q, k, v, kpm, bias, causal, scale, stream)?;
        let fwd = [Tensor::read("out", out)?, Tensor::read("dout", dout)?];
        let lse = Tensor::read("lse", lse)?;
        let grads = [
            Tensor::read("dq", dq)?,
            Tensor::read("dk", dk)?,
            Tensor::read("dv", dv)?,
        ];
        let dbias = read_opt("dbias", dbias)?;
        for t in fwd.iter().chain(grads.iter()) {
            call.like_q(t)?;
        }
        call.check_lse(&lse)?;
        if let Some(db) = &dbias {
            let s = call.shape;
            db.expect_shape(&[s.batch, s.heads, s.seq_len, s.seq_len], "[B, H, L, L]")?;
            db.expect_dtype(call.q.dtype, "the dtype of query")?;
            db.expect_device(call.q.device)?;
        }
        let mut outputs: Vec<&Tensor> = grads.iter().collect();
        outputs.extend(dbias.iter());
        let mut inputs = call.inputs();
        inputs.extend([&fwd[0], &fwd[1], &lse]);
        check_disjoint(&outputs, &inputs)?;
        let b = Backward {
            out: &fwd[0],
            dout: &fwd[1],
            lse: &lse,
            grads: &grads,
            dbias: dbias.as_ref(),
        };
        py.detach(|| match call.q.device {
            Device::Cpu => cpu_float_dispatch!(call.q, T => backward_cpu::<T>(&self.inner, &call, &b), else unsupported(&call.q, "the CPU", CPU_DTYPES)),
            Device::Cuda(_) => backward_gpu(&self.inner, &call, &b),
        })?;
        Ok(())
    }
}

/// The backward's extra tensors.
struct Backward<'a> {
    out: &'a Tensor,
    dout: &'a Tensor,
    lse: &'a Tensor,
    grads: &'a [Tensor; 3],
    dbias: Option<&'a Tensor>,
}

fn forward_cpu<T: CpuElement>(
    attn: &SparseSelfAttention,
    call: &Call,
    out: &Tensor,
    lse: &Tensor,
) -> Result<()> {
    // SAFETY: every tensor was read from a live capsule on the CPU with the dtype of `T`
    // (checked against q, which selected `T`), f32 (the mask) or that of `T::Acc` (lse: f64 for
    // f64, else f32, checked in `check_lse`); the outputs are disjoint from the inputs.
    let (inputs, kpm, bias, out, lse) = unsafe {
        (
            AttentionInputs {
                q: call.q.host::<T>(),
                k: call.k.host::<T>(),
                v: call.v.host::<T>(),
            },
            call.kpm.as_ref().map(|m| m.host::<f32>()),
            call.bias.as_ref().map(|b| b.host::<T>()),
            out.host_mut::<T>(),
            lse.host_mut::<T::Acc>(),
        )
    };
    let options = AttentionOptions {
        scale: call.scale,
        causal: call.causal,
        key_padding_mask: kpm.map(KeyPaddingMask::Additive),
        bias,
    };
    Ok(attn.forward(call.shape, &inputs, &options, out, lse)?)
}

fn backward_cpu<T: CpuElement>(
    attn: &SparseSelfAttention,
    call: &Call,
    b: &Backward<'_>,
) -> Result<()> {
    // SAFETY: as in `forward_cpu`; dq, dk, dv and dbias are disjoint from every input.
    let (inputs, kpm, bias, out, dout, lse) = unsafe {
        (
            AttentionInputs {
                q: call.q.host::<T>(),
                k: call.k.host::<T>(),
                v: call.v.host::<T>(),
            },
            call.kpm.as_ref().map(|m| m.host::<f32>()),
            call.bias.as_ref().map(|b| b.host::<T>()),
            b.out.host::<T>(),
            b.dout.host::<T>(),
            b.lse.host::<T::Acc>(),
        )
    };
    // SAFETY: as above; the three gradients are distinct, disjoint tensors (checked).
    let grads = unsafe {
        AttentionGrads {
            dq: b.grads[0].host_mut::<T>(),
            dk: b.grads[1].host_mut::<T>(),
            dv: b.grads[2].host_mut::<T>(),
            dbias: b.dbias.map(|d| d.host_mut::<T>()),
        }
    };
    let options = AttentionOptions {
        scale: call.scale,
        causal: call.causal,
        key_padding_mask: kpm.map(KeyPaddingMask::Additive),
        bias,
    };
    Ok(attn.backward(call.shape, &inputs, &options, out, dout, lse, grads)?)
}

#[cfg(not(feature = "cuda"))]
use crate::dlpack::no_cuda;

#[cfg(not(feature = "cuda"))]
fn forward_gpu(_: &SparseSelfAttention, call: &Call, _: &Tensor, _: &Tensor) -> Result<()> {
    Err(no_cuda(&call.q))
}

#[cfg(not(feature = "cuda"))]
fn backward_gpu(_: &SparseSelfAttention, call: &Call, _: &Backward<'_>) -> Result<()> {
    Err(no_cuda(&call.q))
}

#[cfg(feature = "cuda")]
use gpu::{backward_gpu, forward_gpu};

#[cfg(feature = "cuda")]
mod gpu {
    use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
    use ltd_sparse_attn::SparseSelfAttention;
    use ltd_sparse_attn::cuda::{CudaAttentionGrads, CudaAttentionOptions};

    use super::{Backward, Call};
    use crate::cuda::{buf, buf_mut, cuda_ordinal, device};
    use crate::dlpack::{Dt, Tensor, unsupported};
    use crate::error::Result;

    const GPU_DTYPES: &str =
        "float16 or bfloat16 on CUDA (head dim 64 or 128); float32 and float64 run on the CPU";

    fn options<'a, T>(call: &Call) -> CudaAttentionOptions<'a, T> {
        // SAFETY: the mask is float32 and the bias of q's dtype `T`, both on q's device
        // (checked in `Call::new`), alive for the call.
        CudaAttentionOptions {
            scale: call.scale,
            causal: call.causal,
            key_padding_mask: call.kpm.as_ref().map(|m| unsafe { buf::<f32>(m) }),
            bias: call.bias.as_ref().map(|b| unsafe { buf::<T>(b) }),
            kernel: Default::default(),
        }
    }

    pub(super) fn forward_gpu(
        attn: &SparseSelfAttention,
        call: &Call,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        match call.q.dtype {
            Dt::F16 => forward_t::<half::f16>(attn, call, out, lse),
            Dt::BF16 => forward_t::<half::bf16>(attn, call, out, lse),
            _ => Err(unsupported(&call.q, "CUDA", GPU_DTYPES)),
        }
    }

    fn forward_t<T: ltd_core::Element + DeviceRepr>(
        attn: &SparseSelfAttention,
        call: &Call,
        out: &Tensor,
        lse: &Tensor,
    ) -> Result<()> {
        let dev = device(cuda_ordinal(&call.q)?, call.stream)?;
        // SAFETY: all tensors are on q's device with the dtypes checked in `Call::new` and
        // `forward`; torch keeps them alive, and the work is queued on torch's current stream.
        let (qkv, out, lse) = unsafe {
            (
                (buf::<T>(&call.q), buf::<T>(&call.k), buf::<T>(&call.v)),
                buf_mut::<T>(out),
                buf_mut::<f32>(lse),
            )
        };
        Ok(attn.forward_cuda(&dev, call.shape, qkv, &options(call), out, lse)?)
    }

    pub(super) fn backward_gpu(
        attn: &SparseSelfAttention,
        call: &Call,
        b: &Backward<'_>,
    ) -> Result<()> {
        match call.q.dtype {
            Dt::F16 => backward_t::<half::f16>(attn, call, b),
            Dt::BF16 => backward_t::<half::bf16>(attn, call, b),
            _ => Err(unsupported(&call.q, "CUDA", GPU_DTYPES)),
        }
    }

    fn backward_t<T: ltd_core::Element + DeviceRepr + ValidAsZeroBits>(
        attn: &SparseSelfAttention,
        call: &Call,
        b: &Backward<'_>,
    ) -> Result<()> {
        let dev = device(cuda_ordinal(&call.q)?, call.stream)?;
        // SAFETY: as in `forward_t`; the gradients are fresh tensors disjoint from the inputs.
        let (qkv, fwd, dout, mut grads) = unsafe {
            (
                (buf::<T>(&call.q), buf::<T>(&call.k), buf::<T>(&call.v)),
                (buf::<T>(b.out), buf::<f32>(b.lse)),
                buf::<T>(b.dout),
                CudaAttentionGrads::new(
                    buf_mut::<T>(&b.grads[0]),
                    buf_mut::<T>(&b.grads[1]),
                    buf_mut::<T>(&b.grads[2]),
                ),
            )
        };
        if let Some(db) = b.dbias {
            // SAFETY: as above.
            grads = grads.with_dbias(unsafe { buf_mut::<T>(db) });
        }
        Ok(attn.backward_cuda(&dev, call.shape, qkv, fwd, dout, &options(call), grads)?)
    }
}
