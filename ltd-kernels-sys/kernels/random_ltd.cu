// Random-LTD kernels: the keyed-ChaCha sampler, row gather/scatter, the out-of-place route and
// the mask gathers. Parameter structs and launch contracts: include/ltd_kernels.h. The host side
// (ltd-core, feature `cuda`) validates every size, stride, alignment and index before a launch.
#include <stdint.h>
#include "ltd_kernels.h"

// ------------------------------------------------------------------------------------------------
// ChaCha8 block function, word for word the same as rand_chacha 0.10's ChaCha8Rng (and as
// ltd-core's CPU mirror): state = 4 constants, 8 key words, 64-bit block counter (words 12-13,
// low first), 64-bit stream (words 14-15, low first); 4 double rounds; output = working + input.
// ------------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t rotl32(uint32_t x, int n) { return __funnelshift_l(x, x, n); }

#define LTD_QR(a, b, c, d)                   \
    a += b; d ^= a; d = rotl32(d, 16);       \
    c += d; b ^= c; b = rotl32(b, 12);       \
    a += b; d ^= a; d = rotl32(d, 8);        \
    c += d; b ^= c; b = rotl32(b, 7);

__device__ __forceinline__ void chacha8_block(const uint32_t key[8], uint64_t counter, uint64_t stream,
                                              uint32_t out[16]) {
    uint32_t x[16];
    x[0] = 0x61707865u; x[1] = 0x3320646eu; x[2] = 0x79622d32u; x[3] = 0x6b206574u;
#pragma unroll
    for (int i = 0; i < 8; ++i) x[4 + i] = key[i];
    x[12] = (uint32_t)counter; x[13] = (uint32_t)(counter >> 32);
    x[14] = (uint32_t)stream;  x[15] = (uint32_t)(stream >> 32);
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] = x[i];
#pragma unroll
    for (int round = 0; round < 4; ++round) {
        LTD_QR(out[0], out[4], out[8], out[12]);
        LTD_QR(out[1], out[5], out[9], out[13]);
        LTD_QR(out[2], out[6], out[10], out[14]);
        LTD_QR(out[3], out[7], out[11], out[15]);
        LTD_QR(out[0], out[5], out[10], out[15]);
        LTD_QR(out[1], out[6], out[11], out[12]);
        LTD_QR(out[2], out[7], out[8], out[13]);
        LTD_QR(out[3], out[4], out[9], out[14]);
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] += x[i];
}

// Block-wide inclusive scan of one u64 per thread (blockDim.x == THREADS <= 1024).
// Returns the inclusive prefix; *total gets the block total. Uses `warp_sums` (>= 32 entries).
template <int THREADS>
__device__ __forceinline__ unsigned long long block_inclusive_scan_u64(unsigned long long v,
                                                                      unsigned long long* warp_sums,
                                                                      unsigned long long* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr int kWarps = THREADS / 32;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    if (lane == 31) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        unsigned long long w = lane < kWarps ? warp_sums[lane] : 0ull;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            unsigned long long n = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += n;
        }
        if (lane < kWarps) warp_sums[lane] = w;  // inclusive warp prefix
    }
    __syncthreads();
    const unsigned long long before = warp == 0 ? 0ull : warp_sums[warp - 1];
    *total = warp_sums[kWarps - 1];
    __syncthreads();  // warp_sums may be reused by the caller's next scan
    return v + before;
}

// The sampler. SMEM: keys cached in dynamic shared memory (seq * 4 bytes), else recomputed from
// ChaCha in every pass (no memory at all, any seq).
template <bool SMEM, int THREADS>
__device__ __forceinline__ void sample_tokens(const LtdSampleParams& p) {
    extern __shared__ uint32_t smem_keys[];
    __shared__ uint32_t hist[256];
    __shared__ unsigned long long warp_sums[32];
    __shared__ uint32_t s_digit, s_rank;

    const long long row = blockIdx.x;  // l * batch + b, which is also the ChaCha stream
    const long long seq = p.seq;
    const long long nblk = (seq + 15) / 16;
    uint32_t key[8];
    key[0] = (uint32_t)p.seed; key[1] = (uint32_t)(p.seed >> 32);
    key[2] = (uint32_t)p.step; key[3] = (uint32_t)(p.step >> 32);
    key[4] = key[5] = key[6] = key[7] = 0u;
    const uint64_t stream = (uint64_t)row;

    if (SMEM) {
        for (long long blk = threadIdx.x; blk < nblk; blk += blockDim.x) {
            uint32_t w[16];
            chacha8_block(key, (uint64_t)blk, stream, w);
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const long long i = blk * 16 + j;
                if (i < seq) smem_keys[i] = w[j];
            }
        }
        __syncthreads();
    }

    // Radix select, 4 passes of 8 bits from the top: find K, the key value of the element of rank
    // `reserved` (1-based) in ascending key order, and how many elements equal to K are kept.
    uint32_t prefix = 0u, mask = 0u;
    uint32_t rank = (uint32_t)p.reserved;
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0u;
        __syncthreads();
        if (SMEM) {
            for (long long i = threadIdx.x; i < seq; i += blockDim.x) {
                const uint32_t k = smem_keys[i];
                if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], 1u);
            }
        } else {
            for (long long blk = threadIdx.x; blk < nblk; blk += blockDim.x) {
                uint32_t w[16];
                chacha8_block(key, (uint64_t)blk, stream, w);
#pragma unroll
                for (int j = 0; j < 16; ++j) {
                    if (blk * 16 + j < seq && (w[j] & mask) == prefix) atomicAdd(&hist[(w[j] >> shift) & 255u], 1u);
                }
            }
        }
        __syncthreads();
        // Inclusive scan of the 256 bins (threads 0..255 hold one bin each).
        const unsigned long long h = threadIdx.x < 256 ? hist[threadIdx.x] : 0ull;
        unsigned long long tot;
        const unsigned long long incl = block_inclusive_scan_u64<THREADS>(h, warp_sums, &tot);
        if (threadIdx.x < 256) {
            const unsigned long long excl = incl - h;
            if (excl < rank && rank <= incl) {
                s_digit = threadIdx.x;
                s_rank = rank - (uint32_t)excl;
            }
        }
        __syncthreads();
        prefix |= s_digit << shift;
        mask |= 255u << shift;
        rank = s_rank;
        __syncthreads();
    }
    const uint32_t kth = prefix;         // the cut-off key value
    const uint32_t need_eq = rank;       // how many keys equal to kth are kept (lowest indices)

    // Ordered compaction: thread t of a tile owns the 16 positions of one ChaCha block. Position i
    // is kept if key < kth, or key == kth and fewer than need_eq equal keys come before it; its
    // output slot is (#less before i) + min(#equal before i, need_eq). One packed u64 scan per
    // tile: high half counts equal keys, low half counts smaller keys.
    int* out = reinterpret_cast<int*>(p.out) + row * p.reserved;
    unsigned long long carry = 0ull;
    for (long long tile = 0; tile < nblk; tile += blockDim.x) {
        const long long blk = tile + threadIdx.x;
        uint32_t w[16];
        if (blk < nblk) {
            if (SMEM) {
#pragma unroll
                for (int j = 0; j < 16; ++j) {
                    const long long i = blk * 16 + j;
                    w[j] = i < seq ? smem_keys[i] : 0xffffffffu;
                }
            } else {
                chacha8_block(key, (uint64_t)blk, stream, w);
            }
        }
        uint32_t lt = 0u, eq = 0u;
        if (blk < nblk) {
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                if (blk * 16 + j < seq) {
                    lt += w[j] < kth;
                    eq += w[j] == kth;
                }
            }
        }
        const unsigned long long mine = ((unsigned long long)eq << 32) | lt;
        unsigned long long tile_total;
        const unsigned long long incl = block_inclusive_scan_u64<THREADS>(mine, warp_sums, &tile_total);
        const unsigned long long before = carry + incl - mine;
        uint32_t lt_before = (uint32_t)before, eq_before = (uint32_t)(before >> 32);
        if (blk < nblk) {
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const long long i = blk * 16 + j;
                if (i < seq) {
                    if (w[j] < kth) {
                        out[lt_before + min(eq_before, need_eq)] = (int)i;
                        ++lt_before;
                    } else if (w[j] == kth) {
                        if (eq_before < need_eq) out[lt_before + eq_before] = (int)i;
                        ++eq_before;
                    }
                }
            }
        }
        carry += tile_total;
    }
}

// Two widths: 256 threads per row for S <= LTD_SAMPLER_WIDE_MIN_SEQ (more rows resident per SM),
// 512 beyond (more threads per long row).
extern "C" __global__ void __launch_bounds__(256) ltd_sample_tokens(const LtdSampleParams p) {
    sample_tokens<false, 256>(p);
}
extern "C" __global__ void __launch_bounds__(256) ltd_sample_tokens_smem(const LtdSampleParams p) {
    sample_tokens<true, 256>(p);
}
extern "C" __global__ void __launch_bounds__(512) ltd_sample_tokens_wide(const LtdSampleParams p) {
    sample_tokens<false, 512>(p);
}
extern "C" __global__ void __launch_bounds__(512) ltd_sample_tokens_smem_wide(const LtdSampleParams p) {
    sample_tokens<true, 512>(p);
}

// ------------------------------------------------------------------------------------------------
// Row copies. One warp per row; each lane moves `V`-sized words with 4 loads in flight.
// ------------------------------------------------------------------------------------------------
constexpr int kRowsPerBlock = 4;  // blockDim.x = 128
constexpr int kUnroll = 8;

template <typename V>
__device__ __forceinline__ void copy_row(const char* __restrict__ src, char* __restrict__ dst, long long row_bytes) {
    const V* s = reinterpret_cast<const V*>(src);
    V* d = reinterpret_cast<V*>(dst);
    const long long n = row_bytes / (long long)sizeof(V);
    const int lane = threadIdx.x & 31;
    long long v = lane;
    for (; v + 32 * (kUnroll - 1) < n; v += 32 * kUnroll) {
        V tmp[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) tmp[u] = __ldcs(s + v + 32 * u);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) d[v + 32 * u] = tmp[u];
    }
    for (; v < n; v += 32) d[v] = __ldcs(s + v);
}

template <typename V>
__device__ __forceinline__ void index_rows(const LtdIndexRowsParams& p) {
    const long long r = (long long)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (r >= p.batch * p.reserved) return;
    const long long b = r / p.reserved;
    const long long k = r - b * p.reserved;
    const int pos = __ldg(reinterpret_cast<const int*>(p.idx) + b * p.idx_batch_stride + k);
    if (pos < 0 || (long long)pos >= p.seq) return;
    const bool gather = p.mode == LTD_ROWS_GATHER;
    const long long src_row = gather ? (long long)pos : k;
    const long long dst_row = gather ? k : (long long)pos;
    copy_row<V>(reinterpret_cast<const char*>(p.src) + b * p.src_batch_stride_bytes + src_row * p.src_seq_stride_bytes,
                reinterpret_cast<char*>(p.dst) + b * p.dst_batch_stride_bytes + dst_row * p.dst_seq_stride_bytes,
                p.row_bytes);
}

extern "C" __global__ void ltd_index_rows_v16(const LtdIndexRowsParams p) { index_rows<uint4>(p); }
extern "C" __global__ void ltd_index_rows_b4(const LtdIndexRowsParams p) { index_rows<uint32_t>(p); }
extern "C" __global__ void ltd_index_rows_b2(const LtdIndexRowsParams p) { index_rows<uint16_t>(p); }

template <typename V>
__device__ __forceinline__ void route_rows(const LtdRouteRowsParams& p) {
    const long long row = (long long)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (row >= p.batch * p.seq) return;
    const long long b = row / p.seq;
    const long long s = row - b * p.seq;
    // Binary search of s in the sorted idx[b, :] (all lanes search together: broadcast loads).
    const int* idx = reinterpret_cast<const int*>(p.idx) + b * p.idx_batch_stride;
    // reserved <= seq < 2^31 (checked on the host), so 32-bit positions suffice.
    int lo = 0, hi = (int)p.reserved;
    const int target = (int)s;
    while (lo < hi) {
        const int mid = (int)(((unsigned)lo + (unsigned)hi) >> 1);
        if (__ldg(idx + mid) < target) lo = mid + 1; else hi = mid;
    }
    const bool kept = lo < (int)p.reserved && __ldg(idx + lo) == target;
    const long long src_off = kept ? b * p.part_batch_stride_bytes + (long long)lo * p.part_seq_stride_bytes
                                   : b * p.h_batch_stride_bytes + s * p.h_seq_stride_bytes;
    const char* src = reinterpret_cast<const char*>(kept ? p.part : p.h) + src_off;
    char* dst = reinterpret_cast<char*>(p.y) + b * p.y_batch_stride_bytes + s * p.y_seq_stride_bytes;
    copy_row<V>(src, dst, p.row_bytes);
}

extern "C" __global__ void ltd_route_rows_v16(const LtdRouteRowsParams p) { route_rows<uint4>(p); }
extern "C" __global__ void ltd_route_rows_b4(const LtdRouteRowsParams p) { route_rows<uint32_t>(p); }
extern "C" __global__ void ltd_route_rows_b2(const LtdRouteRowsParams p) { route_rows<uint16_t>(p); }

// ------------------------------------------------------------------------------------------------
// Mask gathers (decoder [B,1,S,S] at kept positions; encoder [B,1,S,S] and [B,1,1,S] for all
// layers in one launch). Grid-stride over rows and (layer, batch) so any size launches.
// ------------------------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ void mask_gather(const LtdMaskGatherParams& p) {
    const T* mask = reinterpret_cast<const T*>(p.mask);
    const int* idx = reinterpret_cast<const int*>(p.idx);
    T* out = reinterpret_cast<T*>(p.out);
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.reserved) return;
    for (long long lb = blockIdx.z; lb < p.layers * p.batch; lb += gridDim.z) {
        const long long b = lb % p.batch;
        const int* row_idx = idx + lb * p.reserved;
        const long long col = row_idx[j];
        if (col < 0 || col >= p.seq) continue;
        for (long long i = blockIdx.y; i < p.out_rows; i += gridDim.y) {
            const long long mrow = p.gather_rows ? (long long)row_idx[i] : 0;
            if (mrow < 0 || mrow >= p.seq) continue;
            out[(lb * p.out_rows + i) * p.reserved + j] =
                mask[b * p.mask_batch_stride + mrow * p.mask_row_stride + col * p.mask_col_stride];
        }
    }
}

extern "C" __global__ void ltd_mask_gather_b1(const LtdMaskGatherParams p) { mask_gather<uint8_t>(p); }
extern "C" __global__ void ltd_mask_gather_b2(const LtdMaskGatherParams p) { mask_gather<uint16_t>(p); }
extern "C" __global__ void ltd_mask_gather_b4(const LtdMaskGatherParams p) { mask_gather<uint32_t>(p); }
