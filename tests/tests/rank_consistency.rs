//! Rank consistency with no communication (`docs/upstream-semantics.md` §6, "Multiple GPUs"): each
//! "rank" is a thread that builds everything from the config and seed alone.
//!
//! - The sampler: one tensor-parallel group (same data-parallel rank) keeps identical tokens,
//!   data-parallel ranks keep different ones, and both are reproducible.
//! - Sparse layouts, random blocks included, are bit-identical on every rank without a broadcast.

use std::thread;

use ltd_core::{ParallelRank, SampledIndices, TokenSampler};
use ltd_sparse_attn::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, FixedConfig, Layout, LayoutCache,
    LocalSlidingWindowConfig, SparsityConfig, VariableConfig, parse_sparse_attention,
};

const SEED: u64 = 1234;
/// 22 LTD layers, batch 8, S 2048, keep 1024: the paper's GPT setting, one rank's share.
const SHAPE: (usize, usize, usize, usize) = (22, 8, 2048, 1024);

/// What the process at `rank` samples at `step`, computed on its own thread.
fn sample_on_thread(rank: ParallelRank, step: u64) -> SampledIndices {
    thread::spawn(move || {
        let (l, b, s, r) = SHAPE;
        TokenSampler::for_rank(SEED, &rank)
            .sample(step, l, b, s, r)
            .unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn a_tensor_parallel_group_keeps_identical_tokens() {
    for data in [0, 1, 5] {
        let members: Vec<SampledIndices> = (0..4)
            .flat_map(|tensor| {
                (0..2).map(move |pipeline| ParallelRank {
                    data,
                    tensor,
                    pipeline,
                })
            })
            .map(|rank| sample_on_thread(rank, 17))
            .collect();
        for m in &members[1..] {
            assert_eq!(m, &members[0], "data-parallel rank {data}");
        }
    }
}

#[test]
fn data_parallel_ranks_keep_different_tokens_and_rank_0_is_one_process() {
    let ranks: Vec<SampledIndices> = (0..8)
        .map(|d| sample_on_thread(ParallelRank::data_parallel(d), 17))
        .collect();
    for (i, a) in ranks.iter().enumerate() {
        for (j, b) in ranks.iter().enumerate().skip(i + 1) {
            // Every row differs, not only the whole tensor: no two ranks share a row's kept set.
            let (l, bs, _, _) = SHAPE;
            for layer in 0..l {
                for row in 0..bs {
                    assert_ne!(
                        a.layer(layer).unwrap().row(row),
                        b.layer(layer).unwrap().row(row),
                        "ranks {i} and {j}, row ({layer}, {row})"
                    );
                }
            }
        }
    }
    let (l, b, s, r) = SHAPE;
    assert_eq!(
        ranks[0],
        TokenSampler::new(SEED).sample(17, l, b, s, r).unwrap()
    );
}

#[test]
fn rank_samplers_are_reproducible_and_pinned() {
    for d in 0..4 {
        let rank = ParallelRank::data_parallel(d);
        assert_eq!(sample_on_thread(rank, 3), sample_on_thread(rank, 3));
        assert_ne!(sample_on_thread(rank, 3), sample_on_thread(rank, 4));
    }
    // The derivation is a format (a resumed or mixed-version job must agree): pin it.
    let seeds: Vec<u64> = (0..3)
        .map(|d| ParallelRank::data_parallel(d).sampler_seed(SEED))
        .collect();
    assert_eq!(
        seeds,
        [
            SEED,
            0xb456_bcfc_34c2_cb2c ^ SEED,
            0x3abf_2a20_6506_83e7 ^ SEED
        ]
    );
}

/// Every layout family, the random ones with random blocks and a non-default seed.
fn configs() -> Vec<SparsityConfig> {
    let mut variable = VariableConfig::new(4);
    variable.num_random_blocks = 3;
    variable.different_layout_per_head = true;
    variable.seed = 77;
    let mut bigbird = BigBirdConfig::new(4);
    bigbird.num_random_blocks = 2;
    bigbird.different_layout_per_head = true;
    bigbird.seed = 77;
    let mut fixed = FixedConfig::new(4);
    fixed.different_layout_per_head = true;
    vec![
        DenseConfig::new(4).into(),
        fixed.into(),
        variable.into(),
        bigbird.into(),
        BSLongformerConfig::new(4).into(),
        LocalSlidingWindowConfig::new(4).into(),
    ]
}

/// The layouts one "rank" builds for a few lengths, from the config alone, on its own thread:
/// directly, through a per-instance cache, and from the DeepSpeed JSON section.
fn layouts_on_thread(config: SparsityConfig) -> Vec<Layout> {
    thread::spawn(move || {
        let cache = LayoutCache::new(config.clone()).unwrap();
        let mut out = Vec::new();
        for seq in [256usize, 512, 1024, 1000] {
            out.push(
                config
                    .make_layout(seq.next_multiple_of(config.block()))
                    .unwrap(),
            );
            out.push((*cache.get(seq).unwrap()).clone());
        }
        out
    })
    .join()
    .unwrap()
}

#[test]
fn sparse_layouts_are_identical_on_every_rank_without_a_broadcast() {
    for config in configs() {
        let rank0 = layouts_on_thread(config.clone());
        for _rank in 1..4 {
            assert_eq!(
                layouts_on_thread(config.clone()),
                rank0,
                "{}",
                config.mode_name()
            );
        }
    }
}

#[test]
fn random_blocks_depend_on_the_layout_seed_only() {
    // The test above would pass for a layout with no randomness: check there is some, and that
    // the same JSON section parsed on two threads gives the same random layout.
    let mut other = BigBirdConfig::new(4);
    other.num_random_blocks = 2;
    other.different_layout_per_head = true;
    other.seed = 78;
    let bigbird = &configs()[3];
    assert_ne!(
        bigbird.make_layout(1024).unwrap(),
        SparsityConfig::from(other).make_layout(1024).unwrap()
    );
    let section = r#"{"sparse_attention": {"mode": "variable", "block": 16, "num_random_blocks": 2,
                      "different_layout_per_head": true, "attention": "unidirectional"}}"#;
    let built: Vec<Layout> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                parse_sparse_attention(section, 4)
                    .unwrap()
                    .make_layout(512)
                    .unwrap()
            })
            .join()
            .unwrap()
        })
        .collect();
    assert!(built.iter().all(|l| l == &built[0]));
}
