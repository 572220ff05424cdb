//! The CUDA side of the attention op (feature `cuda`). Work in progress.

use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};
use ltd_sparse_attn::AttentionShape;

use super::AttnCtx;
use crate::{LtdCandleError, Result};

fn pending() -> LtdCandleError {
    LtdCandleError::Unsupported {
        what: "attention",
        got: "a CUDA tensor".into(),
        expected: "a CPU tensor (the CUDA glue of ltd-candle is not finished)".into(),
    }
}

pub(super) fn check_supported(_dtype: DType, _shape: AttentionShape) -> Result<()> {
    Err(pending())
}

pub(super) fn forward(
    _ctx: &AttnCtx,
    _args: [(&CudaStorage, &Layout); 3],
) -> Result<(CudaStorage, Shape)> {
    Err(pending())
}

pub(super) fn backward(
    _ctx: &AttnCtx,
    _qkv: [&Tensor; 3],
    _out: &Tensor,
    _dout: &Tensor,
    _want_dbias: bool,
) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
    Err(pending())
}
