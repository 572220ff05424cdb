// The XOR swizzle of every shared-memory tile of the attention kernels (docs/kernels.md,
// "Shared-memory maps"): rows are whole 128-byte lines (or several), and the 16-byte chunk c of
// row r is stored at chunk c ^ (r % 8), so the 8 rows an ldmatrix, a TMA box or a column walk
// touches land in 8 different bank groups. On 128-byte rows it is the hardware's 128-byte
// swizzle, so the TMA and wgmma read and write those tiles as they are.
#pragma once

namespace ltd_attn {

// Where 16-byte chunk `chunk` of row `row` is stored (only the low 3 bits of `row` matter).
__device__ __forceinline__ int swizzle_chunk(int row, int chunk) { return chunk ^ (row & 7); }

// Element offset of (row, col) in a [rows][W] tile of 2-byte elements (W a multiple of 64).
template <int W>
__device__ __forceinline__ int swizzled(int row, int col) {
    return row * W + (swizzle_chunk(row, col >> 3) << 3) + (col & 7);
}

}  // namespace ltd_attn
