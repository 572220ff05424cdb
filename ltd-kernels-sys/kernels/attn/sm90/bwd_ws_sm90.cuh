// The warp-specialised, persistent Hopper backward (sparse_attn_sm90.cu instantiates it;
// docs/kernels.md, "Backward"): the single-chunk backward's work items and arithmetic, with
// FA3's division of labour, and CTAs that stay resident and take work items from a counter in
// the plan's order (longest first). A CTA is two warpgroups:
//   - the producer warpgroup gives its registers to the consumer (setmaxnreg) and one thread
//     does all the copying: each item's K and V, then, kStages tiles ahead of the consumer, each
//     query tile's Q, dO and row statistics with the tile's table entry into shared memory, and
//     the dQ reduction of a tile once the consumer has staged it. Stages run on across items,
//     so the next item's first tiles load while the consumer finishes this one;
//   - the consumer warpgroup runs the step of bwd_sm90.cuh on every query tile (S^T, dP^T, P^T,
//     dS^T, dK, dV, dQ) and never waits for a copy to be issued, for a table read from global
//     memory, or for a reduction to have read its buffer; its only barrier is the named one
//     that publishes dS^T to the dQ product. It releases the K / V tiles after an item's last
//     product and stores dK / dV from registers, so the next item's K / V load overlaps that.
// Stage `buf` cycles: producer fills it (full[buf], TMA transaction count) -> consumer stages the
// tile's dQ into its Q / dO buffers and arrives (dq_ready[buf], 128 arrivals) -> producer issues
// the reduction out of it, waits until the reduction has read it, and fills it again. The K / V
// tiles cycle the same way per item (kv_full with the item itself in shared memory, kv_free).
#pragma once
#include "attn/sm90/bwd_sm90.cuh"

namespace {

constexpr int kWsThreads = LTD_SPARSE_ATTN_BWD_SM90_WS_THREADS;
static_assert(kWsThreads == 2 * kThreads, "a producer and a consumer warpgroup");

// Stages of Q / dO / statistics: 3 at head dim 64, 2 at 128 (where a third leaves one CTA per SM).
template <int D>
constexpr int ws_stages() {
    return D == 64 ? 3 : 2;
}
// CTAs per SM the launch bound holds (two at both head dims: three leave the consumer 136
// registers, and at head dim 64 it needs about 154), and the registers each warpgroup keeps
// after setmaxnreg out of the CTA's allocation (the launch bound's per-thread count, a multiple
// of 8, times 256 threads): at head dim 128 the consumer needs 229, which leaves the producer
// 24 (ptxas then spills a few of the producer's values to local memory); at 64, 40 and 216.
template <int D>
constexpr int ws_ctas_per_sm() {
    return 2;
}
template <int D>
constexpr int ws_producer_regs() {
    return D == 64 ? 40 : 24;
}
template <int D>
constexpr int ws_consumer_regs() {
    return 2 * (65536 / (ws_ctas_per_sm<D>() * kWsThreads) / 8 * 8) - ws_producer_regs<D>();
}
static_assert(ws_consumer_regs<128>() == 232 && ws_consumer_regs<64>() == 216, "setmaxnreg counts");

// Shared memory of the warp-specialised backward: the single-chunk backward's tiles (one K, one
// V, kStages Q / dO / statistics stages, one dS^T tile, the barriers), each stage's table entry
// (query tile, mask, matrix), then two work items (h < 0: none left), item k in slot k % 2,
// written by the producer before the K / V barrier that publishes it.
template <typename T, int HeadDim>
struct BwdWsSm90Config {
    static constexpr int D = HeadDim;
    static constexpr int kStages = ws_stages<D>();
    using Smem = BwdSm90Smem<T, D, 1, kStages, 1, 0>;
    using Tail = decltype(Smem::tail);
    struct alignas(16) Full {
        Smem tiles;
        int4 entries[kStages];
        ltd_attn::WorkItem items[2];  // item k in items[k % 2]
    };
    static constexpr bool TBIAS = false;
    static constexpr uint32_t kTileBytes = kTile * D * 2;
    static constexpr uint32_t kStatsBytes = sizeof(Tail::stats[0]);
    static constexpr uint32_t kBiasBytes = 0;
    static_assert(sizeof(Smem) % 16 == 0, "the entries follow the tiles");
    static_assert(kAlignSlack + sizeof(Full) == by_head_dim<D>(LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D64, LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D128),
                  "ltd_kernels.h states this kernel's shared memory");
    // Barrier slots: 0 kv_full; 1 + s stage s full; 1 + kStages + s stage s's dQ staged;
    // 1 + 2 kStages kv_free.
    static_assert(2 + 2 * kStages <= kBarrierSlots, "barrier slots");
};

// The consumer warpgroup's barrier (id 1; 0 is __syncthreads).
__device__ __forceinline__ void ws_consumer_sync() { asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory"); }
template <int N>
__device__ __forceinline__ void ws_regs_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void ws_regs_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// Shared-memory addresses of a warp-specialised CTA beyond the single-chunk kernel's.
template <class Cfg>
struct BwdWsSm90Shared {
    BwdSm90Addrs sm;
    int4* entries;              // stage s's (query tile, mask, matrix)
    ltd_attn::WorkItem* items;  // item k in items[k % 2]
    uint32_t bar_ready;        // + 8 s: stage s's dQ staged (kThreads arrivals)
    uint32_t bar_kv_free;      // the consumer is done with the K / V tiles (kThreads arrivals)
};
template <class Cfg>
__device__ __forceinline__ BwdWsSm90Shared<Cfg> bwd_ws_sm90_shared(unsigned char* smem_raw) {
    using Full = typename Cfg::Full;
    BwdWsSm90Shared<Cfg> s;
    s.sm = bwd_sm90_addrs<Cfg>(smem_raw);
    s.entries = reinterpret_cast<int4*>(s.sm.base + offsetof(Full, entries));
    s.items = reinterpret_cast<ltd_attn::WorkItem*>(s.sm.base + offsetof(Full, items));
    s.bar_ready = s.sm.bar_q + 8 * Cfg::kStages;
    s.bar_kv_free = s.bar_ready + 8 * Cfg::kStages;
    return s;
}

// The producer thread: per work item (from blockIdx.x, then from the counter) its first
// kStages - 1 tiles' stages, its K and V once the consumer has released the previous item's, its
// other tiles' stages; a stage is refilled once its tile's dQ reduction has read it. It holds little in
// registers (setmaxnreg leaves it 24 at head dim 128): the item lives in shared memory from its
// claim on.
template <class Cfg>
__device__ __forceinline__ void bwd_ws_sm90_produce(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps,
                                                    const BwdWsSm90Shared<Cfg>& ws) {
    constexpr int kStages = Cfg::kStages;
    const BwdSm90Addrs& sm = ws.sm;
    unsigned loaded = 0;  // tiles loaded so far, over all items: tile j is in stage j % kStages
    const auto reduce = [&](unsigned j) {  // tile j's dQ, once staged
        const int buf = j % kStages;
        mbar_wait(ws.bar_ready + 8 * buf, (j / kStages) & 1);
        const int4 e = ws.entries[buf];
        bwd_sm90_reduce_dq<Cfg>(maps, sm, buf, (long long)e.x * kTile, e.z);
    };
    int index = blockIdx.x;
    for (unsigned k = 0;; ++k) {
        // Item k's slot: the consumer read item k - 2 from it before releasing that item's K / V,
        // which this thread waited for at item k - 1.
        volatile ltd_attn::WorkItem* w = ws.items + (k & 1);
        const bool valid = index < p.work_total;
        if (valid) {
            const ltd_attn::WorkItem claimed = ltd_attn::work_item_at(p, index);
            w->h = claimed.h, w->tile = claimed.tile, w->begin = claimed.begin, w->end = claimed.end, w->slot = claimed.slot;
            w->first = claimed.first, w->first_mask = claimed.first_mask, w->second = claimed.second, w->b = claimed.b;
        } else {
            w->h = -1;
        }
        // The next index, claimed now: the atomic's latency hides behind this item's copies.
        const int next = valid ? (int)gridDim.x + (int)atomicAdd(reinterpret_cast<unsigned*>(p.work_counter), 1u) : index;
        const auto load = [&](int i) {  // the item's tile i into the next stage
            const int buf = loaded % kStages;
            if (loaded >= kStages) {
                reduce(loaded - kStages);
                bulk_wait_read();
            }
            // The item repeats its first two entries, so its first copies need no dependent read.
            const int qt = i == 0 ? w->first : i == 1 ? w->second : reinterpret_cast<const int*>(p.tile_rows)[w->begin + i];
            const int mask = i == 0 ? w->first_mask : reinterpret_cast<const int*>(p.tile_col_masks)[w->begin + i];
            const int mat = (int)((long long)w->b * p.heads + w->h);
            ws.entries[buf] = make_int4(qt, mask, mat, 0);
            const float* stats = reinterpret_cast<const float*>(p.row_stats) + (long long)mat * 2 * ltd_attn::stats_rows(p.seq);
            bwd_sm90_load_query_tile<Cfg>(maps, sm, stats, 0, mat, buf, qt);  // its full barrier releases the entry
            ++loaded;
        };
        // Before the K / V (which wait for the consumer to finish the previous item), the tiles
        // whose stages free up earlier: kStages - 1 of them, so the K / V copy is not queued
        // behind a stage that frees at the same moment. The first item's K / V go first.
        const int n = valid ? w->end - w->begin : 0;
        const int head = k == 0 ? 0 : n < kStages - 1 ? n : kStages - 1;
        for (int i = 0; i < head; ++i) load(i);
        if (k > 0) mbar_wait(ws.bar_kv_free, (k - 1) & 1);
        if (!valid) {
            mbar_arrive(sm.bar_kv);  // publishes the end
            break;
        }
        // Its barrier publishes the item to the consumer.
        bwd_sm90_load_kv<Cfg::D, 1>(maps, sm.k, sm.v, w->tile, (int)((long long)w->b * p.heads + w->h), sm.bar_kv);
        for (int i = head; i < n; ++i) load(i);
        index = next;
    }
    for (unsigned j = loaded > kStages ? loaded - kStages : 0; j < loaded; ++j) reduce(j);
    bulk_wait_all();  // the shared memory stays until the reductions have read it
}

template <typename T, int D>
__device__ __forceinline__ void sparse_attn_bwd_ws_sm90(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    using Cfg = BwdWsSm90Config<T, D>;
    constexpr int kStages = Cfg::kStages;
    constexpr uint32_t kTileBytes = Cfg::kTileBytes;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const BwdWsSm90Shared<Cfg> ws = bwd_ws_sm90_shared<Cfg>(smem_raw);
    const BwdSm90Addrs& sm = ws.sm;
    const float* sStats = reinterpret_cast<const float*>(sm.base + (sm.stats - sm.k));

    bwd_sm90_prefetch_maps<false, false>(maps);
    if (threadIdx.x == 0) {
        mbar_init(sm.bar_kv, 1);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(sm.bar_q + 8 * s, 1);
            mbar_init(ws.bar_ready + 8 * s, kThreads);
        }
        mbar_init(ws.bar_kv_free, kThreads);
        mbar_init_fence();
    }
    __syncthreads();

    if (threadIdx.x < kThreads) {
        ws_regs_dec<ws_producer_regs<D>()>();
        if (threadIdx.x == 0) bwd_ws_sm90_produce<Cfg>(p, maps, ws);
        return;
    }
    ws_regs_inc<ws_consumer_regs<D>()>();

    const int ctid = threadIdx.x - kThreads;
    const int warp = ctid >> 5, lane = ctid & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    T* sdS_ptr = reinterpret_cast<T*>(sm.base + (sm.ds - sm.k));
    float st[32], dpt[32];  // S^T and dP^T: rows = keys, columns = queries 8j + 2t (+1)
#pragma unroll
    for (int i = 0; i < 32; ++i) st[i] = dpt[i] = 0.f;

    unsigned done = 0;  // tiles consumed so far, over all items
    for (unsigned k = 0;; ++k) {
        mbar_wait(sm.bar_kv, k & 1);
        const ltd_attn::WorkItem w = ws.items[k & 1];
        if (w.h < 0) break;
        const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)w.b * seq : nullptr;
        const long long key0 = (long long)w.tile * kTile + warp * 16 + g;
        const long long key_g[2] = {key0, key0 + 8};
        float kpm_l2[2] = {0.f, 0.f};
        if (kpm) {
#pragma unroll
            for (int r = 0; r < 2; ++r) kpm_l2[r] = key_g[r] < seq ? kpm[key_g[r]] * kLog2e : -INFINITY;
        }
        float dk[D / 2], dv[D / 2];  // wgmma layout: rows = keys 16w + g (+8), columns = d
#pragma unroll
        for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;

        const int n = w.end - w.begin;
        for (int i = 0; i < n; ++i, ++done) {
            const int buf = done % kStages;
            mbar_wait(sm.bar_q + 8 * buf, (done / kStages) & 1);
            const int4 e = ws.entries[buf];
            const long long q0 = (long long)e.x * kTile;
            const uint32_t tQ = sm.q + buf * kTileBytes;
            const uint32_t tdO = sm.dout + buf * kTileBytes;
            const BwdSm90Slices sl = bwd_sm90_slices<false>((unsigned)e.y, 0, warp);
            bwd_sm90_issue_scores<T, D>(st, dpt, sm.k, sm.v, tQ, tdO);
            wg_wait<0>();
            fence_regs(st);
            fence_regs(dpt);

            // P^T and dS^T as in bwd_sm90.cuh; dS^T also to shared memory for the dQ product. The
            // previous tile's dQ product, the last reader of that tile, retired in every warp
            // before it got here (one warpgroup: a wgmma completes for all four warps at once).
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

            fence_proxy_async();  // the dS^T stores above are generic-proxy writes
            ws_consumer_sync();   // every warp's dS^T is read below, and every dK / dV product has retired
            float dq[D / 2];
            bwd_sm90_dq_product<T, D, 1>(dq, sl.kany, sm.ds, sm.k, 0);
            bwd_sm90_stage_dq<D, D>(dq, p.scale, tQ, tdO, 0, warp, g, t);
            fence_proxy_async();  // generic stores, read by the producer's TMA reduction
            mbar_arrive(ws.bar_ready + 8 * buf);
        }
        // The item's last product that reads K or V has retired: the producer may load the next
        // item's while this one's dK (scaled) and dV leave from registers (a piece: to its slot).
        mbar_arrive(ws.bar_kv_free);
        ltd_attn::bwd_store<T, D>(p, w, warp, g, t, dk, dv);
    }
}

}  // namespace
