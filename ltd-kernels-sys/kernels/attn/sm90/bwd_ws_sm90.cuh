// The warp-specialised Hopper backward (sparse_attn_sm90.cu instantiates it; docs/kernels.md,
// "Backward"): the single-chunk or (PAIR) the pair backward's work items and arithmetic, with
// FA3's division of labour. A CTA is a producer warpgroup and one consumer warpgroup per 64-key
// chunk (PAIR: chunks 2c and 2c + 1, FA3's own shape of 128 keys):
//   - the producer warpgroup gives its registers to the consumer (setmaxnreg) and one thread
//     does all the copying: the chunk's K and V, then, kStages tiles ahead of the consumer, each
//     query tile's Q, dO and row statistics with the tile's table entry (query tile, mask) into
//     shared memory, and the dQ reduction of a tile once the consumer has staged it;
//   - the consumer warpgroups run the step of bwd_sm90.cuh on every query tile (S^T, dP^T, P^T,
//     dS^T, dK, dV, dQ) and never wait for a copy to be issued, for a table read from global
//     memory, or for a reduction to have read its buffer; their only barrier is the named one
//     that publishes dS^T to the dQ product (PAIR: both chunks' dS^T to both warpgroups, each
//     computing half of dQ's columns over the 128 keys).
// Stage `buf` cycles: producer fills it (full[buf], TMA transaction count) -> consumers stage the
// tile's dQ into its Q / dO buffers and arrive (dq_ready[buf], one arrival per consumer thread)
// -> producer issues the reduction out of it, waits until the reduction has read it, and fills it
// again.
#pragma once
#include "attn/sm90/bwd_sm90.cuh"

namespace {

// Compile-time shape of a warp-specialised backward: consumer warpgroups (one per chunk), stages,
// dS^T buffers, CTAs per SM and the registers each warpgroup keeps after setmaxnreg.
//   - Single chunk: 256 threads, two CTAs per SM at both head dims (three would leave the
//     consumer 136 registers; at head dim 64 it needs about 154); 3 stages at head dim 64, 2 at
//     128 (a third leaves one CTA per SM); one dS^T buffer.
//   - PAIR: 384 threads, one CTA per SM; the pair kernel's 3 stages and 2 dS^T buffers per chunk
//     (a warpgroup may write the next tile's dS^T while the other still reads this one's).
// The producer keeps 24 registers; the consumers share the rest of the CTA's allocation (the
// launch bound's per-thread count, a multiple of 8, times the CTA's threads), a multiple of 8.
template <typename T, int HeadDim, bool PAIR_>
struct BwdWsSm90Config {
    static constexpr int D = HeadDim;
    static constexpr bool PAIR = PAIR_;
    static constexpr int kGroups = PAIR ? 2 : 1;
    static constexpr int kThreadsCta = PAIR ? LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_THREADS : LTD_SPARSE_ATTN_BWD_SM90_WS_THREADS;
    static_assert(kThreadsCta == (1 + kGroups) * kThreads, "a producer and a consumer warpgroup per chunk");
    static constexpr int kConsumers = kGroups * kThreads;
    static constexpr int kCtasPerSm = PAIR ? 1 : 2;
    static constexpr int kProducerRegs = 24;
    static constexpr int kLaunchRegs = 65536 / (kCtasPerSm * kThreadsCta) / 8 * 8;
    static constexpr int kConsumerRegs = (kThreadsCta * kLaunchRegs - kThreads * kProducerRegs) / kConsumers / 8 * 8;
    static constexpr int kStages = PAIR || D == 64 ? 3 : 2;
    static constexpr int kDsBufs = PAIR ? 2 : 1;
    static constexpr int kN = D / kGroups;  // dQ columns per consumer warpgroup
    using Smem = BwdSm90Smem<T, D, kGroups, kStages, kDsBufs, 0>;
    using Tail = decltype(Smem::tail);
    struct Full {
        Smem tiles;
        int2 items[kStages];
    };
    static constexpr bool TBIAS = false;
    static constexpr uint32_t kTileBytes = kTile * D * 2;
    static constexpr uint32_t kStatsBytes = sizeof(Tail::stats[0]);
    static constexpr uint32_t kBiasBytes = 0;
    static_assert(kAlignSlack + sizeof(Full) ==
                      (PAIR ? by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D64, LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D128)
                            : by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D64, LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D128)),
                  "ltd_kernels.h states this kernel's shared memory");
    // Barrier slots: 0 K + V; 1 + s stage s full; 1 + kStages + s stage s's dQ staged.
    static_assert(1 + 2 * kStages <= kBarrierSlots, "barrier slots");
};
static_assert(BwdWsSm90Config<__nv_bfloat16, 128, false>::kConsumerRegs == 232 &&
                  BwdWsSm90Config<__nv_bfloat16, 64, false>::kConsumerRegs == 232 &&
                  BwdWsSm90Config<__nv_bfloat16, 128, true>::kConsumerRegs == 240,
              "setmaxnreg counts");

// The consumer warpgroups' barrier (id 1; 0 is __syncthreads).
template <int N>
__device__ __forceinline__ void ws_consumer_sync() {
    asm volatile("bar.sync 1, %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void ws_regs_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void ws_regs_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// The producer thread: K and V, every query tile's stage kStages ahead, every tile's dQ
// reduction.
template <class Cfg>
__device__ __forceinline__ void bwd_ws_sm90_produce(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps,
                                                    const BwdSm90Addrs& sm, int2* items, uint32_t bar_ready,
                                                    const ltd_attn::WorkItem& work, const float* stats, int mat) {
    constexpr int kStages = Cfg::kStages;
    const int* rows = reinterpret_cast<const int*>(p.tile_rows);
    const int* masks = reinterpret_cast<const int*>(p.tile_col_masks);
    const int n = work.end - work.begin;
    bwd_sm90_load_kv<Cfg::D, Cfg::kGroups>(maps, sm.k, sm.v, work.tile, mat, sm.bar_kv);
    const auto reduce = [&](int j) {  // tile j's dQ, once staged; its buffer is free after
        const int buf = j % kStages;
        mbar_wait(bar_ready + 8 * buf, (j / kStages) & 1);
        bwd_sm90_reduce_dq<Cfg>(maps, sm, buf, (long long)items[buf].x * kTile, mat);
    };
    for (int i = 0; i < n; ++i) {
        const int buf = i % kStages;
        if (i >= kStages) {
            reduce(i - kStages);
            bulk_wait_read();
        }
        // The item repeats its first two entries, so the first copies need no dependent read.
        const int qt = i == 0 ? work.first : i == 1 ? work.second : rows[work.begin + i];
        const int mask = i == 0 ? work.first_mask : masks[work.begin + i];
        items[buf] = make_int2(qt, mask);
        bwd_sm90_load_query_tile<Cfg>(maps, sm, stats, 0, mat, buf, qt);  // its full barrier releases items[buf]
    }
    for (int j = n > kStages ? n - kStages : 0; j < n; ++j) reduce(j);
    bulk_wait_all();  // the shared memory stays until the reductions have read it
}

template <typename T, int D, bool PAIR>
__device__ __forceinline__ void sparse_attn_bwd_ws_sm90(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    using Cfg = BwdWsSm90Config<T, D, PAIR>;
    constexpr int kStages = Cfg::kStages, kGroups = Cfg::kGroups, kN = Cfg::kN, kConsumers = Cfg::kConsumers;
    constexpr uint32_t kTileBytes = Cfg::kTileBytes;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const BwdSm90Addrs sm = bwd_sm90_addrs<Cfg>(smem_raw);
    const float* sStats = reinterpret_cast<const float*>(sm.base + (sm.stats - sm.k));
    int2* items = reinterpret_cast<int2*>(sm.base + sizeof(typename Cfg::Smem));
    const uint32_t bar_ready = sm.bar_q + 8 * kStages;

    bwd_sm90_prefetch_maps<false, false>(maps);
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const long long seq = p.seq;
    const long long bh = (long long)work.b * p.heads + work.h;
    const int mat = (int)bh;
    const float* stats = reinterpret_cast<const float*>(p.row_stats) + bh * 2 * ltd_attn::stats_rows(seq);
    if (threadIdx.x == 0) {
        mbar_init(sm.bar_kv, 1);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(sm.bar_q + 8 * s, 1);
            mbar_init(bar_ready + 8 * s, kConsumers);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (threadIdx.x < kThreads) {
        ws_regs_dec<Cfg::kProducerRegs>();
        if (threadIdx.x == 0) bwd_ws_sm90_produce<Cfg>(p, maps, sm, items, bar_ready, work, stats, mat);
        return;
    }
    ws_regs_inc<Cfg::kConsumerRegs>();

    const int ctid = threadIdx.x - kThreads;
    const int wg = PAIR ? ctid >> 7 : 0;  // this consumer's chunk: kGroups * tile + wg
    const int warp = (PAIR ? ctid & 127 : ctid) >> 5, lane = ctid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int kc = kGroups * work.tile + wg;
    const uint32_t tK = sm.k + wg * kTileBytes, tV = sm.v + wg * kTileBytes;
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)work.b * seq : nullptr;
    const long long key_g[2] = {(long long)kc * kTile + warp * 16 + g, (long long)kc * kTile + warp * 16 + g + 8};
    float kpm_l2[2] = {0.f, 0.f};
    if (kpm) {
#pragma unroll
        for (int r = 0; r < 2; ++r) kpm_l2[r] = key_g[r] < seq ? kpm[key_g[r]] * kLog2e : -INFINITY;
    }
    mbar_wait(sm.bar_kv, 0);

    float dk[D / 2], dv[D / 2], st[32], dpt[32];  // accumulators (bwd_sm90_zero)
    bwd_sm90_zero<D>(dk, dv, st, dpt);
    const int c0 = wg * kN;  // dQ columns of this warpgroup: [c0, c0 + kN)

    const int n = work.end - work.begin;
    for (int i = 0; i < n; ++i) {
        const int buf = i % kStages;
        mbar_wait(sm.bar_q + 8 * buf, (i / kStages) & 1);
        const int2 item = items[buf];
        const long long q0 = (long long)item.x * kTile;
        const uint32_t tQ = sm.q + buf * kTileBytes;
        const uint32_t tdO = sm.dout + buf * kTileBytes;
        const uint32_t tdS = sm.ds + (i % Cfg::kDsBufs) * kGroups * kBlockBytes;
        T* sdS_ptr = reinterpret_cast<T*>(sm.base + (tdS - sm.k) + wg * kBlockBytes);
        const BwdSm90Slices sl = bwd_sm90_slices<PAIR>((unsigned)item.y, wg, warp);
        bwd_sm90_issue_scores<T, D>(st, dpt, tK, tV, tQ, tdO);
        wg_wait<0>();
        fence_regs(st);
        fence_regs(dpt);

        // P^T and dS^T as in bwd_sm90.cuh; dS^T also to shared memory for the dQ product. The
        // single kernel's one dS^T buffer: the previous tile's dQ product, its last reader,
        // retired in every warp before it got here (a wgmma completes for all four warps at
        // once). PAIR: this tile's buffer was last read two tiles ago, before this barrier's
        // previous phase, which both warpgroups passed.
        uint32_t pf[4][4], dsf[4][4];
        const ltd_attn::TiledRowStats row_stats{sStats, buf};
        ltd_attn::bwd_probs<T, false, false>(p, row_stats, st, dpt, sl.qbits, q0, seq, key_g, kpm_l2, nullptr, nullptr,
                                             [](int, int) { return 0.f; }, warp, g, t, pf, dsf,
                                             [&](int j, uint32_t ds_lo, uint32_t ds_hi) {
                                                 const int kl = warp * 16 + g, ql = 8 * j + 2 * t;
                                                 *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl, ql)) = ds_lo;
                                                 *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl + 8, ql)) = ds_hi;
                                             });
        bwd_sm90_update_dkdv<T, D>(dk, dv, pf, dsf, sl.qany, tQ, tdO);

        fence_proxy_async();               // the dS^T stores above are generic-proxy writes
        ws_consumer_sync<kConsumers>();  // every warp's dS^T is read below, and every dK / dV product has retired
        float dq[kN / 2];
        bwd_sm90_dq_product<T, D, kGroups>(dq, sl.kany, tdS, sm.k, c0);
        bwd_sm90_stage_dq<D, kN>(dq, p.scale, tQ, tdO, c0, warp, g, t);
        fence_proxy_async();  // generic stores, read by the producer's TMA reduction
        mbar_arrive(bar_ready + 8 * buf);
    }

    // A piece leaves partial sums in its slot (PAIR: warpgroup w's in bank w); a whole column
    // stores dK (scaled) and dV through the K and V tiles, once every dQ product that reads them
    // has retired (PAIR: the other warpgroup's too).
    if (work.slot >= 0) {
        ltd_attn::WorkItem mine = work;
        mine.tile = kc;
        mine.slot = work.slot + wg * (PAIR ? (int)(p.num_slots / 2) : 0);
        ltd_attn::bwd_store<T, D>(p, mine, warp, g, t, dk, dv);
    } else {
        if constexpr (PAIR) ws_consumer_sync<kConsumers>();
        const float fk[2] = {p.scale, p.scale}, fv[2] = {1.f, 1.f};
        stage_acc<T, D>(tK, dk, fk, warp, g, t);
        stage_acc<T, D>(tV, dv, fv, warp, g, t);
        fence_proxy_async();
        ws_consumer_sync<kConsumers>();
        if (ctid == 0) {
#pragma unroll
            for (int w = 0; w < kGroups; ++w) {
                const int row0 = (kGroups * work.tile + w) * kTile;
                tma_store_tile<D>(&maps.dk, sm.k + w * kTileBytes, row0, mat);
                tma_store_tile<D>(&maps.dv, sm.v + w * kTileBytes, row0, mat);
            }
            bulk_commit();
            bulk_wait_read();  // the shared memory must outlive the copies' reads
        }
    }
}

}  // namespace
