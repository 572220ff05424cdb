// Hopper primitives of the sm_90 attention kernels (sparse_attn_sm90.cu): warpgroup MMAs
// (wgmma.mma_async) and their shared-memory descriptors, the 128-byte-swizzled tile layout they
// and the tensor memory accelerator (TMA) share, TMA copies, reductions and stores, and mbarriers.
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "attn/common/attn_common.cuh"

namespace ltd_sm90 {

using ltd_attn::kTile;
using ltd_attn::smem_addr;

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
// warpgroup arrive per product and closes with a dummy product; committing and waiting inside
// each path keeps that dummy out of the whole-slices one (docs/kernels.md, "Which variant runs
// when").
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
// aligned); in a block each row is 128 bytes, swizzled (attn/common/swizzle.cuh): exactly the
// canonical 128-byte-swizzle layout wgmma reads (K-major for Q and K, MN-major for V).
constexpr uint32_t kBlockBytes = kTile * 64 * 2;
template <int D>
__device__ __forceinline__ uint32_t sw128(int row, int col) {  // element offset
    return (col >> 6) * (kTile * 64) + ltd_attn::swizzled<64>(row, col & 63);
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
// Thread 0 initialises one barrier whose phases complete after `arrivals` arrivals (no CTA
// barrier: the caller publishes it with mbar_init_fence() and one of its own).
__device__ __forceinline__ void mbar_init(uint32_t bar, unsigned arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// Thread 0 initialises `count` consecutive barriers (8 bytes each, one arrival per phase) at
// `first`; the CTA barrier after it publishes them. Every thread of the CTA must call it.
template <int count>
__device__ __forceinline__ void mbar_init_all(uint32_t first) {
    if (threadIdx.x == 0) {
#pragma unroll
        for (int i = 0; i < count; ++i) mbar_init(first + 8 * i, 1);
        mbar_init_fence();
    }
    __syncthreads();
}
// This thread's arrival on a barrier counting threads (mbar_init's `arrivals`).
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
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

}  // namespace ltd_sm90
