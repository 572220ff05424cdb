//! Raw CUDA kernels of the `ltd` crates, with their C parameter structs. **No safe API here**:
//! use `ltd-core` and `ltd-sparse-attn`, which validate every argument before a launch.
//!
//! Layout (after cudarc's `sys` crates and candle's `candle-kernels`):
//! - `include/ltd_kernels.h` declares one by-value parameter struct per kernel family;
//! - [`bindings`](crate) (`src/bindings.rs`) is bindgen's output for it, committed, with bindgen's
//!   layout tests; regenerate with `cargo build -p ltd-kernels-sys --features bindgen`;
//! - with feature `cuda`, `build.rs` compiles every `.cu` file under `kernels/` with nvcc (the
//!   directory picks the targets: `sm90/` is Hopper-only) and the module `image` embeds the
//!   images, each a [`KernelImage`] that carries its module name; the kernels are then loaded and launched
//!   through the CUDA driver API (cudarc), so nothing links against the CUDA runtime;
//! - the launch configuration of the attention kernels (threads, dynamic shared memory per head
//!   dim) is defined once, in the header, as the `LTD_SPARSE_ATTN_*` constants.
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

/// A compiled kernel image (a fatbin, ready for `cuModuleLoadData`) with the module name it is
/// loaded and cached under, so the name and the bytes are never paired by hand.
///
/// ```
/// use ltd_kernels_sys::KernelImage;
/// static EMPTY: KernelImage = KernelImage { name: "empty", fatbin: &[] };
/// assert_eq!(EMPTY.name, "empty");
/// assert!(EMPTY.fatbin.is_empty());
/// # #[cfg(feature = "cuda")]
/// # {
/// let image = &ltd_kernels_sys::image::SPARSE_ATTN_AUX;
/// assert_eq!(image.name, "sparse_attn_aux");
/// assert!(!image.fatbin.is_empty());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// The module name: the stem of the `.cu` file, unique under `kernels/`.
    pub name: &'static str,
    /// The fatbin.
    pub fatbin: &'static [u8],
}

/// The compiled kernel images, one [`KernelImage`] per `.cu` file under `kernels/` (feature
/// `cuda`), named after the file: `COPY`, `RANDOM_LTD`, `SPARSE_MATMUL`, `SPARSE_SOFTMAX`,
/// `SPARSE_ATTN_SM80` (the mma.sync attention kernels), `SPARSE_ATTN_SM90` (the Hopper ones,
/// compute capability 9.0 only) and `SPARSE_ATTN_AUX` (the combine, pre-pass and dq kernels
/// both attention paths launch), and [`image::ALL`].
///
/// Each is a complete fatbin: sm_80 and sm_90 machine code plus compute_90 PTX unless
/// `LTD_CUDA_ARCHS` said otherwise at build time; `sm_90a` machine code alone for the files in
/// a `sm90/` directory.
///
/// ```
/// use ltd_kernels_sys::image;
/// for img in image::ALL {
///     assert!(!img.fatbin.is_empty(), "{}", img.name);
/// }
/// assert_eq!(image::SPARSE_ATTN_SM90.name, "sparse_attn_sm90");
/// ```
#[cfg(feature = "cuda")]
pub mod image {
    use crate::KernelImage;
    include!(concat!(env!("OUT_DIR"), "/images.rs"));
}

/// The bytes of every kernel image, as in [`image`], under the same names; `SPARSE_ATTN` and
/// `SPARSE_ATTN_SM90A` are the old names of `SPARSE_ATTN_SM80` and `SPARSE_ATTN_SM90`.
///
/// ```
/// use ltd_kernels_sys::{fatbin, image};
/// assert_eq!(fatbin::SPARSE_ATTN_SM80, image::SPARSE_ATTN_SM80.fatbin);
/// assert_eq!(fatbin::SPARSE_ATTN, fatbin::SPARSE_ATTN_SM80);
/// ```
#[cfg(feature = "cuda")]
pub mod fatbin {
    include!(concat!(env!("OUT_DIR"), "/fatbins.rs"));
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
