// The Hopper forward's templates and helpers (the design: sparse_attn_sm90.cu's header, which
// instantiates the kernels).
#pragma once
#include "attn/sm90/sm90_common.cuh"

namespace {

// The end of the forward's shared memory: kBiasTiles [64 query][64 key] bias tiles (TMA boxes,
// one per K/V buffer; none without bias tiles), then the barriers.
template <typename T, int kBiasTiles>
struct FwdSm90Tail {
    T bias[kBiasTiles][kTile * kTile];
    uint64_t barriers[kBarrierSlots];
};
template <typename T>
struct FwdSm90Tail<T, 0> {
    uint64_t barriers[kBarrierSlots];
};
// Shared memory of the forward (docs/kernels.md, "Shared-memory maps"): Q, two K buffers and two
// V buffers (one at D 128: 3 CTAs per SM instead of 2) of [64 rows][D] in the 128-byte-swizzled
// layout of hopper.cuh, then the tail.
template <typename T, int D, int kBiasTiles>
struct FwdSm90Smem {
    T q[kTile * D];
    T k[2][kTile * D];
    T v[D == 128 ? 1 : 2][kTile * D];
    FwdSm90Tail<T, kBiasTiles> tail;
};

// The gathered forward's slice bases (16-key units) of table entry `code`: a chunk's own four
// slices, or a gathered chunk's slots (docs/kernels.md, "Gathered chunks"). 0 (past an item's
// end) reads nothing.
__device__ __forceinline__ int4 fwd_gather_base(const LtdSparseAttnFwdParams& p, int code) {
    if (code >= 0) return make_int4(4 * code, 4 * code + 1, 4 * code + 2, 4 * code + 3);
    return reinterpret_cast<const int4*>(p.gather_slots)[-code - 1];
}

// Thread 0: the forward's tensor maps into the constant cache before their first use.
template <bool TBIAS, bool GATHER>
__device__ __forceinline__ void fwd_sm90_prefetch_maps(const LtdSparseAttnTmaMaps& maps) {
    if (threadIdx.x == 0) {
        prefetch_map(&maps.q);
        prefetch_map(&maps.k);
        prefetch_map(&maps.v);
        prefetch_map(&maps.o);
        if (TBIAS) prefetch_map(&maps.bias);
        if (GATHER) prefetch_map(&maps.k16);
        if (GATHER) prefetch_map(&maps.v16);
    }
}

// Thread 0, when the item has chunks: the first chunk's K and V tiles (and bias tile) by TMA, on
// their barriers.
template <typename T, int D, bool TBIAS, bool GATHER>
__device__ __forceinline__ void fwd_sm90_load_first(const LtdSparseAttnTmaMaps& maps, uint32_t sK, uint32_t sV, uint32_t sBias, uint32_t bar_kv,
                                                    uint32_t bar_v, int kc, int4 base, int mat, long long q0, int begin, int end) {
    constexpr uint32_t kTileBytes = kTile * D * 2;
    constexpr bool kOneV = D == 128;
    constexpr uint32_t kBiasBytes = TBIAS ? kBlockBytes : 0;
    if (threadIdx.x == 0 && begin < end) {
        if constexpr (kOneV) {
            mbar_expect(bar_kv, kTileBytes + kBiasBytes);
            fwd_sm90_load_chunk<D, GATHER>(sK, &maps.k, &maps.k16, kc, base, mat, bar_kv);
            mbar_expect(bar_v, kTileBytes);
            fwd_sm90_load_chunk<D, GATHER>(sV, &maps.v, &maps.v16, kc, base, mat, bar_v);
        } else {
            mbar_expect(bar_kv, 2 * kTileBytes + kBiasBytes);
            fwd_sm90_load_chunk<D, GATHER>(sK, &maps.k, &maps.k16, kc, base, mat, bar_kv);
            fwd_sm90_load_chunk<D, GATHER>(sV, &maps.v, &maps.v16, kc, base, mat, bar_kv);
        }
        if constexpr (TBIAS) tma_box(sBias, &maps.bias, kc * kTile, (int)q0, mat, bar_kv);
    }
}

// A whole row's epilogue: O normalised and staged in the Q tile, out by one TMA store, and the
// row lse. Every thread of the CTA calls it (a CTA barrier); `issuer` (one thread per staged
// tile) issues the store.
template <typename T, int D>
__device__ __forceinline__ void fwd_sm90_store_rows(const LtdSparseAttnFwdParams& p, const LtdSparseAttnTmaMaps& maps, uint32_t sQ,
                                                    const float (&o)[D / 2], const float (&m)[2], const float (&l)[2], long long q0,
                                                    long long bh, long long seq, int mat, int warp, int g, int t, bool issuer) {
    // A whole row: O goes through the Q tile (free: the last S product has retired) and
    // out by TMA, 16-byte-coalesced (the 4-byte stores of an m64 accumulator fill half of
    // each 32-byte sector they touch); rows past seq are skipped by the TMA.
    const float inv[2] = {ltd_attn::row_inv(l[0]), ltd_attn::row_inv(l[1])};
    stage_acc<T, D>(sQ, o, inv, warp, g, t);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long row = q0 + warp * 16 + g + 8 * r;
        if (t == 0 && row < seq) reinterpret_cast<float*>(p.lse)[bh * seq + row] = ltd_attn::row_lse(m[r], l[r]);
    }
    fence_proxy_async();
    __syncthreads();
    if (issuer) {
        tma_store_tile<D>(&maps.o, sQ, (int)q0, mat);
        bulk_commit();
        bulk_wait_read();  // the shared memory must outlive the copy's reads
    }
}

// Both Hopper forwards' accumulators, zeroed: O (wgmma layout, o[4i + e] = column 8i + 2t +
// (e & 1), row g + 8 (e >> 1)) and the scores S.
template <int D>
__device__ __forceinline__ void fwd_sm90_zero(float (&o)[D / 2], float (&s)[32]) {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0.f;
}

// Issues S = Q K^T (the whole warpgroup, 64 x 64) and commits it; the caller waits. For every
// warp: a wgmma under a branch ptxas cannot prove uniform makes it serialise all of them (C7520).
template <typename T, int D>
__device__ __forceinline__ void fwd_sm90_issue_scores(float (&s)[32], uint32_t tQ, uint32_t tK) {
    fence_regs(s);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(s, desc_kmajor(tQ, kk), desc_kmajor(tK, kk), kk > 0);
    wg_commit();
}

// O += P V over the 16-key slices in `colbits` (uniform over the warpgroup; P is 0 elsewhere in
// them), committed and waited for. A whole chunk (every chunk of a block-64 / 128 layout) takes
// the path without a branch per product.
template <typename T, int D>
__device__ __forceinline__ void fwd_sm90_pv(float (&o)[D / 2], const uint32_t (&pf)[4][4], uint32_t tV, unsigned colbits) {
    fence_regs(o);
    wg_fence();
    wgmma_slices<4>(colbits, [&](int ks) {
        if constexpr (D == 64) Wgmma<T>::rs_n64(o, pf[ks], desc_mnmajor(tV, ks));
        else Wgmma<T>::rs_n128(o, pf[ks], desc_mnmajor(tV, ks));
    });
    fence_regs(o);
}

// TBIAS (`_bias_tma_` kernels): the bias tile of each (query tile, chunk) arrives by TMA with the
// chunk's K / V (two 8 KB buffers) instead of per-element global loads. GATHER (`_gather_`
// kernels, no bias): the table's entries may be gathered chunks of four 16-key slices
// (docs/kernels.md, "Gathered chunks").
template <typename T, int D, bool TBIAS, bool GATHER = false>
__device__ __forceinline__ void sparse_attn_fwd_sm90(const LtdSparseAttnFwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    static_assert(!(TBIAS && GATHER), "no gathered bias kernel");
    using Smem = FwdSm90Smem<T, D, TBIAS ? 2 : 0>;
    static_assert(kAlignSlack + sizeof(Smem) ==
                      (TBIAS    ? by_head_dim<D>(LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D64, LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D128)
                       : GATHER ? by_head_dim<D>(LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D64, LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D128)
                                : by_head_dim<D>(LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64, LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128)),
                  "ltd_kernels.h states this kernel's shared memory");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    constexpr uint32_t kTileBytes = kTile * D * 2;
    const int tid = threadIdx.x & 127;  // the thread in the warpgroup (its index bounds are known)
    // The addresses are written as the kernel was tuned with them: each tile aligned on its own
    // and the rest chained from K, not one aligned base plus each member's offset (equal values,
    // but that form compiles to different code, measured slower; scripts/sass-diff.sh compares).
    constexpr uint32_t kOffQ = offsetof(Smem, q), kOffK = offsetof(Smem, k), kOffV = offsetof(Smem, v);
    constexpr uint32_t kOffTail = offsetof(Smem, tail), kOffBars = offsetof(decltype(Smem::tail), barriers);
    const uint32_t sQ = ((raw + (kAlignSlack - 1)) & ~(kAlignSlack - 1)) + kOffQ;
    const uint32_t sK = ((raw + (kAlignSlack - 1)) & ~(kAlignSlack - 1)) + kOffK;  // 2 buffers
    // D 128: one V buffer; V of the next chunk loads once PV of this one has retired, overlapped
    // with the next S / softmax.
    constexpr bool kOneV = D == 128;
    const uint32_t sV = sK + (kOffV - kOffK);
    const uint32_t sBias = sV + (kOffTail - kOffV);  // TBIAS: the bias tiles open the tail
    // Barrier slots: 0 Q, 2 + buffer K (+ V) (+ bias) of each buffer, 4 V (kOneV); 1 is free.
    const uint32_t bars = sBias + kOffBars;
    constexpr uint32_t kBiasBytes = TBIAS ? kBlockBytes : 0;
    const uint32_t bar_q = bars;
    const uint32_t bar_kv = bars + 16;  // + 8 * buffer
    const uint32_t bar_v = bars + 32;

    ltd_attn::pdl_launch_dependents();  // the combine of split rows may be scheduled behind this grid
    fwd_sm90_prefetch_maps<TBIAS, GATHER>(maps);
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int qt = work.tile, h = work.h, b = work.b, begin = work.begin, end = work.end;
    const int warp = tid >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const int* cols = reinterpret_cast<const int*>(p.tile_cols);
    const int* masks = reinterpret_cast<const int*>(p.tile_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    const T* bias = !TBIAS && !GATHER && p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    const long long q0 = (long long)qt * kTile;

    // The chunk table is read one iteration ahead in registers (its loads overlap a whole
    // iteration): kc / mask of chunk `it`, next_kc of chunk it + 1.
    int kc = work.first;
    unsigned mask = (unsigned)work.first_mask;
    int next_kc = work.second;
    // GATHER: the slice bases of chunks `it` and it + 1, read ahead with the table.
    int4 base = GATHER ? fwd_gather_base(p, kc) : int4{}, next_base = GATHER ? fwd_gather_base(p, next_kc) : int4{};
    const int mat = (int)bh;
    mbar_init_all<5>(bars);
    if (tid == 0) {  // rows past the end arrive as 0
        mbar_expect(bar_q, kTileBytes);
        tma_tile<D>(sQ, &maps.q, (int)q0, mat, bar_q);
    }
    fwd_sm90_load_first<T, D, TBIAS, GATHER>(maps, sK, sV, sBias, bar_kv, bar_v, kc, base, mat, q0, begin, end);
    mbar_wait(bar_q, 0);

    // Running softmax state for rows g and g + 8 of this warp (log2 domain).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[D / 2], s[32];  // O and S accumulators (fwd_sm90_zero)
    fwd_sm90_zero<D>(o, s);

    for (int it = begin; it < end; ++it) {
        const int buf = (it - begin) & 1;
        const int after_kc = it + 2 < end ? cols[it + 2] : 0;               // for the next iteration
        const unsigned next_mask = it + 1 < end ? (unsigned)masks[it + 1] : 0u;
        // Prefetch chunk it + 1 into the other buffer (free: the barrier closing the previous
        // iteration follows its last read). Issued after this chunk's S product, so thread 0's
        // copy setup overlaps the MMA instead of delaying its warp's arrival at it.
        auto prefetch = [&]() {
            if (threadIdx.x == 0 && it + 1 < end) {
                const uint32_t bar = bar_kv + 8 * (buf ^ 1);
                mbar_expect(bar, (kOneV ? 1 : 2) * kTileBytes + kBiasBytes);
                fwd_sm90_load_chunk<D, GATHER>(sK + (buf ^ 1) * kTileBytes, &maps.k, &maps.k16, next_kc, next_base, mat, bar);
                if constexpr (!kOneV)
                    fwd_sm90_load_chunk<D, GATHER>(sV + (buf ^ 1) * kTileBytes, &maps.v, &maps.v16, next_kc, next_base, mat, bar);
                if constexpr (TBIAS) tma_box(sBias + (buf ^ 1) * kBlockBytes, &maps.bias, next_kc * kTile, (int)q0, mat, bar);
            }
        };
        mbar_wait(bar_kv + 8 * buf, ((it - begin) >> 1) & 1);
        const unsigned bits = (mask >> (4 * warp)) & 0xFu;  // this warp's 16 rows
        const uint32_t tK = sK + buf * kTileBytes;
        const uint32_t tV = sV + (kOneV ? 0 : buf) * kTileBytes;
        fwd_sm90_issue_scores<T, D>(s, sQ, tK);
        prefetch();
        wg_wait<0>();
        fence_regs(s);

        // The softmax runs also for a warp with no layout block in the chunk (bits 0: every score
        // masked, P = 0, the state unchanged): under a branch that zeroes P instead, ptxas zeroes
        // the fragments ahead of the branch, which is slower.
        uint32_t pf[4][4];  // P as A fragments, 4 k-slices of 16 keys
        const T* sbias = TBIAS ? reinterpret_cast<const T*>(smem_raw + (sBias + buf * kBlockBytes - raw)) : nullptr;
        if constexpr (GATHER) ltd_attn::softmax_chunk<T, D, true, true, true>(p, nullptr, kpm, 0, q0 + warp * 16, g, t, bits, s, m, l, o, pf, nullptr, base);
        else ltd_attn::softmax_chunk<T, D, true, !TBIAS>(p, bias, kpm, kc, q0 + warp * 16, g, t, bits, s, m, l, o, pf, sbias);
        const int4 after_base = GATHER ? fwd_gather_base(p, after_kc) : int4{};  // chunk it + 2 (after_kc has arrived)

        // O += P V, skipping 16-key slices outside the layout for all 64 rows (P is 0 there; the
        // slices are uniform over the warpgroup).
        const unsigned colbits = (mask | (mask >> 4) | (mask >> 8) | (mask >> 12)) & 0xFu;
        if constexpr (kOneV) mbar_wait(bar_v, (it - begin) & 1);
        fwd_sm90_pv<T, D>(o, pf, tV, colbits);
        __syncthreads();  // the buffer is overwritten by the next iteration's prefetch
        if constexpr (kOneV) {
            if (threadIdx.x == 0 && it + 1 < end) {
                mbar_expect(bar_v, kTileBytes);
                fwd_sm90_load_chunk<D, GATHER>(sV, &maps.v, &maps.v16, next_kc, next_base, mat, bar_v);
            }
        }
        kc = next_kc;
        next_kc = after_kc;
        mask = next_mask;
        if constexpr (GATHER) {
            base = next_base;
            next_base = after_base;
        }
    }

    // Normalise and store. A row with no visible key gives 0 and lse = -inf.
    if (work.slot >= 0) {
        ltd_attn::fwd_store<T, D>(p, work, qt, 0, warp, g, t, o, m, l);
    } else {
        fwd_sm90_store_rows<T, D>(p, maps, sQ, o, m, l, q0, bh, seq, mat, warp, g, t, threadIdx.x == 0);
    }
}

}  // namespace
