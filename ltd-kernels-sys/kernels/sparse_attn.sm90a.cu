// Fused flash-style block-sparse attention on Hopper (sm_90a only), forward and backward: the
// same contracts as sparse_attn.cu (LtdSparseAttnFwdParams / LtdSparseAttnBwdParams), with the
// products on warpgroup MMAs (wgmma.mma_async) and the tiles moved by the tensor memory
// accelerator (TMA; the tensor maps come in LtdSparseAttnTmaMaps). Forward, two variants: one
// warpgroup (128 threads) per 64-row query tile, or (`_pair_`, on the pair tables) two
// warpgroups (256 threads) per pair of adjacent query tiles sharing every K/V chunk load.
// S = Q K^T is an m64n64k16 wgmma with both operands in shared memory (K-major, 128-byte
// swizzle); P stays in registers (the accumulator layout is the A-fragment layout) and
// O += P V is an m64nDk16 wgmma with V read MN-major from shared memory. K/V chunks are
// double-buffered: thread 0 issues the TMA copies of chunk i + 1 on an mbarrier while chunk i
// is consumed (one V buffer for the single-tile kernel at D 128, so three CTAs fit per SM).
// The backward is further below.
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "sparse_attn_common.cuh"

namespace {

using ltd_attn::smem_addr;

constexpr int kTile = 64;      // query rows per CTA and keys per chunk
constexpr int kThreads = 128;  // one warpgroup; warp w owns query rows 16w..16w+15


// ---- wgmma wrappers (generated operand lists) -------------------------------------------------
// ss_n64: D[64x64] (+)= A[64x16] B[16x64], A and B K-major in shared memory; scale_d = 0 ignores D.
// rs_nN: D[64xN] += A[64x16] (registers) B[16xN], B MN-major in shared memory (trans-b = 1).
// ss_tt_nN: D[64xN] (+)= A[64x16] B[16xN], both MN-major in shared memory (trans-a = trans-b = 1);
// ss_tt<N> picks one by N.
template <typename T> struct Wgmma;
// One specialisation per element type; TY is its PTX type name.
#define LTD_WGMMA_OPS(T, TY) \
template <> struct Wgmma<T> { \
    static __device__ __forceinline__ void ss_n64(float (&d)[32], uint64_t da, uint64_t db, int scale_d) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
            : "l"(da), "l"(db), "r"(scale_d)); \
    } \
    static __device__ __forceinline__ void rs_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t db) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1)); \
    } \
    static __device__ __forceinline__ void rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1)); \
    } \
    static __device__ __forceinline__ void ss_tt_n32(float (&d)[16], uint64_t da, uint64_t db, int scale_d) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 1, 1;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
            : "l"(da), "l"(db), "r"(scale_d)); \
    } \
    static __device__ __forceinline__ void ss_tt_n64(float (&d)[32], uint64_t da, uint64_t db, int scale_d) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 1, 1;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
            : "l"(da), "l"(db), "r"(scale_d)); \
    } \
    static __device__ __forceinline__ void ss_tt_n128(float (&d)[64], uint64_t da, uint64_t db, int scale_d) { \
        asm volatile( \
            "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
            "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " \
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 1, 1;\n}\n" \
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
            : "l"(da), "l"(db), "r"(scale_d)); \
    } \
};
LTD_WGMMA_OPS(__nv_bfloat16, "bf16")
LTD_WGMMA_OPS(__half, "f16")
#undef LTD_WGMMA_OPS
template <typename T, int N>
__device__ __forceinline__ void ss_tt(float (&d)[N / 2], uint64_t da, uint64_t db, int scale_d) {
    if constexpr (N == 32) Wgmma<T>::ss_tt_n32(d, da, db, scale_d);
    else if constexpr (N == 64) Wgmma<T>::ss_tt_n64(d, da, db, scale_d);
    else Wgmma<T>::ss_tt_n128(d, da, db, scale_d);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// The products f(0) .. f(N - 1) of the k-slices whose bit is set in `bits` (uniform over the
// warpgroup), committed and waited for. All N on takes a path without a branch per product:
// behind per-product branches ptxas rebuilds each shared-memory descriptor from scratch, adds a
// warpgroup arrive per product and closes with a dummy product (D 128 forward O += P V: ~52
// instructions for four products, ~20 without); committing and waiting inside each path keeps
// that dummy out of the whole-slices one. Measured (H200, session 10, gpu-notes 10.6): forward
// 0-2.1% faster on block-64 / 128 layouts, 0.1-1.6% slower on Fixed block 16 (partial chunks).
template <int N, typename F>
__device__ __forceinline__ void wgmma_slices(unsigned bits, F&& f) {
    if (bits == (1u << N) - 1u) {
#pragma unroll
        for (int ks = 0; ks < N; ++ks) f(ks);
        wg_commit();
        wg_wait<0>();
    } else {
#pragma unroll
        for (int ks = 0; ks < N; ++ks)
            if ((bits >> ks) & 1u) f(ks);
        wg_commit();
        wg_wait<0>();
    }
}
// Keeps the compiler from moving accumulator reads/writes across the asynchronous MMAs.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// Ordinary shared-memory stores (dS^T, the staged dQ) go through the generic proxy; wgmma and the
// TMA read through the async proxy, so the writers fence before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }


// Shared-memory matrix descriptor, 128-byte swizzle (PTX ISA "matrix descriptor format").
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)(lbo_bytes >> 4) << 16) |
           ((uint64_t)(sbo_bytes >> 4) << 32) | (1ull << 62);
}

// Tiles are [64 rows][D] stored as D/64 column blocks of [64 rows][64 cols] (8 KB each, 1024-byte
// aligned); in a block each row is 128 bytes whose 16-byte chunks are XOR-swizzled by row % 8:
// exactly the canonical 128-byte-swizzle layout wgmma reads (K-major for Q and K, MN-major for V).
constexpr uint32_t kBlockBytes = kTile * 64 * 2;
template <int D>
__device__ __forceinline__ uint32_t sw128(int row, int col) {  // element offset
    return (col >> 6) * (kTile * 64) + row * 64 + ((((col & 63) >> 3) ^ (row & 7)) << 3) + (col & 7);
}
// K-major operand (Q or K tile), k-step kk of 16 elements along D. The descriptor of a step is
// the tile's descriptor plus a constant (the start address is its low field; tiles lie below
// 256 KB so it never carries), so the tile's part is computed once per tile, not per wgmma.
__device__ __forceinline__ uint64_t desc_kmajor(uint32_t tile, int kk) {
    return make_desc(tile, 16, 1024) + ((((kk >> 2) * kBlockBytes) + (kk & 3) * 32) >> 4);
}
// MN-major operand (V tile), k-step ks of 16 keys: 8-key groups 1024 bytes apart (SBO), 64-column
// blocks kBlockBytes apart (LBO).
__device__ __forceinline__ uint64_t desc_mnmajor(uint32_t tile, int ks) {
    return make_desc(tile, kBlockBytes, 1024) + ks * (2048 >> 4);
}

// ---- TMA and mbarriers ----------------------------------------------------------------------
// Tiles come from the tensor memory accelerator: one thread posts the expected bytes on a
// barrier and issues the copies; every consumer waits on the barrier's phase.
// Thread 0 initialises `count` consecutive barriers (8 bytes each, one arrival per phase) at
// `first`; the CTA barrier after it publishes them. Every thread of the CTA must call it.
template <int count>
__device__ __forceinline__ void mbar_init_all(uint32_t first) {
    if (threadIdx.x == 0) {
#pragma unroll
        for (int i = 0; i < count; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(first + 8 * i) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
}
// The issuing thread's arrival: the phase completes once `bytes` of copies have landed.
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred done;\nLTD_MBAR_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra LTD_MBAR_WAIT;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}
// One 64 x 64 box (rows row0.., columns col0.. of matrix `mat`) into `dst`, completing on `bar`;
// elements past the ends of the matrix arrive as zeros.
__device__ __forceinline__ void tma_box(uint32_t dst, const LtdTensorMap* map, int col0, int row0, int mat, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
        "l"(map), "r"(col0), "r"(row0), "r"(mat), "r"(bar)
        : "memory");
}
// Rows [row0, row0 + 64) of matrix `mat` of a [matrices][rows][D] tensor map (64 x 64 boxes,
// 128-byte swizzle: exactly the tile layout above) into a tile, completing on `bar`; rows past
// the end of the matrix arrive as zeros.
template <int D>
__device__ __forceinline__ void tma_tile(uint32_t tile, const LtdTensorMap* map, int row0, int mat, uint32_t bar) {
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb) tma_box(tile + cb * kBlockBytes, map, 64 * cb, row0, mat, bar);
}
// `bytes` (a multiple of 16, both addresses 16-byte aligned) from global memory into shared
// memory by the TMA, completing on `bar`.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst), "l"(src),
                 "r"(bytes), "r"(bar)
                 : "memory");
}
// Adds a [64 rows][32 cols] f32 box in shared memory (128-byte swizzle) into rows row0.. and
// columns col0.. of matrix `mat` of an f32 tensor map, element-wise atomically in L2 (rows past
// the end of the matrix are skipped). Asynchronous: bulk_commit() closes the group,
// bulk_wait_read() waits until the shared memory has been read.
__device__ __forceinline__ void tma_reduce_add_box(const LtdTensorMap* map, uint32_t box, int col0, int row0, int mat) {
    asm volatile("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(map),
                 "r"(col0), "r"(row0), "r"(mat), "r"(box)
                 : "memory");
}
// Stores a [64 rows][D] tile (the layout above) to rows row0.. of matrix `mat` of a tensor map
// (rows past the end of the matrix are skipped). Asynchronous, as tma_reduce_add_box.
template <int D>
__device__ __forceinline__ void tma_store_tile(const LtdTensorMap* map, uint32_t tile, int row0, int mat) {
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb)
        asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(map),
                     "r"(64 * cb), "r"(row0), "r"(mat), "r"(tile + cb * kBlockBytes)
                     : "memory");
}
// Writes a warpgroup's m64nD f32 accumulator (acc[4i + e]: row 16 warp + g + 8 (e >> 1), column
// 8i + 2t + (e & 1)), times the factor of its row (f[0] for row g, f[1] for g + 8), as T into a
// [64 rows][D] tile of the layout above, for a TMA store. Conflict-free: the 8 rows of a store
// land in 8 different 16-byte chunks under the swizzle.
template <typename T, int D>
__device__ __forceinline__ void stage_acc(uint32_t tile, const float (&acc)[D / 2], const float (&f)[2], int warp, int g, int t) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = warp * 16 + g + 8 * r;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
            const uint32_t v = ltd_attn::pack2<T>(acc[4 * i + 2 * r] * f[r], acc[4 * i + 2 * r + 1] * f[r]);
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(tile + sw128<D>(row, 8 * i + 2 * t) * 2), "r"(v) : "memory");
        }
    }
}
// Starts fetching a tensor map's descriptor so the first copy through it does not wait for it.
__device__ __forceinline__ void prefetch_map(const LtdTensorMap* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// TBIAS (`_bias_tma_` kernels, single-tile only): the bias tile of each (query tile, chunk) arrives by
// TMA with the chunk's K / V (two 8 KB buffers) instead of per-element global loads.
template <typename T, int D, bool PAIR, bool TBIAS>
__device__ __forceinline__ void sparse_attn_fwd_sm90(const LtdSparseAttnFwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    static_assert(!(PAIR && TBIAS), "bias tiles: single-tile kernel only");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // Swizzled tiles must start on 1024-byte boundaries; the launcher adds 1 KB of slack.
    const uint32_t raw = smem_addr(smem_raw);
    constexpr uint32_t kTileBytes = kTile * D * 2;
    const int wg = PAIR ? threadIdx.x >> 7 : 0;  // warpgroup: query tile 2 * pair + wg
    const int tid = threadIdx.x & 127;
    const uint32_t sQ = ((raw + 1023u) & ~1023u) + wg * kTileBytes;  // this warpgroup's Q
    const uint32_t sK = ((raw + 1023u) & ~1023u) + (PAIR ? 2 : 1) * kTileBytes;  // 2 buffers, shared
    // D 128 single-tile: one V buffer (Q + 2 K + 1 V = 64 KB, 3 CTAs per SM instead of 2); V of
    // the next chunk loads once PV of this one has retired, overlapped with the next S/softmax.
    constexpr bool kOneV = D == 128 && !PAIR;
    const uint32_t sV = sK + 2 * kTileBytes;  // 2 buffers (1 with kOneV), shared
    // TBIAS: 2 bias tiles [64 query][64 key] after V; then the barriers: Q of each warpgroup, K
    // (+ V) (+ bias) of each buffer, V (kOneV).
    const uint32_t sBias = sV + (kOneV ? 1 : 2) * kTileBytes;
    const uint32_t bars = sBias + (TBIAS ? 2 * kBlockBytes : 0);
    constexpr uint32_t kBiasBytes = TBIAS ? kBlockBytes : 0;
    const uint32_t bar_q = bars + 8 * wg;
    const uint32_t bar_kv = bars + 16;  // + 8 * buffer
    const uint32_t bar_v = bars + 32;

    ltd_attn::pdl_launch_dependents();  // the combine of split rows may be scheduled behind this grid
    if (threadIdx.x == 0) {
        prefetch_map(&maps.q);
        prefetch_map(&maps.k);
        prefetch_map(&maps.v);
        if (!PAIR) prefetch_map(&maps.o);
        if (TBIAS) prefetch_map(&maps.bias);
    }
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int qt = PAIR ? 2 * work.tile + wg : work.tile, h = work.h, b = work.b, begin = work.begin, end = work.end;
    const int warp = tid >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    const int* cols = reinterpret_cast<const int*>(p.tile_cols);
    const int* masks = reinterpret_cast<const int*>(p.tile_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    const T* bias = !TBIAS && p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    const long long q0 = (long long)qt * kTile;

    // The chunk table is read one iteration ahead in registers (its loads overlap a whole
    // iteration): kc / mask of chunk `it`, next_kc of chunk it + 1.
    int kc = work.first;
    unsigned mask = (unsigned)work.first_mask;
    int next_kc = work.second;
    const int mat = (int)bh;
    mbar_init_all<5>(bars);
    if (tid == 0) {  // rows past the end (an odd last tile) arrive as 0
        mbar_expect(bar_q, kTileBytes);
        tma_tile<D>(sQ, &maps.q, (int)q0, mat, bar_q);
    }
    if (threadIdx.x == 0 && begin < end) {
        if constexpr (kOneV) {
            mbar_expect(bar_kv, kTileBytes + kBiasBytes);
            tma_tile<D>(sK, &maps.k, kc * kTile, mat, bar_kv);
            mbar_expect(bar_v, kTileBytes);
            tma_tile<D>(sV, &maps.v, kc * kTile, mat, bar_v);
        } else {
            mbar_expect(bar_kv, 2 * kTileBytes + kBiasBytes);
            tma_tile<D>(sK, &maps.k, kc * kTile, mat, bar_kv);
            tma_tile<D>(sV, &maps.v, kc * kTile, mat, bar_kv);
        }
        if constexpr (TBIAS) tma_box(sBias, &maps.bias, kc * kTile, (int)q0, mat, bar_kv);
    }
    mbar_wait(bar_q, 0);

    // Running softmax state for rows g and g + 8 of this warp (log2 domain).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[D / 2];  // O accumulator, wgmma layout: o[4i + e], columns 8i + 2t + (e & 1), row g + 8 (e >> 1)
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    float s[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0.f;

    for (int it = begin; it < end; ++it) {
        const int buf = (it - begin) & 1;
        const int after_kc = it + 2 < end ? cols[it + 2] : 0;               // for the next iteration
        const unsigned next_mask = it + 1 < end ? (unsigned)masks[it + 1] : 0u;
        // Prefetch chunk it + 1 into the other buffer (free: the barrier closing the previous
        // iteration follows its last read). The single-tile kernel issues it after this
        // chunk's S product, so thread 0's copy setup overlaps the MMA instead of delaying its
        // warp's arrival at it: forward 0.9-4.4% faster in all 20 bench cells (D 64 1.4-2.8%,
        // D 128 0.9-4.4%; H100, mean of two alternating runs); the pair kernel keeps it first
        // (not measured there).
        auto prefetch = [&]() {
            if (threadIdx.x == 0 && it + 1 < end) {
                const uint32_t bar = bar_kv + 8 * (buf ^ 1);
                mbar_expect(bar, (kOneV ? 1 : 2) * kTileBytes + kBiasBytes);
                tma_tile<D>(sK + (buf ^ 1) * kTileBytes, &maps.k, next_kc * kTile, mat, bar);
                if constexpr (!kOneV) tma_tile<D>(sV + (buf ^ 1) * kTileBytes, &maps.v, next_kc * kTile, mat, bar);
                if constexpr (TBIAS) tma_box(sBias + (buf ^ 1) * kBlockBytes, &maps.bias, next_kc * kTile, (int)q0, mat, bar);
            }
        };
        if constexpr (PAIR) prefetch();
        mbar_wait(bar_kv + 8 * buf, ((it - begin) >> 1) & 1);
        // This warpgroup's half of the pair mask; 0 = the chunk is only the other tile's.
        const unsigned tmask = PAIR ? (mask >> (16 * wg)) & 0xFFFFu : mask;
        const unsigned bits = (tmask >> (4 * warp)) & 0xFu;  // this warp's 16 rows
        const uint32_t tK = sK + buf * kTileBytes;
        const uint32_t tV = sV + (kOneV ? 0 : buf) * kTileBytes;
        // S = Q K^T (the whole warpgroup, 64 x 64). Issued even when the chunk is only the
        // other tile's (then bits = colbits = 0: P = 0 and no PV): a wgmma under a branch makes
        // ptxas serialise all of them (C7520).
        fence_regs(s);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(s, desc_kmajor(sQ, kk), desc_kmajor(tK, kk), kk > 0);
        wg_commit();
        if constexpr (!PAIR) prefetch();
        wg_wait<0>();
        fence_regs(s);

        // The single-tile kernels run the softmax also for a warp with no layout block in the
        // chunk (bits 0: every score masked, P = 0, the state unchanged): skipping it under a
        // branch that zeroes P measured 1-6% slower on every bench cell (H100, session 9: ptxas
        // zeroed the fragments ahead of the branch). The pair kernel keeps the branch: half its chunks
        // can be the other tile's alone (bits 0 for a whole warpgroup), and there the softmax
        // cost it 10-32% (BigBird / BSLongformer block 64).
        uint32_t pf[4][4];  // P as A fragments, 4 k-slices of 16 keys
        if (PAIR && !bits) {
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) pf[ks][0] = pf[ks][1] = pf[ks][2] = pf[ks][3] = 0u;
        } else {
            const T* sbias = TBIAS ? reinterpret_cast<const T*>(smem_raw + (sBias + buf * kBlockBytes - raw)) : nullptr;
            ltd_attn::softmax_chunk<T, D, true, !TBIAS>(p, bias, kpm, kc, q0 + warp * 16, g, t, bits, s, m, l, o, pf, sbias);
        }

        // O += P V. The single-tile kernel skips 16-key slices outside the layout for all 64
        // rows (P is 0 there); the pair kernel cannot: its mask half depends on the warpgroup
        // index, a branch ptxas cannot prove uniform, and it would serialise every wgmma (C7520).
        const unsigned colbits = (tmask | (tmask >> 4) | (tmask >> 8) | (tmask >> 12)) & 0xFu;
        if constexpr (kOneV) mbar_wait(bar_v, (it - begin) & 1);
        fence_regs(o);
        wg_fence();
        // A whole chunk (every chunk of a block-64 / 128 layout) without a branch per product.
        wgmma_slices<4>(PAIR ? 0xFu : colbits, [&](int ks) {
            if constexpr (D == 64) Wgmma<T>::rs_n64(o, pf[ks], desc_mnmajor(tV, ks));
            else Wgmma<T>::rs_n128(o, pf[ks], desc_mnmajor(tV, ks));
        });
        fence_regs(o);
        __syncthreads();  // the buffer is overwritten by the next iteration's prefetch
        if constexpr (kOneV) {
            if (threadIdx.x == 0 && it + 1 < end) {
                mbar_expect(bar_v, kTileBytes);
                tma_tile<D>(sV, &maps.v, next_kc * kTile, mat, bar_v);
            }
        }
        kc = next_kc;
        next_kc = after_kc;
        mask = next_mask;
    }

    // Normalise and store. A row with no visible key gives 0 and lse = -inf.
    if (PAIR || work.slot >= 0) {
        ltd_attn::fwd_store<T, D>(p, work, qt, 64 * wg, warp, g, t, o, m, l);
    } else {
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
        if (threadIdx.x == 0) {
            tma_store_tile<D>(&maps.o, sQ, (int)q0, mat);
            bulk_commit();
            bulk_wait_read();  // the shared memory must outlive the copy's reads
        }
    }
}

}  // namespace

// The single-tile kernels are held to 4 (D 64) / 3 (D 128) CTAs per SM: without the bound
// ptxas takes 138 / 170 registers since the TMA epilogue and the tensor-map prefetches, one CTA
// per SM fewer. With it, 28 / 0 bytes spill (one reload per chunk at D 64; D 128 spilled 4
// bytes, outside the loop, until the prefetch moved after the S product). Measured on an H100
// against the kernels before the epilogue: D 64 0-2.5% faster, D 128 4-7% on BigBird /
// BSLongformer and 0-2.5% on Fixed. The epilogue without the bound was not tried on the GPU.
// Since softmax_chunk's tail runs per branch (kSplitTail) and for every warp (session 9) they
// need 117 / 149 registers, no spill, under the same bound.
// The D 64 pair kernel is held to 2 CTAs of 256 threads per SM (113 registers, no spill):
// 1.5-1.6x faster than at one CTA per SM (H100, every D 64 bench cell), still 10-43% slower than
// the single-tile kernel.
// The bias-tile kernels (TBIAS: 56 / 80 KB of shared memory) are held to 3 / 2 CTAs per SM.
#define LTD_SPARSE_FWD_SM90(NAME, T, D, PAIR, TBIAS) \
    extern "C" __global__ void __launch_bounds__(PAIR ? 2 * kThreads : kThreads, PAIR ? (D == 64 ? 2 : 1) : TBIAS ? (D == 64 ? 3 : 2) : D == 64 ? 4 : 3) \
        NAME(const LtdSparseAttnFwdParams p, const __grid_constant__ LtdSparseAttnTmaMaps maps) { sparse_attn_fwd_sm90<T, D, PAIR, TBIAS>(p, maps); }
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_bf16_d64, __nv_bfloat16, 64, false, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_bf16_d128, __nv_bfloat16, 128, false, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_f16_d64, __half, 64, false, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_f16_d128, __half, 128, false, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_pair_bf16_d64, __nv_bfloat16, 64, true, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_pair_bf16_d128, __nv_bfloat16, 128, true, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_pair_f16_d64, __half, 64, true, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_sm90_pair_f16_d128, __half, 128, true, false)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_bf16_d64, __nv_bfloat16, 64, false, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_bf16_d128, __nv_bfloat16, 128, false, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_f16_d64, __half, 64, false, true)
LTD_SPARSE_FWD_SM90(ltd_sparse_attn_fwd_bias_tma_sm90_f16_d128, __half, 128, false, true)

// =================================================================================================
// Backward on Hopper (`_bias_` variants: with bias / dbias). The same contract as
// `ltd_sparse_attn_bwd_*` in sparse_attn.cu (LtdSparseAttnBwdParams). One warpgroup per 64-key
// chunk: a CTA is one warpgroup on a work item of the transposed tables (a chunk, or a piece of
// a long one), or (`_pair_`, on the pair tables of the transpose) two warpgroups on chunks 2c
// and 2c + 1, which share every Q / dO / row-statistics load and add one dQ tile per query tile
// into dq_acc instead of two. Per query tile of the chunk's column, each warpgroup computes
//   S^T = K Q^T and dP^T = V dO^T      (wgmma, both operands K-major in shared memory)
//   P^T = exp2(S^T * scale_log2 + kpm - lse), dS^T = P^T (dP^T - dvec)   (registers)
//   dV += P^T dO, dK += dS^T Q         (wgmma, A from registers, B MN-major)
// and stages dS^T in shared memory ([key][query]); then
//   dQ += scale * dS K                 (wgmma with both operands MN-major, k = the CTA's 64 or
//                                       128 keys; in the pair kernel warpgroup w computes
//                                       columns [w D / 2, (w + 1) D / 2); staged in shared
//                                       memory, added into dq_acc by TMA reductions)
// =================================================================================================
namespace {

// TBIAS (`_bias_tma_` kernels; BIAS, single-chunk only): the bias tile of each (query tile,
// chunk) arrives by TMA with the tile's Q / dO (an 8 KB buffer per stage) instead of per-element
// global loads, which here are transposed (lanes step queries: L elements apart).
template <typename T, int D, bool BIAS, bool PAIR, bool TBIAS>
__device__ __forceinline__ void sparse_attn_bwd_sm90(const LtdSparseAttnBwdParams& p, const LtdSparseAttnTmaMaps& maps) {
    static_assert(!TBIAS || (BIAS && !PAIR), "bias tiles: the single-chunk bias kernel only");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    constexpr int kGroups = PAIR ? 2 : 1;  // warpgroups = 64-key chunks per CTA
    // The pair kernel defers each query tile's dQ reduction to the next tile's first CTA barrier
    // (one barrier per tile instead of two): its staged dQ then outlives the next tile, so it
    // keeps 3 Q / dO / statistics buffers and 2 dS^T buffers (194 KB at D 128, one CTA per SM
    // as before); the single-chunk kernel (2-3 CTAs per SM) keeps 2 and 1.
    constexpr bool kDefer = PAIR;
    constexpr int kStages = kDefer ? 3 : 2;
    constexpr int kDsBufs = kDefer ? 2 : 1;
    constexpr uint32_t kTileBytes = kTile * D * 2;
    constexpr uint32_t kStatsBytes = 2 * kTile * 4;
    const uint32_t sK = (raw + 1023u) & ~1023u;   // kGroups tiles (keys 64 w.. of the CTA)
    const uint32_t sV = sK + kGroups * kTileBytes;  // kGroups tiles
    const uint32_t sQ = sV + kGroups * kTileBytes;  // kStages buffers
    const uint32_t sdO = sQ + kStages * kTileBytes;  // kStages buffers
    // kDsBufs x kGroups x [64 keys][64 queries], 128-byte swizzle.
    const uint32_t sdS = sdO + kStages * kTileBytes;
    unsigned char* base_ptr = smem_raw + (sK - raw);
    // TBIAS: kStages bias tiles [64 queries][64 keys] (128-byte swizzle).
    const uint32_t sBias = sdS + kDsBufs * kGroups * kBlockBytes;
    constexpr uint32_t kBiasBytes = TBIAS ? kBlockBytes : 0;
    // Row statistics of the query tile, kStages buffers of [lse x 64 (natural log)][dvec x 64].
    const uint32_t sStats_addr = sBias + kStages * kBiasBytes;
    const float* sStats = reinterpret_cast<const float*>(base_ptr + (sStats_addr - sK));
    // Barriers after the row statistics: K + V, then Q + dO of each buffer.
    const uint32_t bar_kv = sStats_addr + kStages * kStatsBytes;
    const uint32_t bar_q = bar_kv + 8;  // + 8 * buffer

    if (threadIdx.x == 0) {
        prefetch_map(&maps.q);
        prefetch_map(&maps.k);
        prefetch_map(&maps.v);
        prefetch_map(&maps.dout);
        prefetch_map(&maps.dq_acc);
        prefetch_map(&maps.dk);
        prefetch_map(&maps.dv);
        if (TBIAS) prefetch_map(&maps.bias);
    }
    const ltd_attn::WorkItem work = ltd_attn::work_item(p);
    const int wg = PAIR ? threadIdx.x >> 7 : 0;  // this warpgroup's chunk: kGroups * tile + wg
    const int h = work.h, begin = work.begin, end = work.end, b = work.b;
    const int kc = kGroups * work.tile + wg;
    const int warp = (threadIdx.x & 127) >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const uint32_t tK = sK + wg * kTileBytes, tV = sV + wg * kTileBytes;  // this warpgroup's keys
    const long long seq = p.seq;
    const long long bh = (long long)b * p.heads + h;
    // This matrix's tiled statistics (the pre-pass's row_stats): tile qt at 2 * 64 * qt.
    const float* stats = reinterpret_cast<const float*>(p.row_stats) + bh * 2 * ltd_attn::stats_rows(seq);
    const int* rows = reinterpret_cast<const int*>(p.tile_rows);
    const int* masks = reinterpret_cast<const int*>(p.tile_col_masks);
    const float* kpm = p.kpm ? reinterpret_cast<const float*>(p.kpm) + (long long)b * seq : nullptr;
    // BIAS: compiled in only for calls with a bias or dbias (it costs registers).
    const T* bias = BIAS && !TBIAS && p.bias ? reinterpret_cast<const T*>(p.bias) + bh * seq * seq : nullptr;
    T* dbias = BIAS && p.dbias ? reinterpret_cast<T*>(p.dbias) + bh * seq * seq : nullptr;
    const long long k0 = (long long)kc * kTile;
    const long long key_g[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
    constexpr float kLog2e = 1.4426950408889634f;
    float kpm_l2[2] = {0.f, 0.f};
    if (kpm) {
#pragma unroll
        for (int r = 0; r < 2; ++r) kpm_l2[r] = key_g[r] < seq ? kpm[key_g[r]] * kLog2e : -INFINITY;
    }
    // Thread 0: query tile qt's Q and dO tiles and its lse / dvec (one 512-byte bulk copy; the
    // padding rows past the end are 0, and no key sees them) into buffer `buf`, on its barrier.
    // Copying the statistics with the tiles, not by per-thread cp.async, means no CTA barrier
    // has to publish them: waiting on the barrier's phase makes all of it visible.
    const int mat = (int)bh;
    auto load_query_tile = [&](int buf, int qt) {
        const uint32_t bar = bar_q + 8 * buf;
        mbar_expect(bar, 2 * kTileBytes + kStatsBytes + kBiasBytes);
        tma_tile<D>(sQ + buf * kTileBytes, &maps.q, qt * kTile, mat, bar);
        tma_tile<D>(sdO + buf * kTileBytes, &maps.dout, qt * kTile, mat, bar);
        bulk_copy(sStats_addr + buf * kStatsBytes, stats + 2 * kTile * qt, kStatsBytes, bar);
        if constexpr (TBIAS) tma_box(sBias + buf * kBlockBytes, &maps.bias, (int)k0, qt * kTile, mat, bar);
    };
    // The query-tile table is read one iteration ahead in registers: qt / mask of tile `it`,
    // next_qt of tile it + 1.
    int qt = work.first;
    unsigned mask = (unsigned)work.first_mask;
    int next_qt = work.second;

    mbar_init_all<1 + kStages>(bar_kv);
    if (threadIdx.x == 0) {
        mbar_expect(bar_kv, 2 * kGroups * kTileBytes);
#pragma unroll
        for (int w = 0; w < kGroups; ++w) {
            const int row0 = (kGroups * work.tile + w) * kTile;
            tma_tile<D>(sK + w * kTileBytes, &maps.k, row0, mat, bar_kv);
            tma_tile<D>(sV + w * kTileBytes, &maps.v, row0, mat, bar_kv);
        }
        if (begin < end) load_query_tile(0, qt);
    }
    mbar_wait(bar_kv, 0);

    float dk[D / 2], dv[D / 2];  // wgmma layout: rows = keys 16w + g (+8), columns = d
#pragma unroll
    for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.f;
    float st[32], dpt[32];  // S^T and dP^T: rows = keys, columns = queries 8j + 2t (+1)
#pragma unroll
    for (int i = 0; i < 32; ++i) st[i] = dpt[i] = 0.f;
    // dQ columns of this warpgroup: [c0, c0 + kN).
    constexpr int kN = D / kGroups;
    const int c0 = wg * kN;
    // The staged dQ of a tile: D / 32 boxes of [64 rows][32 cols] f32 (8 KB, 128-byte swizzle),
    // the first D / 64 in the tile's Q buffer and the rest in its dO buffer.
    auto box_base = [&](int buf, int box) {
        return box < D / 64 ? sQ + buf * kTileBytes + box * kBlockBytes : sdO + buf * kTileBytes + (box - D / 64) * kBlockBytes;
    };
    // Thread 0: dq_acc rows q0.. += the dQ staged in buffer `buf` (TMA reductions, one bulk group).
    auto reduce_dq = [&](int buf, long long q0) {
#pragma unroll
        for (int box = 0; box < D / 32; ++box) tma_reduce_add_box(&maps.dq_acc, box_base(buf, box), 32 * box, (int)q0, mat);
        bulk_commit();
    };
    long long staged_q0 = 0;  // kDefer: the previous tile's rows, whose dQ is staged

    for (int it = begin; it < end; ++it) {
        const unsigned step = it - begin;
        const int buf = step % kStages;
        const int after_qt = it + 2 < end ? rows[it + 2] : 0;  // for the next iteration
        const unsigned next_mask = it + 1 < end ? (unsigned)masks[it + 1] : 0u;
        mbar_wait(bar_q + 8 * buf, (step / kStages) & 1);
        const long long q0 = (long long)qt * kTile;
        const uint32_t tQ = sQ + buf * kTileBytes;
        const uint32_t tdO = sdO + buf * kTileBytes;
        const uint32_t tdS = sdS + (step % kDsBufs) * kGroups * kBlockBytes;
        T* sdS_ptr = reinterpret_cast<T*>(base_ptr + (tdS - sK) + wg * kBlockBytes);
        // This warpgroup's half of a pair mask (0 where the tile is only the other chunk's).
        const unsigned m = PAIR ? (mask >> (16 * wg)) & 0xFFFFu : mask;
        // This warp's keys are sub-block `warp`; query sub-block i is bit 4i + warp.
        unsigned qbits = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) qbits |= ((m >> (4 * i + warp)) & 1u) << i;
        // Query slices active for some key of the CTA, and key slices active for some query
        // (k-steps of 16 keys over the CTA's 64 or 128 keys). Both skip wgmmas, so they must be
        // uniform over the CTA: computed from the whole mask, never from the warpgroup index
        // (ptxas serialises every wgmma under a branch it cannot prove uniform, C7520).
        const unsigned mu = PAIR ? (mask | (mask >> 16)) & 0xFFFFu : mask;
        unsigned qany = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) qany |= (((mu >> (4 * i)) & 0xFu) != 0u ? 1u : 0u) << i;
        auto key_slices = [](unsigned x) { return (x | (x >> 4) | (x >> 8) | (x >> 12)) & 0xFu; };
        const unsigned kany = PAIR ? key_slices(mask & 0xFFFFu) | (key_slices(mask >> 16) << 4) : key_slices(mask);

        fence_regs(st);
        fence_regs(dpt);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(st, desc_kmajor(tK, kk), desc_kmajor(tQ, kk), kk > 0);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) Wgmma<T>::ss_n64(dpt, desc_kmajor(tV, kk), desc_kmajor(tdO, kk), kk > 0);
        wg_commit();
        // Prefetch query tile it + 1 into buffer (step + 1) % kStages while the products run, so
        // thread 0's wait and copy setup do not hold the other warps. Its last products ran
        // before the previous tile's barriers (single kernel: the other buffer, tile it - 1;
        // kDefer: tile it - 2, whose dQ reduction was issued at tile it - 1's first barrier).
        if (threadIdx.x == 0 && it + 1 < end) {
            bulk_wait_read();  // the dQ reduction out of that buffer has read it
            load_query_tile((step + 1) % kStages, next_qt);
        }
        wg_wait<0>();
        fence_regs(st);
        fence_regs(dpt);

        // Visibility with 32-bit offsets in the tile: query offset ql sees this thread's key r
        // when ql < q_left (inside the sequence) and ql >= q_min[r] (causal), and the key exists.
        const int q_left = (int)min((long long)kTile, seq - q0);
        int q_min[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const long long d = key_g[r] - q0;
            q_min[r] = key_g[r] >= seq ? kTile : (p.causal ? (int)max(0ll, min((long long)kTile, d)) : 0);
        }
        uint32_t pf[4][4], dsf[4][4];  // P^T and dS^T as A fragments (m = keys, k = queries)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const bool on = (qbits >> (j >> 1)) & 1u;
            float pv[4], dsv[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int ql = 8 * j + 2 * t + (e & 1);
                const float lse_q = sStats[buf * 2 * kTile + ql];
                const bool visible = on && ql < q_left && ql >= q_min[e >> 1] && lse_q != -INFINITY;
                float logit = fmaf(-lse_q, kLog2e, fmaf(st[4 * j + e], p.scale_log2, kpm_l2[e >> 1]));
                if (BIAS && bias && visible) logit += (float)bias[(q0 + ql) * seq + key_g[e >> 1]] * kLog2e;
                if (TBIAS && visible) {
                    // Query row ql, key kl of the tile: the 8 keys of a 16-byte chunk per row,
                    // the chunk XOR-swizzled by ql % 8 (4 rows per load: conflict-free).
                    const int kl = warp * 16 + g + 8 * (e >> 1);
                    const T* sb = reinterpret_cast<const T*>(base_ptr + (sBias + buf * kBlockBytes - sK));
                    logit += (float)sb[ql * 64 + (((kl >> 3) ^ (ql & 7)) << 3) + (kl & 7)] * kLog2e;
                }
                const float pe = visible ? ltd_attn::fast_exp2(logit) : 0.f;
                pv[e] = pe;
                dsv[e] = pe * (dpt[4 * j + e] - sStats[buf * 2 * kTile + kTile + ql]);
                if (BIAS && dbias && visible) dbias[(q0 + ql) * seq + key_g[e >> 1]] = (T)dsv[e];
            }
            pf[j >> 1][(j & 1) * 2 + 0] = ltd_attn::pack2<T>(pv[0], pv[1]);
            pf[j >> 1][(j & 1) * 2 + 1] = ltd_attn::pack2<T>(pv[2], pv[3]);
            dsf[j >> 1][(j & 1) * 2 + 0] = ltd_attn::pack2<T>(dsv[0], dsv[1]);
            dsf[j >> 1][(j & 1) * 2 + 1] = ltd_attn::pack2<T>(dsv[2], dsv[3]);
            // dS^T to shared memory, [key][query] (rows of 64 queries = 128 bytes, swizzled).
            const int kl = warp * 16 + g, ql = 8 * j + 2 * t;
            *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl, ql)) = dsf[j >> 1][(j & 1) * 2 + 0];
            *reinterpret_cast<uint32_t*>(sdS_ptr + sw128<kTile>(kl + 8, ql)) = dsf[j >> 1][(j & 1) * 2 + 1];
        }

        // dV += P^T dO, dK += dS^T Q (k = queries; slices with no active query are 0).
        fence_regs(dv);
        fence_regs(dk);
        wg_fence();
        // With the dQ product below, forward + backward 2.6-3.0% faster at BigBird b128 D 128
        // (pair kernel), 1.3-2.3% slower on Fixed block 16 (H200, session 10).
        wgmma_slices<4>(qany, [&](int ks) {
            if constexpr (D == 64) {
                Wgmma<T>::rs_n64(dv, pf[ks], desc_mnmajor(tdO, ks));
                Wgmma<T>::rs_n64(dk, dsf[ks], desc_mnmajor(tQ, ks));
            } else {
                Wgmma<T>::rs_n128(dv, pf[ks], desc_mnmajor(tdO, ks));
                Wgmma<T>::rs_n128(dk, dsf[ks], desc_mnmajor(tQ, ks));
            }
        });
        fence_regs(dv);
        fence_regs(dk);

        // dQ (64 queries x kN columns from c0) = dS K: A = dS from sdS (MN-major: queries
        // contiguous), B = K (MN-major: d contiguous; column c0 is (c0 / 64) blocks and
        // (c0 % 64) * 2 bytes in, inside the 128-byte swizzle atom, which the hardware applies to
        // the address bits), k = the CTA's keys; slices with no active key are skipped.
        fence_proxy_async();  // the dS^T stores above are generic-proxy writes
        __syncthreads();      // and every warpgroup's dS^T is read below
        // kDefer: every thread staged (and fenced) the previous tile's dQ before this barrier.
        if (kDefer && threadIdx.x == 0 && step > 0) reduce_dq((step - 1) % kStages, staged_q0);
        float dq[kN / 2];
#pragma unroll
        for (int i = 0; i < kN / 2; ++i) dq[i] = 0.f;
        const uint32_t kcol = (c0 >> 6) * kBlockBytes + (c0 & 63) * 2;
        fence_regs(dq);
        wg_fence();
        wgmma_slices<4 * kGroups>(kany, [&](int ks) {
            ss_tt<T, kN>(dq, desc_mnmajor(tdS + (ks >> 2) * kBlockBytes, ks & 3),
                         desc_mnmajor(sK + (ks >> 2) * kTileBytes + kcol, ks & 3), 1);
        });
        fence_regs(dq);
        // dq_acc += scale * dQ by TMA reductions, out of this tile's Q and dO buffers (free:
        // every warpgroup's dK and dV retired before the barrier above); thread 0 issues the
        // reductions (kDefer: at the next tile's first barrier, or after the loop) and, before
        // the next prefetch into these buffers, waits until they have been read.
#pragma unroll
        for (int i = 0; i < kN / 8; ++i) {
            const uint32_t base = box_base(buf, (c0 >> 5) + (i >> 2));  // columns c0 + 32 (i / 4) ..
            const int chunk = 2 * (i & 3) + (t >> 1);  // 16-byte chunk of the 128-byte row
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int row = warp * 16 + g + 8 * r;  // row % 8 == g
                const uint32_t addr = base + row * 128 + ((chunk ^ g) << 4) + (t & 1) * 8;
                asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(dq[4 * i + 2 * r] * p.scale),
                             "f"(dq[4 * i + 2 * r + 1] * p.scale)
                             : "memory");
            }
        }
        fence_proxy_async();  // generic stores, read by the TMA (async proxy)
        if constexpr (kDefer) {
            // The next tile writes the other dS^T buffer and another Q / dO buffer; a
            // warpgroup can be at most that far ahead (the next tile's barrier waits for both).
            staged_q0 = q0;
        } else {
            __syncthreads();  // and: the buffers and sdS are overwritten next iteration
            if (threadIdx.x == 0) reduce_dq(buf, q0);
        }
        qt = next_qt;
        next_qt = after_qt;
        mask = next_mask;
    }

    if (kDefer && begin < end) {
        // Both warpgroups staged the last tile's dQ, and their last dQ products (which read
        // both K tiles) have retired before a whole column's dK / dV is staged into them below.
        __syncthreads();
        if (threadIdx.x == 0) reduce_dq((end - 1 - begin) % kStages, staged_q0);
    }
    if (threadIdx.x == 0) bulk_wait_all();  // the shared memory stays until the reductions read it
    if (work.slot >= 0) {
        // A piece of a split column: warpgroup w's partial sums go to slot + w num_slots / 2
        // (the pair plan's slots come in one bank per warpgroup).
        ltd_attn::WorkItem mine = work;
        mine.tile = kc;
        mine.slot = work.slot + wg * (int)(p.num_slots / 2);
        ltd_attn::bwd_store<T, D>(p, mine, warp, g, t, dk, dv);
    } else {
        // A whole column: dK (scaled) and dV leave through the K and V tiles (free: the last
        // products have retired) by TMA stores, 16-byte coalesced; keys past seq are skipped.
        const float fk[2] = {p.scale, p.scale}, fv[2] = {1.f, 1.f};
        stage_acc<T, D>(tK, dk, fk, warp, g, t);
        stage_acc<T, D>(tV, dv, fv, warp, g, t);
        fence_proxy_async();
        __syncthreads();
        if (threadIdx.x == 0) {
#pragma unroll
            for (int w = 0; w < kGroups; ++w) {
                const int row0 = (kGroups * work.tile + w) * kTile;
                tma_store_tile<D>(&maps.dk, sK + w * kTileBytes, row0, mat);
                tma_store_tile<D>(&maps.dv, sV + w * kTileBytes, row0, mat);
            }
            bulk_commit();
            bulk_wait_read();  // the shared memory must outlive the copies' reads
        }
    }
}

}  // namespace

// The pair kernels run one CTA of 256 threads per SM (190-237 registers; D 128: 194 KB of shared
// memory); the single ones 3 (D 64) or 1-2 CTAs of 128 threads.
#define LTD_SPARSE_BWD_SM90(NAME, T, D, BIAS, PAIR, TBIAS) \
    extern "C" __global__ void __launch_bounds__(PAIR ? 2 * kThreads : kThreads, PAIR || !(D == 64 && !BIAS) ? 1 : 3) \
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
