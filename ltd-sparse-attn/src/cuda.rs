//! Fused block-sparse attention on the GPU (feature `cuda`): forward and backward, fp16/bf16, head
//! dims 64 and 128, layout blocks 16/32/64/128, token-level causal option, additive or boolean
//! key-padding mask, any sequence length. Same semantics as [`crate::attention_forward`]
//! (including zeros and `lse = -inf` for a row with no visible key).
//!
//! The backward pass ([`attention_backward_cuda`]) gives dq, dk, dv and, with an additive bias,
//! dbias. The block-sparse softmax primitive runs here too ([`softmax_forward_cuda`],
//! [`softmax_backward_cuda`]); the sdd/dsd/dds matmuls are in [`crate::cuda_matmul`]. The fused
//! kernels take fp16/bf16 with head dim 64 or 128; f32 inputs and other head dims return
//! [`SparseAttnError::InvalidArgument`] pointing to the CPU path (or compose the primitives).
//!
//! The kernels work on a 64 x 64 coarsening of the layout (one MMA-sized tile of query rows
//! and keys) with a 16-bit mask of the 16 x 16 sub-blocks in the layout, so small layout blocks
//! still fill the tensor cores; [`CudaAttentionLayout`] builds and uploads those tables once
//! per layout, with work plans that cut rows and columns much longer than the rest (global
//! blocks) into pieces run in parallel. Two kernel families ([`CudaAttentionKernel`]):
//! `mma.sync` (sm_80 and newer) and, on compute capability 9.0, warpgroup MMAs (`wgmma`) fed by
//! the tensor memory accelerator (tensor maps encoded per call), each pass in a single-tile and
//! a two-warpgroup ("pair") variant: the forward's pair shares K/V chunks between two adjacent
//! query tiles, the backward's shares Q / dO tiles and dQ reductions between two adjacent key
//! chunks. `Auto` picks per device, and on Hopper the backward's pair for block-128 layouts at
//! head dim 128 ([`CudaAttentionKernel::backward_pairs`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg};
use ltd_core::{CoreError, CudaDevice, DType, Element};
use ltd_kernels_sys::{LtdSparseAttnFwdParams, LtdSparseAttnTmaMaps, LtdTensorMap, fatbin};

use crate::{AttentionShape, Layout, MaskMode, Result, SparseAttnError, SparseSelfAttention};

/// Query rows per kernel tile and keys per chunk.
pub const KERNEL_TILE: usize = 64;
const SUB: usize = 16;

fn cuda_err(during: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> SparseAttnError {
    move |source| SparseAttnError::Core(CoreError::Cuda { during, source })
}

/// Launches `func` on `stream` as a programmatic dependent launch (compute capability 9.0 and
/// newer): the GPU may schedule its CTAs while the kernel before it on the stream finishes, once
/// every CTA of that kernel has executed `griddepcontrol.launch_dependents` (or exited), which
/// hides the launch gap and the first wave's start-up behind that kernel's tail. The kernel must
/// execute `griddepcontrol.wait` (`ltd_attn::pdl_wait` in the kernel sources) before it reads
/// anything the previous kernel wrote; every kernel launched here does.
///
/// # Safety
///
/// As for any kernel launch (`cudarc::driver::LaunchArgs::launch`): `args` point to one live
/// value of each of the kernel's parameter types, in order, and the launch must be valid for
/// the buffers those values name; and the kernel must wait as above before reading the previous
/// kernel's results.
unsafe fn launch_programmatic(
    stream: &cudarc::driver::CudaStream,
    func: &cudarc::driver::CudaFunction,
    cfg: LaunchConfig,
    args: &mut [*mut std::ffi::c_void],
) -> std::result::Result<(), cudarc::driver::DriverError> {
    use cudarc::driver::sys;
    stream.context().bind_to_thread()?;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        // SAFETY: a plain-data union of integers and structs of integers; all zeros is valid.
        value: unsafe { std::mem::zeroed() },
    };
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: the config and its one attribute outlive the call; the function, its stream and
    // context are live (borrowed); the arguments are the caller's promise above.
    unsafe {
        sys::cuLaunchKernelEx(
            &config,
            func.cu_function(),
            args.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
}

/// The address of a by-value kernel argument, as `cuLaunchKernelEx` takes it.
fn kernel_arg<P>(value: &P) -> *mut std::ffi::c_void {
    value as *const P as *mut std::ffi::c_void
}

fn invalid(what: &str, value: impl std::fmt::Display, expected: &str) -> SparseAttnError {
    SparseAttnError::InvalidArgument {
        what: what.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Encodes a tensor map over `[matrices][seq][head_dim]` elements at `ptr` as the Hopper kernels
/// address it (`LtdSparseAttnTmaMaps` in `ltd_kernels.h`): boxes of 64 rows by `box_cols`
/// elements of `elem_bytes` (128-byte rows: `box_cols * elem_bytes == 128`), 128-byte swizzle,
/// rows past `seq` read as zeros (and skipped by reductions).
fn tensor_map(
    ptr: u64,
    data_type: cudarc::driver::sys::CUtensorMapDataType,
    elem_bytes: usize,
    box_cols: u32,
    matrices: usize,
    seq: usize,
    head_dim: usize,
) -> Result<LtdTensorMap> {
    use cudarc::driver::sys;
    let dims = [head_dim as u64, seq as u64, matrices as u64];
    let strides = [
        (head_dim * elem_bytes) as u64,
        (seq * head_dim * elem_bytes) as u64,
    ];
    let boxes = [box_cols, 64, 1];
    let steps = [1u32; 3];
    let mut map = LtdTensorMap::default();
    const _: () =
        assert!(std::mem::size_of::<LtdTensorMap>() == std::mem::size_of::<sys::CUtensorMap>());
    // SAFETY: `map` is a 64-byte-aligned 128-byte buffer, the size of `CUtensorMap` (checked
    // above), which the call only writes; the dimension, stride, box and step arrays hold rank 3
    // (rank - 1 for strides) elements and outlive the call. The driver only encodes `ptr` (a
    // live allocation of matrices * seq * head_dim elements of `elem_bytes`, checked by the
    // callers) and validates the rest, returning an error for anything it rejects.
    unsafe {
        sys::cuTensorMapEncodeTiled(
            (&mut map as *mut LtdTensorMap).cast::<sys::CUtensorMap>(),
            data_type,
            3,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()
    }
    .map_err(cuda_err(
        "encoding a tensor map for the Hopper attention kernels",
    ))?;
    Ok(map)
}

/// The tensor maps of a Hopper attention launch: q, k, v, the forward's output o, the
/// backward's dout, dk, dv (2-byte elements, 64 x 64 boxes) and its f32 dq accumulator (64 x 32
/// boxes), each over `[B * H][L][D]`, and the additive bias `[B * H][L][L]` (64 x 64
/// boxes of 2-byte elements; L a multiple of 8). Maps a call does not use repeat q's (encoded
/// once): the forward passes `out` and no `backward`, the backward `backward = [dout, dq_acc,
/// dk, dv]` and no `out`; either passes `bias` when its kernel reads the bias by TMA.
fn tma_maps(
    [q, k, v]: [u64; 3],
    out: Option<u64>,
    backward: Option<[u64; 4]>,
    bias: Option<u64>,
    matrices: usize,
    seq: usize,
    head_dim: usize,
) -> Result<LtdSparseAttnTmaMaps> {
    use cudarc::driver::sys::CUtensorMapDataType::{
        CU_TENSOR_MAP_DATA_TYPE_FLOAT32 as F32, CU_TENSOR_MAP_DATA_TYPE_UINT16 as U16,
    };
    let tile = |ptr| tensor_map(ptr, U16, 2, 64, matrices, seq, head_dim);
    let q = tile(q)?;
    let [dout, dq_acc, dk, dv] = match backward {
        Some([dout, dq_acc, dk, dv]) => [
            tile(dout)?,
            tensor_map(dq_acc, F32, 4, 32, matrices, seq, head_dim)?,
            tile(dk)?,
            tile(dv)?,
        ],
        None => [q; 4],
    };
    let o = match out {
        Some(o) => tile(o)?,
        None => q,
    };
    let bias = match bias {
        Some(b) => tensor_map(b, U16, 2, 64, matrices, seq, seq)?,
        None => q,
    };
    Ok(LtdSparseAttnTmaMaps {
        q,
        k: tile(k)?,
        v: tile(v)?,
        dout,
        dq_acc,
        o,
        dk,
        dv,
        bias,
    })
}

/// Rows per `[B*H]` matrix of the Hopper backward's tiled row statistics are L rounded up to
/// this (`ltd_attn::stats_rows` in the kernels, `row_stats` in `ltd_kernels.h`): a multiple of
/// every layout block, so the tables' last query tile (the layout's padded length) has its pair.
const STATS_ROWS_ALIGN: usize = 128;
// A multiple of every block b keeps ceil(L / b) * b <= ceil(L / 128) * 128.
const _: () = {
    let mut i = 0;
    while i < crate::SUPPORTED_BLOCKS.len() {
        assert!(STATS_ROWS_ALIGN.is_multiple_of(crate::SUPPORTED_BLOCKS[i]));
        i += 1;
    }
};

/// Dynamic shared memory the Hopper kernels add to their tiles: 1 KB of slack to align the
/// swizzled tiles to 1 KB, and their mbarriers.
const SM90_SMEM_EXTRA: usize = 1024 + 64;

/// The kernel's view of a layout: for every (head, 64-row query tile) the active 64-key chunks
/// with a 16-bit mask of active 16 x 16 sub-blocks (bit `4*i + j`: query rows `16i..`, keys
/// `16j..` within the tile). Host-side tables, before upload.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, cuda::CoarseTables};
/// let layout = FixedConfig::new(1).make_layout(128).unwrap(); // block 16, 8 blocks
/// let t = CoarseTables::new(&layout);
/// assert_eq!(t.num_qtiles, 2);
/// assert_eq!(t.row_ptr.len(), 1 * 2 + 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoarseTables {
    /// Heads.
    pub heads: usize,
    /// Query tiles per head (`ceil(padded_len / 64)`).
    pub num_qtiles: usize,
    /// `[heads * num_qtiles + 1]` offsets into `cols` / `masks`.
    pub row_ptr: Vec<i32>,
    /// Active key chunk of each entry.
    pub cols: Vec<i32>,
    /// Sub-block mask of each entry.
    pub masks: Vec<i32>,
    /// The transpose, for the backward pass: `[heads * num_qtiles + 1]` offsets per (head, key
    /// chunk) into `col_rows` / `col_masks` (same bit meaning).
    pub col_ptr: Vec<i32>,
    /// Query tile of each transposed entry.
    pub col_rows: Vec<i32>,
    /// Sub-block mask of each transposed entry.
    pub col_masks: Vec<i32>,
    /// Query tiles in pairs (2p, 2p + 1), for the Hopper forward, whose two warpgroups share
    /// the K/V chunks of adjacent tiles: `[heads * num_pairs + 1]` offsets into `pair_cols` /
    /// `pair_masks`, `num_pairs = ceil(num_qtiles / 2)`.
    pub pair_ptr: Vec<i32>,
    /// Key chunks active in either tile of the pair (sorted union).
    pub pair_cols: Vec<i32>,
    /// Sub-block masks of the pair: bits 0..16 tile 2p, bits 16..32 tile 2p + 1 (0 where that
    /// tile does not use the chunk).
    pub pair_masks: Vec<i32>,
    /// The transpose in pairs of key chunks (2c, 2c + 1), for the Hopper backward's pair
    /// kernel, whose two warpgroups share the Q / dO tiles of every query tile: `[heads *
    /// num_pairs + 1]` offsets into `col_pair_rows` / `col_pair_masks`.
    pub col_pair_ptr: Vec<i32>,
    /// Query tiles active in either chunk of the pair (sorted union).
    pub col_pair_rows: Vec<i32>,
    /// Sub-block masks of the pair: bits 0..16 chunk 2c, bits 16..32 chunk 2c + 1 (0 where that
    /// chunk does not see the tile).
    pub col_pair_masks: Vec<i32>,
}

/// Merges the entries of adjacent rows (2p, 2p + 1) of a CSR-like table (`num` rows per head,
/// `ptr` offsets into `entries` / `masks`): per pair the sorted union of the entries, row 2p's
/// mask in bits 0..16 and row 2p + 1's in bits 16..32. Returns (ptr, entries, masks) of the
/// pairs, `ceil(num / 2)` per head.
fn pair_rows(
    heads: usize,
    num: usize,
    ptr: &[i32],
    entries: &[i32],
    masks: &[i32],
) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let num_pairs = num.div_ceil(2);
    let mut pair_ptr = Vec::with_capacity(heads * num_pairs + 1);
    let mut pair_entries = Vec::new();
    let mut pair_masks = Vec::new();
    pair_ptr.push(0);
    for h in 0..heads {
        for pair in 0..num_pairs {
            let mut merged: BTreeMap<i32, u32> = BTreeMap::new();
            for (half, row) in [(0, 2 * pair), (1, 2 * pair + 1)] {
                if row >= num {
                    continue;
                }
                let idx = h * num + row;
                for e in ptr[idx] as usize..ptr[idx + 1] as usize {
                    *merged.entry(entries[e]).or_insert(0) |= (masks[e] as u32) << (16 * half);
                }
            }
            for (c, m) in merged {
                pair_entries.push(c);
                pair_masks.push(m as i32);
            }
            pair_ptr.push(pair_entries.len() as i32);
        }
    }
    (pair_ptr, pair_entries, pair_masks)
}

impl CoarseTables {
    /// Builds the tables from a layout's CSR.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(64).unwrap());
    /// assert_eq!(t.masks, vec![0xffff, 0xffff]); // one full tile per head
    /// ```
    pub fn new(layout: &Layout) -> CoarseTables {
        let heads = layout.num_heads();
        let block = layout.block();
        let padded = layout.padded_len();
        let num_qtiles = padded.div_ceil(KERNEL_TILE);
        let per_block = block / SUB; // sub-blocks per layout block side (1, 2, 4 or 8)
        let mut row_ptr = Vec::with_capacity(heads * num_qtiles + 1);
        let mut cols = Vec::new();
        let mut masks = Vec::new();
        let mut col_ptr = Vec::with_capacity(heads * num_qtiles + 1);
        let mut col_rows = Vec::new();
        let mut col_masks = Vec::new();
        row_ptr.push(0);
        col_ptr.push(0);
        for h in 0..heads {
            // chunk -> mask, per query tile of this head.
            let mut tiles: Vec<BTreeMap<usize, u32>> = vec![BTreeMap::new(); num_qtiles];
            for br in 0..layout.num_blocks() {
                let (start, end) = layout.row_range(h, br);
                for &bc in &layout.row_columns()[start..end] {
                    let bc = bc as usize;
                    for si in 0..per_block {
                        let sr = br * per_block + si; // global 16-row sub-block
                        for sj in 0..per_block {
                            let sc = bc * per_block + sj;
                            let (qt, i) = (sr / 4, sr % 4);
                            let (kc, j) = (sc / 4, sc % 4);
                            *tiles[qt].entry(kc).or_insert(0) |= 1 << (4 * i + j);
                        }
                    }
                }
            }
            let mut transposed: Vec<Vec<(i32, i32)>> = vec![Vec::new(); num_qtiles];
            for (qt, tile) in tiles.into_iter().enumerate() {
                for (kc, m) in tile {
                    cols.push(kc as i32);
                    masks.push(m as i32);
                    transposed[kc].push((qt as i32, m as i32));
                }
                row_ptr.push(cols.len() as i32);
            }
            for chunk in transposed {
                for (qt, m) in chunk {
                    col_rows.push(qt);
                    col_masks.push(m);
                }
                col_ptr.push(col_rows.len() as i32);
            }
        }
        let (pair_ptr, pair_cols, pair_masks) =
            pair_rows(heads, num_qtiles, &row_ptr, &cols, &masks);
        let (col_pair_ptr, col_pair_rows, col_pair_masks) =
            pair_rows(heads, num_qtiles, &col_ptr, &col_rows, &col_masks);
        CoarseTables {
            heads,
            num_qtiles,
            row_ptr,
            cols,
            masks,
            col_ptr,
            col_rows,
            col_masks,
            pair_ptr,
            pair_cols,
            pair_masks,
            col_pair_ptr,
            col_pair_rows,
            col_pair_masks,
        }
    }
}

/// How the attention kernels' CTAs share a layout: one work item per (head, query tile) in the
/// forward ([`CoarseTables::forward_plan`]) or per (head, key chunk) in the backward
/// ([`CoarseTables::backward_plan`]), except rows or columns much longer than the rest (global
/// blocks: BigBird, BSLongformer, Fixed's summary columns), which are cut into pieces of at most
/// `max_chunks` tiles that run in parallel and write partial results merged afterwards. Without
/// the split one CTA would walk a whole global row (256 tiles at L = 16384) while the others
/// finish in a few, and that one CTA would set the kernel's time.
///
/// ```
/// use ltd_sparse_attn::{BigBirdConfig, cuda::CoarseTables};
/// let mut c = BigBirdConfig::new(1);
/// c.block = 64;
/// let t = CoarseTables::new(&c.make_layout(4096).unwrap()); // 64 query tiles
/// let plan = t.forward_plan(16);
/// // The global row (all 64 chunks) is cut into 4 pieces; they come first (longest first).
/// assert_eq!(plan.split, vec![[0, 0, 0, 4]]);
/// assert_eq!(plan.num_slots, 4);
/// assert!(plan.items.iter().all(|[_, _, first, end]| end - first <= 16));
/// assert_eq!(plan.slots[..4], [0, 1, 2, 3]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkPlan {
    /// `(head, tile, first, end)` per work item: the range of `cols` (forward, tile = query
    /// tile) or `col_rows` (backward, tile = key chunk) it walks. Ordered longest first by
    /// powers of two (lengths 9-16 before 5-8, ...), so the long items start in the first wave,
    /// and in `(head, tile)` order within each power, so CTAs running at the same time share
    /// heads and what they read stays in L2.
    pub items: Vec<[i32; 4]>,
    /// Partial-result slot of each item, `-1` for an item that is a whole row or column.
    pub slots: Vec<i32>,
    /// `(head, tile, first slot, slot count)` per split row or column.
    pub split: Vec<[i32; 4]>,
    /// Slots over all split rows or columns (partial results per batch row).
    pub num_slots: usize,
}

impl WorkPlan {
    /// The work items as the kernels read them (`ltd_kernels.h`): `(head, tile, first, end,
    /// slot, entries[first], masks[first], entries[first + 1])` per item, the last three 0
    /// past the item's end, so a CTA's first two tile copies need no dependent load. `entries`
    /// and `masks` are the tables the plan's ranges index (`cols` / `masks` for
    /// [`CoarseTables::forward_plan`], `pair_cols` / `pair_masks` for the pair plan,
    /// `col_rows` / `col_masks` for the backward plan).
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(192).unwrap()); // 3 x 3 tiles
    /// let rows = t.forward_plan(2).kernel_rows(&t.cols, &t.masks);
    /// // Query tile 0's row (chunks 0, 1, 2) is split into pieces of 1 and 2 chunks.
    /// assert!(rows.contains(&[0, 0, 0, 1, 0, 0, 0xffff, 0]));
    /// assert!(rows.contains(&[0, 0, 1, 3, 1, 1, 0xffff, 2]));
    /// ```
    pub fn kernel_rows(&self, entries: &[i32], masks: &[i32]) -> Vec<[i32; 8]> {
        self.items
            .iter()
            .zip(&self.slots)
            .map(|(&[h, tile, first, end], &slot)| {
                let at = |i: i32, v: &[i32]| if i < end { v[i as usize] } else { 0 };
                [
                    h,
                    tile,
                    first,
                    end,
                    slot,
                    at(first, entries),
                    at(first, masks),
                    at(first + 1, entries),
                ]
            })
            .collect()
    }
}

impl CoarseTables {
    /// The forward work items: query-tile rows cut into pieces of at most `max_chunks` chunks
    /// (`0` is read as 1). Rows with no chunk keep one (empty) item: it writes their zeros.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(256).unwrap()); // 4 x 4 tiles
    /// let whole = t.forward_plan(4);
    /// assert_eq!((whole.items.len(), whole.num_slots), (8, 0));
    /// let split = t.forward_plan(3);
    /// assert_eq!((split.items.len(), split.num_slots, split.split.len()), (16, 16, 8));
    /// ```
    pub fn forward_plan(&self, max_chunks: usize) -> WorkPlan {
        self.plan(&self.row_ptr, self.num_qtiles, max_chunks)
    }

    /// The work items of the Hopper forward: pairs of query tiles (tile = pair index, ranges of
    /// `pair_cols`), pieces of at most `max_chunks` chunks.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(192).unwrap()); // 3 x 3 tiles
    /// let plan = t.forward_pair_plan(8);
    /// // Pair 0 = tiles 0 and 1 (3 shared chunks), pair 1 = tile 2 alone.
    /// assert_eq!(plan.items, vec![[0, 0, 0, 3], [0, 1, 3, 6]]);
    /// assert_eq!(t.pair_masks[0], 0xffff_ffff_u32 as i32);
    /// assert_eq!(t.pair_masks[3], 0xffff);
    /// ```
    pub fn forward_pair_plan(&self, max_chunks: usize) -> WorkPlan {
        self.plan(&self.pair_ptr, self.num_qtiles.div_ceil(2), max_chunks)
    }

    /// The backward work items: key-chunk columns (of the transposed tables) cut into pieces of
    /// at most `max_tiles` query tiles (`0` is read as 1); their dK/dV are summed afterwards.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(256).unwrap());
    /// let plan = t.backward_plan(2);
    /// assert_eq!((plan.items.len(), plan.num_slots, plan.split.len()), (8, 8, 4));
    /// ```
    pub fn backward_plan(&self, max_tiles: usize) -> WorkPlan {
        self.plan(&self.col_ptr, self.num_qtiles, max_tiles)
    }

    /// The work items of the Hopper backward's pair kernel: pairs of key chunks (tile = pair
    /// index c, ranges of `col_pair_rows`), pieces of at most `max_tiles` query tiles. Partial
    /// results come in two banks, one per chunk of the pair: an item with slot `s` writes chunk
    /// 2c's partial dK / dV to slot `s` and chunk 2c + 1's to `s + num_slots / 2`. `split`
    /// lists 64-key chunks, as the combine kernel reads them (a chunk past the last, from an odd
    /// chunk count, is left out), and `num_slots` counts both banks.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(256).unwrap()); // 4 x 4 tiles
    /// let plan = t.backward_pair_plan(2);
    /// // Two pairs of chunks, 4 query tiles each, in 2 pieces: 4 slots per bank.
    /// assert_eq!((plan.items.len(), plan.num_slots), (4, 8));
    /// assert_eq!(plan.split, vec![[0, 0, 0, 2], [0, 1, 4, 2], [0, 2, 2, 2], [0, 3, 6, 2]]);
    /// ```
    pub fn backward_pair_plan(&self, max_tiles: usize) -> WorkPlan {
        let mut plan = self.plan(&self.col_pair_ptr, self.num_qtiles.div_ceil(2), max_tiles);
        let bank = plan.num_slots as i32;
        plan.split = plan
            .split
            .iter()
            .flat_map(|&[h, pair, first, count]| {
                [
                    [h, 2 * pair, first, count],
                    [h, 2 * pair + 1, bank + first, count],
                ]
            })
            .filter(|&[_, chunk, _, _]| (chunk as usize) < self.num_qtiles)
            .collect();
        plan.num_slots *= 2;
        plan
    }

    fn plan(&self, ptr: &[i32], per_head: usize, max_chunks: usize) -> WorkPlan {
        let max_chunks = max_chunks.max(1);
        let mut items = Vec::with_capacity(self.heads * per_head);
        let mut slots = Vec::with_capacity(self.heads * per_head);
        let mut split = Vec::new();
        let mut num_slots = 0usize;
        for h in 0..self.heads {
            for tile in 0..per_head {
                let idx = h * per_head + tile;
                let (first, end) = (ptr[idx], ptr[idx + 1]);
                let n = (end - first) as usize;
                if n <= max_chunks {
                    items.push([h as i32, tile as i32, first, end]);
                    slots.push(-1);
                    continue;
                }
                let pieces = n.div_ceil(max_chunks);
                split.push([h as i32, tile as i32, num_slots as i32, pieces as i32]);
                for i in 0..pieces {
                    let a = first + (n * i / pieces) as i32;
                    let b = first + (n * (i + 1) / pieces) as i32;
                    items.push([h as i32, tile as i32, a, b]);
                    slots.push((num_slots + i) as i32);
                }
                num_slots += pieces;
            }
        }
        // Longest first by powers of two (a long item must not start last and become the
        // kernel's tail), and in (head, tile) order within each power: CTAs that run at the same
        // time then share heads, so the K / V chunks (forward) or the Q / dO tiles and dq
        // accumulator rows (backward) they read stay in L2 instead of every head's at once.
        let band = |i: usize| u32::BITS - ((items[i][3] - items[i][2]) as u32).leading_zeros();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(band(i)));
        WorkPlan {
            items: order.iter().map(|&i| items[i]).collect(),
            slots: order.iter().map(|&i| slots[i]).collect(),
            split,
            num_slots,
        }
    }

    /// The forward's piece length on a GPU with `sm_count` multiprocessors (what
    /// [`CudaAttentionLayout`] uses): about the work of one CTA slot when one batch row of
    /// the layout is spread over the four CTAs per multiprocessor the forward kernels run, and
    /// never below 16 chunks (a piece's fixed cost, loading Q and storing a partial output, is
    /// about one chunk's work): `cols / (4 SMs)`. Measured on an H100 (BigBird b64, L = 16384,
    /// D = 64): twice as long pieces (`cols / (2 SMs)`) left the global rows' pieces on the
    /// kernel's critical path (115 µs against 102 µs); half as long ones were no faster
    /// anywhere and up to 4% slower at L = 16384.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&FixedConfig::new(16).make_layout(4096).unwrap());
    /// assert!(t.forward_split_chunks(132) >= 16);
    /// assert!(t.forward_split_chunks(132) <= t.backward_split_chunks(132));
    /// ```
    pub fn forward_split_chunks(&self, sm_count: usize) -> usize {
        self.cols.len().div_ceil(4 * sm_count.max(1)).max(16)
    }

    /// The backward's piece length (query tiles per piece of a key column) on a GPU with
    /// `sm_count` multiprocessors: about the work of one CTA slot at two CTAs per
    /// multiprocessor, never below 16. Twice the forward's: a backward piece writes 2 f32
    /// partial tiles (dK, dV), and halving it made Fixed's backward at L = 4096 4–9% slower.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&FixedConfig::new(16).make_layout(4096).unwrap());
    /// assert!(t.backward_split_chunks(132) >= 16);
    /// ```
    pub fn backward_split_chunks(&self, sm_count: usize) -> usize {
        self.cols.len().div_ceil(2 * sm_count.max(1)).max(16)
    }
}

/// A layout's kernel tables in GPU memory. Build once per layout (and device) and reuse for
/// every call: [`crate::SparseSelfAttention`] layouts are cached per length, so hold one of
/// these per cached layout.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{FixedConfig, cuda::CudaAttentionLayout};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(16).make_layout(4096)?;
/// let gpu_layout = CudaAttentionLayout::new(&dev, &layout)?;
/// assert_eq!(gpu_layout.heads(), 16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaAttentionLayout {
    heads: usize,
    num_blocks: usize,
    block: usize,
    active_tiles: usize,
    cols: CudaSlice<i32>,
    masks: CudaSlice<i32>,
    col_rows: CudaSlice<i32>,
    col_masks: CudaSlice<i32>,
    /// The layout's own CSR (per block-row: active tile columns; position = tile index), for the
    /// block-sparse primitives.
    csr_offsets: CudaSlice<i32>,
    csr_columns: CudaSlice<i32>,
    nnz: usize,
    /// The forward (per tile and per pair of tiles) and backward (per chunk and per pair of
    /// chunks) work plans ([`WorkPlan`]).
    fwd_plan: GpuPlan,
    fwd_pair_plan: GpuPlan,
    bwd_plan: GpuPlan,
    bwd_pair_plan: GpuPlan,
    pair_cols: CudaSlice<i32>,
    pair_masks: CudaSlice<i32>,
    pair_tiles: usize,
    col_pair_rows: CudaSlice<i32>,
    col_pair_masks: CudaSlice<i32>,
    col_pair_tiles: usize,
}

/// An uninitialised f32 buffer of `len` for the partial results of split rows or columns, or
/// `None` when the plan splits nothing (the kernels then never touch it). Not zero-filled:
/// every slot belongs to exactly one piece, which writes all of its rows (`fwd_store` /
/// `bwd_store` write a slot's item_rows or 64 rows whole, past the sequence end too) before the
/// combine, launched after it on the same stream, reads any.
fn partial_buffer(
    stream: &Arc<cudarc::driver::CudaStream>,
    plan: &GpuPlan,
    len: usize,
) -> Result<Option<CudaSlice<f32>>> {
    if plan.num_slots == 0 {
        return Ok(None);
    }
    // SAFETY: uninitialised device memory of `len` f32; only kernels touch it, and (above) each
    // element is written by the main kernel before the combine reads it.
    unsafe { stream.alloc::<f32>(len) }
        .map(Some)
        .map_err(cuda_err("allocating the partial results of split rows"))
}

/// A [`WorkPlan`] in GPU memory: the kernels' work-item rows (`ltd_kernels.h`: head, tile,
/// first, end, slot, the table's entry at `first` and its mask, the entry at `first + 1`) and
/// the split rows.
struct GpuPlan {
    items: CudaSlice<i32>,
    split: CudaSlice<i32>,
    num_items: usize,
    num_slots: usize,
    num_split: usize,
}

/// Uploads a kernel table; an empty one as a single 0 (a kernel parameter still needs a valid
/// device pointer, and nothing reads past a table's length).
fn upload_table(dev: &CudaDevice, table: &[i32]) -> Result<CudaSlice<i32>> {
    Ok(dev.upload(if table.is_empty() { &[0] } else { table })?)
}

impl GpuPlan {
    /// `table` is the (entries, masks) pair the plan's ranges index.
    fn upload(dev: &CudaDevice, plan: &WorkPlan, table: (&[i32], &[i32])) -> Result<GpuPlan> {
        let items: Vec<i32> = plan
            .kernel_rows(table.0, table.1)
            .into_iter()
            .flatten()
            .collect();
        let split: Vec<i32> = plan.split.iter().flatten().copied().collect();
        Ok(GpuPlan {
            items: upload_table(dev, &items)?,
            split: upload_table(dev, &split)?,
            num_items: plan.items.len(),
            num_slots: plan.num_slots,
            num_split: plan.split.len(),
        })
    }

    /// Grid size `items * batch`, checked against the 2^31 - 1 grid limit.
    fn grid(&self, batch: usize) -> Result<u32> {
        self.num_items
            .checked_mul(batch)
            .filter(|&n| n <= i32::MAX as usize)
            .map(|n| n as u32)
            .ok_or_else(|| {
                invalid(
                    "batch",
                    batch,
                    "a batch whose work items (batch x items of the layout) fit a 2^31 grid",
                )
            })
    }
}

impl CudaAttentionLayout {
    /// Builds the coarse tables of `layout` and uploads them.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice;
    /// # use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// let dev = CudaDevice::new(0)?;
    /// let l = CudaAttentionLayout::new(&dev, &BigBirdConfig::new(4).make_layout(1024)?)?;
    /// assert!(l.active_kernel_tiles() > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dev: &CudaDevice, layout: &Layout) -> Result<CudaAttentionLayout> {
        let t = CoarseTables::new(layout);
        let (fwd_limit, bwd_limit) = (
            t.forward_split_chunks(dev.sm_count()),
            t.backward_split_chunks(dev.sm_count()),
        );
        Ok(CudaAttentionLayout {
            fwd_plan: GpuPlan::upload(dev, &t.forward_plan(fwd_limit), (&t.cols, &t.masks))?,
            fwd_pair_plan: GpuPlan::upload(
                dev,
                &t.forward_pair_plan(fwd_limit),
                (&t.pair_cols, &t.pair_masks),
            )?,
            pair_cols: upload_table(dev, &t.pair_cols)?,
            pair_tiles: t.pair_cols.len(),
            pair_masks: upload_table(dev, &t.pair_masks)?,
            bwd_plan: GpuPlan::upload(
                dev,
                &t.backward_plan(bwd_limit),
                (&t.col_rows, &t.col_masks),
            )?,
            bwd_pair_plan: GpuPlan::upload(
                dev,
                &t.backward_pair_plan(bwd_limit),
                (&t.col_pair_rows, &t.col_pair_masks),
            )?,
            col_pair_rows: upload_table(dev, &t.col_pair_rows)?,
            col_pair_tiles: t.col_pair_rows.len(),
            col_pair_masks: upload_table(dev, &t.col_pair_masks)?,
            heads: t.heads,
            num_blocks: layout.num_blocks(),
            block: layout.block(),
            active_tiles: t.cols.len(),
            cols: upload_table(dev, &t.cols)?,
            masks: upload_table(dev, &t.masks)?,
            col_rows: upload_table(dev, &t.col_rows)?,
            col_masks: upload_table(dev, &t.col_masks)?,
            csr_offsets: dev.upload(layout.row_offsets())?,
            csr_columns: upload_table(dev, layout.row_columns())?,
            nnz: layout.nnz(),
        })
    }

    /// Heads of the layout.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{DenseConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// assert_eq!(CudaAttentionLayout::new(&dev, &DenseConfig::new(3).make_layout(64)?)?.heads(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// 64 x 64 kernel tiles computed per (batch, all heads) call: the work the kernel does.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{DenseConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// assert_eq!(CudaAttentionLayout::new(&dev, &DenseConfig::new(1).make_layout(128)?)?.active_kernel_tiles(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn active_kernel_tiles(&self) -> usize {
        self.active_tiles
    }

    /// K/V chunk loads of the pair kernel per load of the single-tile kernel: active chunks of
    /// the pair tables (union over two adjacent query tiles) / active 64 x 64 tiles. 0.5 when
    /// adjacent tiles always use the same chunks, 1 when they never share (1 for no tiles).
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{DenseConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// let l = CudaAttentionLayout::new(&dev, &DenseConfig::new(1).make_layout(256)?)?;
    /// assert_eq!(l.pair_sharing(), 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pair_sharing(&self) -> f64 {
        Self::sharing(self.pair_tiles, self.active_tiles)
    }

    /// Q / dO tile loads (and dQ reductions) of the backward's pair kernel per one of the
    /// single-chunk kernel: active query tiles of the transposed pair tables (union over two
    /// adjacent key chunks) / active 64 x 64 tiles. 0.5 when adjacent chunks always see the same
    /// query tiles (every layout of block 128), 1 when they never share (1 for no tiles).
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(2);
    /// c.block = 128;
    /// let l = CudaAttentionLayout::new(&dev, &c.make_layout(2048)?)?;
    /// assert_eq!(l.column_pair_sharing(), 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn column_pair_sharing(&self) -> f64 {
        Self::sharing(self.col_pair_tiles, self.active_tiles)
    }

    fn sharing(pair_tiles: usize, active_tiles: usize) -> f64 {
        if active_tiles == 0 {
            1.0
        } else {
            pair_tiles as f64 / active_tiles as f64
        }
    }
}

/// Uploaded kernel tables per (device ordinal, block count), shared between threads; the cache
/// behind [`SparseSelfAttention::cuda_layout`].
///
/// ```
/// let cache = ltd_sparse_attn::cuda::CudaLayoutCache::default();
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Default)]
pub struct CudaLayoutCache {
    map: RwLock<HashMap<(usize, usize), Arc<CudaAttentionLayout>>>,
}

impl std::fmt::Debug for CudaLayoutCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaLayoutCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl CudaLayoutCache {
    /// Number of cached tables.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::cuda::CudaLayoutCache::default().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::cuda::CudaLayoutCache::default().len(), 0);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SparseSelfAttention {
    /// The GPU kernel tables of this module's layout for `seq_len` on `dev`: built from the
    /// cached layout and uploaded on first use, then reused (per device and block count).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
    /// let dev = CudaDevice::new(0)?;
    /// let attn = SparseSelfAttention::new(FixedConfig::new(16).into())?;
    /// let a = attn.cuda_layout(&dev, 4096)?;
    /// let b = attn.cuda_layout(&dev, 4096)?;
    /// assert!(std::sync::Arc::ptr_eq(&a, &b));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cuda_layout(
        &self,
        dev: &CudaDevice,
        seq_len: usize,
    ) -> Result<Arc<CudaAttentionLayout>> {
        let layout = self.layout(seq_len)?;
        let key = (dev.ordinal(), layout.num_blocks());
        if let Some(found) = self
            .cuda_tables
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let built = Arc::new(CudaAttentionLayout::new(dev, &layout)?);
        let mut map = self
            .cuda_tables
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(key).or_insert(built).clone())
    }
}

/// Options of a GPU attention call (`T`: the element type of the inputs, for the bias).
///
/// ```
/// use half::bf16;
/// let o = ltd_sparse_attn::cuda::CudaAttentionOptions::<bf16> { causal: true, ..Default::default() };
/// assert!(o.scale.is_none() && o.key_padding_mask.is_none() && o.bias.is_none());
/// ```
#[derive(Clone, Copy, Default)]
pub struct CudaAttentionOptions<'a, T> {
    /// Softmax scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Hide keys after the query (token-level causality inside diagonal blocks).
    pub causal: bool,
    /// Additive key-padding mask `[B, L]` in f32 (`0` keeps a key, `-inf` drops it; convert a
    /// boolean mask with `if keep { 0.0 } else { f32::NEG_INFINITY }`).
    pub key_padding_mask: Option<&'a CudaSlice<f32>>,
    /// Additive bias `[B, H, L, L]` (upstream's `rpe`), added after the scale; its gradient is
    /// [`CudaAttentionGrads::dbias`]. Quadratic memory, as upstream's. The kernels read it one
    /// 64 x 64 tile per (query tile, key chunk) when `L` is a multiple of 8 (except
    /// [`CudaAttentionKernel::WgmmaPairs`]' forward, and the `mma.sync` forward where the tiles
    /// would cost it CTAs per SM, as on an A100), and element by element otherwise, which
    /// measured 1.8x slower in the forward and 2.6x in forward + backward (H100, Hopper
    /// kernels, BigBird block 128, L 4096, head dim 64).
    pub bias: Option<&'a CudaSlice<T>>,
    /// Which kernel family runs, forward and backward ([`CudaAttentionKernel::Auto`] unless
    /// you are comparing them).
    pub kernel: CudaAttentionKernel,
}

/// The kernel family of the fused attention (forward and backward). Both compute the same thing
/// from the same tables; they differ in the tensor-core instructions, so results agree to
/// rounding (f32 accumulation in both).
///
/// ```
/// use ltd_sparse_attn::cuda::CudaAttentionKernel;
/// assert_eq!(CudaAttentionKernel::default(), CudaAttentionKernel::Auto);
/// assert!(CudaAttentionKernel::Wgmma.runs_on((9, 0)) && CudaAttentionKernel::WgmmaPairs.runs_on((9, 0)));
/// assert!(!CudaAttentionKernel::Wgmma.runs_on((8, 0)) && CudaAttentionKernel::MmaSync.runs_on((8, 6)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CudaAttentionKernel {
    /// On compute capability 9.0 (H100/H200) [`Wgmma`](Self::Wgmma), except for a backward
    /// [`backward_pairs`](Self::backward_pairs) gives to the pair kernel;
    /// [`MmaSync`](Self::MmaSync) elsewhere.
    #[default]
    Auto,
    /// `mma.sync` warp MMAs, 4 warps x 16 query rows (sm_80 and newer: A100, H100, ...).
    MmaSync,
    /// Hopper warpgroup MMAs (`wgmma.mma_async`, sm_90a machine code), one warpgroup per 64-row
    /// query tile: compute capability 9.0 only; asking for it elsewhere is an
    /// [`SparseAttnError::InvalidArgument`].
    Wgmma,
    /// [`Wgmma`](Self::Wgmma) with two warpgroups per CTA sharing loads. Forward: a pair of
    /// adjacent query tiles sharing their K/V chunk loads; since the tiles arrive by TMA it
    /// measured 10–83% slower than `Wgmma`'s forward on every benchmarked layout (H100; 10–43%
    /// at head dim 64, where it runs two CTAs per SM), even where adjacent tiles share most
    /// chunks ([`CudaAttentionLayout::pair_sharing`] 0.5, Fixed), so `Auto` never picks it.
    /// Backward: a pair of adjacent 64-key chunks sharing the Q / dO tiles of every query tile
    /// and adding one dQ tile for both
    /// ([`CudaAttentionLayout::column_pair_sharing`]); `Auto` picks it where
    /// [`backward_pairs`](Self::backward_pairs) says. With a bias the backward is `Wgmma`'s.
    WgmmaPairs,
}

impl CudaAttentionKernel {
    /// Whether this choice can run on a device of compute capability `(major, minor)`.
    ///
    /// ```
    /// use ltd_sparse_attn::cuda::CudaAttentionKernel;
    /// assert!(CudaAttentionKernel::Auto.runs_on((8, 0)));
    /// assert!(!CudaAttentionKernel::MmaSync.runs_on((7, 5)));
    /// ```
    pub fn runs_on(self, (major, minor): (i32, i32)) -> bool {
        match self {
            CudaAttentionKernel::Auto | CudaAttentionKernel::MmaSync => major >= 8,
            CudaAttentionKernel::Wgmma | CudaAttentionKernel::WgmmaPairs => {
                (major, minor) == (9, 0)
            }
        }
    }

    /// Whether this (resolved) choice is one of the Hopper kernels.
    ///
    /// ```
    /// use ltd_sparse_attn::cuda::CudaAttentionKernel;
    /// assert!(CudaAttentionKernel::WgmmaPairs.is_hopper());
    /// assert!(!CudaAttentionKernel::MmaSync.is_hopper());
    /// ```
    pub fn is_hopper(self) -> bool {
        matches!(
            self,
            CudaAttentionKernel::Wgmma | CudaAttentionKernel::WgmmaPairs
        )
    }

    /// The concrete forward kernel `Auto` picks for `layout` and `head_dim` on a device of
    /// compute capability `cc` (the backward: the same family, and
    /// [`backward_pairs`](Self::backward_pairs) says whether it runs the pair kernel); other
    /// choices are returned as they are. `Auto` is
    /// [`Wgmma`](Self::Wgmma) on 9.0 and [`MmaSync`](Self::MmaSync) elsewhere, whatever the
    /// layout and head dim (the pair kernel, picked for head dim 64 on well-shared layouts
    /// before the kernels loaded their tiles by TMA, is now 10–83% slower than `Wgmma` on
    /// every benchmarked layout); the arguments stay so the choice can depend on them again.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?;
    /// let layout = CudaAttentionLayout::new(&dev, &FixedConfig::new(4).make_layout(4096)?)?;
    /// assert_eq!(CudaAttentionKernel::Auto.resolve((9, 0), &layout, 64), CudaAttentionKernel::Wgmma);
    /// assert_eq!(CudaAttentionKernel::Auto.resolve((9, 0), &layout, 128), CudaAttentionKernel::Wgmma);
    /// assert_eq!(CudaAttentionKernel::Auto.resolve((8, 0), &layout, 64), CudaAttentionKernel::MmaSync);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve(
        self,
        cc: (i32, i32),
        _layout: &CudaAttentionLayout,
        _head_dim: usize,
    ) -> CudaAttentionKernel {
        match self {
            CudaAttentionKernel::Auto if cc == (9, 0) => CudaAttentionKernel::Wgmma,
            CudaAttentionKernel::Auto => CudaAttentionKernel::MmaSync,
            other => other,
        }
    }

    /// Whether the backward of this choice runs the Hopper pair kernel (two warpgroups on two
    /// adjacent key chunks) on a device of compute capability `cc`: always for
    /// [`WgmmaPairs`](Self::WgmmaPairs); for `Auto` on 9.0 at head dim 128 where adjacent
    /// chunks see the same query tiles ([`CudaAttentionLayout::column_pair_sharing`] at most
    /// [`AUTO_BACKWARD_PAIR_SHARING`]); never with a bias or dbias (no pair variant of the bias
    /// kernel) and never for the other choices. Measured on an H100 (bench, BigBird block 128,
    /// bf16, same run): forward + backward 10-14% faster at head dim 128 (1065 against 1186 µs
    /// at L 4096, 1034 against 1199 at 16384); at head dim 64 the pair backward is about 8%
    /// slower: its 190 registers x 256 threads leave 8 warps per SM against the single
    /// kernel's 12.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{BigBirdConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(4);
    /// c.block = 128;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(4096)?)?;
    /// assert!(CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 128, false));
    /// assert!(!CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 64, false));
    /// assert!(!CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 128, true));
    /// assert!(!CudaAttentionKernel::Wgmma.backward_pairs((9, 0), &layout, 128, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_pairs(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        head_dim: usize,
        with_bias: bool,
    ) -> bool {
        !with_bias
            && match self {
                CudaAttentionKernel::WgmmaPairs => true,
                CudaAttentionKernel::Auto => {
                    cc == (9, 0)
                        && head_dim == 128
                        && layout.column_pair_sharing() <= AUTO_BACKWARD_PAIR_SHARING
                }
                _ => false,
            }
    }
}

/// `Auto` runs the backward's pair kernel (head dim 128) on layouts whose
/// [`CudaAttentionLayout::column_pair_sharing`] is at most this: block-128 layouts (0.5). The
/// block-64 layouts of the bench share less, and there the pair backward did not pay (H100,
/// head dim 128, L 4096 and 16384, one run; its time taken as the pair kernels' forward +
/// backward minus the pair forward's, against `Wgmma`'s the same way): BSLongformer
/// (sharing 0.69-0.70) from 3.5% faster to 3.6% slower, BigBird (0.74-0.75) 4.5-7% slower,
/// Fixed (0.90-0.97) 31-46% slower.
pub const AUTO_BACKWARD_PAIR_SHARING: f64 = 0.55;

/// Validates a GPU attention call on a device of compute capability `cc`: `tensors` are the
/// call's `[B, H, L, D]` buffers by name (q, k, v first) and `lse_len` the length of its
/// `[B, H, L]` logsumexp. Returns the kernel type suffix, the scale and the kernel family
/// `options.kernel` resolves to there.
fn check_call<T: Element>(
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    tensors: &[(&'static str, usize)],
    lse_len: usize,
    options: &CudaAttentionOptions<'_, T>,
    cc: (i32, i32),
) -> Result<(&'static str, f32, CudaAttentionKernel)> {
    let AttentionShape {
        batch,
        heads,
        seq_len,
        head_dim,
    } = shape;
    let type_name = match T::DTYPE {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => {
            return Err(invalid(
                "dtype",
                "f32",
                "f16 or bf16 on the GPU (fused f32 attention runs on the CPU: attention_forward)",
            ));
        }
    };
    if head_dim != 64 && head_dim != 128 {
        return Err(invalid(
            "head_dim",
            head_dim,
            "64 or 128 for the fused GPU kernel (other sizes: the CPU path)",
        ));
    }
    if heads != layout.heads {
        return Err(SparseAttnError::HeadMismatch {
            expected: layout.heads,
            actual: heads,
        });
    }
    if batch == 0 || seq_len == 0 {
        return Err(invalid(
            "batch and seq_len",
            format!("{batch} and {seq_len}"),
            "both at least 1",
        ));
    }
    if seq_len.div_ceil(layout.block) != layout.num_blocks {
        return Err(SparseAttnError::shape(
            "layout",
            format!(
                "{} blocks of {} for L = {seq_len}",
                seq_len.div_ceil(layout.block),
                layout.block
            ),
            format!("{} blocks (built for another length)", layout.num_blocks),
        ));
    }
    if batch > 65_535 || heads > 65_535 || seq_len > i32::MAX as usize {
        return Err(invalid(
            "shape",
            format!("{shape:?}"),
            "batch and heads at most 65535, L below 2^31",
        ));
    }
    let n = shape.qkv_len();
    for &(what, len) in tensors {
        if len != n {
            return Err(SparseAttnError::shape(
                what,
                format!("[B={batch}, H={heads}, L={seq_len}, D={head_dim}] = {n}"),
                len,
            ));
        }
    }
    if lse_len != shape.lse_len() {
        return Err(SparseAttnError::shape(
            "lse",
            format!("[B={batch}, H={heads}, L={seq_len}] = {}", shape.lse_len()),
            lse_len,
        ));
    }
    if let Some(m) = options.key_padding_mask
        && m.len() != batch * seq_len
    {
        return Err(SparseAttnError::shape(
            "key_padding_mask",
            format!("[B={batch}, L={seq_len}]"),
            m.len(),
        ));
    }
    if let Some(bias) = options.bias {
        let want = n.checked_div(head_dim).and_then(|x| x.checked_mul(seq_len));
        if want != Some(bias.len()) {
            return Err(SparseAttnError::shape(
                "bias",
                format!("[B={batch}, H={heads}, L={seq_len}, L={seq_len}]"),
                bias.len(),
            ));
        }
    }
    let scale = options.scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    if !scale.is_finite() {
        return Err(invalid("scale", scale, "a finite number"));
    }
    if !options.kernel.runs_on(cc) {
        return Err(invalid(
            "kernel",
            format!(
                "{:?} on a device of compute capability {}.{}",
                options.kernel, cc.0, cc.1
            ),
            "Wgmma only on compute capability 9.0 (use Auto or MmaSync)",
        ));
    }
    Ok((
        type_name,
        scale,
        options.kernel.resolve(cc, layout, head_dim),
    ))
}

/// Kernel entry points of one kind, by element type (bf16, f16) and head dim (64, 128); the
/// names exist in `kernels/sparse_attn.cu` and, for the `*_sm90*` kinds,
/// `kernels/sparse_attn.sm90a.cu`.
type KernelNames = [[&'static str; 2]; 2];

macro_rules! kernel_names {
    ($prefix:literal) => {
        [
            [
                concat!($prefix, "_bf16_d64"),
                concat!($prefix, "_bf16_d128"),
            ],
            [concat!($prefix, "_f16_d64"), concat!($prefix, "_f16_d128")],
        ]
    };
}

const FWD: KernelNames = kernel_names!("ltd_sparse_attn_fwd");
const FWD_BIAS_TILES: KernelNames = kernel_names!("ltd_sparse_attn_fwd_bias_tiles");
const FWD_SM90: KernelNames = kernel_names!("ltd_sparse_attn_fwd_sm90");
const FWD_SM90_PAIR: KernelNames = kernel_names!("ltd_sparse_attn_fwd_sm90_pair");
const FWD_BIAS_SM90: KernelNames = kernel_names!("ltd_sparse_attn_fwd_bias_tma_sm90");
const FWD_COMBINE: KernelNames = kernel_names!("ltd_sparse_attn_fwd_combine");
const BWD_PRE: KernelNames = kernel_names!("ltd_sparse_attn_bwd_pre");
const BWD: KernelNames = kernel_names!("ltd_sparse_attn_bwd");
const BWD_BIAS: KernelNames = kernel_names!("ltd_sparse_attn_bwd_bias");
const BWD_BIAS_TILES: KernelNames = kernel_names!("ltd_sparse_attn_bwd_bias_tiles");
const BWD_SM90: KernelNames = kernel_names!("ltd_sparse_attn_bwd_sm90");
const BWD_BIAS_SM90: KernelNames = kernel_names!("ltd_sparse_attn_bwd_bias_sm90");
const BWD_BIAS_TMA_SM90: KernelNames = kernel_names!("ltd_sparse_attn_bwd_bias_tma_sm90");
const BWD_SM90_PAIR: KernelNames = kernel_names!("ltd_sparse_attn_bwd_sm90_pair");
const BWD_COMBINE: KernelNames = kernel_names!("ltd_sparse_attn_bwd_combine");
/// The dq conversion depends on the element type only.
const BWD_DQ: KernelNames = [
    ["ltd_sparse_attn_bwd_dq_bf16", "ltd_sparse_attn_bwd_dq_bf16"],
    ["ltd_sparse_attn_bwd_dq_f16", "ltd_sparse_attn_bwd_dq_f16"],
];

/// The entry point of `names` for a call validated by `check_call` (`type_name` "bf16" or "f16",
/// `head_dim` 64 or 128).
fn kernel_name(names: &KernelNames, type_name: &str, head_dim: usize) -> &'static str {
    names[usize::from(type_name != "bf16")][usize::from(head_dim != 64)]
}

/// Fused block-sparse attention forward on the GPU: writes `out` `[B, H, L, D]` and `lse`
/// `[B, H, L]` (natural log). Inputs `[B, H, L, D]` contiguous, fp16 or bf16, `D` 64 or 128.
///
/// # Errors
/// [`SparseAttnError::HeadMismatch`], [`SparseAttnError::ShapeMismatch`] (buffer lengths, a
/// layout built for another length), [`SparseAttnError::InvalidArgument`] for f32 inputs or
/// another head dim (use [`crate::attention_forward`] on the CPU), driver failures.
///
/// ```no_run
/// use half::bf16;
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{AttentionShape, FixedConfig};
/// use ltd_sparse_attn::cuda::{CudaAttentionLayout, CudaAttentionOptions, attention_forward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let shape = AttentionShape { batch: 1, heads: 4, seq_len: 1000, head_dim: 64 };
/// let layout = CudaAttentionLayout::new(&dev, &FixedConfig::new(4).make_layout(1000)?)?;
/// let x = dev.upload(&vec![bf16::from_f32(0.5); shape.qkv_len()])?;
/// let mut out = dev.upload(&vec![bf16::ZERO; shape.qkv_len()])?;
/// let mut lse = dev.upload(&vec![0.0f32; shape.lse_len()])?;
/// attention_forward_cuda(&dev, &layout, shape, (&x, &x, &x), &CudaAttentionOptions::default(), &mut out, &mut lse)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attention_forward_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    (q, k, v): (&CudaSlice<T>, &CudaSlice<T>, &CudaSlice<T>),
    options: &CudaAttentionOptions<'_, T>,
    out: &mut CudaSlice<T>,
    lse: &mut CudaSlice<f32>,
) -> Result<()> {
    let (type_name, scale, kernel) = check_call::<T>(
        layout,
        shape,
        &[
            ("q", q.len()),
            ("k", k.len()),
            ("v", v.len()),
            ("out", out.len()),
        ],
        lse.len(),
        options,
        dev.compute_capability(),
    )?;
    let AttentionShape {
        batch,
        heads,
        seq_len,
        head_dim,
    } = shape;
    // The sm_80 and single-tile Hopper kernels: one 64-row query tile per CTA of 128 threads,
    // five 64 x D tiles (Q, two K and two V buffers; the Hopper one has one V buffer at D 128).
    // The pair kernel: a pair of query tiles per CTA of 256 threads (one warpgroup each) on the
    // pair tables, six tiles (two Q). The Hopper kernels align their tiles to 1 KB (swizzled
    // layout) and keep their mbarriers after them: SM90_SMEM_EXTRA. With a bias the single-tile
    // Hopper kernel (and the sm_80 one where that costs no CTA per SM, below) reads it one
    // 64 x 64 tile per chunk (TMA / cp.async), next to K / V, in two more buffers (its rows
    // must be 16-byte multiples: L % 8 == 0; otherwise the bias is read per element, slower).
    let bias_tiles = options.bias.is_some() && seq_len % 8 == 0;
    let bias_tile_bytes = if bias_tiles {
        2 * KERNEL_TILE * KERNEL_TILE * 2
    } else {
        0
    };
    // The Hopper kernel of `names` with `smem` bytes of dynamic shared memory.
    let sm90 = |names: &KernelNames, smem: usize| -> Result<_> {
        let name = kernel_name(names, type_name, head_dim);
        let func = dev.load_function_with_shared(
            "sparse_attn_sm90a",
            fatbin::SPARSE_ATTN_SM90A,
            name,
            smem,
        )?;
        Ok((func, smem))
    };
    let (func, smem) = match kernel {
        CudaAttentionKernel::WgmmaPairs => sm90(
            &FWD_SM90_PAIR,
            6 * KERNEL_TILE * head_dim * 2 + SM90_SMEM_EXTRA,
        )?,
        CudaAttentionKernel::Wgmma => {
            // At D 128 one V buffer (4 tiles: 3 CTAs per SM fit in shared memory).
            let tiles = if head_dim == 128 { 4 } else { 5 };
            let names = if bias_tiles {
                &FWD_BIAS_SM90
            } else {
                &FWD_SM90
            };
            sm90(
                names,
                tiles * KERNEL_TILE * head_dim * 2 + bias_tile_bytes + SM90_SMEM_EXTRA,
            )?
        }
        _ => {
            let smem = 5 * KERNEL_TILE * head_dim * 2;
            let name = kernel_name(&FWD, type_name, head_dim);
            let plain =
                dev.load_function_with_shared("sparse_attn", fatbin::SPARSE_ATTN, name, smem)?;
            // With a bias, the bias-tile kernel where its two more 8 KB tiles keep as many CTAs per
            // SM as the per-element kernel: on an H100 (measured there: 1.32-1.56x faster), not on
            // an A100 at either head dim (164 KB per SM: 2 CTAs instead of 4 at D 64, 1 instead of
            // 2 at D 128), where the trade was not measured. The device caches both occupancies.
            let tiled = if bias_tiles {
                let tiled_smem = smem + bias_tile_bytes;
                let tiled_name = kernel_name(&FWD_BIAS_TILES, type_name, head_dim);
                let ctas = |name, bytes| {
                    dev.blocks_per_multiprocessor(
                        "sparse_attn",
                        fatbin::SPARSE_ATTN,
                        name,
                        128,
                        bytes,
                    )
                };
                if ctas(tiled_name, tiled_smem)? >= ctas(name, smem)? {
                    let f = dev.load_function_with_shared(
                        "sparse_attn",
                        fatbin::SPARSE_ATTN,
                        tiled_name,
                        tiled_smem,
                    )?;
                    Some((f, tiled_smem))
                } else {
                    None
                }
            } else {
                None
            };
            tiled.unwrap_or((plain, smem))
        }
    };
    // Threads per CTA, query rows per work item, and the plan and tables it walks.
    let (threads, item_rows, plan, cols, masks) = if kernel == CudaAttentionKernel::WgmmaPairs {
        (
            256u32,
            2 * KERNEL_TILE,
            &layout.fwd_pair_plan,
            &layout.pair_cols,
            &layout.pair_masks,
        )
    } else {
        (
            128u32,
            KERNEL_TILE,
            &layout.fwd_plan,
            &layout.cols,
            &layout.masks,
        )
    };
    let stream = dev.stream();
    let items = plan.grid(batch)?;
    // Partial outputs of the pieces of split rows (f32 [B, slots, rows, D] and [B, slots, rows]),
    // only for layouts that have split rows.
    let parts = batch * plan.num_slots * item_rows;
    let mut part_o = partial_buffer(stream, plan, parts * head_dim)?;
    let mut part_lse = partial_buffer(stream, plan, parts)?;
    let (q_ptr, g1) = q.device_ptr(stream);
    let (k_ptr, g2) = k.device_ptr(stream);
    let (v_ptr, g3) = v.device_ptr(stream);
    let (o_ptr, g4) = out.device_ptr_mut(stream);
    let (l_ptr, g5) = lse.device_ptr_mut(stream);
    let (c_ptr, g7) = cols.device_ptr(stream);
    let (m_ptr, g8) = masks.device_ptr(stream);
    let (wi_ptr, g9) = plan.items.device_ptr(stream);
    let (sr_ptr, g11) = plan.split.device_ptr(stream);
    let po = part_o.as_mut().map(|b| b.device_ptr_mut(stream));
    let pl = part_lse.as_mut().map(|b| b.device_ptr_mut(stream));
    let kpm = options.key_padding_mask.map(|m| m.device_ptr(stream));
    let bias = options.bias.map(|m| m.device_ptr(stream));
    let params = LtdSparseAttnFwdParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        lse: l_ptr,
        tile_cols: c_ptr,
        tile_masks: m_ptr,
        kpm: kpm.as_ref().map_or(0, |(p, _)| *p),
        bias: bias.as_ref().map_or(0, |(p, _)| *p),
        work_items: wi_ptr,
        split_rows: sr_ptr,
        part_o: po.as_ref().map_or(0, |(p, _)| *p),
        part_lse: pl.as_ref().map_or(0, |(p, _)| *p),
        batch: batch as i64,
        heads: heads as i64,
        seq: seq_len as i64,
        num_slots: plan.num_slots as i64,
        scale_log2: scale * std::f32::consts::LOG2_E,
        causal: i32::from(options.causal),
        item_rows: item_rows as i32,
    };
    let cfg = LaunchConfig {
        grid_dim: (items, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let maps = if kernel.is_hopper() {
        Some(tma_maps(
            [q_ptr, k_ptr, v_ptr],
            Some(o_ptr),
            None,
            if kernel == CudaAttentionKernel::Wgmma && bias_tiles {
                bias.as_ref().map(|(p, _)| *p)
            } else {
                None
            },
            batch * heads,
            seq_len,
            head_dim,
        )?)
    } else {
        None
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    if let Some(maps) = &maps {
        launch.arg(maps);
    }
    // SAFETY: one `LtdSparseAttnFwdParams` by value, as the kernel declares, and for the Hopper
    // kernels their `LtdSparseAttnTmaMaps` (tensor maps over exactly q, k, v and out: B*H
    // matrices of L x D, so the TMA reads rows < L only and fills the rest with zeros, and
    // writes rows < L of out only). q/k/v/out hold
    // exactly B*H*L*D elements and lse B*H*L (checked above); the kernel reads rows < L only
    // (cp.async or the TMA zero-fills the rest) and writes rows < L only; the tables were built for this
    // layout, whose padded length covers L (checked: ceil(L / block) blocks), so every chunk
    // index is below ceil(L_padded / 64); the work items are ranges of these tables (the pair
    // tables for the Hopper kernel) with head < H and query tile < ceil(L_padded / 64) (pair
    // below half that, rounded up; the second tile of an odd last pair has rows >= L only,
    // masked out by its zero mask half and never stored); their slots are below num_slots and
    // the partial buffers hold B * num_slots * item_rows rows (null, and never touched, when no
    // item has a slot); the grid is items * B (checked);
    // the key-padding mask has B*L elements and the bias B*H*L*L (checked by check_call), read
    // only at query and key positions < L (with L % 8 == 0 the bias-tile kernels read 16-byte
    // pieces of rows < L at keys < L, 16-byte aligned, by cp.async, and the Hopper one through
    // a tensor map over exactly the bias, B*H matrices of L x L, whose boxes are zero-filled
    // past L); the dynamic shared memory is the tiles of 64 x D the
    // chosen kernel carves (5; 4 for the single-tile Hopper kernel at D 128; 6 for the pair
    // kernel; plus two 64 x 64 bias tiles for the bias kernels, and 1 KB of alignment slack and
    // 64 bytes of barriers for the Hopper kernels), and the Hopper kernels are only chosen on
    // a compute capability 9.0 device.
    unsafe { launch.launch(cfg) }.map_err(cuda_err("launching the sparse attention kernel"))?;
    if plan.num_split > 0 {
        let name = kernel_name(&FWD_COMBINE, type_name, head_dim);
        let combine = dev.load_function("sparse_attn", fatbin::SPARSE_ATTN, name)?;
        let cfg = LaunchConfig {
            // One warp per row of a split row: item_rows / 4 CTAs of 4 warps in y.
            grid_dim: ((plan.num_split * batch) as u32, (item_rows / 4) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the same params; the combine reads the partial buffers the kernel above
        // wrote (same stream, so after it; every row of every slot) at the slots of split_rows
        // (below num_slots) and writes out/lse rows < L of those rows only; split rows * B <=
        // items * B fits. Behind the Hopper kernels it is a programmatic launch: it reads
        // nothing the main kernel wrote before its griddepcontrol.wait.
        if kernel.is_hopper() {
            unsafe { launch_programmatic(stream, &combine, cfg, &mut [kernel_arg(&params)]) }
        } else {
            let mut launch = stream.launch_builder(&combine);
            launch.arg(&params);
            unsafe { launch.launch(cfg) }.map(drop)
        }
        .map_err(cuda_err("launching the attention combine kernel"))?;
    }
    drop((g1, g2, g3, g4, g5, g7, g8, g9, g11, po, pl, kpm, bias));
    Ok(())
}

/// Gradients of [`attention_backward_cuda`], written in place (`[B, H, L, D]` each).
///
/// ```no_run
/// # use half::bf16;
/// # let dev = ltd_core::CudaDevice::new(0)?;
/// let n = 1 * 4 * 128 * 64;
/// let (mut dq, mut dk, mut dv) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?);
/// let grads = ltd_sparse_attn::cuda::CudaAttentionGrads { dq: &mut dq, dk: &mut dk, dv: &mut dv, dbias: None };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaAttentionGrads<'a, T> {
    /// Gradient of the queries.
    pub dq: &'a mut CudaSlice<T>,
    /// Gradient of the keys.
    pub dk: &'a mut CudaSlice<T>,
    /// Gradient of the values.
    pub dv: &'a mut CudaSlice<T>,
    /// Gradient of the additive bias, `[B, H, L, L]` (zero outside the layout and at masked
    /// positions), or `None` to skip it.
    pub dbias: Option<&'a mut CudaSlice<T>>,
}

/// Fused block-sparse attention backward on the GPU: given the forward's inputs, its output
/// `out` and `lse`, and `dout`, writes dq, dk, dv (FA2 structure: one CTA per 64-key chunk
/// walking the query tiles that see it; dq through f32 atomics, then rounded). Same options
/// and limits as [`attention_forward_cuda`]; with a bias in the options (or a `dbias` buffer)
/// the bias kernel variant runs and fills `dbias`.
///
/// # Errors
/// As [`attention_forward_cuda`], plus length checks of `out`, `lse`, `dout` and the gradients.
///
/// ```no_run
/// use half::bf16;
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{AttentionShape, FixedConfig};
/// use ltd_sparse_attn::cuda::*;
/// let dev = CudaDevice::new(0)?;
/// let shape = AttentionShape { batch: 1, heads: 4, seq_len: 256, head_dim: 64 };
/// let layout = CudaAttentionLayout::new(&dev, &FixedConfig::new(4).make_layout(256)?)?;
/// let n = shape.qkv_len();
/// let x = dev.upload(&vec![bf16::from_f32(0.5); n])?;
/// let (mut out, mut lse) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![0.0f32; shape.lse_len()])?);
/// let opts = CudaAttentionOptions::default();
/// attention_forward_cuda(&dev, &layout, shape, (&x, &x, &x), &opts, &mut out, &mut lse)?;
/// let (mut dq, mut dk, mut dv) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?);
/// attention_backward_cuda(&dev, &layout, shape, (&x, &x, &x), (&out, &lse), &x, &opts,
///     CudaAttentionGrads { dq: &mut dq, dk: &mut dk, dv: &mut dv, dbias: None })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_cuda<T: Element + DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    (q, k, v): (&CudaSlice<T>, &CudaSlice<T>, &CudaSlice<T>),
    (out, lse): (&CudaSlice<T>, &CudaSlice<f32>),
    dout: &CudaSlice<T>,
    options: &CudaAttentionOptions<'_, T>,
    grads: CudaAttentionGrads<'_, T>,
) -> Result<()> {
    let (type_name, scale, kernel) = check_call::<T>(
        layout,
        shape,
        &[
            ("q", q.len()),
            ("k", k.len()),
            ("v", v.len()),
            ("out", out.len()),
            ("dout", dout.len()),
            ("dq", grads.dq.len()),
            ("dk", grads.dk.len()),
            ("dv", grads.dv.len()),
        ],
        lse.len(),
        options,
        dev.compute_capability(),
    )?;
    let AttentionShape {
        batch,
        heads,
        seq_len,
        head_dim,
    } = shape;
    let n = shape.qkv_len();
    if let Some(db) = grads.dbias.as_deref()
        && Some(db.len()) != n.checked_div(head_dim).and_then(|x| x.checked_mul(seq_len))
    {
        return Err(SparseAttnError::shape(
            "dbias",
            format!("[B={batch}, H={heads}, L={seq_len}, L={seq_len}]"),
            db.len(),
        ));
    }
    let with_bias = options.bias.is_some() || grads.dbias.is_some();
    let stream = dev.stream();
    let mut dbias = grads.dbias;
    if let Some(db) = dbias.as_deref_mut() {
        stream.memset_zeros(db).map_err(cuda_err("zeroing dbias"))?;
    }
    // SAFETY: uninitialised device memory of B*H*L*D f32; the pre-pass (the first launch
    // below, on the same stream, one warp per row over all B*H*L rows, D columns each) zeroes
    // every element before the main kernel adds into any.
    let mut dq_acc =
        unsafe { stream.alloc::<f32>(n) }.map_err(cuda_err("allocating the dq accumulator"))?;
    // The row dots dvec = rowsum(dO * O): [B, H, L] for the mma.sync kernel; the Hopper kernel
    // reads each query tile's lse and dvec side by side ([B*H, Lp / 64, 2, 64], Lp = L rounded
    // up to 128, which covers the padded length of a layout of any block), one bulk copy with
    // its Q and dO tiles.
    let hopper = kernel.is_hopper();
    let stats_rows = batch
        * heads
        * if hopper {
            seq_len.div_ceil(STATS_ROWS_ALIGN) * STATS_ROWS_ALIGN
        } else {
            seq_len
        };
    let stats_len = if hopper { 2 * stats_rows } else { stats_rows };
    // SAFETY: uninitialised device memory of `stats_len` f32; the pre-pass (the first launch
    // below, on the same stream, one warp per row over all `stats_rows` rows, padding rows
    // included) writes every element before the main kernel reads any, so no zero fill is
    // needed.
    let mut stats = unsafe { stream.alloc::<f32>(stats_len) }
        .map_err(cuda_err("allocating the row statistics"))?;
    let pairs =
        options
            .kernel
            .backward_pairs(dev.compute_capability(), layout, head_dim, with_bias);
    let (plan, rows, row_masks) = if pairs {
        (
            &layout.bwd_pair_plan,
            &layout.col_pair_rows,
            &layout.col_pair_masks,
        )
    } else {
        (&layout.bwd_plan, &layout.col_rows, &layout.col_masks)
    };
    let items = plan.grid(batch)?;
    // Partial dK / dV of the pieces of split key columns (f32 [B, slots, 64, D] each).
    // only for layouts that have split columns.
    let parts = batch * plan.num_slots * KERNEL_TILE * head_dim;
    let mut part_dk = partial_buffer(stream, plan, parts)?;
    let mut part_dv = partial_buffer(stream, plan, parts)?;
    let pre = dev.load_function(
        "sparse_attn",
        fatbin::SPARSE_ATTN,
        kernel_name(&BWD_PRE, type_name, head_dim),
    )?;
    // Both families have a variant with the bias code compiled in (it costs registers).
    // Per 64-key chunk (1, or 2 for the pair kernel) a K and a V tile of 64 x D; per stage (2,
    // or 3 for the pair kernel) a Q and a dO tile of 64 x D and 2 x 64 floats of row
    // statistics; per chunk and dS buffer (1, or 2 for the pair kernel) a 64 x 64 dS tile (+ 1
    // KB of alignment slack for the Hopper kernels' swizzled tiles, and their barriers).
    // With a bias (L % 8 == 0) the single-chunk kernels read it one 64 x 64 tile per query
    // tile (cp.async / TMA; one more 64 x 64 tile per stage, after dS); otherwise per element.
    let (chunks, stages, ds_buffers) = if pairs { (2, 3, 2) } else { (1, 2, 1) };
    let bias_tiles = !pairs && options.bias.is_some() && seq_len % 8 == 0;
    let smem = (chunks * 2 * KERNEL_TILE * head_dim
        + stages * 2 * KERNEL_TILE * head_dim
        + (ds_buffers * chunks + if bias_tiles { stages } else { 0 }) * KERNEL_TILE * KERNEL_TILE)
        * 2
        + stages * 2 * KERNEL_TILE * 4
        + if hopper { SM90_SMEM_EXTRA } else { 0 };
    let (module, image, names) = match (hopper, with_bias, pairs) {
        (true, _, _) if bias_tiles => (
            "sparse_attn_sm90a",
            fatbin::SPARSE_ATTN_SM90A,
            &BWD_BIAS_TMA_SM90,
        ),
        (false, _, _) if bias_tiles => ("sparse_attn", fatbin::SPARSE_ATTN, &BWD_BIAS_TILES),
        (true, _, true) => (
            "sparse_attn_sm90a",
            fatbin::SPARSE_ATTN_SM90A,
            &BWD_SM90_PAIR,
        ),
        (true, true, false) => (
            "sparse_attn_sm90a",
            fatbin::SPARSE_ATTN_SM90A,
            &BWD_BIAS_SM90,
        ),
        (true, false, false) => ("sparse_attn_sm90a", fatbin::SPARSE_ATTN_SM90A, &BWD_SM90),
        (false, true, _) => ("sparse_attn", fatbin::SPARSE_ATTN, &BWD_BIAS),
        (false, false, _) => ("sparse_attn", fatbin::SPARSE_ATTN, &BWD),
    };
    let main = dev.load_function_with_shared(
        module,
        image,
        kernel_name(names, type_name, head_dim),
        smem,
    )?;
    let post = dev.load_function(
        "sparse_attn",
        fatbin::SPARSE_ATTN,
        kernel_name(&BWD_DQ, type_name, head_dim),
    )?;

    let (q_ptr, g1) = q.device_ptr(stream);
    let (k_ptr, g2) = k.device_ptr(stream);
    let (v_ptr, g3) = v.device_ptr(stream);
    let (o_ptr, g4) = out.device_ptr(stream);
    let (do_ptr, g5) = dout.device_ptr(stream);
    let (lse_ptr, g6) = lse.device_ptr(stream);
    let (stats_ptr, g7) = stats.device_ptr_mut(stream);
    let (acc_ptr, g8) = dq_acc.device_ptr_mut(stream);
    let (dq_ptr, g9) = grads.dq.device_ptr_mut(stream);
    let (dk_ptr, g10) = grads.dk.device_ptr_mut(stream);
    let (dv_ptr, g11) = grads.dv.device_ptr_mut(stream);
    let (cr_ptr, g13) = rows.device_ptr(stream);
    let (cm_ptr, g14) = row_masks.device_ptr(stream);
    let (wi_ptr, g15) = plan.items.device_ptr(stream);
    let (sc_ptr, g17) = plan.split.device_ptr(stream);
    let pk = part_dk.as_mut().map(|b| b.device_ptr_mut(stream));
    let pv = part_dv.as_mut().map(|b| b.device_ptr_mut(stream));
    let kpm = options.key_padding_mask.map(|m| m.device_ptr(stream));
    let bias = options.bias.map(|m| m.device_ptr(stream));
    let db = dbias.as_mut().map(|m| m.device_ptr_mut(stream));
    let maps = if hopper {
        Some(tma_maps(
            [q_ptr, k_ptr, v_ptr],
            None,
            Some([do_ptr, acc_ptr, dk_ptr, dv_ptr]),
            if bias_tiles {
                bias.as_ref().map(|(p, _)| *p)
            } else {
                None
            },
            batch * heads,
            seq_len,
            head_dim,
        )?)
    } else {
        None
    };
    let params = ltd_kernels_sys::LtdSparseAttnBwdParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        dout: do_ptr,
        lse: lse_ptr,
        dvec: if hopper { 0 } else { stats_ptr },
        row_stats: if hopper { stats_ptr } else { 0 },
        dq_acc: acc_ptr,
        dq: dq_ptr,
        dk: dk_ptr,
        dv: dv_ptr,
        tile_rows: cr_ptr,
        tile_col_masks: cm_ptr,
        kpm: kpm.as_ref().map_or(0, |(p, _)| *p),
        bias: bias.as_ref().map_or(0, |(p, _)| *p),
        dbias: db.as_ref().map_or(0, |(p, _)| *p),
        work_items: wi_ptr,
        split_cols: sc_ptr,
        part_dk: pk.as_ref().map_or(0, |(p, _)| *p),
        part_dv: pv.as_ref().map_or(0, |(p, _)| *p),
        batch: batch as i64,
        heads: heads as i64,
        seq: seq_len as i64,
        num_slots: plan.num_slots as i64,
        scale,
        scale_log2: scale * std::f32::consts::LOG2_E,
        causal: i32::from(options.causal),
        pad_: 0,
    };
    let pre_cfg = LaunchConfig {
        grid_dim: (stats_rows.div_ceil(4) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let main_cfg = LaunchConfig {
        grid_dim: (items, 1, 1),
        block_dim: (128 * chunks as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let post_cfg = LaunchConfig {
        // 4 elements per thread and grid step.
        grid_dim: ((n / 4).div_ceil(256).min(65_535 * 16) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let d = head_dim as i64;
    // SAFETY: each kernel takes `LtdSparseAttnBwdParams` by value (the dq kernel also the head
    // dim as a second i64, the Hopper main kernel its `LtdSparseAttnTmaMaps` over exactly q, k,
    // v, dout, dq_acc, dk and dv: B*H matrices of L x D, so the TMA reads rows < L only,
    // zero-filling the rest, and its reductions into dq_acc and stores into dk / dv skip rows
    // >= L; for the Hopper bias-tile kernel also over the bias, B*H matrices of L x L with
    // L % 8 == 0, read in 64 x 64 boxes zero-filled past L; the sm_80 one reads 16-byte pieces
    // of bias rows < L at keys < L by cp.async). All [B,H,L,D] buffers hold exactly n elements
    // and lse B*H*L (checked above and by check_call); the kernels touch rows < L only, except
    // that the pre-pass writes and the
    // Hopper kernel bulk-copies whole 64-row tiles of the statistics buffer, which holds
    // exactly the `stats_rows` (padded) rows both index; the transposed
    // tables were built for this layout, whose padded length covers L, so every chunk and tile
    // index is below ceil(L_padded / 64); dq_acc is zeroed by the pre-pass before the main kernel adds into it; the three
    // launches are ordered on one stream; the dynamic shared memory is exactly what the main
    // kernel carves (`smem` above: K / V tiles per chunk, Q / dO tiles and statistics per
    // stage, dS tiles per chunk and dS buffer, a bias tile per stage for the bias-tile
    // kernels, and for the Hopper kernels, chosen only on
    // compute capability 9.0, 1 KB of alignment slack and the barriers), its block 128
    // threads per chunk; bias and dbias hold B*H*L*L elements (checked) and are touched only
    // at positions < L, dbias zeroed above on the same stream (the pair kernel, which has no
    // bias code, is never chosen with either). The main grid is items * B (checked to fit);
    // its work items are ranges of the transposed tables (`rows` / `row_masks`, the pair
    // tables for the pair kernel) with head < H and chunk below ceil(L_padded / 64) (a pair's
    // second chunk may be the one past it: its K / V rows are >= L, read as zeros by the TMA,
    // and its dK / dV stores are skipped or go to its own slot), their slots (both banks of a
    // pair) below num_slots, and the partial buffers hold B * num_slots * 64 * D floats (null,
    // and never touched, when no item has a slot); the combine (split chunks * B <= the main
    // grid: a split column or pair has at least 2 pieces) reads them after the main kernel on
    // the same stream and writes dk/dv keys < L of the split chunks only.
    unsafe {
        let mut l = stream.launch_builder(&pre);
        l.arg(&params);
        l.launch(pre_cfg)
            .map_err(cuda_err("launching the attention backward pre-pass"))?;
        let mut l = stream.launch_builder(&main);
        l.arg(&params);
        if let Some(maps) = &maps {
            l.arg(maps);
        }
        l.launch(main_cfg)
            .map_err(cuda_err("launching the attention backward kernel"))?;
        let mut l = stream.launch_builder(&post);
        l.arg(&params).arg(&d);
        l.launch(post_cfg)
            .map_err(cuda_err("launching the dq conversion"))?;
        if plan.num_split > 0 {
            let combine = dev.load_function(
                "sparse_attn",
                fatbin::SPARSE_ATTN,
                kernel_name(&BWD_COMBINE, type_name, head_dim),
            )?;
            let cfg = LaunchConfig {
                // One warp per key of a split column: 64 / 4 CTAs of 4 warps in y.
                grid_dim: ((plan.num_split * batch) as u32, (KERNEL_TILE / 4) as u32, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = stream.launch_builder(&combine);
            l.arg(&params);
            l.launch(cfg)
                .map_err(cuda_err("launching the dk/dv combine"))?;
        }
    }
    drop((
        g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g13, g14, g15, g17, pk, pv, kpm,
    ));
    Ok(())
}

/// Options of [`softmax_forward_cuda`], as [`crate::SoftmaxOptions`] with device buffers (all in
/// the scores' element type): `rpe` `[Z, H, S, S]`, `key_padding_mask` `[Z, S]`, `attn_mask`
/// `[S, S]`, `S = num_blocks * block`.
///
/// ```
/// let o = ltd_sparse_attn::cuda::CudaSoftmaxOptions::<f32>::default();
/// assert_eq!(o.scale, 1.0);
/// ```
#[derive(Clone, Copy)]
pub struct CudaSoftmaxOptions<'a, T> {
    /// Multiplies the scores first.
    pub scale: f32,
    /// Dense relative-position bias, added after the scale.
    pub rpe: Option<&'a CudaSlice<T>>,
    /// Key-padding mask.
    pub key_padding_mask: Option<&'a CudaSlice<T>>,
    /// How the key-padding mask applies.
    pub key_padding_mask_mode: MaskMode,
    /// Attention mask shared by batch and heads.
    pub attn_mask: Option<&'a CudaSlice<T>>,
    /// How the attention mask applies.
    pub attn_mask_mode: MaskMode,
}

impl<T> Default for CudaSoftmaxOptions<'_, T> {
    fn default() -> Self {
        CudaSoftmaxOptions {
            scale: 1.0,
            rpe: None,
            key_padding_mask: None,
            key_padding_mask_mode: MaskMode::Add,
            attn_mask: None,
            attn_mask_mode: MaskMode::Add,
        }
    }
}

fn softmax_kernel(kind: &str, dtype: DType) -> &'static str {
    match (kind, dtype) {
        ("fwd", DType::F32) => "ltd_sparse_softmax_fwd_f32",
        ("fwd", DType::F16) => "ltd_sparse_softmax_fwd_f16",
        ("fwd", DType::BF16) => "ltd_sparse_softmax_fwd_bf16",
        (_, DType::F32) => "ltd_sparse_softmax_bwd_f32",
        (_, DType::F16) => "ltd_sparse_softmax_bwd_f16",
        (_, DType::BF16) => "ltd_sparse_softmax_bwd_bf16",
    }
}

impl CudaAttentionLayout {
    /// Elements of a sparse `[Z, nnz, b, b]` tensor of this layout for batch `z`.
    fn sparse_len(&self, batch: usize) -> Option<usize> {
        batch
            .checked_mul(self.nnz)?
            .checked_mul(self.block * self.block)
    }

    fn check_sparse(&self, what: &str, batch: usize, len: usize) -> Result<()> {
        let want = self.sparse_len(batch);
        if want != Some(len) {
            return Err(SparseAttnError::shape(
                what,
                format!(
                    "[Z={batch}, nnz={}, b={}, b={}]",
                    self.nnz, self.block, self.block
                ),
                len,
            ));
        }
        Ok(())
    }

    fn softmax_launch(&self, batch: usize) -> Result<LaunchConfig> {
        let rows = self
            .sparse_len(batch)
            .map(|_| batch * self.heads * self.num_blocks * self.block);
        match rows
            .map(|r| r.div_ceil(4))
            .filter(|&g| g > 0 && g <= i32::MAX as usize)
        {
            Some(g) => Ok(LaunchConfig {
                grid_dim: (g as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            }),
            None => Err(invalid(
                "batch",
                batch,
                "at least 1, with Z * H * S rows below 2^33",
            )),
        }
    }
}

/// Block-sparse softmax forward on the GPU (upstream's `Softmax`, spec §2.7): `y` gets the
/// softmax of each query row of the sparse scores `x` `[Z, nnz, b, b]` over the row's active
/// keys, after scale, rpe, key-padding and attention masks (in that order); a row with no
/// finite score gives zeros, not NaN. f32, f16 and bf16 (f32 arithmetic).
///
/// # Errors
/// [`SparseAttnError::ShapeMismatch`] for any buffer of the wrong length, driver failures.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::FixedConfig;
/// use ltd_sparse_attn::cuda::{CudaAttentionLayout, CudaSoftmaxOptions, softmax_forward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(2).make_layout(128)?;
/// let gl = CudaAttentionLayout::new(&dev, &layout)?;
/// let n = 1 * layout.nnz() * 16 * 16;
/// let x = dev.upload(&vec![0.5f32; n])?;
/// let mut y = dev.upload(&vec![0.0f32; n])?;
/// softmax_forward_cuda(&dev, &gl, 1, &x, &CudaSoftmaxOptions::default(), &mut y)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn softmax_forward_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    batch: usize,
    x: &CudaSlice<T>,
    options: &CudaSoftmaxOptions<'_, T>,
    y: &mut CudaSlice<T>,
) -> Result<()> {
    layout.check_sparse("x", batch, x.len())?;
    layout.check_sparse("y", batch, y.len())?;
    let s = layout.num_blocks * layout.block;
    for (what, buf, want) in [
        ("rpe", options.rpe, batch * layout.heads * s * s),
        ("key_padding_mask", options.key_padding_mask, batch * s),
        ("attn_mask", options.attn_mask, s * s),
    ] {
        if let Some(b) = buf
            && b.len() != want
        {
            return Err(SparseAttnError::shape(what, want, b.len()));
        }
    }
    if !options.scale.is_finite() {
        return Err(invalid("scale", options.scale, "a finite number"));
    }
    let cfg = layout.softmax_launch(batch)?;
    let func = dev.load_function(
        "sparse_softmax",
        fatbin::SPARSE_SOFTMAX,
        softmax_kernel("fwd", T::DTYPE),
    )?;
    let stream = dev.stream();
    let (x_ptr, g1) = x.device_ptr(stream);
    let (y_ptr, g2) = y.device_ptr_mut(stream);
    let (o_ptr, g3) = layout.csr_offsets.device_ptr(stream);
    let (c_ptr, g4) = layout.csr_columns.device_ptr(stream);
    let rpe = options.rpe.map(|m| m.device_ptr(stream));
    let kpm = options.key_padding_mask.map(|m| m.device_ptr(stream));
    let am = options.attn_mask.map(|m| m.device_ptr(stream));
    let params = ltd_kernels_sys::LtdSparseSoftmaxParams {
        x: x_ptr,
        y: y_ptr,
        dy: 0,
        dx: 0,
        row_offsets: o_ptr,
        row_columns: c_ptr,
        rpe: rpe.as_ref().map_or(0, |(p, _)| *p),
        kpm: kpm.as_ref().map_or(0, |(p, _)| *p),
        attn_mask: am.as_ref().map_or(0, |(p, _)| *p),
        batch: batch as i64,
        heads: layout.heads as i64,
        num_blocks: layout.num_blocks as i64,
        block: layout.block as i64,
        nnz: layout.nnz as i64,
        scale: options.scale,
        kpm_mul: i32::from(options.key_padding_mask_mode == MaskMode::Mul),
        attn_mask_mul: i32::from(options.attn_mask_mode == MaskMode::Mul),
        pad_: 0,
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdSparseSoftmaxParams` by value. x and y hold Z*nnz*b*b elements and the
    // masks exactly the sizes above (checked); the CSR tables are the layout's own, so every tile
    // index is below nnz and every column below nb; one warp per row of Z*H*S rows (grid checked).
    unsafe { launch.launch(cfg) }.map_err(cuda_err("launching the block-sparse softmax"))?;
    drop((g1, g2, g3, g4, rpe, kpm, am));
    Ok(())
}

/// Block-sparse softmax backward on the GPU: `dx = y * (dy - sum_row(y * dy)) * scale` over
/// each row's active keys (no gradient to rpe or the masks, as upstream).
///
/// # Errors
/// [`SparseAttnError::ShapeMismatch`] for a buffer of the wrong length, driver failures.
///
/// ```no_run
/// # use ltd_core::CudaDevice;
/// # use ltd_sparse_attn::{FixedConfig, cuda::*};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(2).make_layout(128)?;
/// let gl = CudaAttentionLayout::new(&dev, &layout)?;
/// let n = layout.nnz() * 16 * 16;
/// let (y, dy) = (dev.upload(&vec![0.1f32; n])?, dev.upload(&vec![1.0f32; n])?);
/// let mut dx = dev.upload(&vec![0.0f32; n])?;
/// softmax_backward_cuda(&dev, &gl, 1, &y, &dy, 1.0, &mut dx)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn softmax_backward_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    batch: usize,
    y: &CudaSlice<T>,
    dy: &CudaSlice<T>,
    scale: f32,
    dx: &mut CudaSlice<T>,
) -> Result<()> {
    layout.check_sparse("y", batch, y.len())?;
    layout.check_sparse("dy", batch, dy.len())?;
    layout.check_sparse("dx", batch, dx.len())?;
    if !scale.is_finite() {
        return Err(invalid("scale", scale, "a finite number"));
    }
    let cfg = layout.softmax_launch(batch)?;
    let func = dev.load_function(
        "sparse_softmax",
        fatbin::SPARSE_SOFTMAX,
        softmax_kernel("bwd", T::DTYPE),
    )?;
    let stream = dev.stream();
    let (y_ptr, g1) = y.device_ptr(stream);
    let (dy_ptr, g2) = dy.device_ptr(stream);
    let (dx_ptr, g3) = dx.device_ptr_mut(stream);
    let (o_ptr, g4) = layout.csr_offsets.device_ptr(stream);
    let (c_ptr, g5) = layout.csr_columns.device_ptr(stream);
    let params = ltd_kernels_sys::LtdSparseSoftmaxParams {
        x: 0,
        y: y_ptr,
        dy: dy_ptr,
        dx: dx_ptr,
        row_offsets: o_ptr,
        row_columns: c_ptr,
        rpe: 0,
        kpm: 0,
        attn_mask: 0,
        batch: batch as i64,
        heads: layout.heads as i64,
        num_blocks: layout.num_blocks as i64,
        block: layout.block as i64,
        nnz: layout.nnz as i64,
        scale,
        kpm_mul: 0,
        attn_mask_mul: 0,
        pad_: 0,
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: as in softmax_forward_cuda: y, dy, dx hold Z*nnz*b*b elements (checked) and the
    // CSR tables are the layout's own.
    unsafe { launch.launch(cfg) }
        .map_err(cuda_err("launching the block-sparse softmax backward"))?;
    drop((g1, g2, g3, g4, g5));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry point the launchers can ask for is in the fatbin they load it from (the
    /// fatbin holds each kernel's name as a NUL-terminated symbol string).
    #[test]
    fn every_kernel_name_is_in_its_fatbin() {
        let has = |image: &[u8], name: &str| {
            let needle: Vec<u8> = name.bytes().chain([0]).collect();
            image.windows(needle.len()).any(|w| w == needle.as_slice())
        };
        let sm80 = [
            &FWD,
            &FWD_BIAS_TILES,
            &FWD_COMBINE,
            &BWD_PRE,
            &BWD,
            &BWD_BIAS,
            &BWD_BIAS_TILES,
            &BWD_COMBINE,
            &BWD_DQ,
        ];
        let sm90 = [
            &FWD_SM90,
            &FWD_SM90_PAIR,
            &FWD_BIAS_SM90,
            &BWD_SM90,
            &BWD_BIAS_SM90,
            &BWD_BIAS_TMA_SM90,
            &BWD_SM90_PAIR,
        ];
        for (tables, image) in [
            (&sm80[..], fatbin::SPARSE_ATTN),
            (&sm90[..], fatbin::SPARSE_ATTN_SM90A),
        ] {
            for table in tables {
                for ty in ["bf16", "f16"] {
                    for d in [64, 128] {
                        let name = kernel_name(table, ty, d);
                        assert!(has(image, name), "{name} is not in its fatbin");
                        assert!(name.contains(ty), "{name} for {ty}");
                    }
                }
            }
        }
        assert_eq!(
            kernel_name(&FWD, "f16", 128),
            "ltd_sparse_attn_fwd_f16_d128"
        );
        assert_eq!(
            kernel_name(&BWD_DQ, "bf16", 128),
            "ltd_sparse_attn_bwd_dq_bf16"
        );
    }
}
