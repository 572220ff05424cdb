//! What the GPU tests share (feature `cuda`): the device and the proptest case count. Used by
//! ltd-core's tests and, included by path, by ltd-sparse-attn's.

use ltd_core::CudaDevice;

/// Proptest case count: `n`, or `LTD_GPU_CASES` when set (the sanitizer runs use fewer).
pub fn cases(n: u32) -> u32 {
    std::env::var("LTD_GPU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

/// The GPU the `gpu_*` tests run on. Without one they fail rather than pass having checked
/// nothing: on a machine without a GPU, skip them by name (`cargo test ... -- --skip gpu_`, as
/// `.ci/run` does).
pub fn gpu() -> CudaDevice {
    CudaDevice::new(0).unwrap_or_else(|e| {
        panic!("the gpu_* tests need a CUDA device ({e}); skip them with `-- --skip gpu_` on a machine without one")
    })
}
