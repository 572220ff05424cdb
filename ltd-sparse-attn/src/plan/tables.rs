//! [`CoarseTables`]: a layout seen as 64 x 64 kernel tiles with sub-block masks.

use std::collections::BTreeMap;

use super::{SUB_BLOCK, SUBS_PER_TILE, TILE};
use crate::Layout;

/// The kernels' view of a layout: for every (head, 64-row query tile) the active 64-key chunks
/// with a 16-bit mask of active 16 x 16 sub-blocks (bit `4*i + j`: query rows `16i..`, keys
/// `16j..` within the tile), and the transpose for the backward. Host-side tables, before upload.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, plan::CoarseTables};
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
    /// The transpose in pairs of key chunks (2c, 2c + 1), for the Hopper backward's pair
    /// kernel, whose two warpgroups share the Q / dO tiles of every query tile: `[heads *
    /// num_pairs + 1]` offsets into `col_pair_rows` / `col_pair_masks`, `num_pairs =
    /// ceil(num_qtiles / 2)`.
    pub col_pair_ptr: Vec<i32>,
    /// Query tiles active in either chunk of the pair (sorted union).
    pub col_pair_rows: Vec<i32>,
    /// Sub-block masks of the pair: bits 0..16 chunk 2c, bits 16..32 chunk 2c + 1 (0 where that
    /// chunk does not see the tile).
    pub col_pair_masks: Vec<i32>,
    /// The rows in pairs of query tiles (2p, 2p + 1), for the Hopper forward's pair kernel, whose
    /// two warpgroups share the K / V copy of every chunk: `[heads * num_pairs + 1]` offsets into
    /// `row_pair_cols` / `row_pair_masks`, `num_pairs = ceil(num_qtiles / 2)`.
    pub row_pair_ptr: Vec<i32>,
    /// Key chunks active in either query tile of the pair (sorted union).
    pub row_pair_cols: Vec<i32>,
    /// Sub-block masks of the pair: bits 0..16 tile 2p, bits 16..32 tile 2p + 1 (0 where that
    /// tile does not see the chunk).
    pub row_pair_masks: Vec<i32>,
}

/// A CSR-like table: `ptr` offsets (`num` rows per head) into `entries` / `masks`.
struct Csr<'a> {
    ptr: &'a [i32],
    entries: &'a [i32],
    masks: &'a [i32],
}

/// Merges the entries of adjacent rows (2p, 2p + 1) of `table`: per pair the sorted union of the
/// entries, row 2p's mask in bits 0..16 and row 2p + 1's in bits 16..32. Returns (ptr, entries,
/// masks) of the pairs, `ceil(num / 2)` per head.
fn pair_rows(heads: usize, num: usize, table: Csr<'_>) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
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
                for e in table.ptr[idx] as usize..table.ptr[idx + 1] as usize {
                    *merged.entry(table.entries[e]).or_insert(0) |=
                        (table.masks[e] as u32) << (16 * half);
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

/// Per query tile of one head: key chunk -> sub-block mask.
fn head_tiles(layout: &Layout, h: usize, num_qtiles: usize) -> Vec<BTreeMap<usize, u32>> {
    let per_block = layout.block() / SUB_BLOCK; // sub-blocks per layout block side
    let mut tiles: Vec<BTreeMap<usize, u32>> = vec![BTreeMap::new(); num_qtiles];
    for br in 0..layout.num_blocks() {
        let (start, end) = layout.row_range(h, br);
        for &bc in &layout.row_columns()[start..end] {
            let bc = bc as usize;
            for si in 0..per_block {
                let sr = br * per_block + si; // global 16-row sub-block
                for sj in 0..per_block {
                    let sc = bc * per_block + sj;
                    let (qt, i) = (sr / SUBS_PER_TILE, sr % SUBS_PER_TILE);
                    let (kc, j) = (sc / SUBS_PER_TILE, sc % SUBS_PER_TILE);
                    *tiles[qt].entry(kc).or_insert(0) |= 1 << (SUBS_PER_TILE * i + j);
                }
            }
        }
    }
    tiles
}

impl CoarseTables {
    /// Builds the tables from a layout's CSR.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(64).unwrap());
    /// assert_eq!(t.masks, vec![0xffff, 0xffff]); // one full tile per head
    /// ```
    pub fn new(layout: &Layout) -> CoarseTables {
        let heads = layout.num_heads();
        let num_qtiles = layout.padded_len().div_ceil(TILE);
        let mut row_ptr = Vec::with_capacity(heads * num_qtiles + 1);
        let mut cols = Vec::new();
        let mut masks = Vec::new();
        let mut col_ptr = Vec::with_capacity(heads * num_qtiles + 1);
        let mut col_rows = Vec::new();
        let mut col_masks = Vec::new();
        row_ptr.push(0);
        col_ptr.push(0);
        for h in 0..heads {
            let mut transposed: Vec<Vec<(i32, i32)>> = vec![Vec::new(); num_qtiles];
            for (qt, tile) in head_tiles(layout, h, num_qtiles).into_iter().enumerate() {
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
        let columns = Csr {
            ptr: &col_ptr,
            entries: &col_rows,
            masks: &col_masks,
        };
        let (col_pair_ptr, col_pair_rows, col_pair_masks) = pair_rows(heads, num_qtiles, columns);
        let rows = Csr {
            ptr: &row_ptr,
            entries: &cols,
            masks: &masks,
        };
        let (row_pair_ptr, row_pair_cols, row_pair_masks) = pair_rows(heads, num_qtiles, rows);
        CoarseTables {
            heads,
            num_qtiles,
            row_ptr,
            cols,
            masks,
            col_ptr,
            col_rows,
            col_masks,
            col_pair_ptr,
            col_pair_rows,
            col_pair_masks,
            row_pair_ptr,
            row_pair_cols,
            row_pair_masks,
        }
    }
}
