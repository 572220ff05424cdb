// Pieces shared by the block-sparse attention kernels (sparse_attn.cu for sm_80+,
// sparse_attn.sm90a.cu for Hopper): work-item decoding and the output stores of the forward and
// the backward. Contract: include/ltd_kernels.h (LtdSparseAttnFwdParams, LtdSparseAttnBwdParams).
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"

namespace ltd_attn {

// ---- shared-memory addressing and cp.async -----------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte global -> shared copy; !valid zero-fills the destination (rows past the sequence end).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Copies a [64 rows][D] tile of 2-byte elements (rows [row0, row0 + 64) of a [seq][D] matrix;
// rows >= seq become 0) into a row-swizzled shared-memory tile with NT threads and 16-byte
// cp.async. Thread tid always owns column col = 8 (tid % (D / 8)) of rows r0 + i kStep; kStep is
// a multiple of 8, so under any swizzle by row % 8 its pieces sit at one base offset plus
// i kStep rows of kRowBytes. The base offset is computed once per kernel (`make`), so a load is
// a pointer add, a bounds compare and the copy per piece.
template <typename T, int D, int NT, uint32_t kRowBytes>
struct TileLoader {
    static constexpr int kPieces = D / 8;        // 16-byte pieces per row
    static constexpr int kStep = NT / kPieces;   // rows between a thread's pieces
    static constexpr int kPer = 64 / kStep;      // pieces per thread
    static_assert(NT % kPieces == 0 && kStep % 8 == 0 && 64 % kStep == 0, "tile loader shape");
    uint32_t off;  // bytes from the tile start to piece 0 of this thread
    int r0, col;

    // swz(row, col) = the byte offset of element (row, col) in the tile.
    template <typename Swz>
    static __device__ __forceinline__ TileLoader make(int tid, Swz swz) {
        TileLoader l;
        l.r0 = tid / kPieces;
        l.col = (tid % kPieces) * 8;
        l.off = swz(l.r0, l.col);
        return l;
    }
    __device__ __forceinline__ void load(uint32_t tile, const T* __restrict__ base, long long row0, long long seq) const {
        const T* src = base + (row0 + r0) * D + col;
        const long long left = seq - row0 - r0;  // piece i is inside when i kStep < left
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
            const bool valid = i * kStep < left;
            // An outside piece copies 0 bytes (zero fill) from a valid address.
            cp_async16(tile + off + i * kStep * kRowBytes, valid ? src + (long long)i * kStep * D : base, valid);
        }
    }
};

// 4-byte global -> shared copy (one f32); !valid zero-fills the destination.
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
    const int bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

// 2^x with subnormal results flushed to 0 (one MUFU.EX2; exp2f adds a range fix-up around it).
// A softmax weight below 2^-126 of its row's largest one changes no sum beyond rounding.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
}

// One CTA's work item (blockIdx.x = item * batch + b; contract in ltd_kernels.h): in the
// forward, chunks tile_cols[begin..end) of (head h, query tile `tile`); in the backward, query
// tiles tile_rows[begin..end) of (head h, key chunk `tile`); for batch row b. slot >= 0 when it
// is a piece of a split row / column (partial output). P is LtdSparseAttnFwdParams or
// LtdSparseAttnBwdParams (both carry work_items, work_slots and batch).
struct WorkItem {
    int h, tile, begin, end, slot, b;
};

template <typename P>
__device__ __forceinline__ WorkItem work_item(const P& p) {
    const long long item = blockIdx.x / p.batch;
    const int* w = reinterpret_cast<const int*>(p.work_items) + item * 4;
    WorkItem r;
    r.h = w[0];
    r.tile = w[1];
    r.begin = w[2];
    r.end = w[3];
    r.slot = reinterpret_cast<const int*>(p.work_slots)[item];
    r.b = (int)(blockIdx.x % p.batch);
    return r;
}

// Stores the normalised output of rows g and g + 8 of warp `warp` of query tile `qt` (o: the
// accumulator in the m16n8 C layout, o[4i + e] = column 8i + 2t + (e & 1), row g + 8 (e >> 1);
// m, l: running max (log2 domain) and sum). Whole rows go to o / lse (rows < seq only); pieces
// of a split row go to the f32 partial buffers, rows part_row0 + 16 warp + ... of the item's
// slot (item_rows rows per slot; the combine reads rows < seq).
template <typename T, int D>
__device__ __forceinline__ void fwd_store(const LtdSparseAttnFwdParams& p, const WorkItem& w, int qt, int part_row0,
                                          int warp, int g, int t, const float (&o)[D / 2], const float (&m)[2],
                                          const float (&l)[2]) {
    const long long seq = p.seq;
    const long long bh = (long long)w.b * p.heads + w.h;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int local = warp * 16 + g + 8 * r;
        const long long row = (long long)qt * 64 + local;
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        const float lse = l[r] > 0.f ? (m[r] + log2f(l[r])) * 0.6931471805599453f : -INFINITY;
        if (w.slot < 0) {
            if (row >= seq) continue;
            T* O = reinterpret_cast<T*>(p.o) + (bh * seq + row) * D;
#pragma unroll
            for (int i = 0; i < D / 8; ++i)
                *reinterpret_cast<uint32_t*>(O + 8 * i + 2 * t) = pack2<T>(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
            if (t == 0) reinterpret_cast<float*>(p.lse)[bh * seq + row] = lse;
        } else {
            const long long part = ((long long)w.b * p.num_slots + w.slot) * p.item_rows + part_row0 + local;
            float* O = reinterpret_cast<float*>(p.part_o) + part * D;
#pragma unroll
            for (int i = 0; i < D / 8; ++i)
                *reinterpret_cast<float2*>(O + 8 * i + 2 * t) = make_float2(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
            if (t == 0) reinterpret_cast<float*>(p.part_lse)[part] = lse;
        }
    }
}

// Stores dK (times the softmax scale) and dV of keys 16 warp + g (+8) of the chunk (same
// accumulator layout as fwd_store): whole columns to dk / dv (keys < seq), pieces of a split
// column as f32 partial sums (all 64 keys of the slot) for the combine kernel.
template <typename T, int D>
__device__ __forceinline__ void bwd_store(const LtdSparseAttnBwdParams& p, const WorkItem& w, int warp, int g, int t,
                                          const float (&dk)[D / 2], const float (&dv)[D / 2]) {
    const long long seq = p.seq;
    const long long bh = (long long)w.b * p.heads + w.h;
    if (w.slot < 0) {
        T* dK = reinterpret_cast<T*>(p.dk) + bh * seq * D;
        T* dV = reinterpret_cast<T*>(p.dv) + bh * seq * D;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const long long key = (long long)w.tile * 64 + warp * 16 + g + 8 * r;
            if (key >= seq) continue;
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                *reinterpret_cast<uint32_t*>(dK + key * D + 8 * i + 2 * t) =
                    pack2<T>(dk[4 * i + 2 * r] * p.scale, dk[4 * i + 2 * r + 1] * p.scale);
                *reinterpret_cast<uint32_t*>(dV + key * D + 8 * i + 2 * t) = pack2<T>(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]);
            }
        }
    } else {
        const long long part = ((long long)w.b * p.num_slots + w.slot) * 64;
        float* pk = reinterpret_cast<float*>(p.part_dk) + part * D;
        float* pv = reinterpret_cast<float*>(p.part_dv) + part * D;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int local = warp * 16 + g + 8 * r;
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                *reinterpret_cast<float2*>(pk + local * D + 8 * i + 2 * t) =
                    make_float2(dk[4 * i + 2 * r] * p.scale, dk[4 * i + 2 * r + 1] * p.scale);
                *reinterpret_cast<float2*>(pv + local * D + 8 * i + 2 * t) = make_float2(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]);
            }
        }
    }
}

}  // namespace ltd_attn
