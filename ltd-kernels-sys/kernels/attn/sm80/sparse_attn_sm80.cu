// Fused flash-style block-sparse attention on mma.sync m16n8k16 (sm_80 and newer), forward and
// backward, FA2 structure. Forward: one CTA of 4 warps per (query tile of 64 rows, head, batch);
// each warp owns 16 query rows; the CTA walks the active 64-key chunks of its tile (a 64 x 64
// coarsening of the layout with a 16-bit sub-block mask, so layout blocks of 16 / 32 still use
// whole MMA tiles; docs/kernels.md, "Tiles and sub-block masks"), double-buffering K and V
// through shared memory with cp.async. Scores never leave registers. The backward is further
// below; the combine, pre-pass and dq kernels are in attn/common/sparse_attn_aux.cu.
// Contract: include/ltd_kernels.h (LtdSparseAttnFwdParams, LtdSparseAttnBwdParams).
#include <stdint.h>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "attn/common/attn_common.cuh"
#include "attn/common/bwd_probs.cuh"

namespace {

using ltd_attn::by_head_dim;
using ltd_attn::kLog2e;
using ltd_attn::kThreads;
using ltd_attn::kTile;

// Element offset of (row, col) in a swizzled [rows][D] tile (an unsigned pointer offset).
template <int D>
__device__ __forceinline__ uint32_t swz(int row, int col) {
    const int chunk = ltd_attn::swizzle_chunk(row, col >> 3);
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
// thread, swizzled as softmax_chunk reads them; pieces past seq are zero-filled.
template <typename T>
__device__ __forceinline__ void load_bias_tile(T* tile, const T* __restrict__ bias, long long q0, long long k0, long long seq) {
#pragma unroll
    for (int i = 0; i < kTile * 8 / kThreads; ++i) {
        const int piece = threadIdx.x + i * kThreads;
        const int row = piece >> 3, col = 8 * (piece & 7);
        const bool valid = q0 + row < seq && k0 + col < seq;
        const T* src = valid ? bias + (q0 + row) * seq + k0 + col : bias;
        ltd_mma::cp_async16(smem_addr(tile + row * 64 + (ltd_attn::swizzle_chunk(row, col >> 3) << 3)), src, valid ? 16 : 0);
    }
}

// Dynamic shared memory of the forward (docs/kernels.md, "Shared-memory maps"): Q, two K and two
// V buffers of [64 rows][D], swizzled.
template <typename T, int D>
struct FwdSmem {
    T q[kTile * D];
    T k[2][kTile * D];
    T v[2][kTile * D];
};
// The bias-tile forward's: the same and two [64 query][64 key] bias tiles.
template <typename T, int D>
struct FwdBiasTilesSmem {
    FwdSmem<T, D> tiles;
    T bias[2][kTile * kTile];
};

// TBIAS (`_bias_tiles_` kernels): the bias arrives one [64 query][64 key] tile per chunk with the
// chunk's K / V (two 8 KB buffers) instead of per-element global loads; L % 8 == 0.
template <typename T, int D, bool TBIAS>
__device__ __forceinline__ void sparse_attn_fwd(const LtdSparseAttnFwdParams& p) {
    using Smem = typename std::conditional<TBIAS, FwdBiasTilesSmem<T, D>, FwdSmem<T, D>>::type;
    static_assert(sizeof(Smem) == (TBIAS ? by_head_dim<D>(LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D64, LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D128)
                                         : by_head_dim<D>(LTD_SPARSE_ATTN_FWD_SMEM_D64, LTD_SPARSE_ATTN_FWD_SMEM_D128)),
                  "ltd_kernels.h states this kernel's shared memory");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    FwdSmem<T, D>& tiles = *reinterpret_cast<FwdSmem<T, D>*>(smem_raw);
    T* sQ = tiles.q;
    T* sK = tiles.k[0];
    T* sV = tiles.v[0];
    T* sB = reinterpret_cast<FwdBiasTilesSmem<T, D>*>(smem_raw)->bias[0];  // TBIAS only

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


// =================================================================================================
// Backward. dvec = rowsum(dO * O); then per 64-key chunk: for each query tile that sees it,
// recompute P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - dvec),
// dK += dS^T Q, and dQ += dS K through shared memory and f32 atomics. Finally dq = dq_acc.
// =================================================================================================
namespace {

// The end of the backward's shared memory: kBiasTiles [64 query][64 key] bias tiles (one per
// stage, swizzled; none without bias tiles), then each stage's row statistics.
template <typename T, int kBiasTiles>
struct BwdSmemTail {
    T bias[kBiasTiles][kTile * kTile];
    float lse_log2[2][kTile];
    float dvec[2][kTile];
};
template <typename T>
struct BwdSmemTail<T, 0> {
    float lse_log2[2][kTile];
    float dvec[2][kTile];
};
// Dynamic shared memory of the backward (docs/kernels.md, "Shared-memory maps"): the chunk's K
// and V tiles, two stages of Q and dO tiles ([64 rows][D], swizzled), the dS^T tile ([64 keys]
// [64 queries], swizzled), then the tail.
template <typename T, int D, int kBiasTiles>
struct BwdSmem {
    T k[kTile * D];
    T v[kTile * D];
    T q[2][kTile * D];
    T dout[2][kTile * D];
    T ds[kTile * kTile];
    BwdSmemTail<T, kBiasTiles> tail;
};

// S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys, over the query slices set in qbits.
template <typename T, int D>
__device__ __forceinline__ void bwd_scores(float (&st)[8][4], float (&dpt)[8][4], const T* sK, const T* sV, const T* tQ, const T* tdO,
                                           unsigned qbits, int warp, int lane) {
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
}

// dV += P^T dO and dK += dS^T Q (k = queries), over the query slices set in qbits.
template <typename T, int D>
__device__ __forceinline__ void bwd_dkdv(float (&dk)[D / 8][4], float (&dv)[D / 8][4], const uint32_t (&pf)[4][4], const uint32_t (&dsf)[4][4],
                                         const T* tQ, const T* tdO, unsigned qbits, int lane) {
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
}

// dS^T to shared memory as [key][query] (swizzled) for the dQ product.
template <typename T>
__device__ __forceinline__ void stage_ds(T* sdS, const uint32_t (&dsf)[4][4], int warp, int g, int t) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const int ql = 8 * j + 2 * t;
        const int kl = warp * 16 + g;
        *reinterpret_cast<uint32_t*>(sdS + swz<kTile>(kl, ql)) = dsf[j >> 1][(j & 1) * 2 + 0];
        *reinterpret_cast<uint32_t*>(sdS + swz<kTile>(kl + 8, ql)) = dsf[j >> 1][(j & 1) * 2 + 1];
    }
}

// TBIAS (`_bias_tiles_` kernels, BIAS only): the bias arrives one [64 query][64 key] tile per
// query tile with its Q / dO (two 8 KB buffers) instead of per-element global loads, which here
// are transposed (lanes step queries, L elements apart); L % 8 == 0.
template <typename T, int D, bool BIAS, bool TBIAS>
__device__ __forceinline__ void sparse_attn_bwd(const LtdSparseAttnBwdParams& p) {
    static_assert(BIAS || !TBIAS, "bias tiles: bias kernels only");
    using Smem = BwdSmem<T, D, TBIAS ? 2 : 0>;
    static_assert(sizeof(Smem) == (TBIAS ? by_head_dim<D>(LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D64, LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D128)
                                         : by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SMEM_D64, LTD_SPARSE_ATTN_BWD_SMEM_D128)),
                  "ltd_kernels.h states this kernel's shared memory");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    Smem& smem = *reinterpret_cast<Smem*>(smem_raw);
    T* sK = smem.k;
    T* sV = smem.v;
    T* sQ = smem.q[0];
    T* sdO = smem.dout[0];
    T* sdS = smem.ds;
    T* sB = reinterpret_cast<T*>(&smem.tail);  // TBIAS: the bias tiles open the tail
    float* sLse = smem.tail.lse_log2[0];
    float* sDvec = smem.tail.dvec[0];

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
            float st[8][4], dpt[8][4];  // S^T and dP^T in the m16n8 C layout: [j][e], queries 8j..
            bwd_scores<T, D>(st, dpt, sK, sV, tQ, tdO, qbits, warp, lane);
            uint32_t pf[4][4];
            const ltd_attn::Log2RowStats stats{sLse, sDvec, buf};
            const auto bias_tile = [&](int ql, int kl) { return (float)sB[buf * kTile * kTile + ltd_attn::swizzled<64>(ql, kl)]; };
            ltd_attn::bwd_probs<T, BIAS, TBIAS>(p, stats, st, dpt, qbits, q0, seq, key_g, kpm_l2, bias, dbias, bias_tile, warp, g, t,
                                                pf, dsf, [](int, uint32_t, uint32_t) {});
            bwd_dkdv<T, D>(dk, dv, pf, dsf, tQ, tdO, qbits, lane);
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) dsf[i][0] = dsf[i][1] = dsf[i][2] = dsf[i][3] = 0u;
        }
        // dS^T to shared memory as [key][query] for the dQ product.
        stage_ds(sdS, dsf, warp, g, t);
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

}  // namespace

#define LTD_SPARSE_BWD(SUFFIX, T, D)                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, false, false>(p);                                                                  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_bias_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, true, false>(p);                                                                   \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads) ltd_sparse_attn_bwd_bias_tiles_##SUFFIX(const LtdSparseAttnBwdParams p) { \
        sparse_attn_bwd<T, D, true, true>(p);                                                                    \
    }
LTD_SPARSE_BWD(bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_BWD(bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_BWD(f16_d64, __half, 64)
LTD_SPARSE_BWD(f16_d128, __half, 128)

