//! Which kernel image holds which entry point: loading from `ltd-kernels-sys`'s images (each
//! carries the module name it is cached under) and the entry-point names of every attention
//! kernel family by element type and head dim.

use cudarc::driver::CudaFunction;
use ltd_core::{CudaDevice, DType};
pub(crate) use ltd_kernels_sys::KernelImage;
use ltd_kernels_sys::image::{SPARSE_ATTN_AUX, SPARSE_ATTN_SM80, SPARSE_ATTN_SM90};
pub(crate) use ltd_kernels_sys::image::{SPARSE_MATMUL, SPARSE_SOFTMAX};

use crate::Result;

/// Loading entry points of a kernel image on a device: the image carries the name the device
/// caches its module under, so a module name and its fatbin are never paired by hand.
pub(crate) trait LoadKernel {
    /// The entry point `function` of this image on `dev` (loaded and looked up once).
    fn function(&self, dev: &CudaDevice, function: &'static str) -> Result<CudaFunction>;

    /// [`function`](Self::function), allowed `bytes` of dynamic shared memory per block.
    fn function_with_shared(
        &self,
        dev: &CudaDevice,
        function: &'static str,
        bytes: usize,
    ) -> Result<CudaFunction>;

    /// Blocks of `threads` threads and `bytes` of dynamic shared memory of `function` resident
    /// per multiprocessor of `dev` (cached by the device).
    fn blocks_per_multiprocessor(
        &self,
        dev: &CudaDevice,
        function: &'static str,
        threads: u32,
        bytes: usize,
    ) -> Result<usize>;
}

impl LoadKernel for KernelImage {
    fn function(&self, dev: &CudaDevice, function: &'static str) -> Result<CudaFunction> {
        Ok(dev.load_function(self.name, self.fatbin, function)?)
    }

    fn function_with_shared(
        &self,
        dev: &CudaDevice,
        function: &'static str,
        bytes: usize,
    ) -> Result<CudaFunction> {
        Ok(dev.load_function_with_shared(self.name, self.fatbin, function, bytes)?)
    }

    fn blocks_per_multiprocessor(
        &self,
        dev: &CudaDevice,
        function: &'static str,
        threads: u32,
        bytes: usize,
    ) -> Result<usize> {
        Ok(dev.blocks_per_multiprocessor(self.name, self.fatbin, function, threads, bytes)?)
    }
}

/// An attention kernel family: one entry point per element type (bf16, f16) and head dim (64,
/// 128), all in one module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnKernel {
    /// The module holding every entry point of the family.
    pub module: &'static KernelImage,
    /// `[bf16, f16][d64, d128]`.
    names: [[&'static str; 2]; 2],
}

macro_rules! family {
    ($module:expr, $prefix:literal) => {
        AttnKernel {
            module: &$module,
            names: [
                [
                    concat!($prefix, "_bf16_d64"),
                    concat!($prefix, "_bf16_d128"),
                ],
                [concat!($prefix, "_f16_d64"), concat!($prefix, "_f16_d128")],
            ],
        }
    };
}

/// Forward, `mma.sync`, bias (if any) read per element.
pub(crate) static FWD: AttnKernel = family!(SPARSE_ATTN_SM80, "ltd_sparse_attn_fwd");
/// Forward, `mma.sync`, bias read in 64 x 64 tiles.
pub(crate) static FWD_BIAS_TILES: AttnKernel =
    family!(SPARSE_ATTN_SM80, "ltd_sparse_attn_fwd_bias_tiles");
/// Forward, Hopper, no bias or a bias read per element.
pub(crate) static FWD_SM90: AttnKernel = family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_fwd_sm90");
/// Forward, Hopper, on the gathered table (no bias).
pub(crate) static FWD_GATHER_SM90: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_fwd_gather_sm90");
/// Forward, Hopper, a pair of query tiles per CTA (no bias).
pub(crate) static FWD_SM90_PAIR: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_fwd_sm90_pair");
/// Forward, Hopper, bias read in 64 x 64 tiles by TMA.
pub(crate) static FWD_BIAS_SM90: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_fwd_bias_tma_sm90");
/// Merges the partial outputs of split query rows.
pub(crate) static FWD_COMBINE: AttnKernel = family!(SPARSE_ATTN_AUX, "ltd_sparse_attn_fwd_combine");
/// Backward pre-pass: row statistics, dq accumulator zeroed.
pub(crate) static BWD_PRE: AttnKernel = family!(SPARSE_ATTN_AUX, "ltd_sparse_attn_bwd_pre");
/// Backward, `mma.sync`, no bias.
pub(crate) static BWD: AttnKernel = family!(SPARSE_ATTN_SM80, "ltd_sparse_attn_bwd");
/// Backward, `mma.sync`, bias read per element (or dbias only).
pub(crate) static BWD_BIAS: AttnKernel = family!(SPARSE_ATTN_SM80, "ltd_sparse_attn_bwd_bias");
/// Backward, `mma.sync`, bias read in 64 x 64 tiles.
pub(crate) static BWD_BIAS_TILES: AttnKernel =
    family!(SPARSE_ATTN_SM80, "ltd_sparse_attn_bwd_bias_tiles");
/// Backward, Hopper, one key chunk per CTA, no bias.
pub(crate) static BWD_SM90: AttnKernel = family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_sm90");
/// Backward, Hopper, bias read per element (or dbias only).
pub(crate) static BWD_BIAS_SM90: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_bias_sm90");
/// Backward, Hopper, bias read in 64 x 64 tiles by TMA.
pub(crate) static BWD_BIAS_TMA_SM90: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_bias_tma_sm90");
/// Backward, Hopper, a pair of key chunks per CTA (no bias).
pub(crate) static BWD_SM90_PAIR: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_sm90_pair");
/// Backward, Hopper, one key chunk per CTA, warp-specialised: a producer warpgroup issuing every
/// copy and dQ reduction, a consumer warpgroup computing (no bias).
pub(crate) static BWD_SM90_WS: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_sm90_ws");
/// Backward, Hopper, a pair of key chunks per CTA, warp-specialised: a producer warpgroup and a
/// consumer warpgroup per chunk (no bias).
pub(crate) static BWD_SM90_WS_PAIR: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_sm90_ws_pair");
/// Backward, Hopper, one gathered key set per CTA (no bias; `plan::GatheredColumns`).
pub(crate) static BWD_GATHER_SM90: AttnKernel =
    family!(SPARSE_ATTN_SM90, "ltd_sparse_attn_bwd_gather_sm90");
/// Sums the partial dK / dV of split key columns.
pub(crate) static BWD_COMBINE: AttnKernel = family!(SPARSE_ATTN_AUX, "ltd_sparse_attn_bwd_combine");
/// Sums the partial dK / dV of key chunks and of the gathered key sets holding their slices.
pub(crate) static BWD_COMBINE_GATHER: AttnKernel =
    family!(SPARSE_ATTN_AUX, "ltd_sparse_attn_bwd_combine_gather");
/// Rounds the f32 dq accumulator to dq (one entry point per element type).
pub(crate) static BWD_DQ: AttnKernel = AttnKernel {
    module: &SPARSE_ATTN_AUX,
    names: [
        ["ltd_sparse_attn_bwd_dq_bf16", "ltd_sparse_attn_bwd_dq_bf16"],
        ["ltd_sparse_attn_bwd_dq_f16", "ltd_sparse_attn_bwd_dq_f16"],
    ],
};

impl AttnKernel {
    /// The entry point for `dtype` and `head_dim`, or `None` where the family has none (f32,
    /// head dims other than 64 and 128: the call checks reject those first).
    pub(crate) fn name(&self, dtype: DType, head_dim: usize) -> Option<&'static str> {
        let t = match dtype {
            DType::BF16 => 0,
            DType::F16 => 1,
            DType::F32 => return None,
        };
        let d = match head_dim {
            64 => 0,
            128 => 1,
            _ => return None,
        };
        Some(self.names[t][d])
    }

    /// The entry point for `dtype` and `head_dim`, as an error where there is none.
    pub(crate) fn entry(&self, dtype: DType, head_dim: usize) -> Result<&'static str> {
        self.name(dtype, head_dim).ok_or_else(|| {
            crate::SparseAttnError::invalid(
                "dtype and head_dim",
                format!("{dtype:?} and {head_dim}"),
                "f16 or bf16 with head dim 64 or 128 for the fused GPU kernels",
            )
        })
    }

    /// The entry point on `dev`, with no dynamic shared memory.
    pub(crate) fn load_plain(
        &self,
        dev: &CudaDevice,
        dtype: DType,
        head_dim: usize,
    ) -> Result<CudaFunction> {
        self.module.function(dev, self.entry(dtype, head_dim)?)
    }

    /// The entry point on `dev`, allowed `smem` bytes of dynamic shared memory.
    pub(crate) fn load(
        &self,
        dev: &CudaDevice,
        dtype: DType,
        head_dim: usize,
        smem: usize,
    ) -> Result<CudaFunction> {
        self.module
            .function_with_shared(dev, self.entry(dtype, head_dim)?, smem)
    }
}

/// The block-sparse softmax's entry point: `backward` or forward, by element type.
pub(crate) fn softmax_name(backward: bool, dtype: DType) -> &'static str {
    match (backward, dtype) {
        (false, DType::F32) => "ltd_sparse_softmax_fwd_f32",
        (false, DType::F16) => "ltd_sparse_softmax_fwd_f16",
        (false, DType::BF16) => "ltd_sparse_softmax_fwd_bf16",
        (true, DType::F32) => "ltd_sparse_softmax_bwd_f32",
        (true, DType::F16) => "ltd_sparse_softmax_bwd_f16",
        (true, DType::BF16) => "ltd_sparse_softmax_bwd_bf16",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_image(image: &[u8], name: &str) -> bool {
        // The fatbin holds each kernel's name as a NUL-terminated symbol string.
        let needle: Vec<u8> = name.bytes().chain([0]).collect();
        image.windows(needle.len()).any(|w| w == needle.as_slice())
    }

    /// Every entry point the launchers can ask for is in the module they load it from.
    #[test]
    fn every_kernel_name_is_in_its_module() {
        let families = [
            &FWD,
            &FWD_BIAS_TILES,
            &FWD_SM90,
            &FWD_BIAS_SM90,
            &FWD_GATHER_SM90,
            &FWD_SM90_PAIR,
            &FWD_COMBINE,
            &BWD_PRE,
            &BWD,
            &BWD_BIAS,
            &BWD_BIAS_TILES,
            &BWD_SM90,
            &BWD_BIAS_SM90,
            &BWD_BIAS_TMA_SM90,
            &BWD_SM90_PAIR,
            &BWD_SM90_WS,
            &BWD_SM90_WS_PAIR,
            &BWD_GATHER_SM90,
            &BWD_COMBINE,
            &BWD_COMBINE_GATHER,
            &BWD_DQ,
        ];
        for family in families {
            for (dtype, ty) in [(DType::BF16, "bf16"), (DType::F16, "f16")] {
                for d in [64, 128] {
                    let name = family.name(dtype, d).unwrap();
                    assert!(
                        in_image(family.module.fatbin, name),
                        "{name} not in {}",
                        family.module.name
                    );
                    assert!(name.contains(ty), "{name} for {ty}");
                }
            }
            assert!(family.name(DType::F32, 64).is_none());
            assert!(family.name(DType::BF16, 96).is_none());
        }
        for backward in [false, true] {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                assert!(in_image(
                    SPARSE_SOFTMAX.fatbin,
                    softmax_name(backward, dtype)
                ));
            }
        }
        assert_eq!(
            FWD.name(DType::F16, 128),
            Some("ltd_sparse_attn_fwd_f16_d128")
        );
        assert_eq!(
            BWD_DQ.name(DType::BF16, 128),
            Some("ltd_sparse_attn_bwd_dq_bf16")
        );
    }
}
