//! [`GatheredTables`]: the forward's table with the active 16-key slices of sparse key chunks
//! packed four at a time into gathered chunks. See `docs/kernels.md`, "Gathered chunks".

use super::{CoarseTables, SUBS_PER_TILE, WorkPlan, work::plan_rows};

/// Slots of a gathered chunk: one 16-key slice each, so a gathered chunk fills the 64 key
/// columns of a kernel tile as a plain chunk does.
const GATHER_SLOTS: usize = SUBS_PER_TILE;

/// A chunk with at most this many active 16-key slices (over its four row groups) is gathered;
/// chunks with more stay plain entries (loading them whole costs one copy instead of four).
pub const GATHER_MAX_SLICES: u32 = 2;

/// The Hopper gathered forward's view of a layout: for every (head, 64-row query tile) its plain
/// entries (a key chunk with 3 or 4 active 16-key slices, as in [`CoarseTables::cols`]) and its
/// gathered entries (the active slices of its other chunks, ascending, four per entry).
///
/// An entry `>= 0` is a key chunk with its [`CoarseTables`] mask. An entry `e < 0` is gathered
/// chunk `g = -e - 1`: `slots[4g .. 4g + 4]` are the first keys of its four slices in 16-key
/// units (ascending; an unused slot repeats a used one), and its mask has bit `4i + j` set when
/// row group `i` (query rows `16i..`) sees slot `j`'s slice, so tile column `c` holds key
/// `16 * slots[4g + c / 16] + c % 16`. Entries of a row are ordered by their first key.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredTables}};
/// let mut c = FixedConfig::new(1); // block 16, 4 local blocks per window
/// c.num_local_blocks = 16;
/// let t = CoarseTables::new(&c.make_layout(4096).unwrap());
/// let g = GatheredTables::new(&t);
/// // Each query tile: its window's 4 chunks plus one 16-key slice of each other window, which
/// // now share gathered chunks.
/// assert!(4 * g.entries.len() <= 3 * t.cols.len());
/// assert_eq!(g.slots.len(), 4 * g.entries.iter().filter(|&&e| e < 0).count());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatheredTables {
    /// Heads.
    pub heads: usize,
    /// Query tiles per head (as [`CoarseTables::num_qtiles`]).
    pub num_qtiles: usize,
    /// `[heads * num_qtiles + 1]` offsets into `entries` / `masks`.
    pub row_ptr: Vec<i32>,
    /// A key chunk (`>= 0`) or `-(g + 1)` for gathered chunk `g`.
    pub entries: Vec<i32>,
    /// Sub-block mask of each entry (bit `4i + j`: row group `i`, key slice or slot `j`).
    pub masks: Vec<i32>,
    /// `[4 per gathered chunk]`: each slot's first key in 16-key units.
    pub slots: Vec<i32>,
}

/// The active 16-key slices of a chunk (bit j: slice j, for some row group).
pub(super) fn slice_bits(mask: u32) -> u32 {
    (mask | (mask >> 4) | (mask >> 8) | (mask >> 12)) & 0xF
}

/// Row-group bits of slice `j` of `mask`, as bits 0..4.
pub(super) fn row_groups(mask: u32, j: usize) -> u32 {
    (0..SUBS_PER_TILE)
        .map(|i| ((mask >> (SUBS_PER_TILE * i + j)) & 1) << i)
        .sum()
}

/// One row's entries: (first key slice, entry, mask), plain and gathered.
type RowEntries = Vec<(i32, i32, i32)>;

/// Packs the sparse chunks of one row (`cols` / `masks` of its range) into gathered chunks,
/// appending their slots to `slots`; returns the row's entries ordered by their first key.
fn gather_row(cols: &[i32], masks: &[i32], slots: &mut Vec<i32>) -> RowEntries {
    let mut row: RowEntries = Vec::with_capacity(cols.len());
    let mut sparse: Vec<(i32, u32)> = Vec::new(); // (slice, row-group bits), ascending
    for (&kc, &m) in cols.iter().zip(masks) {
        let bits = slice_bits(m as u32);
        if bits.count_ones() > GATHER_MAX_SLICES {
            row.push((kc * GATHER_SLOTS as i32, kc, m));
            continue;
        }
        for j in (0..SUBS_PER_TILE).filter(|j| (bits >> j) & 1 == 1) {
            sparse.push((kc * GATHER_SLOTS as i32 + j as i32, row_groups(m as u32, j)));
        }
    }
    for group in sparse.chunks(GATHER_SLOTS) {
        let g = (slots.len() / GATHER_SLOTS) as i32;
        let mut mask = 0u32;
        for (j, &(_, rows)) in group.iter().enumerate() {
            for i in (0..SUBS_PER_TILE).filter(|i| (rows >> i) & 1 == 1) {
                mask |= 1 << (SUBS_PER_TILE * i + j);
            }
        }
        let last = group[group.len() - 1].0;
        slots.extend((0..GATHER_SLOTS).map(|j| group.get(j).map_or(last, |s| s.0)));
        row.push((group[0].0, -(g + 1), mask as i32));
    }
    row.sort_by_key(|&(first, _, _)| first);
    row
}

impl GatheredTables {
    /// Gathers the sparse chunks of every row of `t` (chunks with at most
    /// [`GATHER_MAX_SLICES`] active 16-key slices).
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::{CoarseTables, GatheredTables}};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(256).unwrap());
    /// let g = GatheredTables::new(&t);
    /// // Whole chunks stay plain: the table is the coarse one.
    /// assert_eq!((g.entries, g.masks), (t.cols, t.masks));
    /// assert!(g.slots.is_empty());
    /// ```
    pub fn new(t: &CoarseTables) -> GatheredTables {
        let mut row_ptr = Vec::with_capacity(t.row_ptr.len());
        let mut entries = Vec::with_capacity(t.cols.len());
        let mut masks = Vec::with_capacity(t.cols.len());
        let mut slots = Vec::new();
        row_ptr.push(0);
        for w in t.row_ptr.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            for (_, e, m) in gather_row(&t.cols[a..b], &t.masks[a..b], &mut slots) {
                entries.push(e);
                masks.push(m);
            }
            row_ptr.push(entries.len() as i32);
        }
        GatheredTables {
            heads: t.heads,
            num_qtiles: t.num_qtiles,
            row_ptr,
            entries,
            masks,
            slots,
        }
    }

    /// Gathered chunks in the table.
    ///
    /// ```
    /// use ltd_sparse_attn::{BigBirdConfig, plan::{CoarseTables, GatheredTables}};
    /// let g = GatheredTables::new(&CoarseTables::new(&BigBirdConfig::new(2).make_layout(2048).unwrap()));
    /// assert_eq!(g.gathered_chunks() * 4, g.slots.len());
    /// ```
    pub fn gathered_chunks(&self) -> usize {
        self.slots.len() / GATHER_SLOTS
    }

    /// The forward work items over this table, as [`CoarseTables::forward_plan`] over its own.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredTables}};
    /// let t = CoarseTables::new(&FixedConfig::new(2).make_layout(2048).unwrap());
    /// let g = GatheredTables::new(&t);
    /// let plan = g.forward_plan(g.forward_split_chunks(132));
    /// assert_eq!(plan.items.len(), 2 * t.num_qtiles); // no row long enough to split
    /// ```
    pub fn forward_plan(&self, max_chunks: usize) -> WorkPlan {
        plan_rows(self.heads, &self.row_ptr, self.num_qtiles, max_chunks)
    }

    /// The piece length of [`forward_plan`](Self::forward_plan) on a GPU with `sm_count`
    /// multiprocessors: [`CoarseTables::forward_split_chunks`]'s rule over this table's entries.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredTables}};
    /// let g = GatheredTables::new(&CoarseTables::new(&FixedConfig::new(16).make_layout(4096).unwrap()));
    /// assert!(g.forward_split_chunks(132) >= 16);
    /// ```
    pub fn forward_split_chunks(&self, sm_count: usize) -> usize {
        self.entries.len().div_ceil(4 * sm_count.max(1)).max(16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_sparse_slices_in_key_order() {
        // Chunk 0 full (plain), chunk 1 slice 3 for all rows, chunk 2 slices 0 and 2 for row
        // group 1, chunk 5 slice 1 for row group 3, chunk 6 slice 0 for row group 0.
        let cols = [0, 1, 2, 5, 6];
        let masks = [0xffff, 0x8888, 0x0050, 0x2000, 0x0001];
        let mut slots = Vec::new();
        let row = gather_row(&cols, &masks, &mut slots);
        assert_eq!(slots, vec![7, 8, 10, 21, 24, 24, 24, 24]);
        assert_eq!(
            row,
            vec![
                (0, 0, 0xffff),
                (7, -1, 0x1111 | 0x0020 | 0x0040 | 0x8000),
                (24, -2, 0x0001),
            ]
        );
    }
}
