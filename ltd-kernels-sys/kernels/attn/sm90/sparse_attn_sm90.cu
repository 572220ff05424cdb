// Fused flash-style block-sparse attention on Hopper (sm_90a only), forward and backward: the
// same contracts as the sm_80 kernels (LtdSparseAttnFwdParams / LtdSparseAttnBwdParams), with
// the products on warpgroup MMAs (wgmma.mma_async) and the tiles moved by the tensor memory
// accelerator (TMA; the tensor maps come in LtdSparseAttnTmaMaps). Forward: one warpgroup (128
// threads) per 64-row query tile. S = Q K^T is an m64n64k16 wgmma with both operands in shared
// memory (K-major, 128-byte swizzle); P stays in registers (the accumulator layout is the
// A-fragment layout) and O += P V is an m64nDk16 wgmma with V read MN-major from shared memory.
// K/V chunks are double-buffered: thread 0 issues the TMA copies of chunk i + 1 on an mbarrier
// while chunk i is consumed (one V buffer at D 128, so three CTAs fit per SM). The backward is
// described in bwd_sm90.cuh. This file instantiates the kernels: the forward's templates are in
// fwd_sm90.cuh, the backward's in bwd_sm90.cuh, what both use in sm90_common.cuh; the combine,
// pre-pass and dq kernels are in attn/common/sparse_attn_aux.cu.
#include "attn/sm90/fwd_sm90.cuh"
#include "attn/sm90/fwd_pair_sm90.cuh"
#include "attn/sm90/bwd_sm90.cuh"
#include "attn/sm90/bwd_ws_sm90.cuh"

// Held to 4 (D 64) / 3 (D 128) CTAs per SM: without the bound ptxas takes enough registers for
// one CTA per SM fewer. The bias-tile kernels (TBIAS, two more tiles) are held to 3 / 2.
#define LTD_SPARSE_FWD_SM90(NAME, T, D, TBIAS) \
    extern "C" __global__ void __launch_bounds__(kThreads, TBIAS ? (D == 64 ? 3 : 2) : D == 64 ? 4 : 3) \
        NAME(const LtdSparseAttnFwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_fwd_sm90<T, D, TBIAS>(p, maps); }
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_bf16_d64, __nv_bfloat16, 64, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_bf16_d128, __nv_bfloat16, 128, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_f16_d64, __half, 64, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_f16_d128, __half, 128, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_bf16_d64, __nv_bfloat16, 64, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_bf16_d128, __nv_bfloat16, 128, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_f16_d64, __half, 64, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_f16_d128, __half, 128, true)
// The gathered forward (no bias), held as the plain kernel.
#define LTD_SPARSE_FWD_GATHER_SM90(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(kThreads, D == 64 ? 4 : 3) \
        NAME(const LtdSparseAttnFwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_fwd_sm90<T, D, false, true>(p, maps); }
LTD_SPARSE_FWD_GATHER_SM90(ltd_sparse_attn_fwd_gather_sm90_bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_FWD_GATHER_SM90(ltd_sparse_attn_fwd_gather_sm90_bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_FWD_GATHER_SM90(ltd_sparse_attn_fwd_gather_sm90_f16_d64, __half, 64)
LTD_SPARSE_FWD_GATHER_SM90(ltd_sparse_attn_fwd_gather_sm90_f16_d128, __half, 128)
// The pair forward (two query tiles per CTA, no bias), held to 2 CTAs per SM: four warpgroups at
// both head dims (the single forward holds three at D 128).
#define LTD_SPARSE_FWD_PAIR_SM90(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(kFwdPairThreads, 2) \
        NAME(const LtdSparseAttnFwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_fwd_pair_sm90<T, D>(p, maps); }
LTD_SPARSE_FWD_PAIR_SM90(ltd_sparse_attn_fwd_sm90_pair_bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_FWD_PAIR_SM90(ltd_sparse_attn_fwd_sm90_pair_bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_FWD_PAIR_SM90(ltd_sparse_attn_fwd_sm90_pair_f16_d64, __half, 64)
LTD_SPARSE_FWD_PAIR_SM90(ltd_sparse_attn_fwd_sm90_pair_f16_d128, __half, 128)

// The pair backward kernels run one CTA of 256 threads per SM (their registers, and at D 128
// their shared memory, allow no second one); the single ones 3 (D 64 without bias) or 1-2 CTAs of
// 128 threads.
constexpr int kPairThreads = LTD_SPARSE_ATTN_BWD_SM90_PAIR_THREADS;
static_assert(kPairThreads == 2 * kThreads, "one warpgroup per key chunk of the pair");
#define LTD_SPARSE_BWD_GATHER_SM90(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(kThreads, D == 64 ? 3 : 1) \
        NAME(const LtdSparseAttnBwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_bwd_sm90<T, D, false, false, false, true>(p, maps); }
LTD_SPARSE_BWD_GATHER_SM90(ltd_sparse_attn_bwd_gather_sm90_bf16_d64, __nv_bfloat16, 64)
LTD_SPARSE_BWD_GATHER_SM90(ltd_sparse_attn_bwd_gather_sm90_bf16_d128, __nv_bfloat16, 128)
LTD_SPARSE_BWD_GATHER_SM90(ltd_sparse_attn_bwd_gather_sm90_f16_d64, __half, 64)
LTD_SPARSE_BWD_GATHER_SM90(ltd_sparse_attn_bwd_gather_sm90_f16_d128, __half, 128)
#define LTD_SPARSE_BWD_SM90(NAME, T, D, BIAS, PAIR, TBIAS) \
    extern "C" __global__ void __launch_bounds__(PAIR ? kPairThreads : kThreads, PAIR || !(D == 64 && !BIAS) ? 1 : 3) \
        NAME(const LtdSparseAttnBwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_bwd_sm90<T, D, BIAS, PAIR, TBIAS>(p, maps); }
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_bf16_d64, __nv_bfloat16, 64, false, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_bf16_d128, __nv_bfloat16, 128, false, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_f16_d64, __half, 64, false, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_f16_d128, __half, 128, false, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_sm90_bf16_d64, __nv_bfloat16, 64, true, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_sm90_bf16_d128, __nv_bfloat16, 128, true, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_sm90_f16_d64, __half, 64, true, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_sm90_f16_d128, __half, 128, true, false, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_pair_bf16_d64, __nv_bfloat16, 64, false, true, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_pair_bf16_d128, __nv_bfloat16, 128, false, true, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_pair_f16_d64, __half, 64, false, true, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_sm90_pair_f16_d128, __half, 128, false, true, false)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_tma_sm90_bf16_d64, __nv_bfloat16, 64, true, false, true)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_tma_sm90_bf16_d128, __nv_bfloat16, 128, true, false, true)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_tma_sm90_f16_d64, __half, 64, true, false, true)
LTD_SPARSE_BWD_SM90(ltd_sparse_attn_bwd_bias_tma_sm90_f16_d128, __half, 128, true, false, true)
// The warp-specialised backwards (no bias), held to BwdWsSm90Config's CTAs per SM: the consumers
// take the producer's registers by setmaxnreg, so an SM holds as many consumer warpgroups as
// the single-chunk kernel (D 128) or the pair kernel holds.
#define LTD_SPARSE_BWD_WS_SM90(NAME, T, D, PAIR)                                                                    \
    extern "C" __global__ void __launch_bounds__(BwdWsSm90Config<T, D, PAIR>::kThreadsCta,                       \
                                                 BwdWsSm90Config<T, D, PAIR>::kCtasPerSm)                       \
        NAME(const LtdSparseAttnBwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_bwd_ws_sm90<T, D, PAIR>(p, maps); }
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_bf16_d64, __nv_bfloat16, 64, false)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_bf16_d128, __nv_bfloat16, 128, false)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_f16_d64, __half, 64, false)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_f16_d128, __half, 128, false)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_pair_bf16_d64, __nv_bfloat16, 64, true)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_pair_bf16_d128, __nv_bfloat16, 128, true)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_pair_f16_d64, __half, 64, true)
LTD_SPARSE_BWD_WS_SM90(ltd_sparse_attn_bwd_sm90_ws_pair_f16_d128, __half, 128, true)
