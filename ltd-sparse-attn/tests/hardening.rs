//! Regression tests for hostile input (issue 24): validation before arithmetic, checked sizes,
//! lengths before layouts, NaN/Inf propagation (against the oracle), DeepSpeed's hjson grammar
//! and the warnings for keys without effect.

use std::time::{Duration, Instant};

use ltd_sparse_attn::ops::{SoftmaxOptions, softmax_backward, softmax_forward};
use ltd_sparse_attn::*;

fn families(block: usize) -> Vec<SparsityConfig> {
    vec![
        DenseConfig {
            block,
            ..DenseConfig::new(2)
        }
        .into(),
        FixedConfig {
            block,
            ..FixedConfig::new(2)
        }
        .into(),
        VariableConfig {
            block,
            ..VariableConfig::new(2)
        }
        .into(),
        BigBirdConfig {
            block,
            ..BigBirdConfig::new(2)
        }
        .into(),
        BSLongformerConfig {
            block,
            ..BSLongformerConfig::new(2)
        }
        .into(),
        LocalSlidingWindowConfig {
            block,
            ..LocalSlidingWindowConfig::new(2)
        }
        .into(),
    ]
}

#[test]
fn block_zero_is_an_error_not_a_division_by_zero() {
    for config in families(0) {
        let err = config.make_layout(64).unwrap_err();
        assert!(err.to_string().starts_with("block: 0"), "{err}");
    }
    let err = FixedConfig {
        block: 0,
        ..FixedConfig::new(1)
    }
    .make_layout(64)
    .unwrap_err();
    assert!(err.to_string().starts_with("block: 0"), "{err}");
}

#[test]
fn zero_local_blocks_blames_num_local_blocks() {
    let config = FixedConfig {
        num_local_blocks: 0,
        ..FixedConfig::new(1)
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("num_local_blocks: 0"), "{err}");
}

#[test]
fn huge_lengths_are_errors_at_once() {
    for config in families(16) {
        for seq in [usize::MAX, 1 << 40, 1 << 33] {
            let start = Instant::now();
            assert!(
                config.make_layout(seq).is_err(),
                "{} at {seq}",
                config.mode_name()
            );
            assert!(start.elapsed() < Duration::from_secs(1));
        }
    }
    let png = PngOptions {
        cell_pixels: u32::MAX,
        gap_cells: u32::MAX,
    };
    let layout = DenseConfig::new(3).make_layout(64).unwrap();
    assert!(render_png(&layout, &png).is_err());
}

#[test]
fn csc_tables_are_the_transpose_of_the_mask() {
    // A per-head random layout, checked cell by cell against its own mask.
    let config = BigBirdConfig {
        different_layout_per_head: true,
        num_random_blocks: 3,
        ..BigBirdConfig::new(3)
    };
    let layout = config.make_layout(16 * 150).unwrap();
    let nb = layout.num_blocks();
    for h in 0..3 {
        for c in 0..nb {
            let range = layout.column_offsets()[h * nb + c] as usize
                ..layout.column_offsets()[h * nb + c + 1] as usize;
            let rows: Vec<usize> = (0..nb).filter(|&r| layout.is_active(h, r, c)).collect();
            let got: Vec<usize> = layout.column_rows()[range.clone()]
                .iter()
                .map(|&r| r as usize)
                .collect();
            assert_eq!(got, rows, "head {h} column {c}");
            for (&r, &tile) in got.iter().zip(&layout.column_tiles()[range]) {
                assert_eq!(layout.tile_index(h, r, c), Some(tile as usize));
            }
        }
    }
}

#[test]
fn forward_checks_lengths_before_building_a_layout() {
    let attn = SparseSelfAttention::new(DenseConfig::new(1).into()).unwrap();
    // 2^20 tokens would need a 4 GiB-entry dense layout; the buffers are 4 elements long.
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: 1 << 20,
        head_dim: 4,
    };
    let x = [0.0f32; 4];
    let (mut out, mut lse) = ([0.0f32; 4], [0.0f32; 1]);
    let inputs = AttentionInputs {
        q: &x,
        k: &x,
        v: &x,
    };
    let err = attn
        .forward(shape, &inputs, &AttentionOptions::new(), &mut out, &mut lse)
        .unwrap_err();
    assert!(
        matches!(err, SparseAttnError::ShapeMismatch { .. }),
        "{err}"
    );
    assert!(
        attn.cache().is_empty(),
        "no layout may be built for bad buffers"
    );
    // An empty batch needs no layout either.
    let empty = AttentionShape { batch: 0, ..shape };
    let none: [f32; 0] = [];
    let (mut out0, mut lse0): ([f32; 0], [f32; 0]) = ([], []);
    let inputs0 = AttentionInputs {
        q: &none,
        k: &none,
        v: &none,
    };
    attn.forward(
        empty,
        &inputs0,
        &AttentionOptions::new(),
        &mut out0,
        &mut lse0,
    )
    .unwrap();
    assert!(attn.cache().is_empty());
}

/// Runs the fused forward and backward and the oracle's forward on one problem.
struct Run {
    out: Vec<f32>,
    lse: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    oracle_out: Vec<f32>,
    oracle_lse: Vec<f64>,
}

fn run(q: &[f32], k: &[f32], v: &[f32], kpm: Option<&[f32]>, causal: bool) -> Run {
    let (l, d) = (32, 4);
    let layout = DenseConfig::new(1).make_layout(l).unwrap();
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: l,
        head_dim: d,
    };
    let options = AttentionOptions {
        causal,
        scale: Some(0.5),
        key_padding_mask: kpm.map(KeyPaddingMask::Additive),
        bias: None,
    };
    let inputs = AttentionInputs { q, k, v };
    let (mut out, mut lse) = (vec![0.0; l * d], vec![0.0; l]);
    attention_forward(&layout, shape, &inputs, &options, &mut out, &mut lse).unwrap();
    let (mut dq, mut dk, mut dv) = (vec![0.0; l * d], vec![0.0; l * d], vec![0.0; l * d]);
    let dout = vec![1.0f32; l * d];
    let grads = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: None,
    };
    attention_backward(&layout, shape, &inputs, &options, &out, &dout, &lse, grads).unwrap();
    let dims = ltd_reference::AttnDims {
        batch: 1,
        heads: 1,
        seq: l,
        head_dim: d,
    };
    let oracle_options = ltd_reference::AttentionOptions {
        causal,
        key_padding: kpm.map(|values| ltd_reference::Mask {
            values,
            mode: ltd_reference::MaskMode::Add,
        }),
        ..ltd_reference::AttentionOptions::new(0.5)
    };
    let oracle = ltd_reference::attention_forward(q, k, v, dims, &oracle_options).unwrap();
    Run {
        out,
        lse,
        dq,
        dk,
        dv,
        oracle_out: oracle.out,
        oracle_lse: oracle.lse,
    }
}

fn inputs() -> Vec<f32> {
    (0..32 * 4)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0)
        .collect()
}

/// NaN where the oracle has NaN, and the same finite values elsewhere.
fn assert_matches_oracle(r: &Run) {
    for (i, (&a, &b)) in r.out.iter().zip(&r.oracle_out).enumerate() {
        assert_eq!(a.is_nan(), b.is_nan(), "out[{i}]: fused {a}, oracle {b}");
        if !a.is_nan() {
            assert!((a - b).abs() < 1e-4, "out[{i}]: fused {a}, oracle {b}");
        }
    }
    for (i, (&a, &b)) in r.lse.iter().zip(&r.oracle_lse).enumerate() {
        assert_eq!(a.is_nan(), b.is_nan(), "lse[{i}]: fused {a}, oracle {b}");
    }
}

#[test]
fn nan_or_inf_in_k_makes_the_rows_that_see_it_nan() {
    for bad in [f32::NAN, f32::INFINITY] {
        let (q, mut k, v) = (inputs(), inputs(), inputs());
        k[10 * 4 + 1] = bad; // key 10
        let r = run(&q, &k, &v, None, true);
        // Causal: rows 0..10 never see key 10.
        assert!(r.out[..10 * 4].iter().all(|x| x.is_finite()));
        for i in 10..32 {
            // Score of (i, 10): NaN, or +inf / -inf / NaN by the sign of q[i, 1] times Inf.
            let poisoned = bad.is_nan() || q[i * 4 + 1] >= 0.0;
            assert_eq!(r.lse[i].is_nan(), poisoned, "row {i}: lse {}", r.lse[i]);
            assert_eq!(r.out[i * 4].is_nan(), poisoned, "row {i}");
            if poisoned {
                assert!(
                    r.dq[i * 4..(i + 1) * 4].iter().all(|x| x.is_nan()),
                    "dq row {i}"
                );
            }
        }
        assert!(r.dk.iter().any(|x| x.is_nan()) && r.dv.iter().any(|x| x.is_nan()));
        assert_matches_oracle(&r);
    }
}

#[test]
fn plus_inf_in_q_or_the_padding_mask_is_nan_not_zero() {
    let (mut q, k, v) = (inputs(), inputs(), inputs());
    q[3 * 4] = f32::INFINITY;
    let r = run(&q, &k, &v, None, false);
    assert!(r.lse[3].is_nan() && r.out[3 * 4..4 * 4].iter().all(|x| x.is_nan()));
    assert!(r.lse[2].is_finite());
    assert_matches_oracle(&r);

    let (q, k, v) = (inputs(), inputs(), inputs());
    let mut kpm = vec![0.0f32; 32];
    kpm[5] = f32::INFINITY;
    let r = run(&q, &k, &v, Some(&kpm), false);
    assert!(r.lse.iter().all(|x| x.is_nan()));
    assert!(r.dq.iter().all(|x| x.is_nan()));
    assert_matches_oracle(&r);

    // A fully masked row stays zero with lse = -inf (unchanged convention).
    let r = run(&q, &k, &v, Some(&[f32::NEG_INFINITY; 32]), false);
    assert!(r.out.iter().all(|&x| x == 0.0));
    assert!(r.lse.iter().all(|&x| x == f32::NEG_INFINITY));
    assert_matches_oracle(&r);
}

#[test]
fn nan_in_q_is_nan_in_the_oracle_too() {
    let (mut q, k, v) = (inputs(), inputs(), inputs());
    q.iter_mut().take(4).for_each(|x| *x = f32::NAN); // every score of row 0 is NaN
    let r = run(&q, &k, &v, None, false);
    assert!(r.oracle_out[..4].iter().all(|x| x.is_nan()));
    assert!(r.oracle_lse[0].is_nan());
    assert_matches_oracle(&r);
}

#[test]
fn softmax_propagates_nan_and_rejects_a_nan_scale_backward() {
    let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
    let mut x = vec![0.0f32; 256];
    x[3] = f32::NAN; // row 0
    x[16 + 2] = f32::INFINITY; // row 1
    let mut y = vec![0.0f32; 256];
    softmax_forward(&layout, &x, 1, &SoftmaxOptions::new(), &mut y).unwrap();
    assert!(y[..32].iter().all(|v| v.is_nan()));
    assert!(y[32..].iter().all(|&v| (v - 1.0 / 16.0).abs() < 1e-7));
    let mut dx = vec![0.0f32; 256];
    for scale in [f32::NAN, f32::INFINITY] {
        let err = softmax_backward(&layout, &y, &y, 1, scale, &mut dx).unwrap_err();
        assert!(err.to_string().starts_with("scale:"), "{err}");
    }
}

#[test]
fn hjson_configs_and_warnings() {
    let text = "{\n  # DeepSpeed reads hjson\n  sparse_attention: {\n    mode: bigbird\n    block: 32,\n    attention: unidirectional\n    num_local_blocks: 4,\n  },\n}";
    let config = parse_sparse_attention(text, 2).unwrap();
    assert_eq!((config.mode_name(), config.block()), ("bigbird", 32));
    // The same section as a JSON value: the warnings come with the parsed config.
    let value = serde_json::json!({"sparse_attention": {
        "mode": "bigbird", "block": 32, "attention": "unidirectional", "num_local_blocks": 4
    }});
    let (_, warnings) = sparse_attention_with_warnings(&value, 2).unwrap();
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "sparse_attention.attention",
            "sparse_attention.num_local_blocks"
        ]
    );
    // Deep nesting is refused before the hjson reader recurses.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_sparse_attention(&deep, 1).is_err());
}
