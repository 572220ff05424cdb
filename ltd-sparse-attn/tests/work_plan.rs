//! The host-side work planner (no GPU, no `cuda` feature) against the layouts it plans: the
//! coarse tables cover exactly the layout, the work plans cover every row and column once.

mod common;

use common::make_layout;
use ltd_sparse_attn::plan::CoarseTables;

#[test]
fn work_plans_cover_every_row_and_column_exactly_once() {
    // CPU-only check of the work split: per (head, query tile) in the forward and (head, key
    // chunk) in the backward (or pair of chunks) the items' ranges tile the row's or column's
    // table range, pieces respect the limit, whole rows have slot -1, split rows own disjoint
    // slot ranges covering 0..num_slots (in the pair plans one range per tile or chunk of the
    // pair, in two banks), and items come longest first (by powers of two).
    for block in [16, 64, 128] {
        for family in 0u8..5 {
            let layout = make_layout(family, 3, block, 2000, family % 2 == 1, 5);
            let t = CoarseTables::new(&layout);
            for (max_chunks, which) in [1usize, 2, 3, 7, 16, 1000]
                .into_iter()
                .flat_map(|m| [(m, 0), (m, 1), (m, 2), (m, 3)])
            {
                let (plan, ptr, per_head) = match which {
                    0 => (t.forward_plan(max_chunks), &t.row_ptr, t.num_qtiles),
                    1 => (t.backward_plan(max_chunks), &t.col_ptr, t.num_qtiles),
                    2 => (
                        t.backward_pair_plan(max_chunks),
                        &t.col_pair_ptr,
                        t.num_qtiles.div_ceil(2),
                    ),
                    _ => (
                        t.forward_pair_plan(max_chunks),
                        &t.row_pair_ptr,
                        t.num_qtiles.div_ceil(2),
                    ),
                };
                let pairs = which >= 2;
                assert_eq!(plan.items.len(), plan.slots.len());
                // The kernels' rows repeat the first two entries and the first mask.
                let (entries, masks) = match which {
                    0 => (&t.cols, &t.masks),
                    1 => (&t.col_rows, &t.col_masks),
                    2 => (&t.col_pair_rows, &t.col_pair_masks),
                    _ => (&t.row_pair_cols, &t.row_pair_masks),
                };
                let rows = plan.kernel_rows(entries, masks);
                assert_eq!(rows.len(), plan.items.len());
                for (row, (item, &slot)) in rows.iter().zip(plan.items.iter().zip(&plan.slots)) {
                    let [first, end] = [item[2], item[3]];
                    let at = |i: i32, v: &Vec<i32>| if i < end { v[i as usize] } else { 0 };
                    assert_eq!(row[..4], item[..]);
                    assert_eq!(row[4], slot);
                    assert_eq!(
                        row[5..],
                        [at(first, entries), at(first, masks), at(first + 1, entries)]
                    );
                }
                // Longest first by powers of two, (head, tile, first entry) order inside each.
                let band = |i: &[i32; 4]| u32::BITS - ((i[3] - i[2]) as u32).leading_zeros();
                for w in plan.items.windows(2) {
                    let (a, b) = (&w[0], &w[1]);
                    assert!(band(a) >= band(b), "not longest first: {a:?} before {b:?}");
                    if band(a) == band(b) {
                        assert!(
                            (a[0], a[1], a[2]) < (b[0], b[1], b[2]),
                            "not head-major: {a:?} before {b:?}"
                        );
                    }
                }
                let mut slot_seen = vec![false; plan.num_slots];
                for &[h, qt, s0, cnt] in &plan.split {
                    for s in s0..s0 + cnt {
                        assert!(!slot_seen[s as usize], "slot {s} twice");
                        slot_seen[s as usize] = true;
                    }
                    assert!(cnt >= 2, "a split row of one piece ({h}, {qt})");
                }
                if pairs {
                    // Bank 1 of a pair whose second tile or chunk is past the last is written,
                    // never read.
                    let odd_tail = plan
                        .split
                        .iter()
                        .filter(|r| r[1] as usize == t.num_qtiles - 1 && r[1] % 2 == 0)
                        .map(|r| r[3] as usize)
                        .sum::<usize>();
                    let seen = slot_seen.iter().filter(|&&x| x).count();
                    assert_eq!(seen + odd_tail, plan.num_slots);
                } else {
                    assert!(slot_seen.iter().all(|&x| x));
                }
                for h in 0..t.heads {
                    for qt in 0..per_head {
                        let idx = h * per_head + qt;
                        let (first, end) = (ptr[idx], ptr[idx + 1]);
                        let mut mine: Vec<(i32, i32, i32)> = plan
                            .items
                            .iter()
                            .zip(&plan.slots)
                            .filter(|(i, _)| i[0] == h as i32 && i[1] == qt as i32)
                            .map(|(i, &s)| (i[2], i[3], s))
                            .collect();
                        mine.sort();
                        assert!(!mine.is_empty(), "row ({h}, {qt}) has no item");
                        assert_eq!(mine[0].0, first);
                        assert_eq!(mine.last().unwrap().1, end);
                        assert!(mine.windows(2).all(|w| w[0].1 == w[1].0));
                        assert!(mine.iter().all(|m| (m.1 - m.0) as usize <= max_chunks));
                        if mine.len() == 1 {
                            assert_eq!(mine[0].2, -1, "a whole row writes its output");
                        } else {
                            let mut slots: Vec<i32> = mine.iter().map(|m| m.2).collect();
                            slots.sort();
                            // The combine's rows: this row, or the pair's two tiles or chunks
                            // (bank 0 for 2c, bank 1 for 2c + 1 where it exists).
                            let listed: Vec<(usize, i32)> = if pairs {
                                [(2 * qt, 0), (2 * qt + 1, plan.num_slots as i32 / 2)]
                                    .into_iter()
                                    .filter(|&(chunk, _)| chunk < t.num_qtiles)
                                    .collect()
                            } else {
                                vec![(qt, 0)]
                            };
                            for (row, bank) in listed {
                                let sr = plan
                                    .split
                                    .iter()
                                    .find(|r| r[0] == h as i32 && r[1] == row as i32)
                                    .expect("split row listed");
                                let want: Vec<i32> =
                                    (sr[2]..sr[2] + sr[3]).map(|s| s - bank).collect();
                                assert_eq!(slots, want);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn coarse_tables_cover_exactly_the_layout() {
    // CPU-only check of the table builder: every 16x16 sub-block bit equals the layout entry.
    for block in [16, 32, 64, 128] {
        for family in 0u8..5 {
            let layout = make_layout(family, 3, block, 700, family % 2 == 0, 9);
            let t = CoarseTables::new(&layout);
            // Pair tables of the transpose (backward) and of the rows (forward): the sorted
            // union of the two chunks' (tiles') entries, each one's mask in its half.
            let pairs = t.num_qtiles.div_ceil(2);
            let tables = [
                (
                    (&t.col_ptr, &t.col_rows, &t.col_masks),
                    (&t.col_pair_ptr, &t.col_pair_rows, &t.col_pair_masks),
                ),
                (
                    (&t.row_ptr, &t.cols, &t.masks),
                    (&t.row_pair_ptr, &t.row_pair_cols, &t.row_pair_masks),
                ),
            ];
            for ((ptr, entries, masks), (pair_ptr, pair_entries, pair_masks)) in tables {
                assert_eq!(pair_ptr.len(), t.heads * pairs + 1);
                for h in 0..t.heads {
                    for pair in 0..pairs {
                        let mut want: std::collections::BTreeMap<i32, u32> = Default::default();
                        for (half, row) in [(0, 2 * pair), (1, 2 * pair + 1)] {
                            if row < t.num_qtiles {
                                let i = h * t.num_qtiles + row;
                                for e in ptr[i] as usize..ptr[i + 1] as usize {
                                    *want.entry(entries[e]).or_default() |=
                                        (masks[e] as u32) << (16 * half);
                                }
                            }
                        }
                        let i = h * pairs + pair;
                        let got: Vec<(i32, u32)> = (pair_ptr[i] as usize..pair_ptr[i + 1] as usize)
                            .map(|e| (pair_entries[e], pair_masks[e] as u32))
                            .collect();
                        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
                    }
                }
            }
            let nsub = layout.padded_len() / 16;
            let mut seen = vec![false; 3 * nsub * nsub];
            for h in 0..3 {
                for qt in 0..t.num_qtiles {
                    let r = h * t.num_qtiles + qt;
                    for e in t.row_ptr[r] as usize..t.row_ptr[r + 1] as usize {
                        for bit in 0..16 {
                            if t.masks[e] >> bit & 1 == 1 {
                                let (sr, sc) = (qt * 4 + bit / 4, t.cols[e] as usize * 4 + bit % 4);
                                seen[(h * nsub + sr) * nsub + sc] = true;
                            }
                        }
                    }
                }
            }
            for h in 0..3 {
                for sr in 0..nsub {
                    for sc in 0..nsub {
                        let want = layout.is_active(h, sr * 16 / block, sc * 16 / block);
                        assert_eq!(
                            seen[(h * nsub + sr) * nsub + sc],
                            want,
                            "block {block} family {family} h{h} {sr},{sc}"
                        );
                    }
                }
            }
        }
    }
}

/// `(head, query tile)` -> the `(16-row group, 16-key slice)` pairs a row's entries cover, one per
/// covered pair, from the plain table or the gathered one.
fn covered_slices(
    row_ptr: &[i32],
    entries: &[i32],
    masks: &[i32],
    slots: &[i32],
    r: usize,
) -> Vec<(usize, i32)> {
    let mut got = Vec::new();
    for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
        let bases: Vec<i32> = if entries[e] >= 0 {
            (0..4).map(|j| 4 * entries[e] + j).collect()
        } else {
            let g = (-entries[e] - 1) as usize;
            slots[4 * g..4 * g + 4].to_vec()
        };
        for bit in 0..16 {
            if (masks[e] >> bit) & 1 == 1 {
                got.push((bit / 4, bases[bit % 4]));
            }
        }
    }
    got.sort_unstable();
    got
}

#[test]
fn gathered_tables_cover_every_active_sub_block_once() {
    // CPU-only check of the gathered forward table: per (head, query tile) its plain entries and
    // gathered chunks cover every active (row group, 16-key slice) of the coarse row exactly
    // once; a gathered chunk's used slots ascend and come from chunks with at most two active
    // slices, its unused slots repeat a used one and carry no bit; chunks with three or four
    // active slices stay plain with their mask; block-64/128 layouts gather nothing; the work
    // items of its plan tile every row.
    use ltd_sparse_attn::plan::{GATHER_MAX_SLICES, GatheredTables};
    for block in [16, 32, 64, 128] {
        for family in 0u8..5 {
            for (seq, uni, seed) in [(700, false, 1), (2000, true, 2), (4100, false, 3)] {
                let layout = make_layout(family, 2, block, seq, uni, seed);
                let t = CoarseTables::new(&layout);
                let g = GatheredTables::new(&t);
                assert_eq!(g.row_ptr.len(), t.row_ptr.len());
                assert_eq!(g.entries.len(), g.masks.len());
                assert_eq!(g.slots.len(), 4 * g.gathered_chunks());
                let ctx = format!("block {block} family {family} L {seq}");
                if block >= 64 {
                    assert_eq!(g.gathered_chunks(), 0, "{ctx}");
                    assert_eq!((&g.entries, &g.masks), (&t.cols, &t.masks), "{ctx}");
                }
                let mut codes_seen = vec![0usize; g.gathered_chunks()];
                for r in 0..t.row_ptr.len() - 1 {
                    let want = covered_slices(&t.row_ptr, &t.cols, &t.masks, &[], r);
                    let got = covered_slices(&g.row_ptr, &g.entries, &g.masks, &g.slots, r);
                    assert_eq!(got, want, "{ctx} row {r}");
                    let plain: std::collections::HashMap<i32, i32> = (t.row_ptr[r]
                        ..t.row_ptr[r + 1])
                        .map(|e| (t.cols[e as usize], t.masks[e as usize]))
                        .collect();
                    let mut first_keys = Vec::new();
                    for e in g.row_ptr[r] as usize..g.row_ptr[r + 1] as usize {
                        let (code, mask) = (g.entries[e], g.masks[e] as u32);
                        let slices = |m: u32| (m | m >> 4 | m >> 8 | m >> 12) & 0xF;
                        if code >= 0 {
                            assert_eq!(plain.get(&code), Some(&(mask as i32)), "{ctx}");
                            assert!(slices(mask).count_ones() > GATHER_MAX_SLICES, "{ctx}");
                            first_keys.push(4 * code);
                            continue;
                        }
                        let gi = (-code - 1) as usize;
                        codes_seen[gi] += 1;
                        let s = &g.slots[4 * gi..4 * gi + 4];
                        let used = slices(mask);
                        assert!(used & 1 == 1, "{ctx}: slot 0 unused");
                        let n = used.count_ones() as usize;
                        assert_eq!(used, (1 << n) - 1, "{ctx}: used slots first");
                        assert!(s[..n].windows(2).all(|w| w[0] < w[1]), "{ctx}: {s:?}");
                        assert!(s[n..].iter().all(|x| s[..n].contains(x)), "{ctx}: {s:?}");
                        for &slice in &s[..n] {
                            let m = plain[&(slice / 4)] as u32;
                            assert!(slices(m).count_ones() <= GATHER_MAX_SLICES, "{ctx}");
                        }
                        first_keys.push(s[0]);
                    }
                    assert!(
                        first_keys.windows(2).all(|w| w[0] < w[1]),
                        "{ctx}: entry order"
                    );
                }
                assert!(
                    codes_seen.iter().all(|&n| n == 1),
                    "{ctx}: a gathered chunk used once"
                );
                for max_chunks in [1usize, 3, 16, 1000] {
                    let plan = g.forward_plan(max_chunks);
                    let mut covered = vec![0usize; g.entries.len()];
                    for (item, &slot) in plan.items.iter().zip(&plan.slots) {
                        let r = item[0] as usize * g.num_qtiles + item[1] as usize;
                        assert!(
                            g.row_ptr[r] <= item[2] && item[3] <= g.row_ptr[r + 1],
                            "{ctx}"
                        );
                        assert!((item[3] - item[2]) as usize <= max_chunks, "{ctx}");
                        assert_eq!(
                            slot == -1,
                            item[2] == g.row_ptr[r] && item[3] == g.row_ptr[r + 1],
                            "{ctx}"
                        );
                        for e in item[2]..item[3] {
                            covered[e as usize] += 1;
                        }
                    }
                    assert!(covered.iter().all(|&n| n == 1), "{ctx}: entries once");
                    let rows = plan.kernel_rows(&g.entries, &g.masks);
                    for row in &rows {
                        let at = |i: i32, v: &[i32]| if i < row[3] { v[i as usize] } else { 0 };
                        assert_eq!(
                            row[5..],
                            [
                                at(row[2], &g.entries),
                                at(row[2], &g.masks),
                                at(row[2] + 1, &g.entries)
                            ]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gathered_tables_shrink_the_benchmark_fixed_layout() {
    // The bench's Fixed block-16 layout (16 local blocks, bidirectional): each query tile sees its
    // window's 4 chunks whole and slice 3 of one chunk per other window, for all 4 row groups.
    use ltd_sparse_attn::FixedConfig;
    use ltd_sparse_attn::plan::GatheredTables;
    let mut c = FixedConfig::new(1);
    c.num_local_blocks = 16;
    let t = CoarseTables::new(&c.make_layout(16384).unwrap());
    let g = GatheredTables::new(&t);
    let per_row = |ptr: &[i32]| ptr[1] - ptr[0];
    assert_eq!(per_row(&t.row_ptr), 67);
    assert_eq!(per_row(&g.row_ptr), 4 + 63usize.div_ceil(4) as i32);
    assert_eq!(g.masks[g.row_ptr[0] as usize + 4], 0xffff);
}
