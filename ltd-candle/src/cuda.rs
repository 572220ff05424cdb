//! CUDA glue (feature `cuda`): candle's CUDA storage to `ltd-core`'s kernels on candle's stream.
//! Work in progress: every entry returns an `Unsupported` error until the glue lands.

use candle_core::{CudaDevice, CudaStorage, Layout, Shape, Tensor};
use ltd_core::HiddenOrder;

use crate::{LtdCandleError, Result};

fn pending(what: &'static str) -> LtdCandleError {
    LtdCandleError::Unsupported {
        what,
        got: "a CUDA tensor".into(),
        expected: "a CPU tensor (the CUDA glue of ltd-candle is not finished)".into(),
    }
}

/// Our device handle on candle's context and stream.
pub(crate) fn ltd_device(_dev: &CudaDevice) -> Result<ltd_core::CudaDevice> {
    Err(pending("CUDA device"))
}

pub(crate) fn sample_indices(
    _dev: &CudaDevice,
    _seed: u64,
    _step: u64,
    _layers: usize,
    _batch: usize,
    _seq: usize,
    _reserved: usize,
) -> Result<Tensor> {
    Err(pending("sampler"))
}

pub(crate) fn gather_rows(
    _order: HiddenOrder,
    _h: (&CudaStorage, &Layout),
    _idx: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    Err(pending("gather"))
}

pub(crate) fn route_rows(
    _order: HiddenOrder,
    _h: (&CudaStorage, &Layout),
    _part: (&CudaStorage, &Layout),
    _idx: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    Err(pending("route"))
}

pub(crate) fn gather_masks(
    _dev: &CudaDevice,
    _mask: &Tensor,
    _indices: &Tensor,
    _reserved: usize,
) -> Result<Tensor> {
    Err(pending("mask gather"))
}
