// Strided 2-D copy: the smallest kernel that goes through the whole pipeline (header struct ->
// bindgen -> build.rs fatbin -> cudarc launch from ltd-core). Also used to make strided views
// contiguous before the vectorised kernels run.
#include <stdint.h>
#include "ltd_kernels.h"

template <typename T>
__device__ __forceinline__ void strided_copy_2d(const LtdStridedCopy2dParams p) {
    const T* __restrict__ src = reinterpret_cast<const T*>(p.src);
    T* __restrict__ dst = reinterpret_cast<T*>(p.dst);
    const long long total = p.rows * p.cols;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const long long i = e / p.cols;
        const long long j = e - i * p.cols;
        dst[i * p.dst_row_stride + j] = src[i * p.src_row_stride + j * p.src_col_stride];
    }
}

extern "C" __global__ void ltd_strided_copy_2d_u16(const LtdStridedCopy2dParams p) {
    strided_copy_2d<uint16_t>(p);
}

extern "C" __global__ void ltd_strided_copy_2d_u32(const LtdStridedCopy2dParams p) {
    strided_copy_2d<uint32_t>(p);
}
