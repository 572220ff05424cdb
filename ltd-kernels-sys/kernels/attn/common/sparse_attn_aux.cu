// The architecture-independent kernels of the block-sparse attention, launched by both the
// sm_80 and the sm_90 paths (their own module; docs/kernels.md, "Work items and split/combine"
// and "Backward"): the forward's combine of split rows, the backward's pre-pass, the combine of
// split key columns and the dq conversion. Contract: include/ltd_kernels.h
// (LtdSparseAttnFwdParams, LtdSparseAttnBwdParams).
#include <stdint.h>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "attn/common/attn_common.cuh"

namespace {

using ltd_attn::kThreads;
using ltd_attn::kTile;
// The combines and the pre-pass: one warp per row.
constexpr int kRowsPerCta = LTD_SPARSE_ATTN_ROWS_PER_CTA;
static_assert(kRowsPerCta * 32 == kThreads, "one warp per row");

// Merges the pieces of a split row (item_rows query rows): lse = log sum_i exp(lse_i), o = sum_i exp(lse_i - lse) o_i (pieces with no
// visible key have lse_i = -inf and weigh 0; a piece with lse_i NaN, a poisoned one, makes the
// row NaN, which the running maximum alone would drop). One warp per row (row 4 blockIdx.y +
// warp of the split row blockIdx.x / B): lanes read the pieces' lse in parallel and own columns lane + 32 j,
// so every load is a coalesced 128-byte line. Pieces go 8 at a time, their lse and partial rows
// loaded together (one memory round trip per 8 pieces) and merged with a running maximum.
// Launched programmatically behind the Hopper forward (the launcher's choice): the table read
// overlaps that kernel's tail, pdl_wait() holds the rest until its partials are visible.
// A warp per row, not a CTA per split row: one CTA walking its rows and pieces one after the
// other is latency-bound (docs/kernels.md, "Work items and split/combine").
template <typename T, int D>
__device__ __forceinline__ void sparse_attn_fwd_combine(const LtdSparseAttnFwdParams& p) {
    const long long item = blockIdx.x / p.batch;
    const int b = (int)(blockIdx.x % p.batch);
    const int* sr = reinterpret_cast<const int*>(p.split_rows) + item * 4;
    const int h = sr[0], qt = sr[1], s0 = sr[2], cnt = sr[3];
    const int lane = threadIdx.x & 31;
    const int local = blockIdx.y * kRowsPerCta + (threadIdx.x >> 5);
    const long long seq = p.seq;
    const long long row = (long long)qt * p.item_rows + local;
    if (local >= p.item_rows || row >= seq) return;  // the whole warp
    ltd_attn::pdl_wait();
    const long long bh = (long long)b * p.heads + h;
    const long long rows = p.item_rows;  // slot i of this row: part0 + i * rows
    const long long part0 = ((long long)b * p.num_slots + s0) * rows + local;
    const float* plse = reinterpret_cast<const float*>(p.part_lse);
    const float* po = reinterpret_cast<const float*>(p.part_o) + part0 * D + lane;
    constexpr int kBatch = 8;  // pieces per round trip
    float mx = -INFINITY;      // running maximum of the pieces' lse (uniform across the warp)
    float total = 0.f;         // this lane's piece weights, relative to mx
    bool poisoned = false;     // this lane read a NaN lse (fmaxf skips NaN, so it is kept apart)
    float acc[D / 32];
#pragma unroll
    for (int j = 0; j < D / 32; ++j) acc[j] = 0.f;
    for (int i0 = 0; i0 < cnt; i0 += kBatch) {
        const int n = min(kBatch, cnt - i0);
        const float lse_i = lane < n ? plse[part0 + (i0 + lane) * rows] : -INFINITY;
        poisoned |= lse_i != lse_i;
        float part[kBatch][D / 32];
#pragma unroll
        for (int i = 0; i < kBatch; ++i)
#pragma unroll
            for (int j = 0; j < D / 32; ++j) part[i][j] = i < n ? po[(i0 + i) * rows * D + 32 * j] : 0.f;
        float bm = lse_i;
#pragma unroll
        for (int off = 4; off > 0; off >>= 1) bm = fmaxf(bm, __shfl_xor_sync(0xffffffffu, bm, off));
        bm = __shfl_sync(0xffffffffu, bm, 0);  // max over lanes 0..7, the batch's lse
        const float nm = fmaxf(mx, bm);
        if (nm == -INFINITY) continue;  // no visible key in any piece so far
        const float corr = __expf(mx - nm);  // 0 while mx is -inf
        total *= corr;
#pragma unroll
        for (int j = 0; j < D / 32; ++j) acc[j] *= corr;
        const float w = lane < n ? __expf(lse_i - nm) : 0.f;
        total += w;
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
            const float wgt = __shfl_sync(0xffffffffu, w, i);
#pragma unroll
            for (int j = 0; j < D / 32; ++j) acc[j] += wgt * part[i][j];
        }
        mx = nm;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(0xffffffffu, total, off);
    const bool nan_row = __any_sync(0xffffffffu, poisoned);
    const float inv = nan_row ? NAN : total > 0.f ? 1.f / total : 0.f;
    T* O = reinterpret_cast<T*>(p.o) + (bh * seq + row) * D;
#pragma unroll
    for (int j = 0; j < D / 32; ++j) O[lane + 32 * j] = (T)(acc[j] * inv);
    if (lane == 0)
        reinterpret_cast<float*>(p.lse)[bh * seq + row] = nan_row ? NAN : total > 0.f ? mx + logf(total) : -INFINITY;
}

// Per row: dvec = rowsum(dO * O), and the row of dq_acc zeroed (the main kernel adds into it).
// Lane l owns the D / 32 contiguous columns from l D / 32, read with one vector load per tensor.
// With row_stats (the Hopper kernel's input), the row's lse and dvec go to its query tile's
// [lse x 64][dvec x 64] pair instead, and the warps cover the padded rows of every matrix
// (stats_rows) so the padding is written (as 0) too.
template <typename T, int D>
__device__ __forceinline__ void sparse_attn_bwd_pre(const LtdSparseAttnBwdParams& p) {
    const long long seq = p.seq;
    const long long per_matrix = p.row_stats ? ltd_attn::stats_rows(seq) : seq;
    const long long padded_row = (long long)blockIdx.x * kRowsPerCta + (threadIdx.x >> 5);
    if (padded_row >= p.batch * p.heads * per_matrix) return;
    const int lane = threadIdx.x & 31;
    // This row's lse in row_stats (per_matrix is a multiple of 64, so the padded row index
    // alone gives its tile); its dvec is kTile floats further.
    constexpr long long kTileMask = kTile - 1;
    float* stats = p.row_stats ? reinterpret_cast<float*>(p.row_stats) + 2 * (padded_row & ~kTileMask) + (padded_row & kTileMask)
                               : nullptr;
    long long row = padded_row;  // no padding (per_matrix == seq): the same row
    if (per_matrix != seq) {
        const long long bh = padded_row / per_matrix, q = padded_row - bh * per_matrix;
        if (q >= seq) {  // padding of the tiled statistics: no key sees these rows
            if (lane == 0) stats[0] = stats[kTile] = 0.f;
            return;
        }
        row = bh * seq + q;
    }
    constexpr int kPer = D / 32;  // 2 or 4
    using Vec = typename std::conditional<kPer == 2, uint32_t, uint2>::type;
    const long long at = row * D + lane * kPer;
    // The row's lse (copied into row_stats) is loaded with O and dO, not after the sum: a load
    // issued after the shuffles would add a memory round trip to every warp.
    const float lse_row = stats && lane == 0 ? reinterpret_cast<const float*>(p.lse)[row] : 0.f;
    const Vec ov = *reinterpret_cast<const Vec*>(reinterpret_cast<const T*>(p.o) + at);
    const Vec dv = *reinterpret_cast<const Vec*>(reinterpret_cast<const T*>(p.dout) + at);
    const T* oe = reinterpret_cast<const T*>(&ov);
    const T* de = reinterpret_cast<const T*>(&dv);
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc += (float)oe[i] * (float)de[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) {
        if (stats) {
            stats[0] = lse_row;
            stats[kTile] = acc;
        } else {
            reinterpret_cast<float*>(p.dvec)[row] = acc;
        }
    }
    float* acc_row = reinterpret_cast<float*>(p.dq_acc) + at;
    if constexpr (kPer == 2) *reinterpret_cast<float2*>(acc_row) = make_float2(0.f, 0.f);
    else *reinterpret_cast<float4*>(acc_row) = make_float4(0.f, 0.f, 0.f, 0.f);
}

// Adds `cnt` partial slots from `s0`, row `row` of each, into ak / av (lanes own columns
// lane + 32 j; the loads of 4 pieces are in flight at once).
template <int D>
__device__ __forceinline__ void bwd_combine_add(const LtdSparseAttnBwdParams& p, int b, int s0, int cnt, int row, int lane,
                                                float (&ak)[D / 32], float (&av)[D / 32]) {
    const long long at0 = (((long long)b * p.num_slots + s0) * kTile + row) * D + lane;
    const float* pk = reinterpret_cast<const float*>(p.part_dk) + at0;
    const float* pv = reinterpret_cast<const float*>(p.part_dv) + at0;
#pragma unroll 4
    for (int i = 0; i < cnt; ++i) {
        const long long at = (long long)i * kTile * D;
#pragma unroll
        for (int j = 0; j < D / 32; ++j) {
            ak[j] += pk[at + 32 * j];
            av[j] += pv[at + 32 * j];
        }
    }
}

// Sums the pieces of a split key column into dk / dv (keys < seq). One warp per key (key
// 4 blockIdx.y + warp of the split column blockIdx.x / B). GATHER (`_gather_`): rows of 12
// (ltd_kernels.h), and a key whose 16-key slice sits in a gathered set also adds the set's
// slots at the slice's slot row.
template <typename T, int D, bool GATHER = false>
__device__ __forceinline__ void sparse_attn_bwd_combine(const LtdSparseAttnBwdParams& p) {
    const long long item = blockIdx.x / p.batch;
    const int b = (int)(blockIdx.x % p.batch);
    const int* sc = reinterpret_cast<const int*>(p.split_cols) + item * (GATHER ? 12 : 4);
    const int h = sc[0], kc = sc[1], s0 = sc[2], cnt = sc[3];
    const int lane = threadIdx.x & 31;
    const int local = blockIdx.y * kRowsPerCta + (threadIdx.x >> 5);
    const long long seq = p.seq;
    const long long key = (long long)kc * kTile + local;
    if (local >= kTile || key >= seq) return;  // the whole warp
    const long long bh = (long long)b * p.heads + h;
    float ak[D / 32], av[D / 32];
#pragma unroll
    for (int j = 0; j < D / 32; ++j) ak[j] = av[j] = 0.f;
    bwd_combine_add<D>(p, b, s0, cnt, local, lane, ak, av);
    if constexpr (GATHER) {
        const int slice = local / 16, set_first = sc[4 + 2 * slice], code = sc[5 + 2 * slice];
        if (set_first >= 0) bwd_combine_add<D>(p, b, set_first, code >> 2, 16 * (code & 3) + local % 16, lane, ak, av);
    }
    T* dk = reinterpret_cast<T*>(p.dk) + (bh * seq + key) * D + lane;
    T* dv = reinterpret_cast<T*>(p.dv) + (bh * seq + key) * D + lane;
#pragma unroll
    for (int j = 0; j < D / 32; ++j) {
        dk[32 * j] = (T)ak[j];
        dv[32 * j] = (T)av[j];
    }
}

// dq = dq_acc rounded, 4 elements per thread per step (D is a multiple of 4).
template <typename T>
__device__ __forceinline__ void sparse_attn_bwd_dq(const LtdSparseAttnBwdParams& p, long long d) {
    static_assert(LTD_SPARSE_ATTN_BWD_DQ_ELEMS_PER_THREAD == 4, "one float4 per thread and step");
    const long long quads = p.batch * p.heads * p.seq * d / 4;
    const float4* acc = reinterpret_cast<const float4*>(p.dq_acc);
    uint2* dq = reinterpret_cast<uint2*>(p.dq);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += (long long)gridDim.x * blockDim.x) {
        const float4 v = acc[i];
        dq[i] = make_uint2(ltd_attn::pack2<T>(v.x, v.y), ltd_attn::pack2<T>(v.z, v.w));
    }
}

}  // namespace

#define LTD_SPARSE_FWD_COMBINE(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(kThreads) NAME(const LtdSparseAttnFwdParams p) { sparse_attn_fwd_combine<T, D>(p); }
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_f16_d64, __half, 64)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_f16_d128, __half, 128)

#define LTD_SPARSE_BWD_AUX(SUFFIX, T, D)                                                                        \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_pre_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd_pre<T, D>(p);                                                                            \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_combine_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd_combine<T, D>(p);                                                                        \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_combine_gather_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd_combine<T, D, true>(p);                                                                  \
    }
LTD_SPARSE_BWD_AUX(bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_BWD_AUX(bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_BWD_AUX(f16_d64, __half, 64)
LTD_SPARSE_BWD_AUX(f16_d128, __half, 128)

extern "C" __global__ void ltd_sparse_attn_bwd_dq_bf16(const LtdSparseAttnBwdParams p, long long d) { sparse_attn_bwd_dq<__nv_bfloat16>(p, d); }
extern "C" __global__ void ltd_sparse_attn_bwd_dq_f16(const LtdSparseAttnBwdParams p, long long d) { sparse_attn_bwd_dq<__half>(p, d); }
