// Shared by the Hopper attention kernels of sparse_attn_sm90.cu (fwd_sm90.cuh, bwd_sm90.cuh):
// the headers they build on, the shared-memory alignment and barrier room, and the K / V
// chunk copy that the gathered forward and the gathered-set backward both use.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "ltd_kernels.h"
#include "attn/common/attn_common.cuh"
#include "attn/common/bwd_probs.cuh"
#include "attn/sm90/hopper.cuh"

namespace {

using namespace ltd_sm90;
using ltd_attn::by_head_dim;
using ltd_attn::kLog2e;
using ltd_attn::kThreads;
using ltd_attn::kTile;

// The sm_90 kernels' shared memory starts at the first 1 KB boundary of the dynamic shared
// memory (swizzled tiles are 1 KB aligned): the launcher's allocation is the struct plus this.
constexpr unsigned kAlignSlack = 1024;
// Room for the mbarriers at the end of every sm_90 kernel's shared memory.
constexpr int kBarrierSlots = 8;

// Thread 0: K or V of table entry `kc` into `tile`, completing on `bar`: a chunk as 64-row
// boxes; with GATHER a gathered chunk (kc < 0) as four 16-row boxes through `map16`, slice
// base[j] into rows 16j.. (2048 bytes apart: whole 8-row swizzle atoms, so the 128-byte swizzle
// places them as a 64-row box would).
template <int D, bool GATHER>
__device__ __forceinline__ void fwd_sm90_load_chunk(uint32_t tile, const LtdTensorMap* map, const LtdTensorMap* map16, int kc, int4 base,
                                                    int mat, uint32_t bar) {
    if (!GATHER || kc >= 0) {
        tma_tile<D>(tile, map, kc * kTile, mat, bar);
    } else {
        const int rows[4] = {base.x, base.y, base.z, base.w};
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int cb = 0; cb < D / 64; ++cb) tma_box(tile + cb * kBlockBytes + j * 16 * 128, map16, 64 * cb, 16 * rows[j], mat, bar);
    }
}

}  // namespace
