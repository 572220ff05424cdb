//! The attention kernels' launch configuration exported from `include/ltd_kernels.h` equals what
//! the `ltd-sparse-attn` launchers computed before the header defined it (their arithmetic is
//! copied here verbatim), for every kernel family, head dim and element type, so the constants
//! cannot change silently. Host-only: no GPU, no `cuda` feature.

use ltd_kernels_sys::*;

/// Query rows per tile and keys per chunk (`ltd_sparse_attn::KERNEL_TILE`).
const KERNEL_TILE: usize = 64;
/// The launcher's `SM90_SMEM_EXTRA`: 1 KB of alignment slack and the mbarriers.
const SM90_SMEM_EXTRA: usize = 1024 + 64;
/// The launcher's `STATS_ROWS_ALIGN`.
const STATS_ROWS_ALIGN: usize = 128;

/// Bytes of an element of each dtype the attention kernels take (bf16, f16).
const ELEMENT_BYTES: [(&str, usize); 2] = [("bf16", 2), ("f16", 2)];

/// The launcher's forward arithmetic: (sm90, bias_tiles, head_dim) -> dynamic shared memory.
fn forward_smem(sm90: bool, bias_tiles: bool, head_dim: usize, elem: usize) -> usize {
    let bias_tile_bytes = if bias_tiles {
        2 * KERNEL_TILE * KERNEL_TILE * elem
    } else {
        0
    };
    if sm90 {
        let tiles = if head_dim == 128 { 4 } else { 5 };
        tiles * KERNEL_TILE * head_dim * elem + bias_tile_bytes + SM90_SMEM_EXTRA
    } else {
        5 * KERNEL_TILE * head_dim * elem + bias_tile_bytes
    }
}

/// The launcher's backward arithmetic.
fn backward_smem(
    hopper: bool,
    pairs: bool,
    bias_tiles: bool,
    head_dim: usize,
    elem: usize,
) -> usize {
    let (chunks, stages, ds_buffers) = if pairs { (2, 3, 2) } else { (1, 2, 1) };
    (chunks * 2 * KERNEL_TILE * head_dim
        + stages * 2 * KERNEL_TILE * head_dim
        + (ds_buffers * chunks + if bias_tiles { stages } else { 0 }) * KERNEL_TILE * KERNEL_TILE)
        * elem
        + stages * 2 * KERNEL_TILE * 4
        + if hopper { SM90_SMEM_EXTRA } else { 0 }
}

fn by_head_dim(d64: u32, d128: u32, head_dim: usize) -> usize {
    match head_dim {
        64 => d64 as usize,
        128 => d128 as usize,
        _ => unreachable!("head dims 64 and 128"),
    }
}

#[test]
fn forward_shared_memory_matches_the_launcher() {
    for (ty, elem) in ELEMENT_BYTES {
        for d in [64, 128] {
            let cases = [
                (
                    "fwd",
                    LTD_SPARSE_ATTN_FWD_SMEM_D64,
                    LTD_SPARSE_ATTN_FWD_SMEM_D128,
                    false,
                    false,
                ),
                (
                    "fwd_bias_tiles",
                    LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D64,
                    LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D128,
                    false,
                    true,
                ),
                (
                    "fwd_sm90",
                    LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64,
                    LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128,
                    true,
                    false,
                ),
                (
                    "fwd_bias_tma_sm90",
                    LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D64,
                    LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D128,
                    true,
                    true,
                ),
            ];
            for (kernel, d64, d128, sm90, bias_tiles) in cases {
                assert_eq!(
                    by_head_dim(d64, d128, d),
                    forward_smem(sm90, bias_tiles, d, elem),
                    "ltd_sparse_attn_{kernel}_{ty}_d{d}"
                );
            }
        }
    }
}

#[test]
fn backward_shared_memory_matches_the_launcher() {
    for (ty, elem) in ELEMENT_BYTES {
        for d in [64, 128] {
            // (kernel, D 64, D 128, hopper, pairs, bias tiles); `bwd` and `bwd_bias` share one
            // constant, as do `bwd_sm90` and `bwd_bias_sm90`.
            let cases = [
                (
                    "bwd",
                    LTD_SPARSE_ATTN_BWD_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SMEM_D128,
                    false,
                    false,
                    false,
                ),
                (
                    "bwd_bias",
                    LTD_SPARSE_ATTN_BWD_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SMEM_D128,
                    false,
                    false,
                    false,
                ),
                (
                    "bwd_bias_tiles",
                    LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D128,
                    false,
                    false,
                    true,
                ),
                (
                    "bwd_sm90",
                    LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128,
                    true,
                    false,
                    false,
                ),
                (
                    "bwd_bias_sm90",
                    LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128,
                    true,
                    false,
                    false,
                ),
                (
                    "bwd_bias_tma_sm90",
                    LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D128,
                    true,
                    false,
                    true,
                ),
                (
                    "bwd_sm90_pair",
                    LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64,
                    LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128,
                    true,
                    true,
                    false,
                ),
            ];
            for (kernel, d64, d128, hopper, pairs, bias_tiles) in cases {
                assert_eq!(
                    by_head_dim(d64, d128, d),
                    backward_smem(hopper, pairs, bias_tiles, d, elem),
                    "ltd_sparse_attn_{kernel}_{ty}_d{d}"
                );
            }
        }
    }
}

#[test]
fn the_constants_have_the_values_the_launchers_used() {
    // Every shared-memory size, pinned as a number too: a change to the header shows here.
    let bytes = [
        (LTD_SPARSE_ATTN_FWD_SMEM_D64, 40_960),
        (LTD_SPARSE_ATTN_FWD_SMEM_D128, 81_920),
        (LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D64, 57_344),
        (LTD_SPARSE_ATTN_FWD_BIAS_TILES_SMEM_D128, 98_304),
        (LTD_SPARSE_ATTN_FWD_SM90_SMEM_D64, 42_048),
        (LTD_SPARSE_ATTN_FWD_SM90_SMEM_D128, 66_624),
        (LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D64, 50_240),
        (LTD_SPARSE_ATTN_FWD_SM90_PAIR_SMEM_D128, 99_392),
        (LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D64, 58_432),
        (LTD_SPARSE_ATTN_FWD_BIAS_TMA_SM90_SMEM_D128, 83_008),
        (LTD_SPARSE_ATTN_BWD_SMEM_D64, 58_368),
        (LTD_SPARSE_ATTN_BWD_SMEM_D128, 107_520),
        (LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D64, 74_752),
        (LTD_SPARSE_ATTN_BWD_BIAS_TILES_SMEM_D128, 123_904),
        (LTD_SPARSE_ATTN_BWD_SM90_SMEM_D64, 59_456),
        (LTD_SPARSE_ATTN_BWD_SM90_SMEM_D128, 108_608),
        (LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D64, 75_840),
        (LTD_SPARSE_ATTN_BWD_BIAS_TMA_SM90_SMEM_D128, 124_992),
        (LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D64, 117_312),
        (LTD_SPARSE_ATTN_BWD_SM90_PAIR_SMEM_D128, 199_232),
    ];
    for (i, (constant, value)) in bytes.into_iter().enumerate() {
        assert_eq!(constant, value, "entry {i}");
    }
    // No kernel asks for more than an H100's 227 KB of dynamic shared memory per block.
    assert!(bytes.iter().all(|&(b, _)| b <= 227 * 1024));
    assert_eq!(LTD_SPARSE_ATTN_SM90_SMEM_EXTRA as usize, SM90_SMEM_EXTRA);
    assert_eq!(LTD_SPARSE_ATTN_STATS_ROWS_ALIGN as usize, STATS_ROWS_ALIGN);
    // Threads: 128 per CTA (4 warps of 16 rows of a 64-row tile), 256 for the pair kernels
    // (`128 * chunks` / `128 * tiles`), one warp per row in the combines and the pre-pass (`item_rows / 4`,
    // `KERNEL_TILE / 4`, `stats_rows.div_ceil(4)`), and the dq conversion's 256 threads of 4
    // elements (`(n / 4).div_ceil(256)`).
    assert_eq!(LTD_SPARSE_ATTN_THREADS, 128);
    assert_eq!(LTD_SPARSE_ATTN_BWD_SM90_PAIR_THREADS, 2 * 128);
    assert_eq!(LTD_SPARSE_ATTN_FWD_SM90_PAIR_THREADS, 2 * 128);
    assert_eq!(LTD_SPARSE_ATTN_ROWS_PER_CTA, LTD_SPARSE_ATTN_THREADS / 32);
    assert_eq!(LTD_SPARSE_ATTN_BWD_DQ_THREADS, 256);
    assert_eq!(LTD_SPARSE_ATTN_BWD_DQ_ELEMS_PER_THREAD, 4);
    // A multiple of every layout block (16 to 128), as the launcher asserts.
    assert!(
        [16, 32, 64, 128]
            .iter()
            .all(|b| STATS_ROWS_ALIGN.is_multiple_of(*b))
    );
}
