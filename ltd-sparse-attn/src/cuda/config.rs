//! Every launch-configuration number of the attention, softmax and matmul kernels: threads per
//! CTA, grids and dynamic shared-memory bytes, nowhere in a launcher. The attention kernels'
//! shared-memory sizes and thread counts are read from `ltd_kernels.h` (through
//! `ltd-kernels-sys`), where each kernel `static_assert`s them against its own shared-memory
//! struct (`docs/kernels.md`, "Shared-memory maps"); Rust never recomputes them.

use cudarc::driver::LaunchConfig;
use ltd_kernels_sys as sys;

use crate::plan::TILE;

/// Threads of the row-per-warp kernels (combines, pre-pass, softmax): 4 warps.
const ROW_KERNEL_THREADS: u32 = sys::LTD_SPARSE_ATTN_THREADS;
/// Rows per CTA of the row-per-warp kernels.
const ROWS_PER_CTA: usize = sys::LTD_SPARSE_ATTN_ROWS_PER_CTA as usize;

/// Threads of a forward CTA: 4 warps x 16 query rows (`mma.sync`), or one warpgroup (Hopper).
pub(super) const FWD_THREADS: u32 = sys::LTD_SPARSE_ATTN_THREADS;

/// Threads of a Hopper pair forward CTA: one warpgroup per query tile of the pair.
const FWD_PAIR_THREADS: u32 = sys::LTD_SPARSE_ATTN_FWD_SM90_PAIR_THREADS;

/// Rows per `[B*H]` matrix of the Hopper backward's tiled row statistics are L rounded up to
/// this: a multiple of every layout block, so the tables' last query tile (the layout's padded
/// length) has its pair.
const STATS_ROWS_ALIGN: usize = sys::LTD_SPARSE_ATTN_STATS_ROWS_ALIGN as usize;
const _: () = {
    let mut i = 0;
    while i < crate::SUPPORTED_BLOCKS.len() {
        assert!(STATS_ROWS_ALIGN.is_multiple_of(crate::SUPPORTED_BLOCKS[i]));
        i += 1;
    }
};

/// The header's value for `head_dim`: the fused kernels exist for head dims 64 and 128 only,
/// which `AttentionCall` has checked before any launch configuration is asked for.
fn by_head_dim(head_dim: usize, d64: u32, d128: u32) -> usize {
    debug_assert!(head_dim == 64 || head_dim == 128, "head_dim {head_dim}");
    (if head_dim == 64 { d64 } else { d128 }) as usize
}

/// A bias is read in 64 x 64 tiles (TMA / `cp.async`: 16-byte row pieces) when its rows are
/// 16-byte multiples, and element by element otherwise.
pub(super) fn bias_tiles_fit(seq_len: usize) -> bool {
    seq_len.is_multiple_of(8)
}

/// The forward kernel variants, by their shared-memory layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForwardSmem {
    /// `mma.sync`: Q, two K and two V buffers of 64 x D.
    MmaSync,
    /// Hopper: Q, two K and two V buffers at D 64; one V buffer at D 128 (so three CTAs fit an
    /// SM); aligned, with barriers.
    Sm90,
    /// The Hopper gathered forward: `Sm90`'s layout (no bias tiles).
    Sm90Gather,
    /// The Hopper pair forward: a Q tile per query tile of the pair, two K and two V buffers
    /// (no bias tiles).
    Sm90Pair,
}

impl ForwardSmem {
    /// Threads per CTA of this variant's kernels.
    pub(super) fn threads(self) -> u32 {
        match self {
            ForwardSmem::Sm90Pair => FWD_PAIR_THREADS,
            _ => FWD_THREADS,
        }
    }
}

/// Dynamic shared memory of a forward kernel, with two 64 x 64 bias buffers when
/// `bias_tiles`.
pub(super) fn forward_smem(variant: ForwardSmem, head_dim: usize, bias_tiles: bool) -> usize {
    use sys::*;
    match (variant, bias_tiles) {
        (ForwardSmem::MmaSync, false) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_SMEM_D128,
        ),
        (ForwardSmem::MmaSync, true) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D128,
        ),
        (ForwardSmem::Sm90, false) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128,
        ),
        (ForwardSmem::Sm90Gather, _) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_GATHER_SM90_SMEM_D128,
        ),
        (ForwardSmem::Sm90Pair, _) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D128,
        ),
        (ForwardSmem::Sm90, true) => by_head_dim(
            head_dim,
            LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D64,
            LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D128,
        ),
    }
}

/// The forward's main launch of `variant`: one CTA per work item.
pub(super) fn forward_main(variant: ForwardSmem, items: u32, smem: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (items, 1, 1),
        block_dim: (variant.threads(), 1, 1),
        shared_mem_bytes: smem as u32,
    }
}

/// Query rows of a forward work item's partial output (one tile).
pub(super) const FWD_ITEM_ROWS: usize = TILE;

/// The forward combine: one warp per row of a split row, `split_rows` split rows of the batch.
pub(super) fn forward_combine(split_rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (split_rows as u32, (FWD_ITEM_ROWS / ROWS_PER_CTA) as u32, 1),
        block_dim: (ROW_KERNEL_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The backward main kernel's variants, by their shared-memory layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BackwardSmem {
    /// Hopper (aligned tiles and barriers).
    pub hopper: bool,
    /// The pair kernel: two key chunks per CTA, three stages, two dS buffers.
    pub pairs: bool,
    /// A 64 x 64 bias tile per stage.
    pub bias_tiles: bool,
    /// A warp-specialised kernel (Hopper, no bias tiles): a producer warpgroup and a consumer
    /// warpgroup per chunk; with `pairs` the pair kernel's layout, else three stages at head dim
    /// 64 and two at 128.
    pub warp_specialized: bool,
}

impl BackwardSmem {
    /// Dynamic shared memory of this variant (the pair and the warp-specialised kernels read no
    /// bias tiles).
    pub(super) fn bytes(self, head_dim: usize) -> usize {
        use sys::*;
        if self.warp_specialized {
            let (d64, d128) = if self.pairs {
                (
                    LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_SMEM_D128,
                )
            } else {
                (
                    LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SM90_WS_SMEM_D128,
                )
            };
            return by_head_dim(head_dim, d64, d128);
        }
        let (d64, d128) = match (self.hopper, self.pairs, self.bias_tiles) {
            (false, _, false) => (LTD_SPARSE_ATTN_BWD_SMEM_D64, LTD_SPARSE_ATTN_BWD_SMEM_D128),
            (false, _, true) => (
                LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D64,
                LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D128,
            ),
            (true, true, _) => (
                LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64,
                LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128,
            ),
            (true, false, false) => (
                LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64,
                LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128,
            ),
            (true, false, true) => (
                LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D64,
                LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D128,
            ),
        };
        by_head_dim(head_dim, d64, d128)
    }

    /// The main launch: one CTA per work item.
    pub(super) fn launch(self, items: u32, head_dim: usize) -> LaunchConfig {
        let threads = match (self.pairs, self.warp_specialized) {
            (true, true) => sys::LTD_SPARSE_ATTN_BWD_SM90_WS_PAIR_THREADS,
            (true, false) => sys::LTD_SPARSE_ATTN_BWD_SM90_PAIR_THREADS,
            (false, true) => sys::LTD_SPARSE_ATTN_BWD_SM90_WS_THREADS,
            (false, false) => sys::LTD_SPARSE_ATTN_THREADS,
        };
        LaunchConfig {
            grid_dim: (items, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: self.bytes(head_dim) as u32,
        }
    }
}

/// Rows of the backward's statistics buffer: `matrices` `[B*H]` matrices of L rows, rounded up
/// for the Hopper kernels' tiled statistics.
pub(super) fn stats_rows(matrices: usize, seq_len: usize, hopper: bool) -> usize {
    matrices
        * if hopper {
            seq_len.div_ceil(STATS_ROWS_ALIGN) * STATS_ROWS_ALIGN
        } else {
            seq_len
        }
}

/// The backward pre-pass: one warp per statistics row.
pub(super) fn backward_pre(stats_rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (stats_rows.div_ceil(ROWS_PER_CTA) as u32, 1, 1),
        block_dim: (ROW_KERNEL_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The dq conversion over `n` elements: a few elements per thread and grid step, a grid-stride loop
/// past the grid cap.
pub(super) fn dq_convert(n: usize) -> LaunchConfig {
    const THREADS: usize = sys::LTD_SPARSE_ATTN_BWD_DQ_THREADS as usize;
    const PER_THREAD: usize = sys::LTD_SPARSE_ATTN_BWD_DQ_ELEMS_PER_THREAD as usize;
    const GRID_CAP: usize = 65_535 * 16;
    LaunchConfig {
        grid_dim: (
            (n / PER_THREAD).div_ceil(THREADS).min(GRID_CAP) as u32,
            1,
            1,
        ),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The backward combine: one warp per key of a split column, `split_cols` split columns of the
/// batch.
pub(super) fn backward_combine(split_cols: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (split_cols as u32, (TILE / ROWS_PER_CTA) as u32, 1),
        block_dim: (ROW_KERNEL_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The block-sparse softmax over `rows` rows (one warp each), or `None` past the grid limit.
pub(super) fn softmax(rows: usize) -> Option<LaunchConfig> {
    let grid = rows.div_ceil(ROWS_PER_CTA);
    (grid > 0 && grid <= i32::MAX as usize).then_some(LaunchConfig {
        grid_dim: (grid as u32, 1, 1),
        block_dim: (ROW_KERNEL_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Output tile side of the block-sparse products, and dense columns per CTA of `dsd` / `dds`.
pub(crate) const MATMUL_TILE: usize = 64;

/// Output tiles per layout block side of the block-sparse products.
pub(crate) fn matmul_tiles_per_block(block: usize) -> usize {
    if block > MATMUL_TILE { 2 } else { 1 }
}

/// `sdd`: one CTA per output tile of each layout tile, per batch row; a warp for block 16.
pub(crate) fn matmul_sdd(nnz: usize, block: usize, batch: usize) -> LaunchConfig {
    let per = matmul_tiles_per_block(block);
    LaunchConfig {
        grid_dim: ((nnz * per * per) as u32, batch as u32, 1),
        block_dim: (if block == 16 { 32 } else { 128 }, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `dsd` / `dds`: one CTA per (64-row output tile of a block row, 64 dense columns, batch row).
pub(crate) fn matmul_dense(
    block_rows: usize,
    block: usize,
    dense_dim: usize,
    batch: usize,
) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            (block_rows * matmul_tiles_per_block(block)) as u32,
            dense_dim.div_ceil(MATMUL_TILE) as u32,
            batch as u32,
        ),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the kernels carve, written out: a change here must match a kernel change.
    #[test]
    fn shared_memory_sizes() {
        assert_eq!(forward_smem(ForwardSmem::MmaSync, 64, false), 40_960);
        assert_eq!(forward_smem(ForwardSmem::MmaSync, 128, true), 98_304);
        assert_eq!(forward_smem(ForwardSmem::Sm90, 64, false), 41_984 + 64);
        assert_eq!(forward_smem(ForwardSmem::Sm90, 128, false), 65_536 + 1088);
        assert_eq!(
            forward_smem(ForwardSmem::Sm90Gather, 64, false),
            41_984 + 64
        );
        let single = BackwardSmem {
            hopper: false,
            pairs: false,
            bias_tiles: false,
            warp_specialized: false,
        };
        assert_eq!(single.bytes(64), 6 * 8192 + 8192 + 1024);
        let pair = BackwardSmem {
            hopper: true,
            pairs: true,
            bias_tiles: false,
            warp_specialized: false,
        };
        assert_eq!(pair.bytes(128), 10 * 16_384 + 4 * 8192 + 1536 + 1088);
        assert_eq!(pair.launch(7, 128).block_dim, (256, 1, 1));
        let ws = BackwardSmem {
            hopper: true,
            pairs: false,
            bias_tiles: false,
            warp_specialized: true,
        };
        // Three stages of Q, dO and statistics at head dim 64, two at 128; a stage's table entry.
        assert_eq!(ws.bytes(64), 8 * 8192 + 8192 + 3 * 512 + 1088 + 3 * 8);
        assert_eq!(ws.bytes(128), 6 * 16_384 + 8192 + 2 * 512 + 1088 + 2 * 8);
        assert_eq!(ws.launch(7, 64).block_dim, (256, 1, 1));
        let ws_pair = BackwardSmem { pairs: true, ..ws };
        // The pair kernel's map and a table entry per stage (three).
        assert_eq!(ws_pair.bytes(128), pair.bytes(128) + 3 * 8);
        assert_eq!(ws_pair.launch(7, 128).block_dim, (384, 1, 1));
        assert_eq!(stats_rows(3, 130, true), 3 * 256);
        assert_eq!(stats_rows(3, 130, false), 3 * 130);
    }
}
