// The backward's P^T / dS^T step, the same in the sm_80 and the sm_90 kernels (docs/kernels.md,
// "Backward"): from one warp's S^T and dP^T (16 keys x 64 queries of a query tile), recomputes
// P^T = exp2(S^T scale_log2 + kpm - lse) at the visible (key, query) positions and
// dS^T = P^T (dP^T - dvec), writes dS into dbias, and returns both as A fragments (m = keys,
// k = queries) for dV += P^T dO and dK += dS^T Q.
#pragma once
#include "attn/common/attn_common.cuh"

namespace ltd_attn {

// The row statistics of stage `buf`, as the sm_80 kernel keeps them: lse in the log2 domain and
// dvec apart, [stage][64 rows] each. (The stage is applied per read, where the kernels were
// tuned with it: a pointer to the stage formed up front changes the generated code.)
struct Log2RowStats {
    const float* lse_log2;  // -inf for a row no key sees
    const float* dvec;
    int buf;
    __device__ __forceinline__ float lse(int ql) const { return lse_log2[buf * kTile + ql]; }
    __device__ __forceinline__ float logit(const LtdSparseAttnBwdParams& p, float s, float kpm_log2, float lse_row) const {
        return s * p.scale_log2 + kpm_log2 - lse_row;
    }
    __device__ __forceinline__ float dvec_at(int ql) const { return dvec[buf * kTile + ql]; }
};

// As the sm_90 kernel keeps them: per stage, the pre-pass's [lse x 64 (natural log)][dvec x 64] pair.
struct TiledRowStats {
    const float* stats;
    int buf;
    __device__ __forceinline__ float lse(int ql) const { return stats[buf * 2 * kTile + ql]; }
    __device__ __forceinline__ float logit(const LtdSparseAttnBwdParams& p, float s, float kpm_log2, float lse_row) const {
        return fmaf(-lse_row, kLog2e, fmaf(s, p.scale_log2, kpm_log2));
    }
    __device__ __forceinline__ float dvec_at(int ql) const { return stats[buf * 2 * kTile + kTile + ql]; }
};

// Element e of n-tile j of an m16n8 C-layout accumulator, kept flat (the wgmma layout) or as
// [n-tile][4] (the mma.sync one: the sm_80 kernel's registers come out as they were tuned).
__device__ __forceinline__ float acc_at(const float (&a)[32], int j, int e) { return a[4 * j + e]; }
__device__ __forceinline__ float acc_at(const float (&a)[8][4], int j, int e) { return a[j][e]; }

// st / dpt: the warp's S^T and dP^T in the m16n8 C layout (element e of n-tile j: key 16 warp + g +
// 8 (e >> 1), query 8j + 2t + (e & 1)); qbits: the warp's active 16-query sub-blocks; q0: the tile's first
// query; seq: p.seq, read once by the caller (a re-read here is not merged across the asm); key_g:
// this thread's two keys; kpm_log2: their key-padding terms. The bias comes from
// bias_tile(ql, kl) (TBIAS: the element at query ql, key kl of the tile's swizzled [64 query][64
// key] bias tile; called only where it is used, so the tile's address is formed there) or from
// `bias` (BIAS, per element; null = none). after_slice(j, ds_lo, ds_hi) runs once 8-query slice
// j is packed, with its dS^T registers for keys g and g + 8.
template <typename T, bool BIAS, bool TBIAS, typename Stats, typename Acc, typename BiasTile, typename AfterSlice>
__device__ __forceinline__ void bwd_probs(const LtdSparseAttnBwdParams& p, const Stats& stats, const Acc& st, const Acc& dpt,
                                          unsigned qbits, long long q0, long long seq,
                                          const long long (&key_g)[2], const float (&kpm_log2)[2], const T* bias, T* dbias,
                                          BiasTile&& bias_tile, int warp, int g, int t, uint32_t (&pf)[4][4],
                                          uint32_t (&dsf)[4][4], AfterSlice&& after_slice) {
    // Visibility with 32-bit offsets in the tile: query offset ql sees this thread's key r
    // when ql < q_left (inside the sequence) and ql >= q_min[r] (causal), and the key exists.
    const int q_left = (int)min((long long)kTile, seq - q0);
    int q_min[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const long long d = key_g[r] - q0;
        q_min[r] = key_g[r] >= seq ? kTile : (p.causal ? (int)max(0ll, min((long long)kTile, d)) : 0);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const bool on = (qbits >> (j >> 1)) & 1u;
        float pv[4], dsv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int ql = 8 * j + 2 * t + (e & 1);
            const float lse_row = stats.lse(ql);
            const bool visible = on && ql < q_left && ql >= q_min[e >> 1] && lse_row != -INFINITY;
            float logit = stats.logit(p, acc_at(st, j, e), kpm_log2[e >> 1], lse_row);
            if (TBIAS && visible) {
                // Query row ql, key kl of the tile (4 rows per load, their 16-byte chunks apart
                // under the swizzle: conflict-free).
                const int kl = warp * 16 + g + 8 * (e >> 1);
                logit += bias_tile(ql, kl) * kLog2e;
            } else if (BIAS && bias && visible) {
                logit += (float)bias[(q0 + ql) * seq + key_g[e >> 1]] * kLog2e;
            }
            const float pe = visible ? fast_exp2(logit) : 0.f;
            pv[e] = pe;
            dsv[e] = pe * (acc_at(dpt, j, e) - stats.dvec_at(ql));
            if (BIAS && dbias && visible) dbias[(q0 + ql) * seq + key_g[e >> 1]] = (T)dsv[e];
        }
        // n-tile j covers queries 8j..8j+7: k-slice j / 2, registers (j & 1) * 2 + row half.
        pf[j >> 1][(j & 1) * 2 + 0] = pack2<T>(pv[0], pv[1]);
        pf[j >> 1][(j & 1) * 2 + 1] = pack2<T>(pv[2], pv[3]);
        dsf[j >> 1][(j & 1) * 2 + 0] = pack2<T>(dsv[0], dsv[1]);
        dsf[j >> 1][(j & 1) * 2 + 1] = pack2<T>(dsv[2], dsv[3]);
        after_slice(j, dsf[j >> 1][(j & 1) * 2 + 0], dsf[j >> 1][(j & 1) * 2 + 1]);
    }
}

}  // namespace ltd_attn
