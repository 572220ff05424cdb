// Fused flash-style block-sparse attention (forward), FA2 structure on mma.sync m16n8k16
// (sm_80+): one CTA of 4 warps per (query tile of 64 rows, head, batch); each warp owns 16 query
// rows; the CTA walks the active 64-key chunks of its tile (a 64x64 coarsening of the layout with
// a 16-bit sub-block mask, so layout blocks of 16/32 still use full MMA tiles), double-buffering
// K and V through shared memory with cp.async. Scores never leave registers. Contract:
// include/ltd_kernels.h (LtdSparseAttnFwdParams).
#include <stdint.h>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "sparse_attn_common.cuh"

namespace {

constexpr int kTile = 64;     // query rows per CTA and keys per chunk
constexpr int kThreads = 128; // 4 warps x 16 query rows

// ---- shared-memory tiles: [64 rows][D] 2-byte elements, 16-byte chunks XOR-swizzled by row ----
template <int D>
__device__ __forceinline__ uint32_t swz(int row, int col) {  // element offset
    const int chunk = (col >> 3) ^ (row & 7);
    return row * D + chunk * 8 + (col & 7);
}

using ltd_attn::cp_async_commit;
using ltd_attn::cp_async_wait;
using ltd_attn::smem_addr;
using ltd_mma::ldmatrix_x4;
using ltd_mma::ldmatrix_x4_trans;

// Loads rows [row0, row0 + 64) of a [seq][D] matrix into a swizzled tile; rows >= seq become 0.
// (The loader's per-thread offsets depend only on threadIdx.x and are hoisted out of loops.)
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* tile, const T* __restrict__ base, long long row0, long long seq) {
    const auto loader = ltd_attn::TileLoader<T, D, kThreads, D * 2>::make(
        threadIdx.x, [](int row, int col) { return swz<D>(row, col) * 2; });
    loader.load(smem_addr(tile), base, row0, seq);
}

// The [64 query][64 key] bias tile at rows q0.., keys k0.. of one (b, h) matrix ([seq][seq], seq a
// multiple of 8 so its rows are 16-byte aligned) into `tile` by cp.async: 16-byte pieces, 4 per
// thread, at the 128-byte swizzle softmax_chunk reads (row * 64 + ((col / 8) ^ (row % 8)) * 8 +
// col % 8 elements); pieces past seq are zero-filled.
template <typename T>
__device__ __forceinline__ void load_bias_tile(T* tile, const T* __restrict__ bias, long long q0, long long k0, long long seq) {
#pragma unroll
    for (int i = 0; i < kTile * 8 / kThreads; ++i) {
        const int piece = threadIdx.x + i * kThreads;
        const int row = piece >> 3, col = 8 * (piece & 7);
        const bool valid = q0 + row < seq && k0 + col < seq;
        const T* src = valid ? bias + (q0 + row) * seq + k0 + col : bias;
        ltd_mma::cp_async16(smem_addr(tile + row * 64 + (((col >> 3) ^ (row & 7)) << 3)), src, valid ? 16 : 0);
    }
}

// TBIAS (`_bias_tiles_` kernels): the bias arrives one [64 query][64 key] tile per chunk with the
// chunk's K / V (two 8 KB buffers) instead of per-element global loads; L % 8 == 0.
template <typename T, int D, bool TBIAS>
__device__ __forceinline__ void sparse_attn_fwd(const LtdSparseAttnFwdParams& p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + kTile * D;      // 2 buffers
    T* sV = sK + 2 * kTile * D;  // 2 buffers
    T* sB = sV + 2 * kTile * D;  // TBIAS: 2 bias tiles

    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int qt = work.tile, h = work.h, b = work.b, begin = work.begin, end = work.end;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const T* Q = reinterpret_cast<const T*>(p.q) + bh * seq * D;
    const T* K = reinterpret_cast<const T*>(p.k) + bh * seq * D;
    const T* V = reinterpret_cast<const T*>(p.v) + bh * seq * D;
    const int* cols = reinterpret_cast<const int*>(p.tile_cols);
    const int* masks = reinterpret_cast<const int*>(p.tile_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    const T* bias = p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    const long long q0 = (long long)qt * kTile;

    load_tile<T, D>(sQ, Q, q0, seq);
    if (begin < end) {
        load_tile<T, D>(sK, K, (long long)work.first * kTile, seq);
        load_tile<T, D>(sV, V, (long long)work.first * kTile, seq);
        if (TBIAS) load_bias_tile<T>(sB, bias, q0, (long long)work.first * kTile, seq);
    }
    cp_async_commit();

    // Running softmax state for rows g and g + 8 of this warp (log2 domain).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float oacc[D / 2];  // m16n8 C layout: oacc[4i + e], columns 8i + 2t + (e & 1), row g + 8 (e >> 1)
#pragma unroll
    for (int i = 0; i < D / 2; ++i) oacc[i] = 0.f;
    uint32_t qf[D / 16][4];
    bool q_loaded = false;

    for (int it = begin; it < end; ++it) {
        const int buf = (it - begin) & 1;
        if (it + 1 < end) {
            const long long k0n = (long long)cols[it + 1] * kTile;
            load_tile<T, D>(sK + (buf ^ 1) * kTile * D, K, k0n, seq);
            load_tile<T, D>(sV + (buf ^ 1) * kTile * D, V, k0n, seq);
            if (TBIAS) load_bias_tile<T>(sB + (buf ^ 1) * kTile * kTile, bias, q0, k0n, seq);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (!q_loaded) {
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                const int row = warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                const int col = ks * 16 + 8 * (lane >> 4);
                ldmatrix_x4(qf[ks], sQ + swz<D>(row, col));
            }
            q_loaded = true;
        }
        const int kc = cols[it];
        const unsigned bits = ((unsigned)masks[it] >> (4 * warp)) & 0xFu;  // this warp's 16 rows
        if (bits) {
            const T* tK = sK + buf * kTile * D;
            const T* tV = sV + buf * kTile * D;
            float s[32];
#pragma unroll
            for (int i = 0; i < 32; ++i) s[i] = 0.f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    if (!(bits & (1u << np))) continue;  // 16 keys of an inactive sub-block
                    uint32_t kb[4];
                    const int row = np * 16 + (lane & 7) + 8 * (lane >> 4);
                    const int col = ks * 16 + 8 * ((lane >> 3) & 1);
                    ldmatrix_x4(kb, tK + swz<D>(row, col));
                    ltd_mma::Mma<T>::mma(&s[8 * np], qf[ks], kb[0], kb[1]);
                    ltd_mma::Mma<T>::mma(&s[8 * np + 4], qf[ks], kb[2], kb[3]);
                }
            }
            // Scale, mask, and the online softmax update (shared with the Hopper kernel).
            uint32_t pf[4][4];  // P as A fragments, 4 k-slices of 16 keys
            ltd_attn::softmax_chunk<T, D, false, true>(p, TBIAS ? nullptr : bias, kpm, kc, q0 + warp * 16, g, t, bits, s, m, l,
                                                 oacc, pf, TBIAS ? sB + buf * kTile * kTile : nullptr);
            // O += P V
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                if (!(bits & (1u << ks))) continue;  // P is exactly 0 there
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t vb[4];
                    const int row = ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    const int col = dp * 16 + 8 * (lane >> 4);
                    ldmatrix_x4_trans(vb, tV + swz<D>(row, col));
                    ltd_mma::Mma<T>::mma(&oacc[8 * dp], pf[ks], vb[0], vb[1]);
                    ltd_mma::Mma<T>::mma(&oacc[8 * dp + 4], pf[ks], vb[2], vb[3]);
                }
            }
        }
        __syncthreads();  // the buffer is overwritten by the next iteration's prefetch
    }
    cp_async_wait<0>();

    // Normalise and store. A row with no visible key gives 0 and lse = -inf.
    ltd_attn::fwd_store<T, D>(p, work, qt, 0, warp, g, t, oacc, m, l);
}

// Merges the pieces of a split row (item_rows query rows: one tile, or a pair of tiles for the
// Hopper kernel): lse = log sum_i exp(lse_i), o = sum_i exp(lse_i - lse) o_i (pieces with no
// visible key have lse_i = -inf and weigh 0). One warp per row (row 4 blockIdx.y + warp of the
// split row blockIdx.x / B): lanes read the pieces' lse in parallel and own columns lane + 32 j,
// so every load is a coalesced 128-byte line. Pieces go 8 at a time, their lse and partial rows
// loaded together (one memory round trip per 8 pieces) and merged with a running maximum.
// Launched programmatically behind the Hopper forward (the launcher's choice): the table read
// overlaps that kernel's tail, pdl_wait() holds the rest until its partials are visible.
// (A CTA per split row walking its rows and pieces one after the other was latency-bound: 35-60
// µs after the main kernel on an H100; merging in the CTA of the last piece to finish, counted
// with atomics, was slower still at L = 16384: one CTA cannot pull the pieces' partials fast.)
template <typename T, int D>
__device__ __forceinline__ void sparse_attn_fwd_combine(const LtdSparseAttnFwdParams& p) {
    const long long item = blockIdx.x / p.batch;
    const int b = (int)(blockIdx.x % p.batch);
    const int* sr = reinterpret_cast<const int*>(p.split_rows) + item * 4;
    const int h = sr[0], qt = sr[1], s0 = sr[2], cnt = sr[3];
    const int lane = threadIdx.x & 31;
    const int local = blockIdx.y * 4 + (threadIdx.x >> 5);
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
    float acc[D / 32];
#pragma unroll
    for (int j = 0; j < D / 32; ++j) acc[j] = 0.f;
    for (int i0 = 0; i0 < cnt; i0 += kBatch) {
        const int n = min(kBatch, cnt - i0);
        const float lse_i = lane < n ? plse[part0 + (i0 + lane) * rows] : -INFINITY;
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
    const float inv = total > 0.f ? 1.f / total : 0.f;
    T* O = reinterpret_cast<T*>(p.o) + (bh * seq + row) * D;
#pragma unroll
    for (int j = 0; j < D / 32; ++j) O[lane + 32 * j] = (T)(acc[j] * inv);
    if (lane == 0) reinterpret_cast<float*>(p.lse)[bh * seq + row] = total > 0.f ? mx + logf(total) : -INFINITY;
}

}  // namespace

#define LTD_SPARSE_FWD(NAME, T, D, TBIAS) \
    extern "C" __global__ void __launch_bounds__(kThreads) NAME(const LtdSparseAttnFwdParams p) { sparse_attn_fwd<T, D, TBIAS>(p); }
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bf16_d64, __nv_bfloat16, 64, false)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bf16_d128, __nv_bfloat16, 128, false)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_f16_d64, __half, 64, false)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_f16_d128, __half, 128, false)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bias_tiles_bf16_d64, __nv_bfloat16, 64, true)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bias_tiles_bf16_d128, __nv_bfloat16, 128, true)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bias_tiles_f16_d64, __half, 64, true)
LTD_SPARSE_FWD(ltd_sparse_attn_fwd_bias_tiles_f16_d128, __half, 128, true)

#define LTD_SPARSE_FWD_COMBINE(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(kThreads) NAME(const LtdSparseAttnFwdParams p) { sparse_attn_fwd_combine<T, D>(p); }
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_f16_d64, __half, 64)
LTD_SPARSE_FWD_COMBINE(ltd_sparse_attn_fwd_combine_f16_d128, __half, 128)

// =================================================================================================
// Backward. dvec = rowsum(dO * O); then per 64-key chunk: for each query tile that sees it,
// recompute P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - dvec),
// dK += dS^T Q, and dQ += dS K through shared memory and f32 atomics. Finally dq = dq_acc.
// =================================================================================================
namespace {

// Per row: dvec = rowsum(dO * O), and the row of dq_acc zeroed (the main kernel adds into it).
// Lane l owns the D / 32 contiguous columns from l D / 32, read with one vector load per tensor.
// With row_stats (the Hopper kernel's input), the row's lse and dvec go to its query tile's
// [lse x 64][dvec x 64] pair instead, and the warps cover the padded rows of every matrix
// (stats_rows) so the padding is written (as 0) too.
template <typename T, int D>
__device__ __forceinline__ void sparse_attn_bwd_pre(const LtdSparseAttnBwdParams& p) {
    const long long seq = p.seq;
    const long long per_matrix = p.row_stats ? ltd_attn::stats_rows(seq) : seq;
    const long long padded_row = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
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

// TBIAS (`_bias_tiles_` kernels, BIAS only): the bias arrives one [64 query][64 key] tile per
// query tile with its Q / dO (two 8 KB buffers) instead of per-element global loads, which here
// are transposed (lanes step queries, L elements apart); L % 8 == 0.
template <typename T, int D, bool BIAS, bool TBIAS>
__device__ __forceinline__ void sparse_attn_bwd(const LtdSparseAttnBwdParams& p) {
    static_assert(BIAS || !TBIAS, "bias tiles: bias kernels only");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sK = reinterpret_cast<T*>(smem_raw);
    T* sV = sK + kTile * D;
    T* sQ = sV + kTile * D;          // 2 buffers
    T* sdO = sQ + 2 * kTile * D;     // 2 buffers
    T* sdS = sdO + 2 * kTile * D;    // [64 keys][64 queries], swizzled
    T* sB = sdS + kTile * kTile;     // TBIAS: 2 bias tiles [64 queries][64 keys]
    float* sLse = reinterpret_cast<float*>(sB + (TBIAS ? 2 : 0) * kTile * kTile);  // 2 x 64, log2 domain
    float* sDvec = sLse + 2 * kTile;                               // 2 x 64

    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int h = work.h, kc = work.tile, begin = work.begin, end = work.end, b = work.b;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const T* Q = reinterpret_cast<const T*>(p.q) + bh * seq * D;
    const T* K = reinterpret_cast<const T*>(p.k) + bh * seq * D;
    const T* V = reinterpret_cast<const T*>(p.v) + bh * seq * D;
    const T* dO = reinterpret_cast<const T*>(p.dout) + bh * seq * D;
    const float* lse = reinterpret_cast<const float*>(p.lse) + bh * seq;
    const float* dvec = reinterpret_cast<const float*>(p.dvec) + bh * seq;
    float* dq_acc = reinterpret_cast<float*>(p.dq_acc) + bh * seq * D;
    const int* rows = reinterpret_cast<const int*>(p.tile_rows);
    const int* masks = reinterpret_cast<const int*>(p.tile_col_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    // BIAS: compiled in only for calls with a bias (it costs registers).
    const T* bias = BIAS && p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    T* dbias = BIAS && p.dbias ? reinterpret_cast<T*>(p.dbias) + bh * seq * seq : nullptr;
    const long long k0 = (long long)kc * kTile;
    const long long key_g[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
    constexpr float kLog2e = 1.4426950408889634f;
    float kpm_l2[2] = {0.f, 0.f};
    if (kpm) {
#pragma unroll
        for (int r = 0; r < 2; ++r) kpm_l2[r] = key_g[r] < seq ? kpm[key_g[r]] * kLog2e : -INFINITY;
    }

    auto load_row_stats = [&](int buf, long long q0) {
        if (threadIdx.x < kTile) {
            const long long q = q0 + threadIdx.x;
            const float l = q < seq ? lse[q] : -INFINITY;
            sLse[buf * kTile + threadIdx.x] = l * kLog2e;
            sDvec[buf * kTile + threadIdx.x] = q < seq ? dvec[q] : 0.f;
        }
    };

    load_tile<T, D>(sK, K, k0, seq);
    load_tile<T, D>(sV, V, k0, seq);
    if (begin < end) {
        const long long q0 = (long long)work.first * kTile;
        load_tile<T, D>(sQ, Q, q0, seq);
        load_tile<T, D>(sdO, dO, q0, seq);
        load_row_stats(0, q0);
        if (TBIAS) load_bias_tile<T>(sB, bias, q0, k0, seq);
    }
    cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;

    for (int it = begin; it < end; ++it) {
        const int buf = (it - begin) & 1;
        if (it + 1 < end) {
            const long long q0n = (long long)rows[it + 1] * kTile;
            load_tile<T, D>(sQ + (buf ^ 1) * kTile * D, Q, q0n, seq);
            load_tile<T, D>(sdO + (buf ^ 1) * kTile * D, dO, q0n, seq);
            load_row_stats(buf ^ 1, q0n);
            if (TBIAS) load_bias_tile<T>(sB + (buf ^ 1) * kTile * kTile, bias, q0n, k0, seq);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int qt = rows[it];
        const long long q0 = (long long)qt * kTile;
        const T* tQ = sQ + buf * kTile * D;
        const T* tdO = sdO + buf * kTile * D;
        // This warp's keys are sub-block `warp` of the chunk; query sub-block i is bit 4i + warp.
        const unsigned m = (unsigned)masks[it];
        unsigned qbits = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) qbits |= ((m >> (4 * i + warp)) & 1u) << i;

        uint32_t dsf[4][4];  // dS^T as A fragments (k = queries), zero where inactive
        if (qbits) {
            float st[8][4], dpt[8][4];
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) st[j][e] = dpt[j][e] = 0.f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                uint32_t ka[4], va[4];
                const int arow = warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                const int acol = ks * 16 + 8 * (lane >> 4);
                ldmatrix_x4(ka, sK + swz<D>(arow, acol));
                ldmatrix_x4(va, sV + swz<D>(arow, acol));
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    if (!(qbits & (1u << np))) continue;
                    uint32_t qb[4], ob[4];
                    const int brow = np * 16 + (lane & 7) + 8 * (lane >> 4);
                    const int bcol = ks * 16 + 8 * ((lane >> 3) & 1);
                    ldmatrix_x4(qb, tQ + swz<D>(brow, bcol));
                    ldmatrix_x4(ob, tdO + swz<D>(brow, bcol));
                    ltd_mma::Mma<T>::mma(st[2 * np], ka, qb[0], qb[1]);
                    ltd_mma::Mma<T>::mma(st[2 * np + 1], ka, qb[2], qb[3]);
                    ltd_mma::Mma<T>::mma(dpt[2 * np], va, ob[0], ob[1]);
                    ltd_mma::Mma<T>::mma(dpt[2 * np + 1], va, ob[2], ob[3]);
                }
            }
            // Visibility with 32-bit offsets in the tile: query offset ql sees this thread's key r
            // when ql < q_left (inside the sequence) and ql >= q_min[r] (causal), and the key exists.
            const int q_left = (int)min((long long)kTile, seq - q0);
            int q_min[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const long long d = key_g[r] - q0;
                q_min[r] = key_g[r] >= seq ? kTile : (p.causal ? (int)max(0ll, min((long long)kTile, d)) : 0);
            }
            uint32_t pf[4][4];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const bool on = (qbits >> (j >> 1)) & 1u;
                float pv[4], dsv[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int ql = 8 * j + 2 * t + (e & 1);
                    const float l2 = sLse[buf * kTile + ql];
                    const bool visible = on && ql < q_left && ql >= q_min[e >> 1] && l2 != -INFINITY;
                    float logit = st[j][e] * p.scale_log2 + kpm_l2[e >> 1] - l2;
                    if (TBIAS && visible) {
                        // Query row ql, key kl of the tile (4 rows per load, their 16-byte
                        // chunks apart under the swizzle).
                        const int kl = warp * 16 + g + 8 * (e >> 1);
                        logit += (float)sB[buf * kTile * kTile + ql * 64 + (((kl >> 3) ^ (ql & 7)) << 3) + (kl & 7)] * kLog2e;
                    } else if (BIAS && bias && visible) {
                        logit += (float)bias[(q0 + ql) * seq + key_g[e >> 1]] * kLog2e;
                    }
                    const float pe = visible ? ltd_attn::fast_exp2(logit) : 0.f;
                    pv[e] = pe;
                    dsv[e] = pe * (dpt[j][e] - sDvec[buf * kTile + ql]);
                    if (BIAS && dbias && visible) dbias[(q0 + ql) * seq + key_g[e >> 1]] = (T)dsv[e];
                }
                // st/dpt n-tile j covers queries 8j..8j+7: k-slice j/2, registers (j&1)*2 + row half.
                pf[j >> 1][(j & 1) * 2 + 0] = ltd_attn::pack2<T>(pv[0], pv[1]);
                pf[j >> 1][(j & 1) * 2 + 1] = ltd_attn::pack2<T>(pv[2], pv[3]);
                dsf[j >> 1][(j & 1) * 2 + 0] = ltd_attn::pack2<T>(dsv[0], dsv[1]);
                dsf[j >> 1][(j & 1) * 2 + 1] = ltd_attn::pack2<T>(dsv[2], dsv[3]);
            }
            // dV += P^T dO and dK += dS^T Q (k = queries).
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                if (!(qbits & (1u << ks))) continue;
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t ob[4], qb[4];
                    const int row = ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    const int col = dp * 16 + 8 * (lane >> 4);
                    ldmatrix_x4_trans(ob, tdO + swz<D>(row, col));
                    ldmatrix_x4_trans(qb, tQ + swz<D>(row, col));
                    ltd_mma::Mma<T>::mma(dv[2 * dp], pf[ks], ob[0], ob[1]);
                    ltd_mma::Mma<T>::mma(dv[2 * dp + 1], pf[ks], ob[2], ob[3]);
                    ltd_mma::Mma<T>::mma(dk[2 * dp], dsf[ks], qb[0], qb[1]);
                    ltd_mma::Mma<T>::mma(dk[2 * dp + 1], dsf[ks], qb[2], qb[3]);
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) dsf[i][0] = dsf[i][1] = dsf[i][2] = dsf[i][3] = 0u;
        }
        // dS^T to shared memory as [key][query] for the dQ product.
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int ql = 8 * j + 2 * t;
            const int kl = warp * 16 + g;
            *reinterpret_cast<uint32_t*>(sdS + swz<kTile>(kl, ql)) = dsf[j >> 1][(j & 1) * 2 + 0];
            *reinterpret_cast<uint32_t*>(sdS + swz<kTile>(kl + 8, ql)) = dsf[j >> 1][(j & 1) * 2 + 1];
        }
        __syncthreads();
        // dQ rows 16*warp.. += scale * dS K, 32 columns of D at a time, straight to f32 atomics.
        const long long qrow0 = q0 + warp * 16;
        if (qrow0 < seq) {
            uint32_t dsa[4][4];  // dS as A fragments (m = queries, k = keys), from the transpose
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
                const int row = ks * 16 + (lane & 7) + 8 * (lane >> 4);
                const int col = warp * 16 + 8 * ((lane >> 3) & 1);
                ldmatrix_x4_trans(dsa[ks], sdS + swz<kTile>(row, col));
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
                for (int ks = 0; ks < 4; ++ks) {
                    uint32_t kb[4];
                    const int row = ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    const int col = dp * 16 + 8 * (lane >> 4);
                    ldmatrix_x4_trans(kb, sK + swz<D>(row, col));
                    ltd_mma::Mma<T>::mma(acc[0], dsa[ks], kb[0], kb[1]);
                    ltd_mma::Mma<T>::mma(acc[1], dsa[ks], kb[2], kb[3]);
                }
#pragma unroll
                for (int half = 0; half < 2; ++half) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const long long q = qrow0 + g + 8 * (e >> 1);
                        const int col = dp * 16 + half * 8 + 2 * t + (e & 1);
                        if (q < seq && acc[half][e] != 0.f) atomicAdd(dq_acc + q * D + col, acc[half][e] * p.scale);
                    }
                }
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

    ltd_attn::bwd_store<T, D>(p, work, warp, g, t, reinterpret_cast<const float(&)[D / 2]>(dk), reinterpret_cast<const float(&)[D / 2]>(dv));
}

// Sums the pieces of a split key column into dk / dv (keys < seq). One warp per key (key
// 4 blockIdx.y + warp of the split column blockIdx.x / B); lanes own columns lane + 32 j, and
// the loads of 4 pieces are in flight at once.
template <typename T, int D>
__device__ __forceinline__ void sparse_attn_bwd_combine(const LtdSparseAttnBwdParams& p) {
    const long long item = blockIdx.x / p.batch;
    const int b = (int)(blockIdx.x % p.batch);
    const int* sc = reinterpret_cast<const int*>(p.split_cols) + item * 4;
    const int h = sc[0], kc = sc[1], s0 = sc[2], cnt = sc[3];
    const int lane = threadIdx.x & 31;
    const int local = blockIdx.y * 4 + (threadIdx.x >> 5);
    const long long seq = p.seq;
    const long long key = (long long)kc * kTile + local;
    if (local >= kTile || key >= seq) return;  // the whole warp
    const long long bh = (long long)b * p.heads + h;
    const long long at0 = (((long long)b * p.num_slots + s0) * kTile + local) * D + lane;
    const float* pk = reinterpret_cast<const float*>(p.part_dk) + at0;
    const float* pv = reinterpret_cast<const float*>(p.part_dv) + at0;
    float ak[D / 32], av[D / 32];
#pragma unroll
    for (int j = 0; j < D / 32; ++j) ak[j] = av[j] = 0.f;
#pragma unroll 4
    for (int i = 0; i < cnt; ++i) {
        const long long at = (long long)i * kTile * D;
#pragma unroll
        for (int j = 0; j < D / 32; ++j) {
            ak[j] += pk[at + 32 * j];
            av[j] += pv[at + 32 * j];
        }
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
    const long long quads = p.batch * p.heads * p.seq * d / 4;
    const float4* acc = reinterpret_cast<const float4*>(p.dq_acc);
    uint2* dq = reinterpret_cast<uint2*>(p.dq);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += (long long)gridDim.x * blockDim.x) {
        const float4 v = acc[i];
        dq[i] = make_uint2(ltd_attn::pack2<T>(v.x, v.y), ltd_attn::pack2<T>(v.z, v.w));
    }
}

}  // namespace

#define LTD_SPARSE_BWD(SUFFIX, T, D)                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_pre_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd_pre<T, D>(p);                                                                            \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, false, false>(p);                                                                  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_bias_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, true, false>(p);                                                                   \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_combine_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd_combine<T, D>(p);                                                                        \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_bias_tiles_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, true, true>(p);                                                                    \
    }
LTD_SPARSE_BWD(bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_BWD(bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_BWD(f16_d64, __half, 64)
LTD_SPARSE_BWD(f16_d128, __half, 128)

extern "C" __global__ void ltd_sparse_attn_bwd_dq_bf16(const LtdSparseAttnBwdParams p, long long d) { sparse_attn_bwd_dq<__nv_bfloat16>(p, d); }
extern "C" __global__ void ltd_sparse_attn_bwd_dq_f16(const LtdSparseAttnBwdParams p, long long d) { sparse_attn_bwd_dq<__half>(p, d); }
