// The Hopper pair forward (sparse_attn_sm90.cu instantiates it; docs/kernels.md, "Forward"): two
// warpgroups on query tiles 2p and 2p + 1 of one item of the row pair tables, sharing every K / V
// chunk copy. Both walk the union of the two tiles' chunks; each runs the single forward's step
// (S product, softmax, P V product) on its own half of the 32-bit pair mask, so a chunk only the
// other tile sees costs this warpgroup a product whose P is 0. Thread 0 issues every copy
// (double-buffered); a buffer is refilled once all 256 threads have arrived on its release
// barrier after their P V product, so the chunk loop has no CTA barrier and the warpgroups may be
// a chunk apart.
#pragma once
#include "attn/sm90/fwd_sm90.cuh"

namespace {

constexpr int kFwdPairThreads = LTD_SPARSE_ATTN_FWD_SM90_PAIR_THREADS;
static_assert(kFwdPairThreads == 2 * kThreads, "one warpgroup per query tile of the pair");

// Shared memory of the pair forward (docs/kernels.md, "Shared-memory maps"): a Q tile per
// warpgroup, two K and two V buffers of [64 rows][D] (128-byte swizzle), then the barriers.
template <typename T, int D>
struct FwdPairSm90Smem {
    T q[2][kTile * D];
    T k[2][kTile * D];
    T v[2][kTile * D];
    uint64_t barriers[kBarrierSlots];
};

template <typename T, int D>
__device__ __forceinline__ void sparse_attn_fwd_pair_sm90(const LtdSparseAttnFwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    using Smem = FwdPairSm90Smem<T, D>;
    static_assert(kAlignSlack + sizeof(Smem) ==
                      by_head_dim<D>(LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D64, LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D128),
                  "ltd_kernels.h states this kernel's shared memory");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    constexpr uint32_t kTileBytes = kTile * D * 2;
    const uint32_t base = (smem_addr(smem_raw) + (kAlignSlack - 1)) & ~(kAlignSlack - 1);
    const int wg = threadIdx.x >> 7;  // this warpgroup's query tile: 2p + wg
    const int tid = threadIdx.x & 127;
    const uint32_t sQ0 = base + offsetof(Smem, q);
    const uint32_t sQ = sQ0 + wg * kTileBytes;
    const uint32_t sK = base + offsetof(Smem, k), sV = base + offsetof(Smem, v);  // 2 buffers each
    // Barrier slots: 0 both Q tiles; 1 + buffer: its K and V landed (thread 0's expect); 3 +
    // buffer: every thread is done with it (kFwdPairThreads arrivals).
    const uint32_t bars = base + offsetof(Smem, barriers);
    const uint32_t bar_q = bars, bar_full = bars + 8, bar_free = bars + 24;

    ltd_attn::pdl_launch_dependents();  // the combine of split rows may be scheduled behind this grid
    fwd_sm90_prefetch_maps<false, false>(maps);
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int qt = 2 * work.tile + wg, h = work.h, b = work.b, begin = work.begin, end = work.end;
    const int warp = tid >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const int* cols = reinterpret_cast<const int*>(p.tile_cols);
    const int* masks = reinterpret_cast<const int*>(p.tile_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    const long long q0 = (long long)qt * kTile;
    const int mat = (int)bh;

    // The chunk table is read one iteration ahead, as in the single forward.
    int kc = work.first;
    unsigned mask = (unsigned)work.first_mask;
    int next_kc = work.second;
    if (threadIdx.x == 0) {
        mbar_init(bar_q, 1);
        for (int i = 0; i < 2; ++i) {
            mbar_init(bar_full + 8 * i, 1);
            mbar_init(bar_free + 8 * i, kFwdPairThreads);
        }
        mbar_init_fence();
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // both Q tiles (rows past the end, and a tile past the last, arrive as 0)
        mbar_expect(bar_q, 2 * kTileBytes);
        tma_tile<D>(sQ0, &maps.q, 2 * work.tile * kTile, mat, bar_q);
        tma_tile<D>(sQ0 + kTileBytes, &maps.q, (2 * work.tile + 1) * kTile, mat, bar_q);
        if (begin < end) {
            mbar_expect(bar_full, 2 * kTileBytes);
            fwd_sm90_load_chunk<D, false>(sK, &maps.k, nullptr, kc, int4{}, mat, bar_full);
            fwd_sm90_load_chunk<D, false>(sV, &maps.v, nullptr, kc, int4{}, mat, bar_full);
        }
    }
    mbar_wait(bar_q, 0);

    // Running softmax state for rows g and g + 8 of this warp (log2 domain).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[D / 2], s[32];  // O and S accumulators (fwd_sm90_zero)
    fwd_sm90_zero<D>(o, s);

    for (int it = begin; it < end; ++it) {
        const int step = it - begin;
        const int buf = step & 1;
        const int after_kc = it + 2 < end ? cols[it + 2] : 0;  // for the next iteration
        const unsigned next_mask = it + 1 < end ? (unsigned)masks[it + 1] : 0u;
        mbar_wait(bar_full + 8 * buf, (step >> 1) & 1);
        const unsigned bits = (mask >> (16 * wg + 4 * warp)) & 0xFu;  // this warp's 16 rows
        const uint32_t tK = sK + buf * kTileBytes;
        const uint32_t tV = sV + buf * kTileBytes;
        // S for every chunk of the union: a wgmma under a branch on this warpgroup's half of the
        // mask serialises all of them (C7520), and a warp with no block gets P = 0.
        fwd_sm90_issue_scores<T, D>(s, sQ, tK);
        // Chunk it + 1 into the other buffer once every thread has released it (its P V product
        // of chunk it - 1 retired); issued behind this S product, as in the single forward.
        if (threadIdx.x == 0 && it + 1 < end) {
            const int nb = buf ^ 1;
            if (step > 0) mbar_wait(bar_free + 8 * nb, ((step - 1) >> 1) & 1);
            mbar_expect(bar_full + 8 * nb, 2 * kTileBytes);
            fwd_sm90_load_chunk<D, false>(sK + nb * kTileBytes, &maps.k, nullptr, next_kc, int4{}, mat, bar_full + 8 * nb);
            fwd_sm90_load_chunk<D, false>(sV + nb * kTileBytes, &maps.v, nullptr, next_kc, int4{}, mat, bar_full + 8 * nb);
        }
        wg_wait<0>();
        fence_regs(s);

        uint32_t pf[4][4];  // P as A fragments, 4 k-slices of 16 keys
        ltd_attn::softmax_chunk<T, D, true, true>(p, nullptr, kpm, kc, q0 + warp * 16, g, t, bits, s, m, l, o, pf, nullptr);

        // O += P V over the 16-key slices either tile sees (uniform over the CTA; P is 0 in
        // this warpgroup's rows where only the other tile sees the slice).
        const unsigned both = (mask | (mask >> 16)) & 0xFFFFu;
        const unsigned colbits = (both | (both >> 4) | (both >> 8) | (both >> 12)) & 0xFu;
        fwd_sm90_pv<T, D>(o, pf, tV, colbits);
        mbar_arrive(bar_free + 8 * buf);  // this thread's last read of the buffer has retired
        kc = next_kc;
        next_kc = after_kc;
        mask = next_mask;
    }

    // Normalise and store, each warpgroup its own tile: a tile past the last (odd tile count)
    // has only rows >= L, which the TMA store and the lse guard skip; a piece writes its
    // tile's bank of partial slots (the host leaves bank 1's slots of such a tile uncombined).
    if (work.slot >= 0) {
        ltd_attn::WorkItem own = work;
        own.slot += wg * (int)(p.num_slots / 2);
        ltd_attn::fwd_store<T, D>(p, own, qt, 0, warp, g, t, o, m, l);
    } else {
        fwd_sm90_store_rows<T, D>(p, maps, sQ, o, m, l, q0, bh, seq, mat, warp, g, t, tid == 0);
    }
}

}  // namespace
