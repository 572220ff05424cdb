// The Hopper backward's templates and helpers (sparse_attn_sm90.cu instantiates the kernels).
#pragma once
#include "attn/sm90/sm90_common.cuh"

// =================================================================================================
// Backward on Hopper (`_bias_` variants: with bias / dbias). The same contract as
// `ltd_sparse_attn_bwd_*` of the sm_80 kernels (LtdSparseAttnBwdParams; docs/kernels.md,
// "Backward"). One warpgroup per 64-key
// chunk: a CTA is one warpgroup on a work item of the transposed tables (a chunk, or a piece of
// a long one), or (`_pair_`, on the pair tables of the transpose) two warpgroups on chunks 2c
// and 2c + 1, which share every Q / dO / row-statistics load and add one dQ tile per query tile
// into dq_acc instead of two. Per query tile of the chunk's column, each warpgroup computes
//   S^T = K Q^T and dP^T = V dO^T      (wgmma, both operands K-major in shared memory)
//   P^T = exp2(S^T * scale_log2 + kpm - lse), dS^T = P^T (dP^T - dvec)   (registers)
//   dV += P^T dO, dK += dS^T Q         (wgmma, A from registers, B MN-major)
// and stages dS^T in shared memory ([key][query]); then
//   dQ += scale * dS K                 (wgmma with both operands MN-major, k = the CTA's 64 or
//                                       128 keys; in the pair kernel warpgroup w computes
//                                       columns [w D / 2, (w + 1) D / 2); staged in shared
//                                       memory, added into dq_acc by TMA reductions)
// =================================================================================================
namespace {

// The end of the backward's shared memory: kBiasTiles [64 query][64 key] bias tiles (TBIAS: one
// per stage, TMA boxes), each stage's row statistics ([lse x 64 (natural log)][dvec x 64], one
// bulk copy), then the barriers.
template <typename T, int kStages, int kBiasTiles>
struct BwdSm90Tail {
    T bias[kBiasTiles][kTile * kTile];
    float stats[kStages][2 * kTile];
    uint64_t barriers[kBarrierSlots];
};
template <typename T, int kStages>
struct BwdSm90Tail<T, kStages, 0> {
    float stats[kStages][2 * kTile];
    uint64_t barriers[kBarrierSlots];
};
// Shared memory of the backward (docs/kernels.md, "Shared-memory maps"): a K and a V tile per
// chunk of the CTA, a Q and a dO tile per stage ([64 rows][D]), kDsBufs dS^T tiles per chunk
// ([64 keys][64 queries]), all in the 128-byte-swizzled layout of hopper.cuh, then the tail.
template <typename T, int D, int kGroups, int kStages, int kDsBufs, int kBiasTiles>
struct BwdSm90Smem {
    T k[kGroups][kTile * D];
    T v[kGroups][kTile * D];
    T q[kStages][kTile * D];
    T dout[kStages][kTile * D];
    T ds[kDsBufs * kGroups][kTile * kTile];
    BwdSm90Tail<T, kStages, kBiasTiles> tail;
};

// Thread 0: the backward's tensor maps into the constant cache before their first use.
template <bool TBIAS, bool GATHER>
__device__ __forceinline__ void bwd_sm90_prefetch_maps(const LtdSparseAttnTmaMaps& maps) {
    if (threadIdx.x == 0) {
        if (GATHER) prefetch_map(&maps.k16);
        if (GATHER) prefetch_map(&maps.v16);
        prefetch_map(&maps.q);
        prefetch_map(&maps.k);
        prefetch_map(&maps.v);
        prefetch_map(&maps.dout);
        prefetch_map(&maps.dq_acc);
        prefetch_map(&maps.dk);
        prefetch_map(&maps.dv);
        if (TBIAS) prefetch_map(&maps.bias);
    }
}

// Thread 0: the CTA's K and V tiles (one per chunk) by TMA, on barrier `bar_kv`.
template <int D, int kGroups>
__device__ __forceinline__ void bwd_sm90_load_kv(const LtdSparseAttnTmaMaps& maps, uint32_t sK, uint32_t sV, int tile, int mat,
                                                 uint32_t bar_kv) {
    constexpr uint32_t kTileBytes = kTile * D * 2;
    mbar_expect(bar_kv, 2 * kGroups * kTileBytes);
#pragma unroll
    for (int w = 0; w < kGroups; ++w) {
        const int row0 = (kGroups * tile + w) * kTile;
        tma_tile<D>(sK + w * kTileBytes, &maps.k, row0, mat, bar_kv);
        tma_tile<D>(sV + w * kTileBytes, &maps.v, row0, mat, bar_kv);
    }
}

// The 16-row slices of one query tile that a backward warp (or the CTA) works on.
struct BwdSm90Slices {
    unsigned qbits;  // this warp's keys (sub-block `warp`): query sub-block i active is bit i
    unsigned qany;   // query slices active for some key of the CTA
    unsigned kany;   // key slices active for some query (k-steps of 16 keys over the CTA's keys)
};
// qany and kany skip wgmmas, so they must be uniform over the CTA: computed from the whole mask,
// never from the warpgroup index (ptxas serialises every wgmma under a branch it cannot prove
// uniform, C7520). In a pair mask, warpgroup wg's half is bits [16 wg, 16 wg + 16).
template <bool PAIR>
__device__ __forceinline__ BwdSm90Slices bwd_sm90_slices(unsigned mask, int wg, int warp) {
    BwdSm90Slices s{0u, 0u, 0u};
    const unsigned m = PAIR ? (mask >> (16 * wg)) & 0xFFFFu : mask;
#pragma unroll
    for (int i = 0; i < 4; ++i) s.qbits |= ((m >> (4 * i + warp)) & 1u) << i;
    const unsigned mu = PAIR ? (mask | (mask >> 16)) & 0xFFFFu : mask;
#pragma unroll
    for (int i = 0; i < 4; ++i) s.qany |= (((mu >> (4 * i)) & 0xFu) != 0u ? 1u : 0u) << i;
    auto key_slices = [](unsigned x) { return (x | (x >> 4) | (x >> 8) | (x >> 12)) & 0xFu; };
    s.kany = PAIR ? key_slices(mask & 0xFFFFu) | (key_slices(mask >> 16) << 4) : key_slices(mask);
    return s;
}

// Every Hopper backward's accumulators, zeroed: dK and dV (wgmma layout: rows = keys 16w + g
// (+8), columns = d) and the scores S^T and dP^T (rows = keys, columns = queries 8j + 2t (+1)).
template <int D>
__device__ __forceinline__ void bwd_sm90_zero(float (&dk)[D / 2], float (&dv)[D / 2], float (&st)[32], float (&dpt)[32]) {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 32; ++i) st[i] = dpt[i] = 0.f;
}

// Issues S^T = K Q^T and dP^T = V dO^T (both operands K-major in shared memory) and commits them
// as one wgmma group.
template <typename T, int D>
__device__ __forceinline__ void bwd_sm90_issue_scores(float (&st)[32], float (&dpt)[32], uint32_t tK, uint32_t tV, uint32_t tQ,
                                                      uint32_t tdO) {
    fence_regs(st);
    fence_regs(dpt);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(st, desc_kmajor(tK, kk), desc_kmajor(tQ, kk), kk > 0);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(dpt, desc_kmajor(tV, kk), desc_kmajor(tdO, kk), kk > 0);
    wg_commit();
}

// dV += P^T dO, dK += dS^T Q (A from registers, B MN-major; k = queries, and slices with no
// active query are skipped: their P^T and dS^T are 0).
template <typename T, int D>
__device__ __forceinline__ void bwd_sm90_update_dkdv(float (&dk)[D / 2], float (&dv)[D / 2], const uint32_t (&pf)[4][4],
                                                     const uint32_t (&dsf)[4][4], unsigned qany, uint32_t tQ, uint32_t tdO) {
    fence_regs(dv);
    fence_regs(dk);
    wg_fence();
    wgmma_slices<4>(qany, [&](int ks) {
        if constexpr (D == 64) {
            Wgmma<T>::rs_n64(dv, pf[ks], desc_mnmajor(tdO, ks));
            Wgmma<T>::rs_n64(dk, dsf[ks], desc_mnmajor(tQ, ks));
        } else {
            Wgmma<T>::rs_n128(dv, pf[ks], desc_mnmajor(tdO, ks));
            Wgmma<T>::rs_n128(dk, dsf[ks], desc_mnmajor(tQ, ks));
        }
    });
    fence_regs(dv);
    fence_regs(dk);
}

// The end of a backward item: a piece of a split column leaves its partial dK / dV sums in its
// slots (warpgroup w's at slot + w num_slots / 2: the pair plan's slots come in one bank per
// warpgroup); a whole column's dK (scaled) and dV leave through the K and V tiles (free: the
// last products have retired) by TMA stores, 16-byte coalesced, keys past seq skipped.
template <typename T, int D, int kGroups>
__device__ __forceinline__ void bwd_sm90_store_dkdv(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps,
                                                    const ltd_attn::WorkItem& work, int kc, int wg, uint32_t sK, uint32_t sV, uint32_t tK, uint32_t tV,
                                                    const float (&dk)[D / 2], const float (&dv)[D / 2], int mat, int warp, int g,
                                                    int t) {
    constexpr uint32_t kTileBytes = kTile * D * 2;
    if (work.slot >= 0) {
        ltd_attn::WorkItem mine = work;
        mine.tile = kc;
        mine.slot = work.slot + wg * (int)(p.num_slots / 2);
        ltd_attn::bwd_store<T, D>(p, mine, warp, g, t, dk, dv);
    } else {
        const float fk[2] = {p.scale, p.scale}, fv[2] = {1.f, 1.f};
        stage_acc<T, D>(tK, dk, fk, warp, g, t);
        stage_acc<T, D>(tV, dv, fv, warp, g, t);
        fence_proxy_async();
        __syncthreads();
        if (threadIdx.x == 0) {
#pragma unroll
            for (int w = 0; w < kGroups; ++w) {
                const int row0 = (kGroups * work.tile + w) * kTile;
                tma_store_tile<D>(&maps.dk, sK + w * kTileBytes, row0, mat);
                tma_store_tile<D>(&maps.dv, sV + w * kTileBytes, row0, mat);
            }
            bulk_commit();
            bulk_wait_read();  // the shared memory must outlive the copies' reads
        }
    }
}

// dQ (64 queries x D / kGroups columns from c0) = dS K, by wgmma with both operands MN-major:
// A = dS^T as staged in tdS (queries contiguous), B = K (d contiguous; column c0 is c0 / 64
// blocks and (c0 % 64) * 2 bytes in, inside the 128-byte swizzle atom, which the hardware applies
// to the address bits), k = the CTA's keys; k-slices of 16 keys with no active query are skipped.
template <typename T, int D, int kGroups>
__device__ __forceinline__ void bwd_sm90_dq_product(float (&dq)[D / kGroups / 2], unsigned kany, uint32_t tdS, uint32_t sK, int c0) {
    constexpr int kN = D / kGroups;
    constexpr uint32_t kTileBytes = kTile * D * 2;
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) dq[i] = 0.f;
    const uint32_t kcol = (c0 >> 6) * kBlockBytes + (c0 & 63) * 2;
    fence_regs(dq);
    wg_fence();
    wgmma_slices<4 * kGroups>(kany, [&](int ks) {
        ss_tt<T, kN>(dq, desc_mnmajor(tdS + (ks >> 2) * kBlockBytes, ks & 3), desc_mnmajor(sK + (ks >> 2) * kTileBytes + kcol, ks & 3),
                     1);
    });
    fence_regs(dq);
}

// The staged dQ of a query tile: D / 32 boxes of [64 rows][32 columns] f32 (8 KB, 128-byte
// swizzle), the first D / 64 in the tile's Q buffer tQ and the rest in its dO buffer tdO.
template <int D>
__device__ __forceinline__ uint32_t bwd_sm90_dq_box(uint32_t tQ, uint32_t tdO, int box) {
    return box < D / 64 ? tQ + box * kBlockBytes : tdO + (box - D / 64) * kBlockBytes;
}

// Stages scale * dQ (this warpgroup's kN columns from c0) into the tile's dQ boxes, for the TMA
// reductions into dq_acc.
template <int D, int kN>
__device__ __forceinline__ void bwd_sm90_stage_dq(const float (&dq)[kN / 2], float scale, uint32_t tQ, uint32_t tdO, int c0, int warp,
                                                  int g, int t) {
#pragma unroll
    for (int i = 0; i < kN / 8; ++i) {
        const uint32_t base = bwd_sm90_dq_box<D>(tQ, tdO, (c0 >> 5) + (i >> 2));  // columns c0 + 32 (i / 4) ..
        const int chunk = 2 * (i & 3) + (t >> 1);  // 16-byte chunk of the 128-byte row
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = warp * 16 + g + 8 * r;  // row % 8 == g
            const uint32_t addr = base + row * 128 + (ltd_attn::swizzle_chunk(g, chunk) << 4) + (t & 1) * 8;
            asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(dq[4 * i + 2 * r] * scale), "f"(dq[4 * i + 2 * r + 1] * scale)
                         : "memory");
        }
    }
}

// Compile-time shape of a backward kernel: warpgroups, buffers and shared memory.
template <typename T, int D_, bool PAIR, bool TBIAS_>
struct BwdSm90Config {
    static constexpr int D = D_;
    static constexpr bool TBIAS = TBIAS_;
    static constexpr int kGroups = PAIR ? 2 : 1;  // warpgroups = 64-key chunks per CTA
    // The pair kernel defers each query tile's dQ reduction to the next tile's first CTA barrier
    // (one barrier per tile instead of two): its staged dQ then outlives the next tile, so it
    // keeps 3 Q / dO / statistics buffers and 2 dS^T buffers (one CTA per SM at D 128 either
    // way); the single-chunk kernel (2-3 CTAs per SM) keeps 2 and 1.
    static constexpr bool kDefer = PAIR;
    static constexpr int kStages = kDefer ? 3 : 2;
    static constexpr int kDsBufs = kDefer ? 2 : 1;
    static constexpr int kN = D / kGroups;  // dQ columns per warpgroup
    using Smem = BwdSm90Smem<T, D, kGroups, kStages, kDsBufs, TBIAS ? kStages : 0>;
    using Tail = decltype(Smem::tail);
    static constexpr uint32_t kTileBytes = kTile * D * 2;
    static constexpr uint32_t kStatsBytes = sizeof(Tail::stats[0]);
    static constexpr uint32_t kBiasBytes = TBIAS ? kBlockBytes : 0;
    static_assert(kAlignSlack + sizeof(Smem) ==
                      (PAIR    ? by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64, LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128)
                       : TBIAS ? by_head_dim<D>(LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D64, LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D128)
                               : by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64, LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128)),
                  "ltd_kernels.h states this kernel's shared memory");
    static_assert(1 + kStages <= kBarrierSlots, "barrier slots");
};

// Shared-memory addresses of a backward CTA: the fields of its Smem from the 1 KB-aligned start.
struct BwdSm90Addrs {
    uint32_t k, v;         // K and V tiles: keys 64 w.. of the CTA
    uint32_t q, dout, ds;  // Q and dO tiles of each stage, dS^T tiles
    uint32_t bias, stats;  // TBIAS: the bias tiles open the tail; the row statistics per stage
    uint32_t bar_kv;       // barrier slot 0: K + V
    uint32_t bar_q;        // + 8 * stage: slot 1 + stage, Q + dO (+ statistics) (+ bias)
    unsigned char* base;   // generic pointer to k
};
template <class Cfg>
__device__ __forceinline__ BwdSm90Addrs bwd_sm90_addrs(unsigned char* smem_raw) {
    using Smem = typename Cfg::Smem;
    using Tail = typename Cfg::Tail;
    const uint32_t raw = smem_addr(smem_raw);
    BwdSm90Addrs a;
    a.k = (raw + (kAlignSlack - 1)) & ~(kAlignSlack - 1);
    a.v = a.k + offsetof(Smem, v);
    a.q = a.k + offsetof(Smem, q);
    a.dout = a.k + offsetof(Smem, dout);
    a.ds = a.k + offsetof(Smem, ds);
    a.base = smem_raw + (a.k - raw);
    a.bias = a.k + offsetof(Smem, tail);
    a.stats = a.bias + offsetof(Tail, stats);
    a.bar_kv = a.bias + offsetof(Tail, barriers);
    a.bar_q = a.bar_kv + 8;
    return a;
}

// Thread 0: query tile qt's Q and dO tiles and its lse / dvec (one 512-byte bulk copy; the
// padding rows past the end are 0, and no key sees them) into buffer `buf`, on its barrier, with
// (TBIAS) the tile's bias box at keys k0... Copying the statistics with the tiles, not by
// per-thread cp.async, means no CTA barrier has to publish them: waiting on the barrier's phase
// makes all of it visible.
template <class Cfg>
__device__ __forceinline__ void bwd_sm90_load_query_tile(const LtdSparseAttnTmaMaps& maps, const BwdSm90Addrs& sm, const float* stats,
                                                         long long k0, int mat, int buf, int qt) {
    const uint32_t bar = sm.bar_q + 8 * buf;
    mbar_expect(bar, 2 * Cfg::kTileBytes + Cfg::kStatsBytes + Cfg::kBiasBytes);
    tma_tile<Cfg::D>(sm.q + buf * Cfg::kTileBytes, &maps.q, qt * kTile, mat, bar);
    tma_tile<Cfg::D>(sm.dout + buf * Cfg::kTileBytes, &maps.dout, qt * kTile, mat, bar);
    bulk_copy(sm.stats + buf * Cfg::kStatsBytes, stats + 2 * kTile * qt, Cfg::kStatsBytes, bar);
    if constexpr (Cfg::TBIAS) tma_box(sm.bias + buf * kBlockBytes, &maps.bias, (int)k0, qt * kTile, mat, bar);
}

// Thread 0: dq_acc rows q0.. += the dQ staged in buffer `buf` (TMA reductions, one bulk group).
template <class Cfg>
__device__ __forceinline__ void bwd_sm90_reduce_dq(const LtdSparseAttnTmaMaps& maps, const BwdSm90Addrs& sm, int buf, long long q0,
                                                   int mat) {
    const uint32_t tQ = sm.q + buf * Cfg::kTileBytes, tdO = sm.dout + buf * Cfg::kTileBytes;
#pragma unroll
    for (int box = 0; box < Cfg::D / 32; ++box) {
        tma_reduce_add_box(&maps.dq_acc, bwd_sm90_dq_box<Cfg::D>(tQ, tdO, box), 32 * box, (int)q0, mat);
    }
    bulk_commit();
}

// TBIAS (`_bias_tma_` kernels; BIAS, single-chunk only): the bias tile of each (query tile,
// chunk) arrives by TMA with the tile's Q / dO (an 8 KB buffer per stage) instead of per-element
// global loads, which here are transposed (lanes step queries: L elements apart).
// GATHER (`_gather_` kernels; no bias, single): one grid over the plain columns and the
// gathered key sets, so the long set items and the short plain ones share the machine, longest
// first. An item with tile < 0 is set -1 - tile: its K / V load as four 16-row boxes, warp w's
// keys come from slot w, and it writes its slot; an item with tile >= 0 is a plain chunk.
template <typename T, int D, bool BIAS, bool PAIR, bool TBIAS, bool GATHER = false>
__device__ __forceinline__ void sparse_attn_bwd_sm90(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    static_assert(!TBIAS || (BIAS && !PAIR), "bias tiles: the single-chunk bias kernel only");
    static_assert(!GATHER || (!BIAS && !PAIR), "gathered key sets: the single-chunk kernel without bias only");
    using Cfg = BwdSm90Config<T, D, PAIR, TBIAS>;
    constexpr int kGroups = Cfg::kGroups, kStages = Cfg::kStages, kN = Cfg::kN;
    constexpr uint32_t kTileBytes = Cfg::kTileBytes;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const BwdSm90Addrs sm = bwd_sm90_addrs<Cfg>(smem_raw);
    const float* sStats = reinterpret_cast<const float*>(sm.base + (sm.stats - sm.k));

    bwd_sm90_prefetch_maps<TBIAS, GATHER>(maps);
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int wg = PAIR ? threadIdx.x >> 7 : 0;  // this warpgroup's chunk: kGroups * tile + wg
    const int h = work.h, begin = work.begin, end = work.end, b = work.b;
    // GATHER: uniform over the CTA (one item), so no wgmma sits under a divergent branch.
    const bool is_set = GATHER && work.tile < 0;
    const int kc = is_set ? 0 : kGroups * work.tile + wg;
    const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const uint32_t tK = sm.k + wg * kTileBytes, tV = sm.v + wg * kTileBytes;  // this warpgroup's keys
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const int mat = (int)bh;
    // This matrix's tiled statistics (the pre-pass's row_stats): tile qt at 2 * 64 * qt.
    const float* stats = reinterpret_cast<const float*>(p.row_stats) + bh * 2 * ltd_attn::stats_rows(seq);
    const int* rows = reinterpret_cast<const int*>(p.tile_rows);
    const int* masks = reinterpret_cast<const int*>(p.tile_col_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    // BIAS: compiled in only for calls with a bias or dbias (it costs registers).
    const T* bias = BIAS && !TBIAS && p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    T* dbias = BIAS && p.dbias ? reinterpret_cast<T*>(p.dbias) + bh * seq * seq : nullptr;
    const long long k0 = (long long)kc * kTile;
    // GATHER: the set's four slice bases (16-key units); warp w's keys are slice w's.
    const int4 slots = is_set ? reinterpret_cast<const int4*>(p.gather_slots)[-1 - work.tile] : int4{};
    const int slot_w = warp == 0 ? slots.x : warp == 1 ? slots.y : warp == 2 ? slots.z : slots.w;  // selects, not a local array
    const long long key0 = is_set ? 16ll * slot_w : k0 + warp * 16;
    const long long key_g[2] = {key0 + g, key0 + g + 8};
    float kpm_l2[2] = {0.f, 0.f};
    if (kpm) {
#pragma unroll
        for (int r = 0; r < 2; ++r) kpm_l2[r] = key_g[r] < seq ? kpm[key_g[r]] * kLog2e : -INFINITY;
    }
    // The query-tile table is read one iteration ahead in registers: qt / mask of tile `it`,
    // next_qt of tile it + 1.
    int qt = work.first;
    unsigned mask = (unsigned)work.first_mask;
    int next_qt = work.second;

    mbar_init_all<1 + kStages>(sm.bar_kv);
    if (threadIdx.x == 0) {
        if (is_set) {
            mbar_expect(sm.bar_kv, 2 * kTileBytes);
            fwd_sm90_load_chunk<D, true>(sm.k, &maps.k, &maps.k16, -1, slots, mat, sm.bar_kv);
            fwd_sm90_load_chunk<D, true>(sm.v, &maps.v, &maps.v16, -1, slots, mat, sm.bar_kv);
        } else {
            bwd_sm90_load_kv<D, kGroups>(maps, sm.k, sm.v, work.tile, mat, sm.bar_kv);
        }
        if (begin < end) bwd_sm90_load_query_tile<Cfg>(maps, sm, stats, k0, mat, 0, qt);
    }
    mbar_wait(sm.bar_kv, 0);

    float dk[D / 2], dv[D / 2], st[32], dpt[32];  // accumulators (bwd_sm90_zero)
    bwd_sm90_zero<D>(dk, dv, st, dpt);
    const int c0 = wg * kN;   // dQ columns of this warpgroup: [c0, c0 + kN)
    long long staged_q0 = 0;  // kDefer: the previous tile's rows, whose dQ is staged

    for (int it = begin; it < end; ++it) {
        const unsigned step = it - begin;
        const int buf = step % kStages;
        const int after_qt = it + 2 < end ? rows[it + 2] : 0;  // for the next iteration
        const unsigned next_mask = it + 1 < end ? (unsigned)masks[it + 1] : 0u;
        mbar_wait(sm.bar_q + 8 * buf, (step / kStages) & 1);
        const long long q0 = (long long)qt * kTile;
        const uint32_t tQ = sm.q + buf * kTileBytes;
        const uint32_t tdO = sm.dout + buf * kTileBytes;
        const uint32_t tdS = sm.ds + (step % Cfg::kDsBufs) * kGroups * kBlockBytes;
        T* sdS_ptr = reinterpret_cast<T*>(sm.base + (tdS - sm.k) + wg * kBlockBytes);
        const BwdSm90Slices sl = bwd_sm90_slices<PAIR>(mask, wg, warp);
        bwd_sm90_issue_scores<T, D>(st, dpt, tK, tV, tQ, tdO);
        // Prefetch query tile it + 1 into buffer (step + 1) % kStages while the products run, so
        // thread 0's wait and copy setup do not hold the other warps. Its last products ran
        // before the previous tile's barriers (single kernel: the other buffer, tile it - 1;
        // kDefer: tile it - 2, whose dQ reduction was issued at tile it - 1's first barrier).
        if (threadIdx.x == 0 && it + 1 < end) {
            bulk_wait_read();  // the dQ reduction out of that buffer has read it
            bwd_sm90_load_query_tile<Cfg>(maps, sm, stats, k0, mat, (step + 1) % kStages, next_qt);
        }
        wg_wait<0>();
        fence_regs(st);
        fence_regs(dpt);

        // P^T and dS^T (A fragments: m = keys, k = queries); each 8-query slice of dS^T also goes
        // to shared memory, [key][query], for the dQ product.
        uint32_t pf[4][4], dsf[4][4];
        const ltd_attn::TiledRowStats row_stats{sStats, buf};
        const auto bias_tile = [&](int ql, int kl) {
            const T* sb = reinterpret_cast<const T*>(sm.base + (sm.bias + buf * kBlockBytes - sm.k));
            return (float)sb[ltd_attn::swizzled<64>(ql, kl)];
        };
        ltd_attn::bwd_probs<T, BIAS, TBIAS>(p, row_stats, st, dpt, sl.qbits, q0, seq, key_g, kpm_l2, bias, dbias, bias_tile, warp, g,
                                            t, pf, dsf, [&](int j, uint32_t ds_lo, uint32_t ds_hi) {
                                                const int kl = warp * 16 + g, ql = 8 * j + 2 * t;
                                                *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl, ql)) = ds_lo;
                                                *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl + 8, ql)) = ds_hi;
                                            });
        bwd_sm90_update_dkdv<T, D>(dk, dv, pf, dsf, sl.qany, tQ, tdO);

        fence_proxy_async();  // the dS^T stores above are generic-proxy writes
        __syncthreads();      // and every warpgroup's dS^T is read below
        // kDefer: every thread staged (and fenced) the previous tile's dQ before this barrier.
        if (Cfg::kDefer && threadIdx.x == 0 && step > 0) bwd_sm90_reduce_dq<Cfg>(maps, sm, (step - 1) % kStages, staged_q0, mat);
        float dq[kN / 2];
        bwd_sm90_dq_product<T, D, kGroups>(dq, sl.kany, tdS, sm.k, c0);
        // dq_acc += scale * dQ by TMA reductions, out of this tile's Q and dO buffers (free:
        // every warpgroup's dK and dV retired before the barrier above); thread 0 issues the
        // reductions (kDefer: at the next tile's first barrier, or after the loop) and, before
        // the next prefetch into these buffers, waits until they have been read.
        bwd_sm90_stage_dq<D, kN>(dq, p.scale, tQ, tdO, c0, warp, g, t);
        fence_proxy_async();  // generic stores, read by the TMA (async proxy)
        if constexpr (Cfg::kDefer) {
            // The next tile writes the other dS^T buffer and another Q / dO buffer; a
            // warpgroup can be at most that far ahead (the next tile's barrier waits for both).
            staged_q0 = q0;
        } else {
            __syncthreads();  // and: the buffers and sdS are overwritten next iteration
            if (threadIdx.x == 0) bwd_sm90_reduce_dq<Cfg>(maps, sm, buf, q0, mat);
        }
        qt = next_qt;
        next_qt = after_qt;
        mask = next_mask;
    }

    if (Cfg::kDefer && begin < end) {
        // Both warpgroups staged the last tile's dQ, and their last dQ products (which read
        // both K tiles) have retired before a whole column's dK / dV is staged into them below.
        __syncthreads();
        if (threadIdx.x == 0) bwd_sm90_reduce_dq<Cfg>(maps, sm, (end - 1 - begin) % kStages, staged_q0, mat);
    }
    if (threadIdx.x == 0) bulk_wait_all();  // the shared memory stays until the reductions read it
    bwd_sm90_store_dkdv<T, D, kGroups>(p, maps, work, kc, wg, sm.k, sm.v, tK, tV, dk, dv, mat, warp, g, t);
}

}  // namespace
