//! Golden layouts (every example matrix of upstream-semantics.md §2.3, verbatim), hand-checked edge cases,
//! per-head patterns, seeded random blocks, validation errors, and the layout cache.

use ltd_sparse_attn::*;
use std::sync::Arc;

/// Turns a picture (rows separated by whitespace) into `render_head_text`'s format.
fn pic(rows: &str) -> String {
    rows.split_whitespace().map(|r| format!("{r}\n")).collect()
}

fn head(l: &Layout, h: usize) -> String {
    render_head_text(l, h)
}

fn fixed(nl: usize, ng: usize, dir: Direction) -> FixedConfig {
    let mut c = FixedConfig::new(1);
    c.num_local_blocks = nl;
    c.num_global_blocks = ng;
    c.attention = dir;
    c
}

#[test]
fn fixed_nb8_bidirectional() {
    let l = fixed(4, 1, Direction::Bidirectional)
        .make_layout_blocks(8)
        .unwrap();
    assert_eq!(
        head(&l, 0),
        pic("####...# ####...# ####...# ####...# ...##### ...##### ...##### ...#####")
    );
}

#[test]
fn fixed_nb8_unidirectional() {
    let l = fixed(4, 1, Direction::Unidirectional)
        .make_layout_blocks(8)
        .unwrap();
    assert_eq!(
        head(&l, 0),
        pic("#....... ##...... ###..... ####.... ...##... ...###.. ...####. ...#####")
    );
}

#[test]
fn fixed_nb10_partial_window_has_global_column_9() {
    let l = fixed(4, 1, Direction::Bidirectional)
        .make_layout(160)
        .unwrap();
    assert_eq!(
        head(&l, 0),
        pic(
            "####...#.# ####...#.# ####...#.# ####...#.# ...#####.# ...#####.# ...#####.# ...#####.# ...#...### ...#...###"
        )
    );
}

#[test]
fn fixed_nb10_is_not_the_crop_of_nb128() {
    // Upstream crops the max-length layout; a direct nb = 10 layout differs (upstream-semantics.md §2.8).
    let c = fixed(4, 1, Direction::Bidirectional);
    let big = c.make_layout_blocks(128).unwrap();
    let small = c.make_layout_blocks(10).unwrap();
    let crop_has_col9 = (0..10).all(|r| big.is_active(0, r, 9));
    assert!(!crop_has_col9);
    assert!((0..10).all(|r| small.is_active(0, r, 9)));
}

#[test]
fn fixed_per_head_four_global_patterns() {
    let mut c = fixed(4, 1, Direction::Bidirectional);
    c.num_heads = 4;
    c.different_layout_per_head = true;
    c.num_different_global_patterns = 4;
    let l = c.make_layout_blocks(8).unwrap();
    for (h, cols) in [[3, 7], [2, 6], [1, 5], [0, 4]].iter().enumerate() {
        for col in 0..8 {
            let all = (0..8).all(|r| l.is_active(h, r, col));
            assert_eq!(all, cols.contains(&col), "head {h} column {col}");
        }
    }
    assert_eq!(
        head(&l, 1),
        pic("####..#. ####..#. ####..#. ####..#. ..#.#### ..#.#### ..#.#### ..#.####")
    );
}

#[test]
fn fixed_per_head_patterns_cycle_over_heads() {
    // nl 4, ng 2, 2 patterns, 3 heads: heads 0 and 2 use columns {2,3,6,7}, head 1 {0,1,4,5}.
    let mut c = fixed(4, 2, Direction::Bidirectional);
    c.num_heads = 3;
    c.different_layout_per_head = true;
    c.num_different_global_patterns = 2;
    let l = c.make_layout_blocks(8).unwrap();
    assert_eq!(
        head(&l, 0),
        pic("####..## ####..## ####..## ####..## ..###### ..###### ..###### ..######")
    );
    assert_eq!(
        head(&l, 1),
        pic("######.. ######.. ######.. ######.. ##..#### ##..#### ##..#### ##..####")
    );
    assert_eq!(head(&l, 2), head(&l, 0));
}

#[test]
fn fixed_horizontal_makes_rows_3_and_7_full() {
    let mut c = fixed(4, 1, Direction::Bidirectional);
    c.horizontal_global_attention = true;
    let l = c.make_layout_blocks(8).unwrap();
    assert_eq!(
        head(&l, 0),
        pic("####...# ####...# ####...# ######## ...##### ...##### ...##### ########")
    );
}

#[test]
fn fixed_partial_window_with_two_global_blocks() {
    // nb 6, nl 4, ng 2: columns 2,3 (full window) and 4,5 (partial: min(4+2, 6-2) = 4).
    let bi = fixed(4, 2, Direction::Bidirectional)
        .make_layout_blocks(6)
        .unwrap();
    assert_eq!(
        head(&bi, 0),
        pic("###### ###### ###### ###### ..#### ..####")
    );
    // Unidirectional: row 2 sees column 3 and row 4 sees column 5 (upstream's leak, §2.3.7).
    let uni = fixed(4, 2, Direction::Unidirectional)
        .make_layout_blocks(6)
        .unwrap();
    assert_eq!(
        head(&uni, 0),
        pic("#..... ##.... ####.. ####.. ..#### ..####")
    );
}

#[test]
fn fixed_fewer_blocks_than_global_blocks_wraps_like_python() {
    // nl = ng = 5, nb = 3: last-window start min(0, 3 - 5) = -2 wraps to 1: a bottom-right
    // 2x2 square from row 1 (unidirectional).
    let uni = fixed(5, 5, Direction::Unidirectional)
        .make_layout_blocks(3)
        .unwrap();
    assert_eq!(head(&uni, 0), pic("#.. ### ###"));
    // nb = 3, ng = 4: start -1 wraps to 2: column 2 from row 2 (already in the triangle).
    let uni = fixed(4, 4, Direction::Unidirectional)
        .make_layout_blocks(3)
        .unwrap();
    assert_eq!(head(&uni, 0), pic("#.. ##. ###"));
    // Bidirectional nb = 2, ng = 4: start -2 wraps to 0: everything.
    let bi = fixed(4, 4, Direction::Bidirectional)
        .make_layout_blocks(2)
        .unwrap();
    assert_eq!(head(&bi, 0), pic("## ##"));
}

#[test]
fn variable_local_2_3_examples() {
    let mut c = VariableConfig::new(1);
    c.local_window_blocks = vec![2, 3];
    let bi = c.make_layout_blocks(8).unwrap();
    assert_eq!(
        head(&bi, 0),
        pic("##...... ##...... #.###... #.###... #.###... #....### #....### #....###")
    );
    c.attention = Direction::Unidirectional;
    let uni = c.make_layout_blocks(8).unwrap();
    assert_eq!(
        head(&uni, 0),
        pic("#....... ##...... #.#..... #.##.... #.###... #....#.. #....##. #....###")
    );
}

#[test]
fn variable_partial_window_and_horizontal_span() {
    let mut c = VariableConfig::new(1);
    c.local_window_blocks = vec![2];
    c.global_block_indices = vec![1, 9];
    c.global_block_end_indices = Some(vec![3, 12]); // the second span is past nb: skipped
    c.horizontal_global_attention = true;
    let l = c.make_layout_blocks(5).unwrap();
    assert_eq!(head(&l, 0), pic("###.. ##### ##### .###. .##.#"));
}

#[test]
fn bslongformer_nb6_and_bigbird_without_random_blocks() {
    let bi = BSLongformerConfig::new(1).make_layout_blocks(6).unwrap();
    assert_eq!(
        head(&bi, 0),
        pic("###### ###... ####.. #.###. #..### #...##")
    );
    let mut c = BSLongformerConfig::new(1);
    c.attention = Direction::Unidirectional;
    let uni = c.make_layout_blocks(6).unwrap();
    assert_eq!(
        head(&uni, 0),
        pic("#..... ##.... ###... #.##.. #..##. #...##")
    );

    let mut bb = BigBirdConfig::new(1);
    bb.num_random_blocks = 0;
    assert_eq!(bb.make_layout_blocks(6).unwrap(), bi);
    bb.attention = Direction::Unidirectional;
    assert_eq!(bb.make_layout_blocks(6).unwrap(), uni);
}

#[test]
fn local_sliding_window_even_window_acts_as_odd() {
    let mut c = LocalSlidingWindowConfig::new(1);
    c.num_sliding_window_blocks = 4;
    assert_eq!(
        head(&c.make_layout_blocks(5).unwrap(), 0),
        pic("#.... ##... ###.. .###. ..###")
    );
    c.attention = Direction::Bidirectional;
    assert_eq!(
        head(&c.make_layout_blocks(5).unwrap(), 0),
        pic("###.. ####. ##### .#### ..###")
    );
    // A window equal to the number of blocks is accepted (strict less-than check).
    c.num_sliding_window_blocks = 5;
    assert!(c.make_layout_blocks(5).is_ok());
}

#[test]
fn dense_is_all_ones_and_shared_layouts_are_copied_to_every_head() {
    let l = DenseConfig::new(3).make_layout_blocks(4).unwrap();
    assert_eq!(l.nnz(), 48);
    let f = FixedConfig {
        num_heads: 3,
        ..FixedConfig::new(1)
    }
    .make_layout_blocks(8)
    .unwrap();
    assert_eq!(head(&f, 0), head(&f, 2));
}

#[test]
fn random_blocks_are_seeded_and_reproducible() {
    let mut c = BigBirdConfig::new(2);
    c.different_layout_per_head = true;
    c.num_random_blocks = 2;
    c.seed = 42;
    let a = c.make_layout_blocks(16).unwrap();
    let b = c.make_layout_blocks(16).unwrap();
    assert_eq!(a, b);
    c.seed = 43;
    assert_ne!(c.make_layout_blocks(16).unwrap(), a);
    // Every row has at least its random blocks (the window adds more).
    for h in 0..2 {
        for r in 0..16 {
            assert!((0..16).filter(|&col| a.is_active(h, r, col)).count() >= 3);
        }
    }
    // Golden value: the derivation documented in `layout` (ChaCha8, key = seed ++ nb ++ 0s,
    // stream = head, partial Fisher–Yates with Lemire sampling) must never change.
    let mut g = BigBirdConfig::new(1);
    g.num_random_blocks = 2;
    g.num_global_blocks = 0;
    g.num_sliding_window_blocks = 0; // window of half-width 0: the diagonal only
    g.seed = 7;
    let golden = g.make_layout_blocks(8).unwrap();
    assert_eq!(
        head(&golden, 0),
        pic("#...#... ##...#.. ..##.#.. #..##... .#..#... ....##.. ..#..##. ....#.##"),
        "seed derivation changed"
    );
}

#[test]
fn variable_random_blocks_respect_causality_when_unidirectional() {
    let mut c = VariableConfig::new(4);
    c.different_layout_per_head = true;
    c.num_random_blocks = 3;
    c.local_window_blocks = vec![1];
    c.global_block_indices = vec![];
    c.attention = Direction::Unidirectional;
    for seed in 0..20 {
        c.seed = seed;
        let l = c.make_layout_blocks(12).unwrap();
        for h in 0..4 {
            for r in 0..12 {
                for col in r + 1..12 {
                    assert!(
                        !l.is_active(h, r, col),
                        "seed {seed} head {h}: row {r} sees future block {col}"
                    );
                }
                // min(3, r + 1) random blocks, plus the diagonal window.
                let n = (0..=r).filter(|&col| l.is_active(h, r, col)).count();
                assert!(n >= 3.min(r + 1));
            }
        }
    }
    // Bidirectional random blocks may be anywhere.
    c.attention = Direction::Bidirectional;
    let l = c.make_layout_blocks(12).unwrap();
    let future = (0..4).any(|h| (0..12).any(|r| (r + 1..12).any(|col| l.is_active(h, r, col))));
    assert!(future);
}

fn config_err(r: Result<Layout>) -> String {
    match r {
        Err(e @ SparseAttnError::InvalidConfig { .. }) => e.to_string(),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn fixed_validation_errors() {
    let mut c = fixed(4, 0, Direction::Bidirectional);
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "num_global_blocks: 0; expected at least 1"
    );
    c = fixed(5, 2, Direction::Bidirectional);
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "num_local_blocks: 5 is not a multiple of num_global_blocks 2"
    );
    c = fixed(4, 1, Direction::Unidirectional);
    c.horizontal_global_attention = true;
    assert!(config_err(c.make_layout_blocks(8)).starts_with("horizontal_global_attention:"));
    c = fixed(4, 1, Direction::Bidirectional);
    c.num_different_global_patterns = 2;
    assert!(config_err(c.make_layout_blocks(8)).contains("different_layout_per_head"));
    c.different_layout_per_head = true;
    c.num_different_global_patterns = 5;
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "num_different_global_patterns: 5 is larger than num_local_blocks / num_global_blocks = 4 / 1 = 4"
    );
    c.num_different_global_patterns = 0;
    assert!(config_err(c.make_layout_blocks(8)).starts_with("num_different_global_patterns: 0"));
    c = fixed(4, 1, Direction::Bidirectional);
    c.block = 8;
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "block: 8 is not a supported block size; expected one of 16, 32, 64, 128"
    );
    c.block = 16;
    c.num_heads = 0;
    assert!(config_err(c.make_layout_blocks(8)).starts_with("num_heads:"));
}

#[test]
fn variable_validation_errors() {
    let mut c = VariableConfig::new(1);
    c.global_block_end_indices = Some(vec![1, 2]);
    assert!(
        config_err(c.make_layout_blocks(8)).starts_with("global_block_end_indices: has 2 entries")
    );
    c.global_block_indices = vec![0, 3];
    c.global_block_end_indices = Some(vec![1, 3]);
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "global_block_end_indices[1]: 3 is not greater than global_block_indices[1] = 3; expected start < end"
    );
    let mut c = VariableConfig::new(1);
    c.attention = Direction::Unidirectional;
    c.horizontal_global_attention = true;
    assert!(config_err(c.make_layout_blocks(8)).starts_with("horizontal_global_attention:"));
    let mut c = VariableConfig::new(1);
    c.local_window_blocks = vec![];
    assert!(config_err(c.make_layout_blocks(8)).starts_with("local_window_blocks: is empty"));
    c.local_window_blocks = vec![2, 0];
    assert!(config_err(c.make_layout_blocks(8)).starts_with("local_window_blocks[1]: 0"));
    let mut c = VariableConfig::new(1);
    c.num_random_blocks = 9;
    assert_eq!(
        config_err(c.make_layout_blocks(8)),
        "num_random_blocks: 9 is larger than the number of blocks 8; expected at most 8"
    );
}

#[test]
fn window_family_validation_errors() {
    let mut b = BigBirdConfig::new(1);
    b.num_random_blocks = 5;
    assert!(config_err(b.make_layout_blocks(4)).starts_with("num_random_blocks: 5"));
    b.num_random_blocks = 0;
    b.num_sliding_window_blocks = 5;
    assert!(config_err(b.make_layout_blocks(4)).starts_with("num_sliding_window_blocks: 5"));
    b.num_sliding_window_blocks = 3;
    b.num_global_blocks = 5;
    assert!(config_err(b.make_layout_blocks(4)).starts_with("num_global_blocks: 5"));
    b.num_global_blocks = 1;
    b.num_random_blocks = 2;
    b.attention = Direction::Unidirectional;
    assert!(config_err(b.make_layout_blocks(4)).contains("cannot be drawn causally"));

    let mut l = BSLongformerConfig::new(1);
    l.num_sliding_window_blocks = 7;
    assert!(config_err(l.make_layout_blocks(6)).starts_with("num_sliding_window_blocks: 7"));
    l.num_sliding_window_blocks = 3;
    l.global_block_end_indices = Some(vec![0]);
    assert!(config_err(l.make_layout_blocks(6)).starts_with("global_block_end_indices[0]"));

    let mut w = LocalSlidingWindowConfig::new(1);
    w.num_sliding_window_blocks = 4;
    assert!(config_err(w.make_layout_blocks(3)).starts_with("num_sliding_window_blocks: 4"));
}

#[test]
fn direction_strings_and_bad_layout_masks() {
    assert!(
        Direction::parse("both", "attention")
            .unwrap_err()
            .to_string()
            .contains("\"both\"")
    );
    assert!(matches!(
        Layout::from_mask(1, 2, 16, vec![1; 3]),
        Err(SparseAttnError::InvalidLayout(_))
    ));
    assert!(matches!(
        Layout::from_mask(1, 1, 16, vec![7]),
        Err(SparseAttnError::InvalidLayout(_))
    ));
    assert!(matches!(
        Layout::from_mask(0, 1, 16, vec![]),
        Err(SparseAttnError::InvalidLayout(_))
    ));
    let e = Layout::from_mask(1, 1, 48, vec![1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layout.block: 48 is not a supported block size; expected one of 16, 32, 64, 128"
    );
}

#[test]
fn lookup_tables_describe_the_mask() {
    let mut c = FixedConfig::new(2);
    c.different_layout_per_head = true;
    c.num_different_global_patterns = 2;
    let l = c.make_layout_blocks(7).unwrap();
    let nb = 7;
    let mut tile = 0;
    for h in 0..2 {
        for r in 0..nb {
            let (s, e) = (
                l.row_offsets()[h * nb + r] as usize,
                l.row_offsets()[h * nb + r + 1] as usize,
            );
            let cols: Vec<usize> = l.row_columns()[s..e].iter().map(|&c| c as usize).collect();
            let want: Vec<usize> = (0..nb).filter(|&c| l.is_active(h, r, c)).collect();
            assert_eq!(cols, want);
            assert_eq!(s, tile);
            tile = e;
        }
        for col in 0..nb {
            let (s, e) = (
                l.column_offsets()[h * nb + col] as usize,
                l.column_offsets()[h * nb + col + 1] as usize,
            );
            let rows: Vec<usize> = l.column_rows()[s..e].iter().map(|&r| r as usize).collect();
            let want: Vec<usize> = (0..nb).filter(|&r| l.is_active(h, r, col)).collect();
            assert_eq!(rows, want);
            for k in s..e {
                assert_eq!(
                    Some(l.column_tiles()[k] as usize),
                    l.tile_index(h, l.column_rows()[k] as usize, col)
                );
            }
        }
    }
    assert_eq!(tile, l.nnz());
}

#[test]
fn cache_builds_per_length_and_is_shared_between_threads() {
    let cache = Arc::new(LayoutCache::new(FixedConfig::new(2).into()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || (cache.get(160).unwrap(), cache.get(64).unwrap()))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (a, b) in &results {
        assert!(Arc::ptr_eq(a, &results[0].0));
        assert!(Arc::ptr_eq(b, &results[0].1));
    }
    assert_eq!(cache.len(), 2);
    // Built for the length itself, not cropped: nb = 10 has the partial-window column 9.
    assert!((0..10).all(|r| results[0].0.is_active(0, r, 9)));
    // 150 tokens pad to the same 10 blocks.
    assert!(Arc::ptr_eq(&cache.get(150).unwrap(), &results[0].0));
    // A length too short for the config is an error, not a panic.
    let bb = LayoutCache::new(BigBirdConfig::new(1).into()).unwrap();
    assert!(bb.get(16).is_err());
}
