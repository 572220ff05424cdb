//! Raw CUDA kernels of the `ltd` crates, with their C parameter structs. **No safe API here**:
//! use `ltd-core` and `ltd-sparse-attn`, which validate every argument before a launch.
//!
//! Layout (after cudarc's `sys` crates and candle's `candle-kernels`):
//! - `include/ltd_kernels.h` declares one by-value parameter struct per kernel family;
//! - [`bindings`](crate) (`src/bindings.rs`) is bindgen's output for it, committed, with bindgen's
//!   layout tests; regenerate with `cargo build -p ltd-kernels-sys --features bindgen`;
//! - with feature `cuda`, `build.rs` compiles `kernels/*.cu` with nvcc and [`fatbin`] embeds the
//!   images; the kernels are then loaded and launched through the CUDA driver API (cudarc), so
//!   nothing links against the CUDA runtime.
//!
//! ```
//! use ltd_kernels_sys::LtdStridedCopy2dParams;
//! // Parameter structs are plain data with a C layout; pointers are 64-bit device addresses.
//! let p = LtdStridedCopy2dParams { rows: 2, cols: 3, src_row_stride: 3, src_col_stride: 1, dst_row_stride: 3, ..Default::default() };
//! assert_eq!(std::mem::size_of::<LtdStridedCopy2dParams>(), 7 * 8);
//! assert_eq!(p.src, 0);
//! ```

#[allow(missing_docs)]
#[rustfmt::skip] // bindgen's output as generated, so the CI freshness check can diff it
mod bindings;
pub use bindings::*;

/// The compiled kernel images, one `&[u8]` fatbin per `kernels/*.cu` file (feature `cuda`).
///
/// Each is a complete fatbin (sm_80 and sm_90 machine code plus compute_90 PTX unless
/// `LTD_CUDA_ARCHS` said otherwise at build time), ready for `cuModuleLoadData`.
#[cfg(feature = "cuda")]
pub mod fatbin {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Kernel entry points, by name, grouped with the fatbin that holds them (feature `cuda`).
#[cfg(feature = "cuda")]
pub mod names {
    /// In [`super::fatbin::COPY`]: strided 2-D copy of 2-byte elements ([`super::LtdStridedCopy2dParams`]).
    pub const STRIDED_COPY_2D_U16: &str = "ltd_strided_copy_2d_u16";
    /// In [`super::fatbin::COPY`]: strided 2-D copy of 4-byte elements ([`super::LtdStridedCopy2dParams`]).
    pub const STRIDED_COPY_2D_U32: &str = "ltd_strided_copy_2d_u32";
    /// In [`super::fatbin::RANDOM_LTD`]: keyed-ChaCha sampler, keys recomputed ([`super::LtdSampleParams`]).
    pub const SAMPLE_TOKENS: &str = "ltd_sample_tokens";
    /// In [`super::fatbin::RANDOM_LTD`]: keyed-ChaCha sampler, keys in dynamic shared memory (`seq * 4` bytes).
    pub const SAMPLE_TOKENS_SMEM: &str = "ltd_sample_tokens_smem";
    /// [`SAMPLE_TOKENS`] with 512 threads per row (long rows).
    pub const SAMPLE_TOKENS_WIDE: &str = "ltd_sample_tokens_wide";
    /// [`SAMPLE_TOKENS_SMEM`] with 512 threads per row (long rows).
    pub const SAMPLE_TOKENS_SMEM_WIDE: &str = "ltd_sample_tokens_smem_wide";
    /// In [`super::fatbin::RANDOM_LTD`]: row gather/scatter by index, by word width 16/4/2 bytes ([`super::LtdIndexRowsParams`]).
    pub const INDEX_ROWS: [&str; 3] = [
        "ltd_index_rows_v16",
        "ltd_index_rows_b4",
        "ltd_index_rows_b2",
    ];
    /// In [`super::fatbin::RANDOM_LTD`]: out-of-place route, by word width 16/4/2 bytes ([`super::LtdRouteRowsParams`]).
    pub const ROUTE_ROWS: [&str; 3] = [
        "ltd_route_rows_v16",
        "ltd_route_rows_b4",
        "ltd_route_rows_b2",
    ];
    /// In [`super::fatbin::RANDOM_LTD`]: mask gather by element width 1/2/4 bytes ([`super::LtdMaskGatherParams`]).
    pub const MASK_GATHER: [&str; 3] = [
        "ltd_mask_gather_b1",
        "ltd_mask_gather_b2",
        "ltd_mask_gather_b4",
    ];
    /// In [`super::fatbin::SPARSE_MATMUL`]: block-sparse matmul ([`super::LtdSparseMatmulParams`]),
    /// indexed `[mode][dtype][block]`: mode 0 `sdd`, 1 `dsd`, 2 `dds`; dtype 0 f32, 1 f16, 2 bf16;
    /// block 0..4 = 16, 32, 64, 128.
    pub const SPARSE_MATMUL: [[[&str; 4]; 3]; 3] = [
        [
            [
                "ltd_sparse_mm_sdd_f32_b16",
                "ltd_sparse_mm_sdd_f32_b32",
                "ltd_sparse_mm_sdd_f32_b64",
                "ltd_sparse_mm_sdd_f32_b128",
            ],
            [
                "ltd_sparse_mm_sdd_f16_b16",
                "ltd_sparse_mm_sdd_f16_b32",
                "ltd_sparse_mm_sdd_f16_b64",
                "ltd_sparse_mm_sdd_f16_b128",
            ],
            [
                "ltd_sparse_mm_sdd_bf16_b16",
                "ltd_sparse_mm_sdd_bf16_b32",
                "ltd_sparse_mm_sdd_bf16_b64",
                "ltd_sparse_mm_sdd_bf16_b128",
            ],
        ],
        [
            [
                "ltd_sparse_mm_dsd_f32_b16",
                "ltd_sparse_mm_dsd_f32_b32",
                "ltd_sparse_mm_dsd_f32_b64",
                "ltd_sparse_mm_dsd_f32_b128",
            ],
            [
                "ltd_sparse_mm_dsd_f16_b16",
                "ltd_sparse_mm_dsd_f16_b32",
                "ltd_sparse_mm_dsd_f16_b64",
                "ltd_sparse_mm_dsd_f16_b128",
            ],
            [
                "ltd_sparse_mm_dsd_bf16_b16",
                "ltd_sparse_mm_dsd_bf16_b32",
                "ltd_sparse_mm_dsd_bf16_b64",
                "ltd_sparse_mm_dsd_bf16_b128",
            ],
        ],
        [
            [
                "ltd_sparse_mm_dds_f32_b16",
                "ltd_sparse_mm_dds_f32_b32",
                "ltd_sparse_mm_dds_f32_b64",
                "ltd_sparse_mm_dds_f32_b128",
            ],
            [
                "ltd_sparse_mm_dds_f16_b16",
                "ltd_sparse_mm_dds_f16_b32",
                "ltd_sparse_mm_dds_f16_b64",
                "ltd_sparse_mm_dds_f16_b128",
            ],
            [
                "ltd_sparse_mm_dds_bf16_b16",
                "ltd_sparse_mm_dds_bf16_b32",
                "ltd_sparse_mm_dds_bf16_b64",
                "ltd_sparse_mm_dds_bf16_b128",
            ],
        ],
    ];
}

// SAFETY: the parameter structs are `#[repr(C)]` plain data (integers and 64-bit device
// addresses) generated from the header the kernels include, so a pointer to one is a valid
// by-value kernel argument of the matching kernel.
#[cfg(feature = "cuda")]
mod device_repr {
    use super::*;
    use cudarc::driver::DeviceRepr;
    // SAFETY: see above; each is a `#[repr(C)]` struct of integers and device addresses.
    unsafe impl DeviceRepr for LtdStridedCopy2dParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdSampleParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdIndexRowsParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdRouteRowsParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdMaskGatherParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdSparseAttnFwdParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdSparseAttnBwdParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdSparseSoftmaxParams {}
    // SAFETY: as above.
    unsafe impl DeviceRepr for LtdSparseMatmulParams {}
    // SAFETY: `#[repr(C, align(64))]` plain bytes (eight encoded tensor maps), the by-value second
    // parameter of the Hopper attention kernels; the driver copies it into parameter space.
    unsafe impl DeviceRepr for LtdSparseAttnTmaMaps {}
}
