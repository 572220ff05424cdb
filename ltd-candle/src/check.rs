//! Argument validation shared by the ops: dtypes, devices, ranks.

use candle_core::{DType, Device, Tensor};

use crate::{LtdCandleError, Result};

/// The float dtypes every op runs on (computing in f32 on the CPU).
pub(crate) const FLOAT_DTYPES: &str = "f32, f16 or bf16";

/// Checks that `t` is f32, f16 or bf16.
pub(crate) fn float_dtype(what: &'static str, t: &Tensor) -> Result<DType> {
    match t.dtype() {
        d @ (DType::F32 | DType::F16 | DType::BF16) => Ok(d),
        d => Err(LtdCandleError::Unsupported {
            what,
            got: format!("dtype {d:?}"),
            expected: FLOAT_DTYPES.into(),
        }),
    }
}

/// Checks that `t` has dtype `expected` (the dtype of `reference`).
pub(crate) fn same_dtype(
    what: &'static str,
    t: &Tensor,
    expected: DType,
    reference: &'static str,
) -> Result<()> {
    if t.dtype() != expected {
        return Err(LtdCandleError::DTypeMismatch {
            what,
            got: t.dtype(),
            expected,
            reference,
        });
    }
    Ok(())
}

/// Checks that `t` lives on `device` (the device of `reference`).
pub(crate) fn same_device(
    what: &'static str,
    t: &Tensor,
    device: &Device,
    reference: &'static str,
) -> Result<()> {
    if !t.device().same_device(device) {
        return Err(LtdCandleError::DeviceMismatch {
            what,
            got: describe_device(t.device()),
            expected: describe_device(device),
            reference,
        });
    }
    Ok(())
}

/// `cpu`, `cuda:0`, `metal:0`.
pub(crate) fn describe_device(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Checks that the device is one this build runs on (the CPU, or CUDA with feature `cuda`).
pub(crate) fn supported_device(what: &'static str, d: &Device) -> Result<()> {
    match d {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => Ok(()),
        other => Err(LtdCandleError::Unsupported {
            what,
            got: format!("device {}", describe_device(other)),
            expected: if cfg!(feature = "cuda") {
                "a CPU or CUDA tensor".into()
            } else {
                "a CPU tensor (CUDA tensors need ltd-candle's `cuda` feature)".into()
            },
        }),
    }
}

/// Checks the rank of `t` and returns its dims.
pub(crate) fn rank<'a>(
    what: &'static str,
    t: &'a Tensor,
    rank: usize,
    expected: &str,
) -> Result<&'a [usize]> {
    let dims = t.dims();
    if dims.len() != rank {
        return Err(LtdCandleError::Shape {
            what,
            got: dims.to_vec(),
            expected: expected.into(),
        });
    }
    Ok(dims)
}
