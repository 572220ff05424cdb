//! [`WorkPlan`]: how the attention kernels' CTAs share a layout's tables, with long rows and
//! columns split into pieces. See `docs/kernels.md`, "Work items and split/combine".

use super::CoarseTables;

/// How the attention kernels' CTAs share a layout: one work item per (head, query tile) in the
/// forward ([`CoarseTables::forward_plan`]) or per (head, key chunk) in the backward
/// ([`CoarseTables::backward_plan`]), except rows or columns much longer than the rest (global
/// blocks: BigBird, BSLongformer, Fixed's summary columns), which are cut into pieces of at most
/// `max_chunks` tiles that run in parallel and write partial results merged afterwards, so one
/// CTA walking a whole global row does not set the kernel's time.
///
/// ```
/// use ltd_sparse_attn::{BigBirdConfig, plan::CoarseTables};
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
    /// [`CoarseTables::forward_plan`], `col_rows` / `col_masks` for the backward plan,
    /// `col_pair_rows` / `col_pair_masks` for the backward pair plan).
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
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
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(256).unwrap()); // 4 x 4 tiles
    /// let whole = t.forward_plan(4);
    /// assert_eq!((whole.items.len(), whole.num_slots), (8, 0));
    /// let split = t.forward_plan(3);
    /// assert_eq!((split.items.len(), split.num_slots, split.split.len()), (16, 16, 8));
    /// ```
    pub fn forward_plan(&self, max_chunks: usize) -> WorkPlan {
        plan_rows(self.heads, &self.row_ptr, self.num_qtiles, max_chunks)
    }

    /// The backward work items: key-chunk columns (of the transposed tables) cut into pieces of
    /// at most `max_tiles` query tiles (`0` is read as 1); their dK/dV are summed afterwards.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(256).unwrap());
    /// let plan = t.backward_plan(2);
    /// assert_eq!((plan.items.len(), plan.num_slots, plan.split.len()), (8, 8, 4));
    /// ```
    pub fn backward_plan(&self, max_tiles: usize) -> WorkPlan {
        plan_rows(self.heads, &self.col_ptr, self.num_qtiles, max_tiles)
    }

    /// The work items of the Hopper backward's pair kernel: pairs of key chunks (tile = pair
    /// index c, ranges of `col_pair_rows`), pieces of at most `max_tiles` query tiles. Partial
    /// results come in two banks, one per chunk of the pair: an item with slot `s` writes chunk
    /// 2c's partial dK / dV to slot `s` and chunk 2c + 1's to `s + num_slots / 2`. `split`
    /// lists 64-key chunks, as the combine kernel reads them (a chunk past the last, from an odd
    /// chunk count, is left out), and `num_slots` counts both banks.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(256).unwrap()); // 4 x 4 tiles
    /// let plan = t.backward_pair_plan(2);
    /// // Two pairs of chunks, 4 query tiles each, in 2 pieces: 4 slots per bank.
    /// assert_eq!((plan.items.len(), plan.num_slots), (4, 8));
    /// assert_eq!(plan.split, vec![[0, 0, 0, 2], [0, 1, 4, 2], [0, 2, 2, 2], [0, 3, 6, 2]]);
    /// ```
    pub fn backward_pair_plan(&self, max_tiles: usize) -> WorkPlan {
        self.pair_plan(&self.col_pair_ptr, max_tiles)
    }

    /// The work items of the Hopper forward's pair kernel: pairs of query tiles (tile = pair
    /// index p, ranges of `row_pair_cols`), pieces of at most `max_chunks` chunks. Partial
    /// results come in two banks, one per tile of the pair, as in
    /// [`backward_pair_plan`](Self::backward_pair_plan): an item with slot `s` writes tile 2p's
    /// partial output to slot `s` and tile 2p + 1's to `s + num_slots / 2`; `split` lists 64-row
    /// query tiles, as the combine kernel reads them (a tile past the last is left out).
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(192).unwrap()); // 3 x 3 tiles
    /// let whole = t.forward_pair_plan(3);
    /// // Pairs (0, 1) and (2, past the last), whole rows.
    /// assert_eq!((whole.items, whole.num_slots), (vec![[0, 0, 0, 3], [0, 1, 3, 6]], 0));
    /// let split = t.forward_pair_plan(2);
    /// // Each pair's 3 chunks in 2 pieces: 4 slots per bank; tile 3 does not exist.
    /// assert_eq!((split.items.len(), split.num_slots), (4, 8));
    /// assert_eq!(split.split, vec![[0, 0, 0, 2], [0, 1, 4, 2], [0, 2, 2, 2]]);
    /// ```
    pub fn forward_pair_plan(&self, max_chunks: usize) -> WorkPlan {
        self.pair_plan(&self.row_pair_ptr, max_chunks)
    }

    /// The plan over a pair table's `ptr` (pairs of tiles or chunks): items per pair, two banks
    /// of partial slots, `split` per 64-wide tile or chunk that exists.
    fn pair_plan(&self, ptr: &[i32], max_entries: usize) -> WorkPlan {
        let mut plan = plan_rows(self.heads, ptr, self.num_qtiles.div_ceil(2), max_entries);
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
            .filter(|&[_, tile, _, _]| (tile as usize) < self.num_qtiles)
            .collect();
        plan.num_slots *= 2;
        plan
    }

    /// The forward's piece length on a GPU with `sm_count` multiprocessors (what
    /// `CudaAttentionLayout` uses): about the work of one CTA slot when one batch row of the
    /// layout is spread over the four CTAs per multiprocessor the forward kernels run, and never
    /// below 16 chunks (a piece's fixed cost, loading Q and storing a partial output, is about
    /// one chunk's work): `cols / (4 SMs)`.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&FixedConfig::new(16).make_layout(4096).unwrap());
    /// assert!(t.forward_split_chunks(132) >= 16);
    /// assert!(t.forward_split_chunks(132) <= t.backward_split_chunks(132));
    /// ```
    pub fn forward_split_chunks(&self, sm_count: usize) -> usize {
        self.cols.len().div_ceil(4 * sm_count.max(1)).max(16)
    }

    /// The pair forward's piece length (chunks per piece of a pair of query rows) on a GPU with
    /// `sm_count` multiprocessors: [`forward_split_chunks`](Self::forward_split_chunks)'s rule
    /// for the pair kernel's two CTAs per multiprocessor, over the pair table's entries: about
    /// one CTA slot's work when one batch row is spread over `2 * sm_count` CTAs, never below
    /// 16.
    ///
    /// ```
    /// use ltd_sparse_attn::{BigBirdConfig, plan::CoarseTables};
    /// let mut c = BigBirdConfig::new(16);
    /// c.block = 128;
    /// let t = CoarseTables::new(&c.make_layout(16384).unwrap());
    /// let n = t.forward_pair_split_chunks(132);
    /// // Block 128: both tiles of a pair see the same chunks, so a pair's piece is as long as a
    /// // single tile's.
    /// assert_eq!(n, t.forward_split_chunks(132));
    /// // The global rows (every chunk) are cut into pieces of at most n.
    /// let plan = t.forward_pair_plan(n);
    /// assert!(!plan.split.is_empty());
    /// assert!(plan.items.iter().all(|i| i[3] - i[2] <= n as i32));
    /// ```
    pub fn forward_pair_split_chunks(&self, sm_count: usize) -> usize {
        self.row_pair_cols
            .len()
            .div_ceil(2 * sm_count.max(1))
            .max(16)
    }

    /// The backward's piece length (query tiles per piece of a key column) on a GPU with
    /// `sm_count` multiprocessors: about the work of one CTA slot at two CTAs per
    /// multiprocessor, never below 16; twice the forward's, as a backward piece writes two f32
    /// partial tiles (dK, dV).
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::CoarseTables};
    /// let t = CoarseTables::new(&FixedConfig::new(16).make_layout(4096).unwrap());
    /// assert!(t.backward_split_chunks(132) >= 16);
    /// ```
    pub fn backward_split_chunks(&self, sm_count: usize) -> usize {
        self.cols.len().div_ceil(2 * sm_count.max(1)).max(16)
    }
}

/// The work items over a CSR of `heads * per_head` rows (`ptr`): rows cut into pieces of at most
/// `max_chunks` entries (`0` is read as 1), longest first by powers of two.
pub(super) fn plan_rows(heads: usize, ptr: &[i32], per_head: usize, max_chunks: usize) -> WorkPlan {
    plan_rows_forced(heads, ptr, per_head, max_chunks, &|_, _| false)
}

/// [`plan_rows`], with the rows `(head, tile)` for which `force` holds written as partial slots
/// (listed in `split`) even when they need no cutting: their results are combined with others.
pub(super) fn plan_rows_forced(
    heads: usize,
    ptr: &[i32],
    per_head: usize,
    max_chunks: usize,
    force: &dyn Fn(usize, usize) -> bool,
) -> WorkPlan {
    let max_chunks = max_chunks.max(1);
    let mut items = Vec::with_capacity(heads * per_head);
    let mut slots = Vec::with_capacity(heads * per_head);
    let mut split = Vec::new();
    let mut num_slots = 0usize;
    for h in 0..heads {
        for tile in 0..per_head {
            let idx = h * per_head + tile;
            let (first, end) = (ptr[idx], ptr[idx + 1]);
            let n = (end - first) as usize;
            if n <= max_chunks && !force(h, tile) {
                items.push([h as i32, tile as i32, first, end]);
                slots.push(-1);
                continue;
            }
            let pieces = n.div_ceil(max_chunks).max(1);
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
