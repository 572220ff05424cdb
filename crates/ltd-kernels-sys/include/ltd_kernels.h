/*
 * ltd_kernels.h: the parameter structs that the ltd CUDA kernels take *by value*.
 *
 * Every kernel has the signature `extern "C" __global__ void name(const Params p)`: one struct,
 * passed by value (CUDA copies it to constant memory at launch), so adding a field never changes
 * the number of launch arguments and the Rust side passes exactly one `&Params`.
 *
 * Rules for this header (bindgen turns it into src/bindings.rs, which is committed):
 *   - only fixed-width C types; device pointers are `ltd_devptr_t` (a CUdeviceptr, 64-bit);
 *   - sizes, strides and offsets are 64-bit signed (`long long`), in *elements* unless the
 *     field name says `_bytes`;
 *   - no pointers to host memory, no enums (use int32 codes documented here).
 *
 * Regenerate the Rust bindings with:  cargo build -p ltd-kernels-sys --features bindgen
 */
#ifndef LTD_KERNELS_H
#define LTD_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/** A device address (the CUDA driver's CUdeviceptr). */
typedef unsigned long long ltd_devptr_t;

/**
 * Copies a strided 2-D view `src[i * src_row_stride + j * src_col_stride]` (rows x cols) into
 * `dst[i * dst_row_stride + j]`. Element width is fixed by the kernel name (`_u16`, `_u32`), so the
 * copy is exact for every dtype of that width. Kernels: `ltd_strided_copy_2d_u16`,
 * `ltd_strided_copy_2d_u32`. Any grid works (grid-stride loop over rows * cols, 64-bit indices).
 */
typedef struct LtdStridedCopy2dParams {
    ltd_devptr_t src;
    ltd_devptr_t dst;
    long long rows;
    long long cols;
    long long src_row_stride;
    long long src_col_stride;
    long long dst_row_stride;
} LtdStridedCopy2dParams;

#ifdef __cplusplus
}
#endif

#endif /* LTD_KERNELS_H */
