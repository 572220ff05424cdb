//! Property tests: structural identities that must hold for any valid input.

use ltd_reference::{
    AttentionOptions, AttnDims, Hidden, HiddenOrder, IndexProblem, Layout, MatmulDims, RefError,
    SoftmaxOptions, attention_forward, block_sparse_softmax, check_sampled_indices,
    decoder_mask_gather, dense_to_sparse, dsd, gather, scatter, sdd, sparse_to_dense,
};
use proptest::prelude::*;

/// `(seq, r, sorted distinct indices [batch, r])`.
fn indices(batch: usize) -> impl Strategy<Value = (usize, usize, Vec<i32>)> {
    (1usize..12)
        .prop_flat_map(|seq| (Just(seq), 1..=seq))
        .prop_flat_map(move |(seq, r)| {
            let row = proptest::sample::subsequence((0..seq as i32).collect::<Vec<_>>(), r);
            (
                Just(seq),
                Just(r),
                proptest::collection::vec(row, batch).prop_map(|rows| rows.concat()),
            )
        })
}

fn order() -> impl Strategy<Value = HiddenOrder> {
    prop_oneof![Just(HiddenOrder::BatchSeq), Just(HiddenOrder::SeqBatch)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scatter_writes_exactly_the_kept_rows(
        (batch, (seq, r, idx)) in (1usize..4).prop_flat_map(|b| (Just(b), indices(b))),
        channels in 1usize..5,
        order in order(),
    ) {
        let dims = Hidden { batch, seq, channels, order };
        let h: Vec<i64> = (0..dims.numel() as i64).collect();
        let part: Vec<i64> = (0..(batch * r * channels) as i64).map(|x| -1 - x).collect();
        let y = scatter(&h, dims, &part, &idx, r).unwrap();
        // Kept rows hold the part, others the original, and gather inverts scatter.
        prop_assert_eq!(gather(&y, dims, &idx, r).unwrap(), part);
        for b in 0..batch {
            let kept: Vec<usize> = idx[b * r..(b + 1) * r].iter().map(|&i| i as usize).collect();
            for s in (0..seq).filter(|s| !kept.contains(s)) {
                for c in 0..channels {
                    prop_assert_eq!(y[dims.offset(b, s, c)], h[dims.offset(b, s, c)]);
                }
            }
        }
        prop_assert_eq!(scatter(&h, dims, &gather(&h, dims, &idx, r).unwrap(), &idx, r).unwrap(), h);
    }

    #[test]
    fn sorted_subsets_pass_the_sampler_check((seq, r, idx) in indices(3)) {
        check_sampled_indices(&idx, 1, 3, r, seq).unwrap();
        if r >= 2 {
            let mut swapped = idx.clone();
            swapped.swap(0, 1);
            let err = check_sampled_indices(&swapped, 1, 3, r, seq).unwrap_err();
            let is_not_ascending = matches!(
                err,
                RefError::BadIndex { problem: IndexProblem::NotAscending { .. }, .. }
            );
            prop_assert!(is_not_ascending);
        }
    }

    #[test]
    fn decoder_mask_gather_of_identity_indices_is_the_mask(seq in 1usize..6, batch in 1usize..3) {
        let mask: Vec<u32> = (0..(batch * seq * seq) as u32).collect();
        let idx: Vec<i32> = (0..batch).flat_map(|_| 0..seq as i32).collect();
        prop_assert_eq!(decoder_mask_gather(&mask, &idx, batch, seq, seq).unwrap(), mask);
    }

    #[test]
    fn all_ones_layout_changes_nothing(
        seq in 1usize..7,
        block in 1usize..4,
        head_dim in 1usize..4,
        causal in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dims = AttnDims { batch: 1, heads: 2, seq, head_dim };
        let n = dims.numel();
        let q = small(n, seed);
        let k = small(n, seed + 1);
        let v = small(n, seed + 2);
        let nb = seq.div_ceil(block);
        let ones = vec![1u8; 2 * nb * nb];
        let plain = AttentionOptions { causal, ..AttentionOptions::new(0.9) };
        let with = AttentionOptions { layout: Some(Layout::square(&ones, 2, nb, block)), ..plain };
        prop_assert_eq!(
            attention_forward(&q, &k, &v, dims, &plain).unwrap(),
            attention_forward(&q, &k, &v, dims, &with).unwrap()
        );
    }

    #[test]
    fn dense_attention_equals_sparse_pipeline(
        nb in 1usize..4,
        block in 1usize..4,
        head_dim in 1usize..4,
        layout_bits in proptest::collection::vec(0u8..2, 2 * 9),
        seed in 0u64..1000,
    ) {
        let seq = nb * block;
        let heads = 2;
        let layout_values = layout_bits[..heads * nb * nb].to_vec();
        let layout = Layout::square(&layout_values, heads, nb, block);
        let dims = AttnDims { batch: 2, heads, seq, head_dim };
        let n = dims.numel();
        let (q, k, v) = (small(n, seed), small(n, seed + 1), small(n, seed + 2));
        let opts = AttentionOptions { layout: Some(layout), ..AttentionOptions::new(0.6) };
        let dense = attention_forward(&q, &k, &v, dims, &opts).unwrap().out;
        let mm = MatmulDims { batch: 2, heads, m: seq, n: seq, k: head_dim };
        let scores = sdd(&q, &k, mm, &layout, false, true).unwrap();
        let probs = block_sparse_softmax(&scores, 2, &layout, &SoftmaxOptions::new(0.6)).unwrap();
        let pv = MatmulDims { batch: 2, heads, m: seq, n: head_dim, k: seq };
        let out = dsd(&probs, &v, pv, &layout, false, false).unwrap();
        for (a, b) in out.iter().zip(&dense) {
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
    }

    #[test]
    fn sparse_dense_round_trip(
        nb in 1usize..4,
        block in 1usize..4,
        layout_bits in proptest::collection::vec(0u8..2, 2 * 9),
    ) {
        let layout_values = layout_bits[..2 * nb * nb].to_vec();
        let layout = Layout::square(&layout_values, 2, nb, block);
        let side = nb * block;
        let dense: Vec<i32> = (0..(2 * 2 * side * side) as i32).collect();
        let sparse = dense_to_sparse(&dense, 2, &layout).unwrap();
        prop_assert_eq!(sparse.len(), 2 * layout.nnz() * block * block);
        let back = sparse_to_dense(&sparse, 2, &layout, -1).unwrap();
        for (e, (&got, &orig)) in back.iter().zip(&dense).enumerate() {
            let (h, i, j) = ((e / (side * side)) % 2, (e / side) % side, e % side);
            let want = if layout.is_active(h, i / block, j / block) { orig } else { -1 };
            prop_assert_eq!(got, want);
        }
    }
}

/// Deterministic values in [-1, 1) as f32.
fn small(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}
