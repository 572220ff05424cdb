// Pieces shared by the block-sparse attention kernels (attn/sm80, attn/sm90, attn/common):
// work-item decoding, the forward's online-softmax step and the output stores of the forward
// and the backward. Contract: include/ltd_kernels.h (LtdSparseAttnFwdParams,
// LtdSparseAttnBwdParams).
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "common/mma.cuh"
#include "attn/common/swizzle.cuh"

namespace ltd_attn {

// Query tiles and key chunks are 64 rows and the sub-block masks 4 x 4 blocks of 16: a fixed
// invariant of the layout tables, not a setting (docs/kernels.md, "Tiles and sub-block masks").
constexpr int kTile = 64;
// log2(e): the kernels keep softmax exponents in the log2 domain (one ex2 per element).
constexpr float kLog2e = 1.4426950408889634f;
// Threads per CTA: 4 warps of 16 rows of a tile (one warpgroup on sm_90).
constexpr int kThreads = LTD_SPARSE_ATTN_THREADS;
static_assert(kThreads == 4 * 32, "4 warps of 16 rows cover a 64-row tile");

// The value for head dim D of a configuration constant defined per head dim in ltd_kernels.h.
template <int D>
__host__ __device__ constexpr unsigned by_head_dim(unsigned d64, unsigned d128) {
    static_assert(D == 64 || D == 128, "head dims 64 and 128");
    return D == 64 ? d64 : d128;
}

// The primitives of mma_common.cuh, under this namespace's names too.
using ltd_mma::cp_async16;
using ltd_mma::cp_async_commit;
using ltd_mma::cp_async_wait;
using ltd_mma::pack2;
using ltd_mma::smem_addr;

// Programmatic dependent launch (compute capability 9.0 and newer; compiled out before). A kernel
// launched with the programmatic-serialisation attribute may be scheduled while the kernel before
// it on the stream still runs, once every CTA of that kernel has executed
// pdl_launch_dependents() or exited; it must pdl_wait() (which returns when the previous kernel
// has completed and its writes are visible) before it reads anything that kernel wrote. Both are
// no-ops for an ordinary launch.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

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
            cp_async16(tile + off + i * kStep * kRowBytes, valid ? src + (long long)i * kStep * D : base, valid ? 16 : 0);
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

// One CTA's work item (blockIdx.x = item * batch + b; contract in ltd_kernels.h): in the
// forward, chunks tile_cols[begin..end) of (head h, query tile `tile`); in the backward, query
// tiles tile_rows[begin..end) of (head h, key chunk `tile`); for batch row b. slot >= 0 when it
// is a piece of a split row / column (partial output). first / first_mask repeat the table
// entry at begin and second the one at begin + 1 (0 past the item's end), so the first two
// tile loads need no dependent read.
// P is LtdSparseAttnFwdParams or LtdSparseAttnBwdParams (both carry work_items and batch).
struct WorkItem {
    int h, tile, begin, end, slot, first, first_mask, second, b;
};

template <typename P>
__device__ __forceinline__ WorkItem work_item(const P& p) {
    const long long item = blockIdx.x / p.batch;
    const int* w = reinterpret_cast<const int*>(p.work_items) + item * 8;
    WorkItem r;
    r.h = w[0];
    r.tile = w[1];
    r.begin = w[2];
    r.end = w[3];
    r.slot = w[4];
    r.first = w[5];
    r.first_mask = w[6];
    r.second = w[7];
    r.b = (int)(blockIdx.x % p.batch);
    return r;
}

// The online-softmax step of one 64-key chunk for rows g and g + 8 of a warp, shared by the
// forward kernels (log2 domain). s: the warp's raw scores Q K^T against key chunk kc, in the
// m16n8 C layout (s[4j + e] = key 8j + 2t + (e & 1) of row g + 8 (e >> 1)); bits: the warp's
// 16-key sub-blocks in the layout (0: every score masked, P = 0, the state unchanged);
// warp_row0: the warp's first query row. Scales and masks the scores (keys past seq, causal,
// kpm, bias; with kFoldScale a plain chunk keeps the raw scores and folds the scale into the
// exponent's FMA: max(c s) = |c| max(sign(c) s) — fewer instructions, but more registers: a
// CTA per SM fewer in the sm_80 kernel, so it passes false), updates the running max m and
// sum l, rescales the output accumulator o (same layout, D / 2 values) only when a row max
// moved, and returns P as A fragments pf (4 k-slices of 16 keys; sub-blocks outside the layout
// exactly 0). With sbias (instead of bias) the bias comes from the chunk's [64 query][64 key]
// tile in shared memory (the TMA's 128-byte swizzle; warp_row0 is then a multiple of 16 inside
// a 64-row tile).
// Non-finite scores need no flag: a visible NaN or +inf score makes l NaN for good, and only
// such a score can (fmaxf skips NaN, but its p = 2^NaN is NaN; a +inf max makes m = +inf and
// its own p = 2^(inf - inf) NaN; NaN * alpha + sum stays NaN). Masked entries are -inf and
// give p = 0. row_inv / row_lse turn a NaN l into a NaN row (docs/kernels.md, "Non-finite
// inputs").
// kGather (the gathered Hopper forward, no bias): the chunk is four 16-key slices, tile column
// c being key 16 gbase[c / 16] + c % 16 with the slots ascending (kc is unused); docs/kernels.md,
// "Gathered chunks".
template <typename T, int D, bool kFoldScale, bool kSplitTail, bool kGather = false>
__device__ __forceinline__ void softmax_chunk(const LtdSparseAttnFwdParams& p, const T* bias, const float* kpm, int kc,
                                              long long warp_row0, int g, int t, unsigned bits, float (&s)[32],
                                              float (&m)[2], float (&l)[2], float (&o)[D / 2], uint32_t (&pf)[4][4],
                                              const T* sbias, int4 gbase = int4{}) {
    const long long seq = p.seq;
    const long long row_g[2] = {warp_row0 + g, warp_row0 + g + 8};
    float rowmax[2] = {-INFINITY, -INFINITY};
    const long long kbase = (long long)kc * 64;
    // A plain chunk's last key; with kGather the last slot's (all four slots on for the plain path).
    const long long key_last = kGather ? 16ll * gbase.w + 15 : kbase + 63;
    const bool plain = bits == 0xFu && !kpm && !bias && !sbias && key_last < seq &&
                       (!p.causal || key_last <= warp_row0);
    // The rest (row maxima across the quad, the exponentials, the sums, O's rescale); sc is the
    // factor still to apply to s in the exponent (kFoldScale's plain path). With kSplitTail
    // each branch below runs its own copy: with one copy after the branches join, ptxas moves
    // all 32 scores of the plain branch into the masked branch's registers first. Faster on
    // whole chunks, slower on masked ones and in the Hopper bias-tile kernel, which keeps the
    // joined tail (docs/kernels.md, "Which variant runs when").
    auto finish = [&](float sc) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            rowmax[r] = fmaxf(rowmax[r], __shfl_xor_sync(0xffffffffu, rowmax[r], 1));
            rowmax[r] = fmaxf(rowmax[r], __shfl_xor_sync(0xffffffffu, rowmax[r], 2));
        }
        float alpha[2], base[2], rowsum[2] = {0.f, 0.f};
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float m_new = fmaxf(m[r], rowmax[r]);
            base[r] = m_new == -INFINITY ? 0.f : m_new;  // a fully masked row so far stays 0
            alpha[r] = fast_exp2(m[r] - base[r]);
            m[r] = m_new;
        }
        auto p_tile = [&](int j, bool on) {
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
            if (on) {
                p0 = fast_exp2(fmaf(s[4 * j + 0], sc, -base[0]));
                p1 = fast_exp2(fmaf(s[4 * j + 1], sc, -base[0]));
                p2 = fast_exp2(fmaf(s[4 * j + 2], sc, -base[1]));
                p3 = fast_exp2(fmaf(s[4 * j + 3], sc, -base[1]));
            }
            rowsum[0] += p0 + p1;
            rowsum[1] += p2 + p3;
            pf[j >> 1][(j & 1) * 2 + 0] = pack2<T>(p0, p1);
            pf[j >> 1][(j & 1) * 2 + 1] = pack2<T>(p2, p3);
        };
        if (bits == 0xFu) {
#pragma unroll
            for (int j = 0; j < 8; ++j) p_tile(j, true);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) p_tile(j, (bits >> (j >> 1)) & 1u);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            rowsum[r] += __shfl_xor_sync(0xffffffffu, rowsum[r], 1);
            rowsum[r] += __shfl_xor_sync(0xffffffffu, rowsum[r], 2);
            l[r] = l[r] * alpha[r] + rowsum[r];
        }
        // Rescale O only when some row's max moved (after the first chunks it rarely does).
        if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                o[4 * i + 0] *= alpha[0]; o[4 * i + 1] *= alpha[0];
                o[4 * i + 2] *= alpha[1]; o[4 * i + 3] *= alpha[1];
            }
        }
    };
    float sc = 1.f;
    if (plain && !kFoldScale) {
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            s[i] *= p.scale_log2;
            rowmax[(i >> 1) & 1] = fmaxf(rowmax[(i >> 1) & 1], s[i]);
        }
        if constexpr (kSplitTail) finish(1.f);
    } else if (plain) {
        sc = p.scale_log2;
        const float scale_abs = fabsf(p.scale_log2);
        if (p.scale_log2 < 0.f) {
#pragma unroll
            for (int i = 0; i < 32; ++i) rowmax[(i >> 1) & 1] = fmaxf(rowmax[(i >> 1) & 1], -s[i]);
        } else {
#pragma unroll
            for (int i = 0; i < 32; ++i) rowmax[(i >> 1) & 1] = fmaxf(rowmax[(i >> 1) & 1], s[i]);
        }
        rowmax[0] *= scale_abs;
        rowmax[1] *= scale_abs;
        if constexpr (kSplitTail) finish(sc);
    } else if constexpr (kGather) {
        // Per slot and row, the last visible column of the slice (c % 16 <= lim): keys past seq
        // and, when causal, after the row are hidden.
        const int base[4] = {gbase.x, gbase.y, gbase.z, gbase.w};
        int lim[2][4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const long long k0 = 16ll * base[j];
            const long long in_seq = min(16ll, seq - k0) - 1;
#pragma unroll
            for (int r = 0; r < 2; ++r) lim[r][j] = (int)max(-1ll, p.causal ? min(in_seq, row_g[r] - k0) : in_seq);
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const bool on = (bits >> (j >> 1)) & 1u;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float v = -INFINITY;
                const int x = 8 * (j & 1) + 2 * t + (e & 1);  // column within the slice
                if (on && x <= lim[e >> 1][j >> 1]) {
                    v = s[4 * j + e] * p.scale_log2;
                    if (kpm) v += kpm[16ll * base[j >> 1] + x] * kLog2e;
                }
                s[4 * j + e] = v;
                rowmax[e >> 1] = fmaxf(rowmax[e >> 1], v);
            }
        }
        if constexpr (kSplitTail) finish(1.f);
    } else {
        const int keys_left = (int)min(64ll, seq - kbase);
        int row_lim[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const long long d = row_g[r] - kbase;
            row_lim[r] = p.causal ? (int)max(-1ll, min(64ll, d)) : 64;
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const bool on = (bits >> (j >> 1)) & 1u;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float v = -INFINITY;
                if (on) {
                    const int col = 8 * j + 2 * t + (e & 1);
                    if (col < keys_left && col <= row_lim[e >> 1]) {
                        v = s[4 * j + e] * p.scale_log2;
                        if (sbias) {
                            // The chunk's bias tile in shared memory: [64 rows][64 keys], swizzled.
                            const int row = (int)(row_g[e >> 1] & 63);
                            v += (float)sbias[swizzled<64>(row, col)] * kLog2e;
                        } else if (bias && row_g[e >> 1] < seq) {
                            v += (float)bias[row_g[e >> 1] * seq + kbase + col] * kLog2e;
                        }
                        if (kpm) v += kpm[kbase + col] * kLog2e;
                    }
                }
                s[4 * j + e] = v;
                rowmax[e >> 1] = fmaxf(rowmax[e >> 1], v);
            }
        }
        if constexpr (kSplitTail) finish(1.f);
    }
    if constexpr (!kSplitTail) finish(sc);
}

// Rows per matrix of the backward's tiled row statistics (row_stats): L rounded up to
// LTD_SPARSE_ATTN_STATS_ROWS_ALIGN, so every query tile in the tables has its [lse x 64][dvec x 64] pair.
__device__ __forceinline__ long long stats_rows(long long seq) {
    constexpr long long kAlign = LTD_SPARSE_ATTN_STATS_ROWS_ALIGN;
    static_assert(kAlign % kTile == 0, "whole 64-row tiles");
    return (seq + kAlign - 1) / kAlign * kAlign;
}

// A finished row's output factor 1 / l and its logsumexp (natural log) from the running max m
// (log2 domain) and sum l: a row with no visible key (l = 0) gives factor 0 and lse = -inf; a
// poisoned row (l NaN, see softmax_chunk) gives NaN for both, so its output row is NaN too.
__device__ __forceinline__ float row_inv(float l) { return l == 0.f ? 0.f : 1.f / l; }
__device__ __forceinline__ float row_lse(float m, float l) {
    return l == 0.f ? -INFINITY : (m + log2f(l)) * 0.6931471805599453f;
}

// Stores the normalised output of rows g and g + 8 of warp `warp` of query tile `qt` (o: the
// accumulator in the m16n8 C layout, o[4i + e] = column 8i + 2t + (e & 1), row g + 8 (e >> 1);
// m, l: running max (log2 domain) and sum). Whole rows go to o / lse (rows < seq only); pieces
// of a split row go to the f32 partial buffers, rows part_row0 + 16 warp + ... of the item's
// slot (item_rows rows per slot, all written; the combine kernel reads rows < seq).
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
        const float inv = row_inv(l[r]);
        const float lse = row_lse(m[r], l[r]);
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
