// The backward's P^T / dS^T step, the same in the sm_80 and the sm_90 kernels (docs/kernels.md,
// "Backward"): from one warp's S^T and dP^T (16 keys x 64 queries of a query tile), recomputes
// P^T = exp2(S^T scale_log2 + kpm - lse) at the visible (key, query) positions and
// dS^T = P^T (dP^T - dvec), writes dS into dbias, and returns both as A fragments (m = keys,
// k = queries) for dV += P^T dO and dK += dS^T Q.
#pragma once
#include "attn/common/attn_common.cuh"

namespace ltd_attn {

// The tile's row statistics as the sm_80 kernel keeps them: lse in the log2 domain, dvec apart.
struct Log2RowStats {
    const float* lse_log2;  // 64 rows, -inf for a row no key sees
    const float* dvec;      // 64 rows
    __device__ __forceinline__ float lse(int ql) const { return lse_log2[ql]; }
    __device__ __forceinline__ float logit(const LtdSparseAttnBwdParams& p, float s, float kpm_log2, float lse_row) const {
        return s * p.scale_log2 + kpm_log2 - lse_row;
    }
    __device__ __forceinline__ float dvec_at(int ql) const { return dvec[ql]; }
};

// As the sm_90 kernel keeps them: the pre-pass's [lse x 64 (natural log)][dvec x 64] pair.
struct TiledRowStats {
    const float* tile;
    __device__ __forceinline__ float lse(int ql) const { return tile[ql]; }
    __device__ __forceinline__ float logit(const LtdSparseAttnBwdParams& p, float s, float kpm_log2, float lse_row) const {
        return fmaf(-lse_row, kLog2e, fmaf(s, p.scale_log2, kpm_log2));
    }
    __device__ __forceinline__ float dvec_at(int ql) const { return tile[kTile + ql]; }
};

// st / dpt: the warp's S^T and dP^T in the m16n8 C layout (st[4j + e]: key 16 warp + g + 8 (e >> 1),
// query 8j + 2t + (e & 1)); qbits: the warp's active 16-query sub-blocks; q0: the tile's first
// query; seq: p.seq, read once by the caller (a re-read here is not merged across the asm); key_g:
// this thread's two keys; kpm_log2: their key-padding terms. The bias comes from
// bias_tile(ql, kl) (TBIAS: the element at query ql, key kl of the tile's swizzled [64 query][64
// key] bias tile; called only where it is used, so the tile's address is formed there) or from
// `bias` (BIAS, per element; null = none). after_slice(j, ds_lo, ds_hi) runs once 8-query slice
// j is packed, with its dS^T registers for keys g and g + 8.
template <typename T, bool BIAS, bool TBIAS, typename Stats, typename BiasTile, typename AfterSlice>
__device__ __forceinline__ void bwd_probs(const LtdSparseAttnBwdParams& p, const Stats& stats, const float (&st)[32],
                                          const float (&dpt)[32], unsigned qbits, long long q0, long long seq,
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
            float logit = stats.logit(p, st[4 * j + e], kpm_log2[e >> 1], lse_row);
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
            dsv[e] = pe * (dpt[4 * j + e] - stats.dvec_at(ql));
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
