// Block-sparse softmax (forward and backward) over a layout's active tiles: one warp per query
// row, three passes (max, sum, write) that recompute the masked scores from x (memory-bound; the
// row's tiles stay in L1/L2). Contract: include/ltd_kernels.h (LtdSparseSoftmaxParams).
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"

namespace {

template <typename T> __device__ __forceinline__ float to_f(T v) { return (float)v; }
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <typename T> __device__ __forceinline__ T from_f(float v) { return (T)v; }

struct Row {
    long long z, h, i, r, q, seq;
    int t0, t1;
};

template <typename T>
__device__ __forceinline__ bool row_of(const LtdSparseSoftmaxParams& p, Row& row) {
    const long long w = (long long)blockIdx.x * 4 + (threadIdx.x >> 5);
    const long long b = p.block, nb = p.num_blocks, seq = nb * b;
    if (w >= p.batch * p.heads * seq) return false;
    row.seq = seq;
    row.q = w % seq;
    const long long zh = w / seq;
    row.h = zh % p.heads;
    row.z = zh / p.heads;
    row.i = row.q / b;
    row.r = row.q - row.i * b;
    const int* off = reinterpret_cast<const int*>(p.row_offsets);
    row.t0 = off[row.h * nb + row.i];
    row.t1 = off[row.h * nb + row.i + 1];
    return true;
}

__device__ __forceinline__ float mask_term(float v, int mul) { return mul ? (v == 0.f ? -INFINITY : 0.f) : v; }

// The masked, scaled score of element e of the row (e < (t1 - t0) * b); sets `offset` to its
// index in the sparse tensor.
template <typename T>
__device__ __forceinline__ float score(const LtdSparseSoftmaxParams& p, const Row& row, long long e, long long& offset) {
    const long long b = p.block;
    const long long tile = row.t0 + e / b;
    const long long c = e % b;
    const long long key = (long long)reinterpret_cast<const int*>(p.row_columns)[tile] * b + c;
    offset = ((row.z * p.nnz + tile) * b + row.r) * b + c;
    float v = to_f(reinterpret_cast<const T*>(p.x)[offset]) * p.scale;
    if (p.rpe) v += to_f(reinterpret_cast<const T*>(p.rpe)[((row.z * p.heads + row.h) * row.seq + row.q) * row.seq + key]);
    if (p.kpm) v += mask_term(to_f(reinterpret_cast<const T*>(p.kpm)[row.z * row.seq + key]), p.kpm_mul);
    if (p.attn_mask) v += mask_term(to_f(reinterpret_cast<const T*>(p.attn_mask)[row.q * row.seq + key]), p.attn_mask_mul);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T>
__device__ __forceinline__ void softmax_fwd(const LtdSparseSoftmaxParams& p) {
    Row row;
    if (!row_of<T>(p, row)) return;
    const int lane = threadIdx.x & 31;
    const long long n = (long long)(row.t1 - row.t0) * p.block;
    long long off;
    float m = -INFINITY;
    // A NaN or +inf score makes the whole row NaN (as torch.softmax); fmaxf skips NaN, so the
    // row's verdict is kept apart from its max.
    bool poisoned = false;
    for (long long e = lane; e < n; e += 32) {
        const float v = score<T>(p, row, e, off);
        m = fmaxf(m, v);
        poisoned |= v != v || v == INFINITY;
    }
    m = warp_max(m);
    poisoned = __any_sync(0xffffffffu, poisoned);
    float sum = 0.f;
    if (m != -INFINITY && !poisoned)
        for (long long e = lane; e < n; e += 32) sum += __expf(score<T>(p, row, e, off) - m);
    sum = warp_sum(sum);
    const float inv = poisoned ? NAN : (m != -INFINITY && sum > 0.f) ? 1.f / sum : 0.f;
    T* y = reinterpret_cast<T*>(p.y);
    for (long long e = lane; e < n; e += 32) {
        const float v = score<T>(p, row, e, off);
        y[off] = from_f<T>(inv == 0.f ? 0.f : __expf(v - m) * inv);
    }
}

template <typename T>
__device__ __forceinline__ void softmax_bwd(const LtdSparseSoftmaxParams& p) {
    Row row;
    if (!row_of<T>(p, row)) return;
    const int lane = threadIdx.x & 31;
    const long long b = p.block;
    const long long n = (long long)(row.t1 - row.t0) * b;
    const T* y = reinterpret_cast<const T*>(p.y);
    const T* dy = reinterpret_cast<const T*>(p.dy);
    T* dx = reinterpret_cast<T*>(p.dx);
    auto at = [&](long long e) { return ((row.z * p.nnz + row.t0 + e / b) * b + row.r) * b + e % b; };
    float dot = 0.f;
    for (long long e = lane; e < n; e += 32) dot += to_f(y[at(e)]) * to_f(dy[at(e)]);
    dot = warp_sum(dot);
    for (long long e = lane; e < n; e += 32) {
        const long long o = at(e);
        dx[o] = from_f<T>(to_f(y[o]) * (to_f(dy[o]) - dot) * p.scale);
    }
}

}  // namespace

#define LTD_SOFTMAX(SUFFIX, T)                                                                                    \
    extern "C" __global__ void ltd_sparse_softmax_fwd_##SUFFIX(const LtdSparseSoftmaxParams p) { softmax_fwd<T>(p); } \
    extern "C" __global__ void ltd_sparse_softmax_bwd_##SUFFIX(const LtdSparseSoftmaxParams p) { softmax_bwd<T>(p); }
LTD_SOFTMAX(f32, float)
LTD_SOFTMAX(f16, __half)
LTD_SOFTMAX(bf16, __nv_bfloat16)
