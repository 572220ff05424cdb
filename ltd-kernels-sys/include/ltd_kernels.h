/*
 * ltd_kernels.h: the parameter structs that the ltd CUDA kernels take *by value*.
 *
 * Every kernel has the signature `extern "C" __global__ void name(const Params p)`: one struct,
 * passed by value (CUDA copies it to constant memory at launch), so adding a field never changes
 * the number of launch arguments and the Rust side passes exactly one `&Params`.
 *
 * Rules for this header (bindgen turns it into src/bindings.rs, which is committed):
 *   - only fixed-width C types; device pointers are `ltd_devptr_t` (a CUdeviceptr, 64-bit);
 *   - sizes, strides and offsets are 64-bit signed (`long long`), in *elements* unless the
 *     field name says `_bytes`;
 *   - no pointers to host memory, no enums (use int32 codes documented here).
 *
 * Regenerate the Rust bindings with:  cargo build -p ltd-kernels-sys --features bindgen
 */
#ifndef LTD_KERNELS_H
#define LTD_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/** A device address (the CUDA driver's CUdeviceptr). */
typedef unsigned long long ltd_devptr_t;

/**
 * Copies a strided 2-D view `src[i * src_row_stride + j * src_col_stride]` (rows x cols) into
 * `dst[i * dst_row_stride + j]`. Element width is fixed by the kernel name (`_u16`, `_u32`), so the
 * copy is exact for every dtype of that width. Kernels: `ltd_strided_copy_2d_u16`,
 * `ltd_strided_copy_2d_u32`. Any grid works (grid-stride loop over rows * cols, 64-bit indices).
 */
typedef struct LtdStridedCopy2dParams {
    ltd_devptr_t src;
    ltd_devptr_t dst;
    long long rows;
    long long cols;
    long long src_row_stride;
    long long src_col_stride;
    long long dst_row_stride;
} LtdStridedCopy2dParams;

/* ---------------------------------------------------------------------------------------------
 * Random-LTD (kernels/random_ltd.cu)
 * ------------------------------------------------------------------------------------------- */

/**
 * Keyed-ChaCha token sampler. One thread block per (layer, row): grid.x =
 * layers * batch. For row (l, b), key[i] is word i of the ChaCha8 stream with 32-byte key
 * (seed_le ++ step_le ++ zeros), stream l*batch + b; the kernel keeps the `reserved` positions
 * with the smallest (key[i], i) pairs and writes them ascending to
 * out[(l*batch + b)*reserved + k] (int32). Kernel `ltd_sample_tokens` (keys recomputed on the
 * fly) or `ltd_sample_tokens_smem` (keys cached in dynamic shared memory: needs seq * 4 bytes),
 * blockDim.x = 256; the `_wide` variants take blockDim.x = 512 (used for seq above
 * LTD_SAMPLER_WIDE_MIN_SEQ). 1 <= reserved <= seq < 2^31.
 */
#define LTD_SAMPLER_WIDE_MIN_SEQ 4096
typedef struct LtdSampleParams {
    ltd_devptr_t out;
    unsigned long long seed;
    unsigned long long step;
    long long layers;
    long long batch;
    long long seq;
    long long reserved;
} LtdSampleParams;

/**
 * Row copies through an index map, for hidden states whose channel dimension is contiguous.
 * A "row" is the C channels of one (batch, position) token; row (b, s) of a tensor starts at
 * b * batch_stride + s * seq_stride (in elements; [B,S,C] and [S,B,C] only differ in strides).
 * idx is int32 [batch, reserved] with row stride idx_batch_stride.
 *   mode LTD_ROWS_GATHER:  dst(b, k)          = src(b, idx[b,k])      (k < reserved)
 *   mode LTD_ROWS_SCATTER: dst(b, idx[b,k])   = src(b, k)             (in place into dst)
 * Rows whose index is outside [0, seq) are skipped (the host validates indices; this guard only
 * makes an invalid index unable to touch memory outside the tensors).
 * Kernels `ltd_index_rows_v16` (16-byte vectors: every base address and row offset in bytes
 * a multiple of 16, the row length in bytes a multiple of 16), `ltd_index_rows_b4`, `ltd_index_rows_b2`
 * (4- and 2-byte words). Launch: blockDim.x = 128, grid.x = ceil(batch * reserved / rows_per_block)
 * with rows_per_block = 4 (one warp per row).
 */
#define LTD_ROWS_GATHER 0
#define LTD_ROWS_SCATTER 1
typedef struct LtdIndexRowsParams {
    ltd_devptr_t src;
    ltd_devptr_t dst;
    ltd_devptr_t idx;
    int mode;
    int pad_;
    long long batch;
    long long seq;
    long long reserved;
    long long row_bytes;
    long long src_batch_stride_bytes;
    long long src_seq_stride_bytes;
    long long dst_batch_stride_bytes;
    long long dst_seq_stride_bytes;
    long long idx_batch_stride;
} LtdIndexRowsParams;

/**
 * Out-of-place route: y(b, s) = part(b, k) if idx[b, k] == s for some k, else h(b, s); every row
 * of y written exactly once, every source row read once. idx rows must be sorted ascending
 * (binary search). Strides in bytes; the `part` tensor has strides part_*. Kernels
 * `ltd_route_rows_v16`, `ltd_route_rows_b4`, `ltd_route_rows_b2`; launch as
 * LtdIndexRowsParams with batch * seq rows.
 */
typedef struct LtdRouteRowsParams {
    ltd_devptr_t h;
    ltd_devptr_t part;
    ltd_devptr_t y;
    ltd_devptr_t idx;
    long long batch;
    long long seq;
    long long reserved;
    long long row_bytes;
    long long h_batch_stride_bytes;
    long long h_seq_stride_bytes;
    long long part_batch_stride_bytes;
    long long part_seq_stride_bytes;
    long long y_batch_stride_bytes;
    long long y_seq_stride_bytes;
    long long idx_batch_stride;
} LtdRouteRowsParams;

/**
 * Mask gather for all layers in one launch:
 *   `out[((l*batch + b)*out_rows + i)*reserved + j] =`
 *       `mask[b*mask_batch_stride + row(i)*mask_row_stride + idx[l,b,j]*mask_col_stride]`
 * with `row(i) = idx[l,b,i]` when gather_rows != 0 (a `[B,1,S,S]` mask, out_rows == reserved)
 * and `row(i) = 0` when gather_rows == 0 (a `[B,1,1,S]` key-padding mask, out_rows == 1). idx is
 * int32 contiguous `[layers, batch, reserved]`; entries whose index is outside [0, seq) are left
 * unwritten (guard only; the host validates). Element width by kernel name: `ltd_mask_gather_b1`,
 * `_b2`, `_b4`.
 * Launch: grid (ceil(reserved / 128) , out_rows, layers * batch), blockDim.x = 128.
 */
typedef struct LtdMaskGatherParams {
    ltd_devptr_t mask;
    ltd_devptr_t idx;
    ltd_devptr_t out;
    long long layers;
    long long batch;
    long long seq;
    long long reserved;
    long long out_rows;
    long long gather_rows;
    long long mask_batch_stride;
    long long mask_row_stride;
    long long mask_col_stride;
} LtdMaskGatherParams;

/* ---------------------------------------------------------------------------------------------
 * Block-sparse attention (kernels/attn/: sm80/ mma.sync kernels for compute capability 8.0+,
 * sm90/ wgmma + TMA kernels for 9.0 only, common/ the auxiliary kernels both paths launch:
 * the forward combine, the backward pre-pass, the dk/dv combine and the dq conversion).
 *
 * Launch configuration: the one definition of every attention kernel's block size and dynamic
 * shared memory. Each kernel static_asserts its own shared-memory struct against its constant
 * and the launchers read the constants through the bindings (docs/kernels.md, "Shared-memory
 * maps"). 64 is not a setting and appears as a literal: query tiles and key chunks are 64 rows,
 * and the 16-bit sub-block masks are 4 x 4 blocks of 16 (docs/kernels.md, "Tiles and sub-block
 * masks"). A `_SMEM_D64` / `_SMEM_D128` constant is the dynamic shared memory, in bytes, of the
 * kernels of that name prefix at head dim 64 / 128, for either element type (bf16 and f16 are
 * both 2 bytes).
 * ------------------------------------------------------------------------------------------- */

/** Threads per CTA of every attention kernel except the pair backward and the dq conversion. */
#define LTD_SPARSE_ATTN_THREADS 128
/** Threads per CTA of `ltd_sparse_attn_bwd_sm90_pair_*`: one warpgroup per key chunk of the pair. */
#define LTD_SPARSE_ATTN_BWD_SM90_PAIR_THREADS 256
/** Threads per CTA of `ltd_sparse_attn_bwd_sm90_ws_*`: a producer and a consumer warpgroup. */
#define LTD_SPARSE_ATTN_BWD_SM90_WS_THREADS 256
/** Threads per CTA of `ltd_sparse_attn_bwd_sm90_ws_pair_*`: a producer and a consumer warpgroup per chunk. */
#define LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_THREADS 384
/** Threads per CTA of `ltd_sparse_attn_fwd_sm90_pair_*`: one warpgroup per query tile of the pair. */
#define LTD_SPARSE_ATTN_FWD_SM90_PAIR_THREADS 256
/** Rows per CTA of the combine kernels and the backward pre-pass: one warp per row. */
#define LTD_SPARSE_ATTN_ROWS_PER_CTA 4
/** Threads per CTA of `ltd_sparse_attn_bwd_dq_*`. */
#define LTD_SPARSE_ATTN_BWD_DQ_THREADS 256
/** Elements of dq each thread of `ltd_sparse_attn_bwd_dq_*` converts per grid step. */
#define LTD_SPARSE_ATTN_BWD_DQ_ELEMS_PER_THREAD 4
/**
 * Rows per [B*H] matrix of the tiled row statistics (row_stats) are L rounded up to this: a
 * multiple of every layout block (16 to 128), so every query tile of the tables has its pair.
 */
#define LTD_SPARSE_ATTN_STATS_ROWS_ALIGN 128
/**
 * Dynamic shared memory the sm90 kernels add to their tiles: 1 KB of slack to align the swizzled
 * tiles to 1 KB, and 64 bytes for up to 8 mbarriers.
 */
#define LTD_SPARSE_ATTN_SM90_SMEM_EXTRA (1024 + 64)

/** `ltd_sparse_attn_fwd_*`: Q, two K and two V tiles of 64 x D. */
#define LTD_SPARSE_ATTN_FWD_SMEM_D64 (5 * 64 * 64 * 2)
#define LTD_SPARSE_ATTN_FWD_SMEM_D128 (5 * 64 * 128 * 2)
/** `ltd_sparse_attn_fwd_bias_tiles_*`: the forward's tiles and two 64 x 64 bias tiles. */
#define LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D64 (LTD_SPARSE_ATTN_FWD_SMEM_D64 + 2 * 64 * 64 * 2)
#define LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D128 (LTD_SPARSE_ATTN_FWD_SMEM_D128 + 2 * 64 * 64 * 2)
/** `ltd_sparse_attn_fwd_sm90_*`: Q, two K and two V tiles (one V tile at D 128), the extra. */
#define LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64 (5 * 64 * 64 * 2 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
#define LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128 (4 * 64 * 128 * 2 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
/**
 * `ltd_sparse_attn_fwd_gather_sm90_*`: the sm90 forward's layout (a gathered chunk's four 16-row
 * pieces land in the same K / V tiles).
 */
#define LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D64 LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64
#define LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D128 LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128
/** `ltd_sparse_attn_fwd_sm90_pair_*`: a Q tile per query tile of the pair, two K and two V tiles, the extra. */
#define LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D64 (6 * 64 * 64 * 2 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
#define LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D128 (6 * 64 * 128 * 2 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
/** `ltd_sparse_attn_fwd_bias_tma_sm90_*`: the sm90 forward's and two 64 x 64 bias tiles. */
#define LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D64 (LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64 + 2 * 64 * 64 * 2)
#define LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D128 (LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128 + 2 * 64 * 64 * 2)
/**
 * `ltd_sparse_attn_bwd_*` and `ltd_sparse_attn_bwd_bias_*`: a K and a V tile of 64 x D, two
 * stages of a Q and a dO tile, a 64 x 64 dS tile, two stages of 64 lse and 64 dvec floats.
 */
#define LTD_SPARSE_ATTN_BWD_SMEM_D64 ((6 * 64 * 64 + 64 * 64) * 2 + 2 * 2 * 64 * 4)
#define LTD_SPARSE_ATTN_BWD_SMEM_D128 ((6 * 64 * 128 + 64 * 64) * 2 + 2 * 2 * 64 * 4)
/** `ltd_sparse_attn_bwd_bias_tiles_*`: the backward's and a 64 x 64 bias tile per stage. */
#define LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D64 (LTD_SPARSE_ATTN_BWD_SMEM_D64 + 2 * 64 * 64 * 2)
#define LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D128 (LTD_SPARSE_ATTN_BWD_SMEM_D128 + 2 * 64 * 64 * 2)
/** `ltd_sparse_attn_bwd_sm90_*` and `ltd_sparse_attn_bwd_bias_sm90_*`: the backward's and the extra. */
#define LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64 (LTD_SPARSE_ATTN_BWD_SMEM_D64 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
#define LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128 (LTD_SPARSE_ATTN_BWD_SMEM_D128 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
/** `ltd_sparse_attn_bwd_bias_tma_sm90_*`: the sm90 backward's and a 64 x 64 bias tile per stage. */
#define LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D64 (LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64 + 2 * 64 * 64 * 2)
#define LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D128 (LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128 + 2 * 64 * 64 * 2)
/**
 * `ltd_sparse_attn_bwd_sm90_pair_*`: per chunk of the pair a K and a V tile; three stages of a Q
 * and a dO tile and 2 x 64 statistics floats; two dS buffers of a 64 x 64 tile per chunk; the extra.
 */
#define LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64 \
    ((10 * 64 * 64 + 4 * 64 * 64) * 2 + 3 * 2 * 64 * 4 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)
#define LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128 \
    ((10 * 64 * 128 + 4 * 64 * 64) * 2 + 3 * 2 * 64 * 4 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA)

/**
 * `ltd_sparse_attn_bwd_sm90_ws_*`: a K and a V tile; three stages (D 64) or two (D 128) of a Q and
 * a dO tile and 2 x 64 statistics floats; a 64 x 64 dS tile; the extra; each stage's table entry
 * (two int32).
 */
#define LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D64 \
    ((8 * 64 * 64 + 64 * 64) * 2 + 3 * 2 * 64 * 4 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA + 3 * 8)
#define LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D128 \
    ((6 * 64 * 128 + 64 * 64) * 2 + 2 * 2 * 64 * 4 + LTD_SPARSE_ATTN_SM90_SMEM_EXTRA + 2 * 8)
/** `ltd_sparse_attn_bwd_sm90_ws_pair_*`: the pair backward's and each of its three stages' table entry. */
#define LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D64 (LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64 + 3 * 8)
#define LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D128 (LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128 + 3 * 8)
/**
 * An encoded CUDA tensor map (the driver's CUtensorMap: 128 opaque bytes, 64-byte aligned),
 * built on the host by cuTensorMapEncodeTiled.
 */
typedef struct __attribute__((aligned(64))) LtdTensorMap {
    unsigned char opaque[128];
} LtdTensorMap;

/**
 * Tensor maps of the Hopper attention kernels, passed by value as their second parameter
 * (`__grid_constant__`). q, k, v, dout, o, dk, dv each describe one [B, H, L, D] tensor of
 * 2-byte elements as a 3-D array: dimensions {D, L, B * H} with row stride D * 2 and matrix stride
 * L * D * 2 bytes; box {64, 64, 1}; 128-byte swizzle; out-of-bounds elements filled with zeros
 * on loads and skipped on stores. dq_acc describes the backward's f32 [B, H, L, D] accumulator
 * the same way (strides D * 4 and L * D * 4 bytes) with box {32, 64, 1} and 128-byte swizzle;
 * the backward adds into it with TMA reductions. The forward reads q, k, v and writes whole
 * rows of o (dout, dq_acc, dk, dv may repeat any map); the backward reads q, k, v, dout, adds
 * into dq_acc and writes whole columns of dk and dv (o may repeat any map). bias describes the
 * additive bias [B, H, L, L] (2-byte elements; dimensions {L, L, B * H}, row stride L * 2, so L
 * must be a multiple of 8; box {64, 64, 1}; 128-byte swizzle) for the `_bias_tma_` Hopper
 * kernels, which read it one [64 query][64 key] tile per (query tile, key chunk); the other
 * kernels never touch it (any map may be repeated there). k16 and v16 describe k and v as q
 * does but with box {64, 16, 1}: the `_gather_` forward loads each 16-key slice of a gathered
 * chunk through them into rows 16j.. of its K / V tile (16 rows are two 8-row swizzle atoms, so
 * the pieces land exactly as in a 64-row box); the other kernels never touch them.
 */
typedef struct LtdSparseAttnTmaMaps {
    LtdTensorMap q;
    LtdTensorMap k;
    LtdTensorMap v;
    LtdTensorMap dout;
    LtdTensorMap dq_acc;
    LtdTensorMap o;
    LtdTensorMap dk;
    LtdTensorMap dv;
    LtdTensorMap bias;
    LtdTensorMap k16;
    LtdTensorMap v16;
} LtdSparseAttnTmaMaps;

/**
 * Fused flash-style block-sparse attention forward, fp16/bf16 in, fp32 accumulation.
 * q, k, v, o: [B, H, L, D] contiguous; lse: f32 [B, H, L] (natural log; -inf for a row with no
 * key). The layout is given at a fixed 64 x 64 tile granularity whatever the layout block: a
 * CSR over (head, query tile t = rows 64t..64t+63) whose entries tile_cols list the active
 * 64-key chunks of the row, and tile_masks (same index) has bit 4i+j set when the 16x16
 * sub-block (query rows 16i.., keys 16j..) of that tile is in the layout; the kernels reach the
 * entries through the work items below. Layout blocks of 16, 32, 64 and 128 all map onto this exactly.
 * kpm: optional f32 [B, L] additive key-padding mask (0 = none). bias: optional additive bias
 * [B, H, L, L] in the input dtype (0 = none), added after the scale (upstream's rpe).
 * causal != 0 also hides keys after the query. Keys >= seq are always hidden.
 * scale_log2 = softmax scale * log2(e).
 *
 * Work items: work_items is int32 `[items][8]` = (head, query tile, first, end, slot, first
 * column, first mask, second column): the CTA walks `tile_cols[first..end)` of that row (the
 * last three repeat `tile_cols[first]`, `tile_masks[first]` and `tile_cols[first + 1]`, 0 past
 * the item's end, so the first two K/V loads need no dependent read). A whole row (slot = -1)
 * writes o and lse. A row much longer than the rest (global rows) is split into pieces: a piece
 * with slot s >= 0 writes its normalised partial output to
 * `part_o[(b*num_slots + s)*item_rows*D ..]` (f32 `[item_rows][D]`) and its lse (natural log)
 * to `part_lse[(b*num_slots + s)*item_rows ..]` instead (every row of the slot). Every (head,
 * query tile) is covered by its items, rows with no chunk by an empty item. Items are ordered
 * longest first (the launcher's choice: by powers of two, head-major inside each).
 * Kernels `ltd_sparse_attn_fwd_{bf16,f16}_d{64,128}` (attn/sm80, mma.sync, compute capability
 * 8.0+): grid (items * B) with item = blockIdx.x / B, b = blockIdx.x % B; LTD_SPARSE_ATTN_THREADS
 * threads; dynamic shared memory LTD_SPARSE_ATTN_FWD_SMEM_D{64,128}; item_rows = 64.
 * `ltd_sparse_attn_fwd_bias_tiles_{bf16,f16}_d{64,128}` (same file and contract) read the bias
 * one [64 query][64 key] tile per chunk by cp.async (L a multiple of 8), with dynamic shared
 * memory LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D{64,128}.
 * `ltd_sparse_attn_fwd_sm90_{bf16,f16}_d{64,128}` (attn/sm90, wgmma + TMA, compute capability
 * 9.0 only): the same, with a second parameter LtdSparseAttnTmaMaps (q, k, v, and o for the
 * whole rows it stores; below) and dynamic shared memory LTD_SPARSE_ATTN_FWD_SM90_SMEM_D{64,128}.
 * `ltd_sparse_attn_fwd_bias_tma_sm90_{bf16,f16}_d{64,128}` (same file and contract) take the bias
 * through the bias tensor map (L a multiple of 8; p.bias is ignored), with dynamic shared memory
 * LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D{64,128}.
 * `ltd_sparse_attn_fwd_gather_sm90_{bf16,f16}_d{64,128}` (same file and contract, no bias: p.bias
 * must be 0) walk the gathered table instead (docs/kernels.md, "Gathered chunks"): an entry
 * c >= 0 of tile_cols is key chunk c as above; an entry c < 0 is gathered chunk g = -c - 1,
 * whose 16-key slices start at keys 16 * gather_slots[4g + j] (int32 `[4 per gathered chunk]`,
 * ascending; an unused slot repeats a used one) and whose tile_masks bit 4i + j is set when query
 * rows 16i.. see slot j's slice; tile column 16j + x is key 16 * gather_slots[4g + j] + x. The
 * work items' first / second columns are entries of this table too. K and V of a gathered chunk
 * come through the k16 / v16 tensor maps; dynamic shared memory
 * LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D{64,128}. The other forward kernels ignore gather_slots.
 * `ltd_sparse_attn_fwd_sm90_pair_{bf16,f16}_d{64,128}` (same file and parameters, no bias: p.bias
 * must be 0) run one CTA of LTD_SPARSE_ATTN_FWD_SM90_PAIR_THREADS threads (two warpgroups) per
 * work item of the row pair tables: query tiles 2p and 2p + 1 (p = the item's tile; the second
 * may be the one past the last), tile_cols / tile_masks = the sorted union of their chunks with
 * tile 2p's mask in bits 0..16 and 2p + 1's in bits 16..32; dynamic shared memory
 * LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D{64,128}. Partial results come in two banks: an item with
 * slot s writes tile 2p's to slot s and 2p + 1's to s + num_slots / 2 (num_slots counts both
 * banks; split_rows lists 64-row query tiles).
 * `ltd_sparse_attn_fwd_combine_{bf16,f16}_d{64,128}` (attn/common) then merges the pieces of
 * every split row: split_rows is int32 `[split][4]` = (head, query tile, first slot, slot count),
 * each covering item_rows rows; grid (split * B, item_rows / LTD_SPARSE_ATTN_ROWS_PER_CTA) with
 * the same item/batch order in x, LTD_SPARSE_ATTN_THREADS threads: warp w of CTA (x, y) merges
 * row 4y + w of its split row (docs/kernels.md, "Work items and split/combine"). It executes
 * griddepcontrol.wait before reading the partials, and the sm90 forward kernels execute
 * griddepcontrol.launch_dependents at their start, so on compute capability 9.0 the combine may
 * be launched with programmatic stream serialisation right behind them (an ordinary launch works
 * too).
 */
typedef struct LtdSparseAttnFwdParams {
    ltd_devptr_t q;
    ltd_devptr_t k;
    ltd_devptr_t v;
    ltd_devptr_t o;
    ltd_devptr_t lse;
    ltd_devptr_t tile_cols;
    ltd_devptr_t tile_masks;
    ltd_devptr_t kpm;
    ltd_devptr_t bias;
    ltd_devptr_t work_items;
    ltd_devptr_t split_rows;
    ltd_devptr_t part_o;
    ltd_devptr_t part_lse;
    long long batch;
    long long heads;
    long long seq;
    long long num_slots;
    float scale_log2;
    int causal;
    int item_rows;
    ltd_devptr_t gather_slots;
} LtdSparseAttnFwdParams;

/**
 * Fused block-sparse attention backward (FA2 structure; docs/kernels.md, "Backward"),
 * fp16/bf16, fp32 accumulation. Three kernels, all on these params:
 *   `ltd_sparse_attn_bwd_pre_{bf16,f16}_d{64,128}` (attn/common):
 *       `dvec[row] = sum_d dout[row,d] * o[row,d]` (f32 `[B,H,L]`) and `dq_acc[row, :] = 0`
 *       (so dq_acc needs no zero fill); grid ceil(B*H*L / 4), 128 threads (one warp per row).
 *       With row_stats (not 0) it writes, instead of dvec, each 64-row query tile's lse and dvec
 *       side by side for the Hopper kernel: f32 `[B*H][Lp / 64][2][64]`, Lp = L rounded up to
 *       LTD_SPARSE_ATTN_STATS_ROWS_ALIGN (covers the padded length of a layout of any block), rows
 *       past L as 0; the grid then covers ceil(B*H*Lp / 4) warps (one per padded row).
 *   `ltd_sparse_attn_bwd_{bf16,f16}_d{64,128}` (no bias) and `ltd_sparse_attn_bwd_bias_...` (with
 *       bias / dbias; attn/sm80): one CTA (128 threads) per work item (a 64-key chunk, or a
 *       piece of a long one) and batch row (below), dynamic shared memory
 *       LTD_SPARSE_ATTN_BWD_SMEM_D{64,128}; walks the query tiles of its chunk through the transposed coarse
 *       tables (tile_rows / tile_col_masks, same bit meaning as the forward's),
 *       writes dk, dv and atomically adds scale * dS K into dq_acc (f32 `[B,H,L,D]`, zeroed by
 *       the pre-pass).
 *       `ltd_sparse_attn_bwd_bias_tiles_{bf16,f16}_d{64,128}` (same file and parameters): the
 *       bias kernel reading the bias one [64 query][64 key] tile per query tile by cp.async
 *       (L a multiple of 8), with dynamic shared memory LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D{64,128}.
 *   `ltd_sparse_attn_bwd_sm90_{bf16,f16}_d{64,128}` and `ltd_sparse_attn_bwd_bias_sm90_...`
 *       (attn/sm90, compute capability 9.0 only): the main kernel on warpgroup MMAs and TMA,
 *       same grid and work items, LtdSparseAttnTmaMaps (q, k, v, dout, dq_acc, dk, dv) as a
 *       second parameter, dynamic shared memory LTD_SPARSE_ATTN_BWD_SM90_SMEM_D{64,128}; reads lse / dvec from row_stats (written by the pre-pass,
 *       16-byte aligned), not from lse / dvec.
 *   `ltd_sparse_attn_bwd_bias_tma_sm90_{bf16,f16}_d{64,128}` (same file and parameters): the
 *       bias kernel reading the bias through the bias tensor map (L a multiple of 8; p.bias is
 *       ignored, dbias written as above), one 64 x 64 tile per stage, with dynamic shared memory
 *       LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D{64,128}.
 *   `ltd_sparse_attn_bwd_sm90_pair_{bf16,f16}_d{64,128}` (no bias; same file and parameters):
 *       one CTA of LTD_SPARSE_ATTN_BWD_SM90_PAIR_THREADS threads (two warpgroups) per work item of the transposed pair tables:
 *       key chunks 2c and 2c + 1 (c = the item's tile; the second may be the one past the
 *       last), tile_rows / tile_col_masks = the sorted union of their query tiles with chunk
 *       2c's mask in bits 0..16 and 2c + 1's in bits 16..32; dynamic shared memory
 *       LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D{64,128}. Partial results come in
 *       two banks: an item with slot s writes chunk 2c's to slot s and 2c + 1's to
 *       s + num_slots / 2 (num_slots counts both banks; split_cols lists 64-key chunks).
 *   `ltd_sparse_attn_bwd_sm90_ws_{bf16,f16}_d{64,128}` (no bias; same file, parameters, tables
 *       and work items as `ltd_sparse_attn_bwd_sm90_*`): the single-chunk kernel warp-specialised,
 *       one CTA of LTD_SPARSE_ATTN_BWD_SM90_WS_THREADS threads (a producer warpgroup issuing
 *       every copy and dQ reduction, a consumer warpgroup computing) per work item, dynamic
 *       shared memory LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D{64,128}.
 *       `ltd_sparse_attn_bwd_sm90_ws_pair_{bf16,f16}_d{64,128}` (no bias): the pair kernel's
 *       items and tables (above) the same way, one CTA of LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_THREADS
 *       threads (a producer warpgroup, a consumer warpgroup per chunk of the pair), dynamic shared
 *       memory LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D{64,128}.
 *   `ltd_sparse_attn_bwd_gather_sm90_{bf16,f16}_d{64,128}` (no bias; same file and parameters as
 *       the single-chunk kernel, same shared memory): one CTA per work item of one grid over
 *       the plain columns and the gathered key sets. An item with tile >= 0 is a plain chunk,
 *       as in the single-chunk kernel; an item with tile = -1 - g is gathered key set g
 *       (its tile_rows / tile_col_masks entries are the set's query tiles and masks, bit
 *       4i + j: query row group i sees slot j), whose CTA key row r is key
 *       16 * gather_slots[4g + r / 16] + r % 16 (int32 `[4 per set]`; docs/kernels.md,
 *       "Gathered key sets, for the backward"), and which writes its 64 partial rows to its
 *       slot (slot >= 0 always).
 *   `ltd_sparse_attn_bwd_combine_gather_{bf16,f16}_d{64,128}` (attn/common; grid and threads
 *       as the combine): split_cols rows of 12 int32, (head, key chunk, first slot, count) then
 *       per 16-key slice j of the chunk (set first slot or -1, set slot count << 2 | slot):
 *       key 16j + x of the chunk sums row 16j + x of its own slots and row 16 slot + x of the
 *       set's.
 *   `ltd_sparse_attn_bwd_dq_{bf16,f16}` (attn/common): dq = dq_acc rounded,
 *       LTD_SPARSE_ATTN_BWD_DQ_ELEMS_PER_THREAD elements per thread and grid step (dq_acc and dq
 *       16- and 8-byte aligned); any grid (the launcher's: LTD_SPARSE_ATTN_BWD_DQ_THREADS threads).
 * lse is the forward's (natural log). scale is the softmax scale; scale_log2 = scale * log2(e).
 * bias (optional, `[B,H,L,L]`, 0 = none) as in the forward; dbias (optional, same shape, must be
 * zeroed by the caller) receives dS = P * (dP - dvec) at every visible (query, key) position.
 * Work items as in the forward, over key chunks: the main kernel's grid is (items * B),
 * item = blockIdx.x / B, b = blockIdx.x % B, `work_items[item]` = (head, key chunk, first, end,
 * slot, first query tile, first mask, second query tile) over tile_rows / tile_col_masks; an item with
 * slot s >= 0 writes f32 partial dK (scaled) / dV rows to
 * part_dk / part_dv[((b*num_slots + s)*64 + key)*D ..] (all 64) instead of dk / dv, and
 * `ltd_sparse_attn_bwd_combine_{bf16,f16}_d{64,128}` (attn/common; grid (split * B, 16), 128 threads: warp w
 * of CTA (x, y) sums key 4y + w of its column) sums the pieces of every split column
 * (`split_cols[i]` = (head, key chunk, first slot, count)).
 */
typedef struct LtdSparseAttnBwdParams {
    ltd_devptr_t q;
    ltd_devptr_t k;
    ltd_devptr_t v;
    ltd_devptr_t o;
    ltd_devptr_t dout;
    ltd_devptr_t lse;
    ltd_devptr_t dvec;
    ltd_devptr_t row_stats;
    ltd_devptr_t dq_acc;
    ltd_devptr_t dq;
    ltd_devptr_t dk;
    ltd_devptr_t dv;
    ltd_devptr_t tile_rows;
    ltd_devptr_t tile_col_masks;
    ltd_devptr_t kpm;
    ltd_devptr_t bias;
    ltd_devptr_t dbias;
    ltd_devptr_t work_items;
    ltd_devptr_t split_cols;
    ltd_devptr_t part_dk;
    ltd_devptr_t part_dv;
    long long batch;
    long long heads;
    long long seq;
    long long num_slots;
    float scale;
    float scale_log2;
    int causal;
    int pad_;
    ltd_devptr_t gather_slots; /* last, so the other kernels' parameter offsets are unchanged */
} LtdSparseAttnBwdParams;

/**
 * Block-sparse softmax over the layout's active tiles (upstream's `Softmax`), forward and
 * backward. Sparse tensors are [Z, nnz, b, b] with tiles in (head, block_row, block_col) order;
 * row_offsets (`[H * nb + 1]`) / row_columns (`[nnz]`) are the layout's CSR (CSR position =
 * tile).
 * Forward (`ltd_sparse_softmax_fwd_{f32,f16,bf16}`): for query q = i*b + r and key = j*b + c,
 * s = x * scale (+ `rpe[z,h,q,key]`) (+ kpm term `[z,key]`) (+ attn-mask term `[q,key]`); a term is
 * the value (mode 0, add) or -inf where the value is 0 and 0 elsewhere (mode 1, mul); y =
 * softmax over the row's active keys, 0 for a row with no finite score. rpe/kpm/am: input dtype,
 * `[Z,H,S,S]` / `[Z,S]` / `[S,S]` with S = nb * b, 0 = none.
 * Backward (`ltd_sparse_softmax_bwd_{...}`): dx = y * (dy - sum_row(y * dy)) * scale.
 * Launch: one warp per (z, h, query row): grid ceil(Z*H*S / 4), 128 threads.
 */
typedef struct LtdSparseSoftmaxParams {
    ltd_devptr_t x;
    ltd_devptr_t y;
    ltd_devptr_t dy;
    ltd_devptr_t dx;
    ltd_devptr_t row_offsets;
    ltd_devptr_t row_columns;
    ltd_devptr_t rpe;
    ltd_devptr_t kpm;
    ltd_devptr_t attn_mask;
    long long batch;
    long long heads;
    long long num_blocks;
    long long block;
    long long nnz;
    float scale;
    int kpm_mul;
    int attn_mask_mul;
    int pad_;
} LtdSparseSoftmaxParams;

/* ---------------------------------------------------------------------------------------------
 * Block-sparse matmul (kernels/sparse_matmul.cu)
 * ------------------------------------------------------------------------------------------- */

/**
 * Block-sparse products C = op(A) op(B) (upstream's MatMul), op(X) = X^T when the
 * trans flag is non-zero. S = num_blocks * block, F = dense_dim (>= 1), Z = batch, H = heads.
 * Sparse tensors are [Z, nnz, b, b] with tiles in (head, block_row, block_col) order; dense
 * tensors are row-major [Z, H, rows, cols], stored transposed when their trans flag is set:
 *   sdd: op(A) `[Z,H,S,F]`, op(B) `[Z,H,F,S]` -> C sparse (only layout tiles; any F: K
 *        zero-filled);
 *   dsd: op(A) sparse `[S,S]`, op(B) `[Z,H,S,F]` -> C dense `[Z,H,S,F]`;
 *   dds: op(A) `[Z,H,F,S]`, op(B) sparse `[S,S]` -> C dense `[Z,H,F,S]`.
 * A transposed sparse operand transposes each tile and reads the layout transposed. Every
 * output element is written (dense rows/columns with no tile get 0). f32 accumulation.
 * Layout tables (int32, the layout's own): row_offsets / col_offsets `[H*nb + 1]` (CSR / CSC
 * pointers, row or column h*nb + i); row_columns `[nnz]` (block column of each tile, CSR
 * position = tile); col_rows / col_tiles `[nnz]` (block row and tile of each CSC entry);
 * tile_rows `[nnz]` (h*nb + block_row of each tile, sdd only). Tables of a layout with nnz = 0
 * may be any valid address. The block size is fixed by the kernel name:
 * `ltd_sparse_mm_{sdd,dsd,dds}_{f32,f16,bf16}_b{16,32,64,128}` (f16/bf16 on mma.sync tensor
 * cores; f32 on FMA). Launch (s = 1 for blocks up to 64, 2 for block 128; no dynamic shared
 * memory; threads: sdd 32 for block 16 else 128; dsd/dds 128):
 *   sdd: grid (nnz * s * s, Z), one CTA per 64 x 64 (or b x b) piece of a tile;
 *   dsd: grid (H * nb * s, ceil(F / 64), Z), one CTA per (head, row block [, half]) and
 *        64-column slab of F;
 *   dds: grid (H * nb * s, ceil(F / 64), Z), one CTA per (head, column block [, half]) and
 *        64-row slab of F.
 * Host checks: buffer lengths, Z <= 65535, ceil(F / 64) <= 65535, grid.x below 2^31.
 */
typedef struct LtdSparseMatmulParams {
    ltd_devptr_t a;
    ltd_devptr_t b;
    ltd_devptr_t c;
    ltd_devptr_t row_offsets;
    ltd_devptr_t row_columns;
    ltd_devptr_t col_offsets;
    ltd_devptr_t col_rows;
    ltd_devptr_t col_tiles;
    ltd_devptr_t tile_rows;
    long long batch;
    long long heads;
    long long num_blocks;
    long long nnz;
    long long dense_dim;
    int trans_a;
    int trans_b;
} LtdSparseMatmulParams;

#ifdef __cplusplus
}
#endif

#endif /* LTD_KERNELS_H */
