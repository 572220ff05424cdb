//! The native module `ltd._ltd` of the Python package `ltd`: block-sparse attention and
//! Random-LTD on PyTorch tensors (any torch >= 2.1: tensors arrive as DLPack capsules, so there
//! is no build- or link-time dependency on libtorch). The user API is the Python package
//! `ltd.torch` (`python/ltd/torch/`), which allocates every output with torch and wraps these
//! calls in `torch.autograd.Function`s.
//!
//! - [`attention`]: `SparseAttention`, a sparsity config and the fused attention's forward
//!   and backward (CPU: float32 / float16 / bfloat16 / float64; CUDA: float16 / bfloat16, head
//!   dim 64 or 128).
//! - [`tokens`]: `sample_tokens`, `gather`, `route` (CPU and CUDA, float32 / float16 / bfloat16;
//!   float64 on the CPU).
//! - [`scheduler`]: `Scheduler`, the reserved-length schedule of a DeepSpeed `random_ltd` section.
//! - [`matmul`], [`softmax`]: `BlockSparseMatMul` and `BlockSparseSoftmax`, upstream's `MatMul`
//!   and `Softmax` primitives (CPU and CUDA, float32 / float16 / bfloat16; float64 on the CPU).
//!
//! float64 runs on the CPU only, computed in float64 (so `torch.autograd.gradcheck` applies).
//!
//! CUDA work (feature `cuda`) is queued on the stream the caller passes, torch's current
//! stream; the driver is loaded at run time, so the same wheel imports and runs its CPU paths
//! on machines with no GPU. Unsupported dtypes and devices raise `ValueError`.
//!
//! ```text
//! >>> import torch, ltd.torch as lt
//! >>> attn = lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=4))
//! >>> q = torch.randn(2, 4, 128, 32, requires_grad=True)
//! >>> attn(q, q, q).sum().backward()
//! ```

mod attention;
mod config;
#[cfg(feature = "cuda")]
mod cuda;
mod dlpack;
mod error;
mod matmul;
mod scheduler;
mod softmax;
mod tokens;

use pyo3::prelude::*;

/// The module `ltd._ltd`.
#[pymodule]
fn _ltd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<attention::PySparseAttention>()?;
    m.add_class::<scheduler::PyScheduler>()?;
    m.add_class::<matmul::PyMatMul>()?;
    m.add_class::<softmax::PySoftmax>()?;
    m.add_function(wrap_pyfunction!(tokens::gather, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::route, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::sample_tokens, m)?)?;
    m.add("HAS_CUDA", cfg!(feature = "cuda"))?;
    Ok(())
}
