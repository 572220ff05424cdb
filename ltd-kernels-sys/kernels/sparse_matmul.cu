// Block-sparse matrix products (upstream's MatMul, spec 2.6): sdd, dsd, dds with trans_a/trans_b,
// f16/bf16 on mma.sync m16n8k16 tensor cores (f32 accumulation) and f32 on plain FMA tiles.
// Contract: include/ltd_kernels.h (LtdSparseMatmulParams).
//
// Every kernel computes one BM x BN output tile of C = op(A) op(B) as a sum over "chunks": a
// BM x KC slice of op(A) times a KC x BN slice of op(B), double-buffered in shared memory with
// cp.async (16-byte copies, zero-filled past the valid rows/columns; a scalar fallback when a
// dense row stride is not a multiple of 16 bytes). Each operand slice is stored in shared memory
// in the orientation it has in global memory (K-contiguous or M/N-contiguous, XOR-swizzled by
// 16-byte chunks), and the fragments are read with ldmatrix or ldmatrix.trans accordingly, so
// every transpose costs nothing extra.
//   sdd: one CTA per (tile, 64x64 sub-tile for block 128; batch); chunks walk K (any K: the last
//        chunk is zero-filled).
//   dsd: one CTA per (head, output row-block [, 64-row half for block 128]; 64-column slab of
//        the dense dim; batch); chunks walk the active tiles of the row of op(A) (the CSR row of
//        A, or its CSC column when trans_a).
//   dds: one CTA per (head, output column-block [, 64-column half]; 64-row slab; batch); chunks
//        walk the active tiles of the column of op(B) (CSC column of B, or its CSR row when
//        trans_b).
// Rows/columns of a dense output with no tiles get zeros (the CTA runs with no chunks).
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "common/mma.cuh"

namespace {

enum { kSdd = 0, kDsd = 1, kDds = 2 };

// ---- element helpers -------------------------------------------------------------------------
template <typename T> struct Elem;
template <> struct Elem<__nv_bfloat16> {
    static __device__ __forceinline__ __nv_bfloat16 from(float a) { return __float2bfloat16_rn(a); }
};
template <> struct Elem<__half> {
    static __device__ __forceinline__ __half from(float a) { return __float2half_rn(a); }
};
template <> struct Elem<float> {
    static __device__ __forceinline__ float from(float a) { return a; }
};

// ---- shared-memory tiles -------------------------------------------------------------------
// A [rows][W] tile of elements, 16-byte chunks (VEC elements) XOR-swizzled so that 8
// consecutive rows at the same logical chunk fall in 8 different 16-byte bank groups.
template <int W, int VEC>
__device__ __forceinline__ int swz(int row, int col) {
    constexpr int kChunks = W / VEC;
    constexpr int kRowsPerLine = kChunks >= 8 ? 1 : 8 / kChunks;
    constexpr int kMask = kChunks >= 8 ? 7 : kChunks - 1;
    const int chunk = (col / VEC) ^ ((row / kRowsPerLine) & kMask);
    return row * W + chunk * VEC + (col % VEC);
}

using ltd_mma::cp_async_commit;
using ltd_mma::cp_async_wait;
using ltd_mma::ldmatrix_x4;
using ltd_mma::ldmatrix_x4_trans;
using ltd_mma::smem_addr;

// One operand slice in global memory: element (mn, k) (mn = row of op(A) or column of op(B))
// is ptr[mn * ld + k] when kmajor, else ptr[k * ld + mn]. Elements with mn >= valid_mn or
// k >= valid_k read as zero.
template <typename T>
struct Opnd {
    const T* ptr;
    long long ld;
    int valid_mn;
    int valid_k;
};

// Loads R x C of the row-major view g (row stride ld; rows >= vr or cols >= vc are zero) into
// the swizzled tile s [R][C].
template <typename T, int R, int C, int NT>
__device__ __forceinline__ void load_2d(T* s, const T* g, long long ld, int vr, int vc) {
    constexpr int VEC = 16 / sizeof(T);
    const bool vec = (ld % VEC) == 0 && (reinterpret_cast<uintptr_t>(g) & 15) == 0;
    if (vec) {
        constexpr int kChunks = R * C / VEC;
        for (int i = threadIdx.x; i < kChunks; i += NT) {
            const int r = i / (C / VEC), c = (i % (C / VEC)) * VEC;
            const int n = (r < vr && c < vc) ? min(VEC, vc - c) : 0;
            const T* src = n > 0 ? g + (long long)r * ld + c : g;
            ltd_mma::cp_async16(smem_addr(s + swz<C, VEC>(r, c)), src, n * (int)sizeof(T));
        }
    } else {
#pragma unroll 1
        for (int i = threadIdx.x; i < R * C; i += NT) {
            const int r = i / C, c = i % C;
            s[swz<C, VEC>(r, c)] = (r < vr && c < vc) ? g[(long long)r * ld + c] : Elem<T>::from(0.f);
        }
    }
}

// Tile shapes per (element, mode, block): BM x BN output per CTA, KC reduction elements per
// chunk, WM x WN warps (each WTM x WTN of the output).
template <typename T, int MODE, int BLOCK>
struct Cfg {
    static constexpr int SUB = BLOCK > 64 ? 64 : BLOCK;  // output side inside one layout block
    static constexpr int BM = MODE == kDds ? 64 : SUB;
    static constexpr int BN = MODE == kDsd ? 64 : SUB;
    static constexpr int WM = MODE == kSdd ? (BLOCK == 16 ? 1 : 2) : MODE == kDsd ? (BM == 16 ? 1 : 2) : (BN == 16 ? 4 : 2);
    static constexpr int WN = MODE == kSdd ? (BLOCK == 16 ? 1 : 2) : MODE == kDsd ? (BM == 16 ? 4 : 2) : (BN == 16 ? 1 : 2);
    static constexpr int NT = 32 * WM * WN;
    static constexpr int KC_H = MODE == kSdd ? (BLOCK <= 32 ? 32 : 64) : SUB;
    static constexpr int KC = sizeof(T) == 4 && KC_H > 32 ? 32 : KC_H;  // f32: 32 KB of smem at most
    static constexpr int WTM = BM / WM, WTN = BN / WN;
    // Tensor-core kernels: at most 102 registers per thread for the small tiles (16 x 16 per
    // warp: 20 warps per SM) and 128 for the 64 x 64 tiles (4 CTAs of 4 warps), so that more
    // loads are in flight; the f32 FMA tiles get up to 255 so that they do not spill.
    static constexpr int MIN_CTAS = sizeof(T) == 4 ? (NT >= 128 ? 2 : 8) : (BM * BN <= 32 * 64 ? 640 / NT : 4);
    static_assert(WTM % 16 == 0 && WTN % 16 == 0 && KC % 16 == 0 && (MODE == kSdd || SUB % KC == 0), "tile shape");
};

// One chunk of the product: acc += the tiles tA x tB in shared memory (tensor-core fragments,
// or the f32 FMA thread grid).
template <typename T, int MODE, int BLOCK, int D0, int D1, int D2>
__device__ __forceinline__ void mma_chunk(float (&acc)[D0][D1][D2], const T* tA, const T* tB, bool a_kmajor, bool b_kmajor, int wm,
                                          int wn, int lane) {
    using C = Cfg<T, MODE, BLOCK>;
    constexpr int BM = C::BM, BN = C::BN, KC = C::KC, NT = C::NT;
    constexpr int VEC = 16 / sizeof(T);
    constexpr int MF = C::WTM / 16, NF = C::WTN / 8;
    constexpr bool kTensor = sizeof(T) == 2;
    constexpr int RS = NT / 16, PM = BM / RS, PN = BN / 16;
    if constexpr (kTensor) {
#pragma unroll
        for (int ks = 0; ks < KC / 16; ++ks) {
            uint32_t af[MF][4];
#pragma unroll
            for (int mf = 0; mf < MF; ++mf) {
                const int m0 = wm * C::WTM + mf * 16;
                if (a_kmajor) {
                    const int row = m0 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    const int col = ks * 16 + 8 * (lane >> 4);
                    ldmatrix_x4(af[mf], tA + swz<KC, VEC>(row, col));
                } else {
                    const int row = ks * 16 + (lane & 7) + 8 * (lane >> 4);
                    const int col = m0 + 8 * ((lane >> 3) & 1);
                    ldmatrix_x4_trans(af[mf], tA + swz<BM, VEC>(row, col));
                }
            }
#pragma unroll
            for (int np = 0; np < NF / 2; ++np) {
                const int n0 = wn * C::WTN + np * 16;
                uint32_t bf[4];
                if (b_kmajor) {
                    const int row = n0 + (lane & 7) + 8 * (lane >> 4);
                    const int col = ks * 16 + 8 * ((lane >> 3) & 1);
                    ldmatrix_x4(bf, tB + swz<KC, VEC>(row, col));
                } else {
                    const int row = ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
                    const int col = n0 + 8 * (lane >> 4);
                    ldmatrix_x4_trans(bf, tB + swz<BN, VEC>(row, col));
                }
#pragma unroll
                for (int mf = 0; mf < MF; ++mf) {
                    ltd_mma::Mma<T>::mma(acc[mf][2 * np], af[mf], bf[0], bf[1]);
                    ltd_mma::Mma<T>::mma(acc[mf][2 * np + 1], af[mf], bf[2], bf[3]);
                }
            }
        }
    } else {
        // f32: thread (tr, tc) owns rows tr + RS * i and columns tc + 16 * j.
        const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll 1
        for (int k = 0; k < KC; ++k) {
            float av[PM], bv[PN];
#pragma unroll
            for (int i = 0; i < PM; ++i) {
                const int r = tr + RS * i;
                av[i] = a_kmajor ? (float)tA[swz<KC, VEC>(r, k)] : (float)tA[swz<BM, VEC>(k, r)];
            }
#pragma unroll
            for (int j = 0; j < PN; ++j) {
                const int c = tc + 16 * j;
                bv[j] = b_kmajor ? (float)tB[swz<KC, VEC>(c, k)] : (float)tB[swz<BN, VEC>(k, c)];
            }
#pragma unroll
            for (int i = 0; i < PM; ++i)
#pragma unroll
                for (int j = 0; j < PN; ++j) acc[0][i][j] = fmaf(av[i], bv[j], acc[0][i][j]);
        }
    }
}

// Zeroes the accumulators before the first chunk.
template <int D0, int D1, int D2>
__device__ __forceinline__ void zero_acc(float (&acc)[D0][D1][D2]) {
#pragma unroll
    for (int i = 0; i < D0; ++i)
#pragma unroll
        for (int j = 0; j < D1; ++j)
#pragma unroll
            for (int e = 0; e < D2; ++e) acc[i][j][e] = 0.f;
}

// Operand slices of chunk `ch` of this CTA's work item (global pointer, leading dimension, valid extents).
template <typename T, int MODE, int BLOCK>
__device__ __forceinline__ void describe_chunk(int ch, Opnd<T>& oa, Opnd<T>& ob, const T* const& A, const T* const& B, const long long& F,
                                               const long long& S, const long long& nnz, const long long& z, const long long& zh,
                                               const int& begin, const int& sub, const int& tile, const int& blk, const long long& slab0,
                                               const bool& ta, const bool& tb, const int* const& row_columns, const int* const& col_rows,
                                               const int* const& col_tiles) {
    using C = Cfg<T, MODE, BLOCK>;
    constexpr int BM = C::BM, BN = C::BN, KC = C::KC, SUB = C::SUB;
    constexpr int PER = BLOCK / SUB;
    if constexpr (MODE == kSdd) {
        const long long k0 = (long long)ch * KC;
        const int kv = (int)min((long long)KC, F - k0);
        const long long i0 = (long long)blk * BLOCK + (sub / PER) * SUB;
        const long long j0 = (long long)row_columns[tile] * BLOCK + (sub % PER) * SUB;
        oa = ta ? Opnd<T>{A + zh * F * S + k0 * S + i0, S, BM, kv}
                : Opnd<T>{A + zh * S * F + i0 * F + k0, F, BM, kv};
        ob = tb ? Opnd<T>{B + zh * S * F + j0 * F + k0, F, BN, kv}
                : Opnd<T>{B + zh * F * S + k0 * S + j0, S, BN, kv};
    } else {
        const int e = begin + ch / (BLOCK / KC);
        const int kk = (ch % (BLOCK / KC)) * KC;
        const bool csr = MODE == kDsd ? !ta : tb;
        const long long t = csr ? e : col_tiles[e];
        const long long kb = csr ? row_columns[e] : col_rows[e];
        const long long kg = kb * BLOCK + kk;  // reduction index in [0, S)
        if constexpr (MODE == kDsd) {
            const T* tp = A + (z * nnz + t) * BLOCK * BLOCK;
            oa = ta ? Opnd<T>{tp + (long long)kk * BLOCK + sub * SUB, BLOCK, BM, KC}
                    : Opnd<T>{tp + (long long)(sub * SUB) * BLOCK + kk, BLOCK, BM, KC};
            const int nv = (int)min((long long)BN, F - slab0);
            ob = tb ? Opnd<T>{B + zh * F * S + slab0 * S + kg, S, nv, KC}
                    : Opnd<T>{B + zh * S * F + kg * F + slab0, F, nv, KC};
        } else {
            const int mv = (int)min((long long)BM, F - slab0);
            oa = ta ? Opnd<T>{A + zh * S * F + kg * F + slab0, F, mv, KC}
                    : Opnd<T>{A + zh * F * S + slab0 * S + kg, S, mv, KC};
            const T* tp = B + (z * nnz + t) * BLOCK * BLOCK;
            ob = tb ? Opnd<T>{tp + (long long)(sub * SUB) * BLOCK + kk, BLOCK, BN, KC}
                    : Opnd<T>{tp + (long long)kk * BLOCK + sub * SUB, BLOCK, BN, KC};
        }
    }
}

template <typename T, int MODE, int BLOCK>
__device__ __forceinline__ void sparse_mm(const LtdSparseMatmulParams& p) {
    using C = Cfg<T, MODE, BLOCK>;
    constexpr int BM = C::BM, BN = C::BN, KC = C::KC, NT = C::NT, SUB = C::SUB;
    constexpr int PER = BLOCK / SUB;  // 64-wide pieces per block side (2 for block 128)
    __shared__ __align__(128) T sA[2][BM * KC];
    __shared__ __align__(128) T sB[2][KC * BN];

    const long long nb = p.num_blocks, heads = p.heads, F = p.dense_dim, nnz = p.nnz;
    const long long S = nb * BLOCK;
    const T* A = reinterpret_cast<const T*>(p.a);
    const T* B = reinterpret_cast<const T*>(p.b);
    const int* row_offsets = reinterpret_cast<const int*>(p.row_offsets);
    const int* row_columns = reinterpret_cast<const int*>(p.row_columns);
    const int* col_offsets = reinterpret_cast<const int*>(p.col_offsets);
    const int* col_rows = reinterpret_cast<const int*>(p.col_rows);
    const int* col_tiles = reinterpret_cast<const int*>(p.col_tiles);
    const bool ta = p.trans_a != 0, tb = p.trans_b != 0;

    // ---- the work item: output tile origin, chunk count, and operand orientation -------------
    long long z, zh;
    int nchunks, begin = 0, sub = 0, tile = 0, blk = 0;
    long long slab0 = 0;  // first dense-dim index of this CTA (dsd: column, dds: row)
    T* Cp;
    long long ldc;
    int vrows, vcols;
    bool a_kmajor, b_kmajor;
    if constexpr (MODE == kSdd) {
        tile = blockIdx.x / (PER * PER);
        sub = blockIdx.x % (PER * PER);
        z = blockIdx.y;
        const int row = reinterpret_cast<const int*>(p.tile_rows)[tile];
        zh = z * heads + row / nb;
        blk = row % nb;  // block row i; the column comes from row_columns[tile]
        nchunks = (int)((F + KC - 1) / KC);
        Cp = reinterpret_cast<T*>(p.c) + ((z * nnz + tile) * BLOCK + (sub / PER) * SUB) * BLOCK + (sub % PER) * SUB;
        ldc = BLOCK;
        vrows = BM;
        vcols = BN;
        a_kmajor = !ta;  // A [S,F] (K contiguous) or [F,S]
        b_kmajor = tb;   // B [F,S] (N contiguous) or [S,F]
    } else {
        const int item = blockIdx.x / PER;  // h * nb + block
        sub = blockIdx.x % PER;
        z = blockIdx.z;
        zh = z * heads + item / nb;
        blk = item % nb;
        slab0 = (long long)blockIdx.y * 64;
        // dsd walks row `blk` of op(A): CSR row of A, or its CSC column when transposed.
        // dds walks column `blk` of op(B): CSC column of B, or its CSR row when transposed.
        const bool csr = MODE == kDsd ? !ta : tb;
        const int* off = csr ? row_offsets : col_offsets;
        begin = off[item];
        nchunks = (off[item + 1] - begin) * (BLOCK / KC);
        if constexpr (MODE == kDsd) {
            Cp = reinterpret_cast<T*>(p.c) + zh * S * F + ((long long)blk * BLOCK + sub * SUB) * F + slab0;
            ldc = F;
            vrows = BM;
            vcols = (int)min((long long)BN, F - slab0);
            a_kmajor = !ta;  // the tile, or its transpose
            b_kmajor = tb;   // B [S,F] (N contiguous) or [F,S]
        } else {
            Cp = reinterpret_cast<T*>(p.c) + zh * F * S + slab0 * S + (long long)blk * BLOCK + sub * SUB;
            ldc = S;
            vrows = (int)min((long long)BM, F - slab0);
            vcols = BN;
            a_kmajor = !ta;  // A [F,S] (K contiguous) or [S,F]
            b_kmajor = tb;   // the tile ([k][n]), or its transpose
        }
    }

    auto load_chunk = [&](int ch, int buf) {
        Opnd<T> oa, ob;
        describe_chunk<T, MODE, BLOCK>(ch, oa, ob, A, B, F, S, nnz, z, zh, begin, sub, tile, blk, slab0, ta, tb, row_columns, col_rows,
                                       col_tiles);
        if (a_kmajor) load_2d<T, BM, KC, NT>(sA[buf], oa.ptr, oa.ld, oa.valid_mn, oa.valid_k);
        else load_2d<T, KC, BM, NT>(sA[buf], oa.ptr, oa.ld, oa.valid_k, oa.valid_mn);
        if (b_kmajor) load_2d<T, BN, KC, NT>(sB[buf], ob.ptr, ob.ld, ob.valid_mn, ob.valid_k);
        else load_2d<T, KC, BN, NT>(sB[buf], ob.ptr, ob.ld, ob.valid_k, ob.valid_mn);
    };

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp / C::WN, wn = warp % C::WN;
    constexpr int MF = C::WTM / 16, NF = C::WTN / 8;
    constexpr bool kTensor = sizeof(T) == 2;
    // Tensor-core accumulators (m16n8 fragments), or an RS x 16 grid of threads each owning
    // PM x PN outputs for the f32 FMA path.
    constexpr int RS = NT / 16, PM = BM / RS, PN = BN / 16;
    static_assert(kTensor || (BM % RS == 0 && BN % 16 == 0), "f32 thread grid");
    constexpr int D0 = kTensor ? MF : 1, D1 = kTensor ? NF : PM, D2 = kTensor ? 4 : PN;
    float acc[D0][D1][D2];
    zero_acc(acc);

    if (nchunks > 0) load_chunk(0, 0);
    cp_async_commit();
    for (int ch = 0; ch < nchunks; ++ch) {
        const int buf = ch & 1;
        if (ch + 1 < nchunks) {
            load_chunk(ch + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T* tA = sA[buf];
        const T* tB = sB[buf];
        mma_chunk<T, MODE, BLOCK>(acc, tA, tB, a_kmajor, b_kmajor, wm, wn, lane);
        __syncthreads();  // the buffer is overwritten by the next iteration's prefetch
    }
    cp_async_wait<0>();

    // ---- store: every (row < vrows, col < vcols) element of the tile, zeros when no chunk ----
    if constexpr (kTensor) {
        const int g = lane >> 2, t4 = lane & 3;
        const bool pairs = (ldc & 1) == 0;
#pragma unroll
        for (int mf = 0; mf < MF; ++mf) {
#pragma unroll
            for (int nf = 0; nf < NF; ++nf) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = wm * C::WTM + mf * 16 + g + 8 * h;
                    const int c = wn * C::WTN + nf * 8 + 2 * t4;
                    if (r >= vrows || c >= vcols) continue;
                    T* dst = Cp + (long long)r * ldc + c;
                    const float v0 = acc[mf][nf][2 * h], v1 = acc[mf][nf][2 * h + 1];
                    if (pairs && c + 1 < vcols) {
                        *reinterpret_cast<uint32_t*>(dst) = ltd_mma::pack2<T>(v0, v1);
                    } else {
                        dst[0] = Elem<T>::from(v0);
                        if (c + 1 < vcols) dst[1] = Elem<T>::from(v1);
                    }
                }
            }
        }
    } else {
        const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
        for (int i = 0; i < PM; ++i) {
#pragma unroll
            for (int j = 0; j < PN; ++j) {
                const int r = tr + RS * i, c = tc + 16 * j;
                if (r < vrows && c < vcols) Cp[(long long)r * ldc + c] = acc[0][i][j];
            }
        }
    }
}

}  // namespace

#define LTD_MM_ONE(MODE_NAME, MODE, TNAME, T, BLOCK)                                                      \
    extern "C" __global__ void __launch_bounds__(Cfg<T, MODE, BLOCK>::NT, Cfg<T, MODE, BLOCK>::MIN_CTAS)      \
        ltd_sparse_mm_##MODE_NAME##_##TNAME##_b##BLOCK(const LtdSparseMatmulParams p) {                    \
        sparse_mm<T, MODE, BLOCK>(p);                                                                     \
    }
#define LTD_MM_BLOCKS(MODE_NAME, MODE, TNAME, T) \
    LTD_MM_ONE(MODE_NAME, MODE, TNAME, T, 16)    \
    LTD_MM_ONE(MODE_NAME, MODE, TNAME, T, 32)    \
    LTD_MM_ONE(MODE_NAME, MODE, TNAME, T, 64)    \
    LTD_MM_ONE(MODE_NAME, MODE, TNAME, T, 128)
#define LTD_MM_TYPES(MODE_NAME, MODE)                      \
    LTD_MM_BLOCKS(MODE_NAME, MODE, f32, float)             \
    LTD_MM_BLOCKS(MODE_NAME, MODE, f16, __half)            \
    LTD_MM_BLOCKS(MODE_NAME, MODE, bf16, __nv_bfloat16)
LTD_MM_TYPES(sdd, kSdd)
LTD_MM_TYPES(dsd, kDsd)
LTD_MM_TYPES(dds, kDds)
