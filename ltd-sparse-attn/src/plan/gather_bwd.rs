//! [`GatheredColumns`]: the backward's transposed table with the active 16-key slices of sparse
//! (key chunk, query tile) entries regrouped four at a time into gathered key sets, the mirror of
//! the forward's [`GatheredTables`](super::GatheredTables), and [`GatheredBackwardPlan`], the
//! work items and the dK / dV combine over it (`docs/kernels.md`, "Gathered key sets, for the
//! backward").

use std::collections::BTreeMap;

use super::gather::{row_groups, slice_bits};
use super::{CoarseTables, GATHER_MAX_SLICES, SUBS_PER_TILE, WorkPlan, work::plan_rows_forced};

/// Slots of a gathered key set: one 16-key slice each, the 64 keys of a backward CTA.
const SET_SLOTS: usize = SUBS_PER_TILE;

/// The backward's view of a layout for gathered key sets.
///
/// A backward CTA owns 64 keys and walks the query tiles that see them. On block-16 / 32 layouts
/// many (key chunk, query tile) entries have only one or two of the chunk's four 16-key slices
/// active (a global key block seen by every query tile), and the plain kernel still computes all
/// 64 keys of the chunk for them. Here such an entry (at most [`GATHER_MAX_SLICES`] active
/// slices) leaves the plain column; each of its active slices goes to a gathered key set: four
/// 16-key slices of the head, from any chunks, whose CTA walks the sorted union of the slices'
/// query tiles.
///
/// - The plain part (`col_ptr`, `col_rows`, `col_masks`) is [`CoarseTables::col_ptr`]'s format
///   without the sparse entries.
/// - Set `g` (of head `set_heads[g]`) holds key slices `set_slots[4g .. 4g + 4]` (16-key units
///   within the head, an unused slot repeats the last used one) and walks
///   `set_rows[set_ptr[g] .. set_ptr[g + 1]]`, whose masks have bit `4i + j` set when query row
///   group `i` of the tile sees slot `j`'s slice, so CTA key row `r` is key
///   `16 * set_slots[4g + r / 16] + r % 16`.
///
/// A key slice's dK / dV is then the sum of its chunk's plain part and one set's part: see
/// [`GatheredColumns::backward_plan`].
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredColumns}};
/// let mut c = FixedConfig::new(1); // block 16: each 64-key window's last block is global
/// c.num_local_blocks = 4;
/// let t = CoarseTables::new(&c.make_layout(1024).unwrap());
/// let g = GatheredColumns::new(&t);
/// // The global slices leave the plain columns, four to a set.
/// assert!(g.col_rows.len() < t.col_rows.len());
/// assert_eq!(g.set_slots.len(), 4 * g.set_heads.len());
/// assert_eq!(g.tile_visits(), g.col_rows.len() + g.set_rows.len());
/// assert!(g.tile_visits() < t.col_rows.len());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatheredColumns {
    /// Heads.
    pub heads: usize,
    /// Key chunks per head (as [`CoarseTables::num_qtiles`]).
    pub num_chunks: usize,
    /// `[heads * num_chunks + 1]` offsets into `col_rows` / `col_masks`: the plain entries.
    pub col_ptr: Vec<i32>,
    /// Query tile of each plain entry.
    pub col_rows: Vec<i32>,
    /// Sub-block mask of each plain entry (bit `4i + j`: query row group `i`, key slice `j`).
    pub col_masks: Vec<i32>,
    /// `[sets + 1]` offsets into `set_rows` / `set_masks`; sets are head-major.
    pub set_ptr: Vec<i32>,
    /// Head of each set.
    pub set_heads: Vec<i32>,
    /// Query tile of each set entry (ascending within a set).
    pub set_rows: Vec<i32>,
    /// Mask of each set entry (bit `4i + j`: query row group `i`, slot `j`).
    pub set_masks: Vec<i32>,
    /// `[4 per set]`: each slot's key slice in 16-key units within the head.
    pub set_slots: Vec<i32>,
}

/// One head's sparse key slices: slice -> its (query tile, row-group bits), ascending tiles.
type SparseSlices = BTreeMap<i32, Vec<(i32, u32)>>;

/// Packs one head's sparse slices into sets of four, slices with similar query-tile lists
/// together (ordered by first tile, last tile, length, then slice), and appends the sets.
fn pack_head(h: usize, sparse: SparseSlices, out: &mut GatheredColumns) {
    let mut order: Vec<(i32, Vec<(i32, u32)>)> = sparse.into_iter().collect();
    order.sort_by_key(|(s, list)| (list[0].0, list[list.len() - 1].0, list.len(), *s));
    for group in order.chunks(SET_SLOTS) {
        let mut rows: BTreeMap<i32, u32> = BTreeMap::new();
        for (slot, (_, list)) in group.iter().enumerate() {
            for &(qt, groups) in list {
                let bits = (0..SUBS_PER_TILE)
                    .filter(|i| (groups >> i) & 1 == 1)
                    .map(|i| 1u32 << (SUBS_PER_TILE * i + slot))
                    .sum::<u32>();
                *rows.entry(qt).or_insert(0) |= bits;
            }
        }
        for (qt, m) in rows {
            out.set_rows.push(qt);
            out.set_masks.push(m as i32);
        }
        out.set_ptr.push(out.set_rows.len() as i32);
        out.set_heads.push(h as i32);
        let last = group[group.len() - 1].0;
        out.set_slots
            .extend((0..SET_SLOTS).map(|j| group.get(j).map_or(last, |s| s.0)));
    }
}

impl GatheredColumns {
    /// Moves the sparse entries of `t`'s transposed table (at most [`GATHER_MAX_SLICES`] active
    /// key slices) into gathered key sets.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::{CoarseTables, GatheredColumns}};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(256).unwrap());
    /// let g = GatheredColumns::new(&t);
    /// // Whole chunks stay plain: the columns are the coarse ones and there is no set.
    /// assert_eq!((&g.col_ptr, &g.col_rows, &g.col_masks), (&t.col_ptr, &t.col_rows, &t.col_masks));
    /// assert!(g.set_heads.is_empty());
    /// ```
    pub fn new(t: &CoarseTables) -> GatheredColumns {
        let mut out = GatheredColumns {
            heads: t.heads,
            num_chunks: t.num_qtiles,
            col_ptr: vec![0],
            col_rows: Vec::new(),
            col_masks: Vec::new(),
            set_ptr: vec![0],
            set_heads: Vec::new(),
            set_rows: Vec::new(),
            set_masks: Vec::new(),
            set_slots: Vec::new(),
        };
        for h in 0..t.heads {
            let mut sparse = SparseSlices::new();
            for c in 0..t.num_qtiles {
                let idx = h * t.num_qtiles + c;
                for e in t.col_ptr[idx] as usize..t.col_ptr[idx + 1] as usize {
                    let m = t.col_masks[e] as u32;
                    let bits = slice_bits(m);
                    if bits.count_ones() > GATHER_MAX_SLICES {
                        out.col_rows.push(t.col_rows[e]);
                        out.col_masks.push(m as i32);
                        continue;
                    }
                    for j in (0..SUBS_PER_TILE).filter(|j| (bits >> j) & 1 == 1) {
                        let slice = (c * SUBS_PER_TILE + j) as i32;
                        sparse
                            .entry(slice)
                            .or_default()
                            .push((t.col_rows[e], row_groups(m, j)));
                    }
                }
                out.col_ptr.push(out.col_rows.len() as i32);
            }
            pack_head(h, sparse, &mut out);
        }
        out
    }

    /// Gathered key sets.
    ///
    /// ```
    /// use ltd_sparse_attn::{BigBirdConfig, plan::{CoarseTables, GatheredColumns}};
    /// let g = GatheredColumns::new(&CoarseTables::new(&BigBirdConfig::new(2).make_layout(2048).unwrap()));
    /// assert_eq!(g.num_sets() * 4, g.set_slots.len());
    /// ```
    pub fn num_sets(&self) -> usize {
        self.set_heads.len()
    }

    /// Query-tile visits of all backward CTAs over this table (plain entries plus set entries),
    /// to compare with [`CoarseTables::col_rows`]'s length, the plain kernel's.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, plan::{CoarseTables, GatheredColumns}};
    /// let t = CoarseTables::new(&DenseConfig::new(1).make_layout(128).unwrap());
    /// assert_eq!(GatheredColumns::new(&t).tile_visits(), t.col_rows.len());
    /// ```
    pub fn tile_visits(&self) -> usize {
        self.col_rows.len() + self.set_rows.len()
    }

    /// The set and slot holding each key slice that has gathered entries:
    /// `slice_sets[h][slice] = (set, slot)`.
    fn slice_sets(&self) -> Vec<BTreeMap<i32, (usize, usize)>> {
        let mut by_head = vec![BTreeMap::new(); self.heads];
        for (g, &h) in self.set_heads.iter().enumerate() {
            for j in 0..SET_SLOTS {
                // An unused slot repeats a used slice: the first slot naming it holds it.
                by_head[h as usize]
                    .entry(self.set_slots[SET_SLOTS * g + j])
                    .or_insert((g, j));
            }
        }
        by_head
    }

    /// The backward's work items over this table, with pieces of at most `max_tiles` query
    /// tiles (`0` is read as 1), and how dK / dV are combined.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredColumns}};
    /// let mut c = FixedConfig::new(1);
    /// c.num_local_blocks = 4;
    /// let g = GatheredColumns::new(&CoarseTables::new(&c.make_layout(1024).unwrap()));
    /// let plan = g.backward_plan(16);
    /// // Every set item writes a partial slot; so does every plain chunk that lost a slice.
    /// assert!(plan.sets.slots.iter().all(|&s| s >= 0));
    /// assert_eq!(plan.combine.len(), plan.plain.split.len());
    /// ```
    pub fn backward_plan(&self, max_tiles: usize) -> GatheredBackwardPlan {
        let slice_sets = self.slice_sets();
        let has_sets = |h: usize, c: usize| {
            let first = (c * SUBS_PER_TILE) as i32;
            slice_sets[h]
                .range(first..first + SUBS_PER_TILE as i32)
                .next()
                .is_some()
        };
        let plain = plan_rows_forced(
            self.heads,
            &self.col_ptr,
            self.num_chunks,
            max_tiles,
            &has_sets,
        );
        // Sets: one row each, tile = set index; their slots follow the plain plan's.
        let mut sets = plan_rows_forced(1, &self.set_ptr, self.num_sets(), max_tiles, &|_, _| true);
        for item in &mut sets.items {
            item[0] = self.set_heads[item[1] as usize];
        }
        let base = plain.num_slots as i32;
        for s in &mut sets.slots {
            *s += base;
        }
        let set_slots: BTreeMap<i32, (i32, i32)> = sets
            .split
            .iter()
            .map(|&[_, g, first, count]| (g, (base + first, count)))
            .collect();
        let combine = plain
            .split
            .iter()
            .map(|&[h, c, first, count]| {
                let mut row = [h, c, first, count, -1, 0, -1, 0, -1, 0, -1, 0];
                for j in 0..SUBS_PER_TILE {
                    let slice = c * SUBS_PER_TILE as i32 + j as i32;
                    if let Some(&(g, slot)) = slice_sets[h as usize].get(&slice) {
                        let (sfirst, scount) = set_slots[&(g as i32)];
                        row[4 + 2 * j] = sfirst;
                        row[5 + 2 * j] = (scount << 2) | slot as i32;
                    }
                }
                row
            })
            .collect();
        let num_slots = plain.num_slots + sets.num_slots;
        GatheredBackwardPlan {
            plain,
            sets,
            combine,
            num_slots,
        }
    }
}

/// The work of the gathered backward ([`GatheredColumns::backward_plan`]).
///
/// - `plain`: items over the plain columns, as [`CoarseTables::backward_plan`]'s, except that
///   every chunk that lost a slice to a set writes its dK / dV as partial slots (a whole column
///   is then one piece with one slot), so it is in `plain.split`.
/// - `sets`: one item per set or piece of a long set (`[head, set, first, end]`, ranges of
///   `set_rows`), every one writing its 64 partial key rows to its slot (slots numbered after
///   the plain ones); `sets.split` lists each set's `[0, set, first slot, count]`, first slots
///   relative to the plain slots.
/// - `combine`: per entry of `plain.split`, `[head, chunk, first slot, count]` then, per key
///   slice `j` of the chunk, `first slot` of the set holding it (or -1) and `count << 2 | slot`:
///   slice `j`'s dK / dV is the sum of rows `16j..16j + 16` of the chunk's plain slots and of
///   rows `16 slot..16 slot + 16` of the set's slots.
/// - `num_slots`: plain and set slots together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatheredBackwardPlan {
    /// Items over the plain columns.
    pub plain: WorkPlan,
    /// Items over the gathered key sets.
    pub sets: WorkPlan,
    /// The dK / dV combine, one row per chunk with partial slots.
    pub combine: Vec<[i32; 12]>,
    /// Partial slots in all.
    pub num_slots: usize,
}

impl GatheredBackwardPlan {
    /// Both item lists as one grid (`ltd_kernels.h`, the `_gather_` backward kernel): the plain
    /// items as they are, then each set item as `[head, -1 - set, first, end]` with its range
    /// moved past the `plain_entries` entries of the plain columns (the kernel's tables are the
    /// plain columns' followed by the sets'), all ordered longest first by powers of two as
    /// [`WorkPlan::items`] (sets before plain items of the same power). One launch lets the
    /// long set columns and the many short plain ones share the machine, instead of a set
    /// launch of a few long CTAs after the plain one. `split` is the plain plan's (the
    /// combine reads [`GatheredBackwardPlan::combine`]); `num_slots` counts both.
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, plan::{CoarseTables, GatheredColumns}};
    /// let g = GatheredColumns::new(&CoarseTables::new(&FixedConfig::new(1).make_layout(1024).unwrap()));
    /// let plan = g.backward_plan(16);
    /// let grid = plan.one_grid(g.col_rows.len());
    /// assert_eq!(grid.items.len(), plan.plain.items.len() + plan.sets.items.len());
    /// assert!(grid.items.iter().filter(|i| i[1] < 0).all(|i| i[2] as usize >= g.col_rows.len()));
    /// ```
    pub fn one_grid(&self, plain_entries: usize) -> WorkPlan {
        let offset = plain_entries as i32;
        let sets = self
            .sets
            .items
            .iter()
            .zip(&self.sets.slots)
            .map(|(&[h, set, a, b], &slot)| ([h, -1 - set, a + offset, b + offset], slot));
        let plain = self
            .plain
            .items
            .iter()
            .copied()
            .zip(self.plain.slots.iter().copied());
        let mut all: Vec<([i32; 4], i32)> = sets.chain(plain).collect();
        let band = |i: &[i32; 4]| u32::BITS - ((i[3] - i[2]) as u32).leading_zeros();
        all.sort_by_key(|(i, _)| std::cmp::Reverse(band(i)));
        WorkPlan {
            items: all.iter().map(|(i, _)| *i).collect(),
            slots: all.iter().map(|(_, s)| *s).collect(),
            split: self.plain.split.clone(),
            num_slots: self.num_slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BSLongformerConfig, BigBirdConfig, Direction, FixedConfig, Layout, VariableConfig,
    };

    fn layouts() -> Vec<(&'static str, Layout)> {
        let mut fixed = FixedConfig::new(3);
        fixed.num_local_blocks = 4;
        let mut fixed_uni = FixedConfig::new(2);
        fixed_uni.num_local_blocks = 8;
        fixed_uni.attention = Direction::Unidirectional;
        let mut bigbird = BigBirdConfig::new(2);
        bigbird.block = 16;
        let mut bsl = BSLongformerConfig::new(2);
        bsl.block = 32;
        let variable = VariableConfig::new(2);
        vec![
            ("fixed b16", fixed.make_layout(1024).unwrap()),
            (
                "fixed b16 unidirectional",
                fixed_uni.make_layout(1000).unwrap(),
            ),
            ("bigbird b16", bigbird.make_layout(2048).unwrap()),
            ("bslongformer b32", bsl.make_layout(1024).unwrap()),
            ("variable b16", variable.make_layout(768).unwrap()),
        ]
    }

    /// Counts every (query 16-row group, key 16-slice) sub-block of head `h` of a transposed
    /// table (`ptr` per (head, chunk) into `rows` / `masks`) into `out`; returns the masks seen.
    fn column_subblocks(
        (num_chunks, h): (usize, usize),
        (ptr, rows, masks): (&[i32], &[i32], &[i32]),
        out: &mut BTreeMap<(i32, i32), u32>,
    ) -> Vec<u32> {
        let mut seen = Vec::new();
        for c in 0..num_chunks {
            let idx = h * num_chunks + c;
            for e in ptr[idx] as usize..ptr[idx + 1] as usize {
                let m = masks[e] as u32;
                seen.push(m);
                for b in (0..16).filter(|b| (m >> b) & 1 == 1) {
                    let key = (rows[e] * 4 + (b / 4) as i32, (c * 4 + b % 4) as i32);
                    *out.entry(key).or_insert(0) += 1;
                }
            }
        }
        seen
    }

    /// Every sub-block of a head, from the coarse table.
    fn coarse_subblocks(t: &CoarseTables, h: usize) -> BTreeMap<(i32, i32), u32> {
        let mut out = BTreeMap::new();
        let table = (&t.col_ptr[..], &t.col_rows[..], &t.col_masks[..]);
        column_subblocks((t.num_qtiles, h), table, &mut out);
        out
    }

    /// The same from the gathered table: plain entries plus set entries (slot -> its slice).
    fn gathered_subblocks(g: &GatheredColumns, h: usize) -> BTreeMap<(i32, i32), u32> {
        let mut out = BTreeMap::new();
        let table = (&g.col_ptr[..], &g.col_rows[..], &g.col_masks[..]);
        for m in column_subblocks((g.num_chunks, h), table, &mut out) {
            assert!(slice_bits(m).count_ones() > GATHER_MAX_SLICES);
        }
        for s in (0..g.num_sets()).filter(|&s| g.set_heads[s] as usize == h) {
            let rows = &g.set_rows[g.set_ptr[s] as usize..g.set_ptr[s + 1] as usize];
            assert!(rows.windows(2).all(|w| w[0] < w[1]), "set rows ascend");
            for e in g.set_ptr[s] as usize..g.set_ptr[s + 1] as usize {
                let m = g.set_masks[e] as u32;
                assert_ne!(m, 0, "a set entry sees something");
                for b in (0..16).filter(|b| (m >> b) & 1 == 1) {
                    let slice = g.set_slots[4 * s + b % 4];
                    let key = (g.set_rows[e] * 4 + (b / 4) as i32, slice);
                    *out.entry(key).or_insert(0) += 1;
                }
            }
        }
        out
    }

    #[test]
    fn every_sub_block_is_computed_exactly_once() {
        for (name, layout) in layouts() {
            let t = CoarseTables::new(&layout);
            let g = GatheredColumns::new(&t);
            for h in 0..t.heads {
                assert_eq!(
                    gathered_subblocks(&g, h),
                    coarse_subblocks(&t, h),
                    "{name} head {h}"
                );
            }
        }
    }

    #[test]
    fn each_slice_sits_in_one_set_and_unused_slots_repeat_a_used_one() {
        for (name, layout) in layouts() {
            let g = GatheredColumns::new(&CoarseTables::new(&layout));
            let mut seen = std::collections::BTreeSet::new();
            for s in 0..g.num_sets() {
                let slots = &g.set_slots[4 * s..4 * s + 4];
                let distinct: std::collections::BTreeSet<i32> = slots.iter().copied().collect();
                for &slice in &distinct {
                    assert!(
                        seen.insert((g.set_heads[s], slice)),
                        "{name}: slice {slice} twice"
                    );
                }
                // A repeated slot is never seen by any query row: its rows contribute nothing.
                for j in 1..4 {
                    if slots[..j].contains(&slots[j]) {
                        let used = (g.set_ptr[s]..g.set_ptr[s + 1])
                            .any(|e| (g.set_masks[e as usize] as u32) & (0x1111 << j) != 0);
                        assert!(
                            !used,
                            "{name}: set {s} slot {j} repeats a slice but has rows"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn global_slices_cut_the_tile_visits() {
        // Fixed b16 with a 64-key window: the global slice of each window is seen by every
        // query tile, so the plain kernel visits 64 x 64 tiles for one active slice in four.
        let mut c = FixedConfig::new(1);
        c.num_local_blocks = 4;
        let t = CoarseTables::new(&c.make_layout(4096).unwrap());
        let g = GatheredColumns::new(&t);
        assert!(
            4 * g.tile_visits() < 2 * t.col_rows.len(),
            "{} gathered visits against {} plain",
            g.tile_visits(),
            t.col_rows.len()
        );
    }

    #[test]
    fn bench_fixed_b16_visits_about_its_active_tiles() {
        // The GPU bench's Fixed b16 (16 local blocks, one global block per window): per head,
        // the plain backward visits 1,216 tiles at S 4096 for 496 tiles' worth of active
        // sub-blocks; gathered, the visits come within 5% of that.
        for seq in [4096, 16384] {
            let mut c = FixedConfig::new(2);
            c.num_local_blocks = 16;
            let t = CoarseTables::new(&c.make_layout(seq).unwrap());
            let g = GatheredColumns::new(&t);
            let active: u32 = t.col_masks.iter().map(|m| (*m as u32).count_ones()).sum();
            let tiles = active as usize / 16;
            assert!(
                t.col_rows.len() > 2 * tiles,
                "S {seq}: the plain walk wastes tiles"
            );
            assert!(
                20 * g.tile_visits() <= 21 * tiles,
                "S {seq}: {} visits for {tiles} tiles",
                g.tile_visits()
            );
        }
    }

    #[test]
    fn combine_rows_name_each_gathered_slice_once() {
        for (name, layout) in layouts() {
            let g = GatheredColumns::new(&CoarseTables::new(&layout));
            let plan = g.backward_plan(8);
            let slots_of_sets: usize = plan.sets.split.iter().map(|s| s[3] as usize).sum();
            assert_eq!(
                plan.num_slots,
                plan.plain.num_slots + slots_of_sets,
                "{name}"
            );
            let mut named = 0;
            for row in &plan.combine {
                for j in 0..4 {
                    if row[4 + 2 * j] >= 0 {
                        named += 1;
                        let (first, count) = (row[4 + 2 * j], row[5 + 2 * j] >> 2);
                        assert!(first as usize + count as usize <= plan.num_slots, "{name}");
                        assert!(first as usize >= plan.plain.num_slots, "{name}");
                    }
                }
            }
            let distinct_slices: usize = (0..g.num_sets())
                .map(|s| {
                    let v: std::collections::BTreeSet<i32> =
                        g.set_slots[4 * s..4 * s + 4].iter().copied().collect();
                    v.len()
                })
                .sum();
            assert_eq!(named, distinct_slices, "{name}");
            // Set items cover every set entry once, in pieces of at most 8 tiles.
            let covered: usize = plan.sets.items.iter().map(|i| (i[3] - i[2]) as usize).sum();
            assert_eq!(covered, g.set_rows.len(), "{name}");
            assert!(plan.sets.items.iter().all(|i| i[3] - i[2] <= 8), "{name}");
        }
    }

    #[test]
    fn one_grid_keeps_every_item_and_its_slot_longest_first() {
        for (name, layout) in layouts() {
            let g = GatheredColumns::new(&CoarseTables::new(&layout));
            let plan = g.backward_plan(8);
            let grid = plan.one_grid(g.col_rows.len());
            let n = g.col_rows.len() as i32;
            let mut plain = Vec::new();
            let mut sets = Vec::new();
            for (item, &slot) in grid.items.iter().zip(&grid.slots) {
                if item[1] >= 0 {
                    assert!(item[3] <= n, "{name}: a plain item past the plain columns");
                    plain.push((*item, slot));
                } else {
                    assert!(item[2] >= n, "{name}: a set item inside the plain columns");
                    assert!(slot >= 0, "{name}: a set item without a slot");
                    let [h, t, a, b] = *item;
                    sets.push(([h, -1 - t, a - n, b - n], slot));
                }
            }
            let pairs = |p: &WorkPlan| -> Vec<([i32; 4], i32)> {
                p.items
                    .iter()
                    .copied()
                    .zip(p.slots.iter().copied())
                    .collect()
            };
            plain.sort();
            sets.sort();
            let (mut want_plain, mut want_sets) = (pairs(&plan.plain), pairs(&plan.sets));
            want_plain.sort();
            want_sets.sort();
            assert_eq!(plain, want_plain, "{name}");
            assert_eq!(sets, want_sets, "{name}");
            let lens: Vec<i32> = grid.items.iter().map(|i| i[3] - i[2]).collect();
            let band = |l: i32| u32::BITS - (l as u32).leading_zeros();
            assert!(lens.windows(2).all(|w| band(w[0]) >= band(w[1])), "{name}");
            assert_eq!(grid.num_slots, plan.num_slots, "{name}");
        }
    }
}
