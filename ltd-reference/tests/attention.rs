//! Hand-computed cases, cross-checks and bad-input errors for the dense attention oracle.

use ltd_reference::{
    AttentionOptions, AttnDims, Layout, Mask, MaskMode, MatmulDims, RefError, SoftmaxOptions,
    attention_backward, attention_forward, block_sparse_softmax, block_sparse_softmax_backward,
    dsd, dsd_backward, sdd, sdd_backward,
};

const LN3: f64 = 1.098_612_288_668_109_8;

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}\n got: {got:?}\nwant: {want:?}"
        );
    }
}

fn assert_close_f32(got: &[f32], want: &[f32], tol: f64) {
    let want: Vec<f64> = want.iter().map(|&w| w as f64).collect();
    assert_close(got, &want, tol);
}

fn one(seq: usize, head_dim: usize) -> AttnDims {
    AttnDims {
        batch: 1,
        heads: 1,
        seq,
        head_dim,
    }
}

/// A fixed pseudo-random sequence in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

// q = [1, 1], k = [0, ln 3], v = [4, 8] (L = 2, D = 1): every row's scores are [0, ln 3], so
// P = [1/4, 3/4] and out = 4/4 + 3*8/4 = 7, lse = ln 4.
const Q: [f32; 2] = [1.0, 1.0];
const K: [f32; 2] = [0.0, LN3 as f32];
const V: [f32; 2] = [4.0, 8.0];

#[test]
fn plain_softmax_attention_by_hand() {
    let res = attention_forward(&Q, &K, &V, one(2, 1), &AttentionOptions::new(1.0)).unwrap();
    assert_close(&res.out, &[7.0, 7.0], 1e-6);
    for &l in &res.lse {
        assert!((l - 4f64.ln()).abs() < 1e-6, "lse {l}");
    }
}

#[test]
fn scale_applies_before_bias() {
    // scale 0.5, q·k = [0, 2] for both rows; bias row 0 = [0, ln3 - 1], row 1 = [0, 0].
    // Row 0: s = [0, 1 + ln3 - 1] = [0, ln3] -> out 7. Row 1: s = [0, 1] ->
    // out = (4 + 8e) / (1 + e). (A scaled bias would give row 0 s = [0, 0.5 + (ln3-1)/2].)
    let k = [0.0f32, 2.0];
    let bias = [0.0f32, (LN3 - 1.0) as f32, 0.0, 0.0];
    let opts = AttentionOptions {
        bias: Some(&bias),
        ..AttentionOptions::new(0.5)
    };
    let res = attention_forward(&Q, &k, &V, one(2, 1), &opts).unwrap();
    let e = 1f64.exp();
    assert_close(&res.out, &[7.0, (4.0 + 8.0 * e) / (1.0 + e)], 1e-6);
    assert!((res.lse[0] - 4f64.ln()).abs() < 1e-6);
    assert!((res.lse[1] - (1.0 + e).ln()).abs() < 1e-6);
}

#[test]
fn key_padding_mul_mode_turns_zero_into_minus_inf() {
    // kpm = [1, 0]: key 1 excluded in every row -> out = v0 = 4, lse = s0 = 0.
    let kpm = [1.0f32, 0.0];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Mul,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_eq!(res.out, vec![4.0, 4.0]);
    assert_eq!(res.lse, vec![0.0, 0.0]);
    // Mul mode never multiplies: a nonzero value adds 0, whatever it is.
    let kpm = [0.5f32, 2.0];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Mul,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_close(&res.out, &[7.0, 7.0], 1e-6);
}

#[test]
fn key_padding_add_mode_adds_the_value() {
    // kpm = [0, -inf] gives the same as mul [1, 0]; kpm = [ln 3, 0] turns [0, ln3] into
    // [ln3, ln3]: uniform -> out 6.
    let kpm = [0.0f32, f32::NEG_INFINITY];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Add,
        }),
        ..AttentionOptions::new(1.0)
    };
    assert_eq!(
        attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap().out,
        vec![4.0, 4.0]
    );
    let kpm = [LN3 as f32, 0.0];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Add,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_close(&res.out, &[6.0, 6.0], 1e-6);
}

#[test]
fn attention_mask_both_modes() {
    // Mul, lower triangular: row 0 sees key 0 only (out 4), row 1 both (out 7).
    let am = [1.0f32, 0.0, 1.0, 1.0];
    let opts = AttentionOptions {
        attn_mask: Some(Mask {
            values: &am,
            mode: MaskMode::Mul,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_close(&res.out, &[4.0, 7.0], 1e-6);
    // Add with k = 0: row 0 s = [0, ln3] -> 7, row 1 s = [0, 0] -> 6.
    let am = [0.0f32, LN3 as f32, 0.0, 0.0];
    let opts = AttentionOptions {
        attn_mask: Some(Mask {
            values: &am,
            mode: MaskMode::Add,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &[0.0, 0.0], &V, one(2, 1), &opts).unwrap();
    assert_close(&res.out, &[7.0, 6.0], 1e-6);
}

#[test]
fn causal_excludes_future_keys() {
    let opts = AttentionOptions {
        causal: true,
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_close(&res.out, &[4.0, 7.0], 1e-6);
    assert_eq!(res.lse[0], 0.0);
}

#[test]
fn fully_masked_rows_give_zeros_not_nan() {
    // Row 0 fully masked by the attention mask, row 1 normal.
    let am = [0.0f32, 0.0, 1.0, 1.0];
    let opts = AttentionOptions {
        attn_mask: Some(Mask {
            values: &am,
            mode: MaskMode::Mul,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_eq!(res.out[0], 0.0);
    assert_close(&res.out[1..], &[7.0], 1e-6);
    assert_eq!(res.lse[0], f64::NEG_INFINITY);
    // Backward with dout only on the masked row: everything is zero.
    let g = attention_backward(&Q, &K, &V, &[1.0, 0.0], one(2, 1), &opts).unwrap();
    assert_eq!(g.dq, vec![0.0, 0.0]);
    assert_eq!(g.dk, vec![0.0, 0.0]);
    assert_eq!(g.dv, vec![0.0, 0.0]);
    assert_eq!(g.dbias, vec![0.0; 4]);
    // All keys padded (add mode, -inf): all zeros.
    let kpm = [f32::NEG_INFINITY; 2];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Add,
        }),
        ..AttentionOptions::new(1.0)
    };
    let res = attention_forward(&Q, &K, &V, one(2, 1), &opts).unwrap();
    assert_eq!(res.out, vec![0.0, 0.0]);
    assert!(res.lse.iter().all(|&l| l == f64::NEG_INFINITY));
    let g = attention_backward(&Q, &K, &V, &[1.0, 1.0], one(2, 1), &opts).unwrap();
    assert!(g.dq.iter().chain(&g.dk).chain(&g.dv).all(|&x| x == 0.0));
}

#[test]
fn layout_restriction_with_a_partial_last_block() {
    // L = 3, block 2 -> nb = 2; block-diagonal layout: queries 0,1 see keys 0,1; query 2 sees
    // key 2 only. q = k = 0, v = [1, 2, 3] -> out = [1.5, 1.5, 3], lse = [ln2, ln2, 0].
    let layout_values = [1u8, 0, 0, 1];
    let opts = AttentionOptions {
        layout: Some(Layout::square(&layout_values, 1, 2, 2)),
        ..AttentionOptions::new(1.0)
    };
    let z = [0.0f32; 3];
    let res = attention_forward(&z, &z, &[1.0, 2.0, 3.0], one(3, 1), &opts).unwrap();
    assert_eq!(res.out, vec![1.5, 1.5, 3.0]);
    assert_eq!(res.lse, vec![2f64.ln(), 2f64.ln(), 0.0]);
}

#[test]
fn layout_per_head_and_causal_combined() {
    // H = 2, L = 2, block 1. Head 0 layout: full; head 1: only the anti-diagonal (0,1),(1,0).
    // With causal on: head 0 -> rows see [0], [0,1]; head 1 -> row 0 sees nothing (key 1 is
    // in the future), row 1 sees key 0.
    let layout_values = [1u8, 1, 1, 1, 0, 1, 1, 0];
    let dims = AttnDims {
        batch: 1,
        heads: 2,
        seq: 2,
        head_dim: 1,
    };
    let opts = AttentionOptions {
        causal: true,
        layout: Some(Layout::square(&layout_values, 2, 2, 1)),
        ..AttentionOptions::new(1.0)
    };
    let z = [0.0f32; 4];
    let v = [2.0f32, 4.0, 6.0, 8.0];
    let res = attention_forward(&z, &z, &v, dims, &opts).unwrap();
    assert_eq!(res.out, vec![2.0, 3.0, 0.0, 6.0]);
}

#[test]
fn backward_by_hand() {
    // q = [1, 0], k = [0, ln3], v = [4, 8], dout = [1, 0], scale 1.
    // Row 0: P = [1/4, 3/4]; dP = [4, 8]; Σ P dP = 7; dS = [-3/4, 3/4].
    // Row 1 has dout 0, so dS = 0 there.
    // dv = P_0 = [1/4, 3/4]; dq0 = Σ dS k = 3/4 ln3, dq1 = 0; dk = dS_0 * q0 = [-3/4, 3/4].
    let q = [1.0f32, 0.0];
    let g = attention_backward(
        &q,
        &K,
        &V,
        &[1.0, 0.0],
        one(2, 1),
        &AttentionOptions::new(1.0),
    )
    .unwrap();
    assert_close(&g.dv, &[0.25, 0.75], 1e-6);
    assert_close(&g.dq, &[0.75 * LN3, 0.0], 1e-6);
    assert_close(&g.dk, &[-0.75, 0.75], 1e-6);
    assert_close(&g.dbias, &[-0.75, 0.75, 0.0, 0.0], 1e-6);
    // Scale 2 with q0 = 0.5 gives the same scores; dq and dk pick up the scale:
    // dq0 = 2 * 3/4 ln3, dk = 2 * 0.5 * dS_0.
    let q = [0.5f32, 0.0];
    let g = attention_backward(
        &q,
        &K,
        &V,
        &[1.0, 0.0],
        one(2, 1),
        &AttentionOptions::new(2.0),
    )
    .unwrap();
    assert_close(&g.dq, &[1.5 * LN3, 0.0], 1e-6);
    assert_close(&g.dk, &[-0.75, 0.75], 1e-6);
    assert_close(&g.dbias, &[-0.75, 0.75, 0.0, 0.0], 1e-6);
}

#[test]
fn all_ones_layout_equals_no_layout() {
    let dims = AttnDims {
        batch: 2,
        heads: 2,
        seq: 5,
        head_dim: 3,
    };
    let n = dims.numel();
    let (q, k, v, dout) = (values(n, 1), values(n, 2), values(n, 3), values(n, 4));
    let ones = [1u8; 2 * 3 * 3];
    let plain = AttentionOptions {
        causal: true,
        ..AttentionOptions::new(0.7)
    };
    let with_layout = AttentionOptions {
        layout: Some(Layout::square(&ones, 2, 3, 2)),
        ..plain
    };
    assert_eq!(
        attention_forward(&q, &k, &v, dims, &plain).unwrap(),
        attention_forward(&q, &k, &v, dims, &with_layout).unwrap()
    );
    assert_eq!(
        attention_backward(&q, &k, &v, &dout, dims, &plain).unwrap(),
        attention_backward(&q, &k, &v, &dout, dims, &with_layout).unwrap()
    );
}

#[test]
fn dense_attention_matches_sdd_softmax_dsd() {
    // Two independent code paths: the dense oracle with a layout, and the block-sparse
    // primitives composed as upstream's SparseSelfAttention does (upstream-semantics.md §2.8), with rpe, a
    // key-padding mask (add) and an attention mask (mul).
    let (z, h, l, d, b) = (2, 2, 6, 4, 2);
    let dims = AttnDims {
        batch: z,
        heads: h,
        seq: l,
        head_dim: d,
    };
    let n = dims.numel();
    let (q, k, v, dout) = (values(n, 11), values(n, 12), values(n, 13), values(n, 14));
    let rpe = values(z * h * l * l, 15);
    let mut kpm = vec![0.0f32; z * l];
    kpm[3] = f32::NEG_INFINITY;
    kpm[l + 5] = -1.5;
    let mut am = vec![1.0f32; l * l];
    am[2] = 0.0;
    am[l * 4 + 1] = 0.0;
    #[rustfmt::skip]
    let layout_values = [
        1u8, 0, 0,  1, 1, 0,  0, 1, 1, // head 0: banded
        1, 0, 1,  0, 1, 0,  1, 0, 1,   // head 1
    ];
    let layout = Layout::square(&layout_values, h, l / b, b);
    let scale = 0.5;

    let kpm_mask = Mask {
        values: &kpm,
        mode: MaskMode::Add,
    };
    let am_mask = Mask {
        values: &am,
        mode: MaskMode::Mul,
    };
    let attn_opts = AttentionOptions {
        bias: Some(&rpe),
        key_padding: Some(kpm_mask),
        attn_mask: Some(am_mask),
        layout: Some(layout),
        ..AttentionOptions::new(scale)
    };
    let dense = attention_forward(&q, &k, &v, dims, &attn_opts).unwrap();

    let mm = MatmulDims {
        batch: z,
        heads: h,
        m: l,
        n: l,
        k: d,
    };
    let scores = sdd(&q, &k, mm, &layout, false, true).unwrap();
    let sm_opts = SoftmaxOptions {
        rpe: Some(&rpe),
        key_padding: Some(kpm_mask),
        attn_mask: Some(am_mask),
        ..SoftmaxOptions::new(scale)
    };
    let probs = block_sparse_softmax(&scores, z, &layout, &sm_opts).unwrap();
    let pv = MatmulDims {
        batch: z,
        heads: h,
        m: l,
        n: d,
        k: l,
    };
    let out = dsd(&probs, &v, pv, &layout, false, false).unwrap();
    assert_close_f32(&out, &dense.out, 1e-5);

    // Backward along both paths.
    let grads = attention_backward(&q, &k, &v, &dout, dims, &attn_opts).unwrap();
    let (dprobs, dv) = dsd_backward(&probs, &v, &dout, pv, &layout, false, false).unwrap();
    let dscores = block_sparse_softmax_backward(&probs, &dprobs, z, &layout, scale).unwrap();
    let (dq, dk) = sdd_backward(&q, &k, &dscores, mm, &layout, false, true).unwrap();
    assert_close_f32(&dv, &grads.dv, 1e-5);
    assert_close_f32(&dq, &grads.dq, 1e-5);
    assert_close_f32(&dk, &grads.dk, 1e-5);
}

#[test]
fn attention_works_in_half_types() {
    use half::{bf16, f16};
    let q: Vec<f16> = Q.iter().map(|&x| f16::from_f32(x)).collect();
    let k: Vec<f16> = [0.0f32, 0.0].iter().map(|&x| f16::from_f32(x)).collect();
    let v: Vec<f16> = V.iter().map(|&x| f16::from_f32(x)).collect();
    let res = attention_forward(&q, &k, &v, one(2, 1), &AttentionOptions::new(1.0)).unwrap();
    assert_eq!(res.out, vec![f16::from_f32(6.0); 2]);
    let q: Vec<bf16> = Q.iter().map(|&x| bf16::from_f32(x)).collect();
    let k = vec![bf16::ZERO; 2];
    let v: Vec<bf16> = V.iter().map(|&x| bf16::from_f32(x)).collect();
    let res = attention_forward(&q, &k, &v, one(2, 1), &AttentionOptions::new(1.0)).unwrap();
    assert_eq!(res.out, vec![bf16::from_f32(6.0); 2]);
}

#[test]
fn attention_rejects_bad_input() {
    let d = one(2, 1);
    let plain = AttentionOptions::<f32>::new(1.0);
    let zero_dims = [
        (AttnDims { batch: 0, ..d }, "batch"),
        (AttnDims { heads: 0, ..d }, "heads"),
        (AttnDims { seq: 0, ..d }, "seq"),
        (AttnDims { head_dim: 0, ..d }, "head_dim"),
    ];
    for (dims, what) in zero_dims {
        assert_eq!(
            attention_forward(&Q, &K, &V, dims, &plain).unwrap_err(),
            RefError::ZeroSize { what }
        );
    }
    assert_eq!(
        attention_forward(&Q, &K[..1], &V, d, &plain).unwrap_err(),
        RefError::LengthMismatch {
            what: "k",
            got: 1,
            expected: 2
        }
    );
    assert_eq!(
        attention_backward(&Q, &K, &V, &[1.0; 3], d, &plain).unwrap_err(),
        RefError::LengthMismatch {
            what: "dout",
            got: 3,
            expected: 2
        }
    );
    let short = [0.0f32; 3];
    let bad_bias = AttentionOptions {
        bias: Some(&short),
        ..plain
    };
    assert_eq!(
        attention_forward(&Q, &K, &V, d, &bad_bias).unwrap_err(),
        RefError::LengthMismatch {
            what: "bias",
            got: 3,
            expected: 4
        }
    );
    let bad_kpm = AttentionOptions {
        key_padding: Some(Mask {
            values: &short,
            mode: MaskMode::Mul,
        }),
        ..plain
    };
    assert_eq!(
        attention_forward(&Q, &K, &V, d, &bad_kpm).unwrap_err(),
        RefError::LengthMismatch {
            what: "key_padding",
            got: 3,
            expected: 2
        }
    );
    let bad_am = AttentionOptions {
        attn_mask: Some(Mask {
            values: &short,
            mode: MaskMode::Add,
        }),
        ..plain
    };
    assert_eq!(
        attention_forward(&Q, &K, &V, d, &bad_am).unwrap_err(),
        RefError::LengthMismatch {
            what: "attn_mask",
            got: 3,
            expected: 4
        }
    );
    let err = attention_forward(&Q, &K, &V, d, &AttentionOptions::new(f64::NAN)).unwrap_err();
    assert!(matches!(err, RefError::NonFiniteScale(s) if s.is_nan()));
    assert!(attention_forward(&Q, &K, &V, d, &AttentionOptions::new(f64::INFINITY)).is_err());
}

#[test]
fn attention_rejects_bad_layouts() {
    let d = one(3, 1);
    let x = [0.0f32; 3];
    let with = |layout| AttentionOptions {
        layout: Some(layout),
        ..AttentionOptions::<f32>::new(1.0)
    };
    // L = 3, block 2 needs nb = 2; nb = 1 is wrong.
    let err = attention_forward(&x, &x, &x, d, &with(Layout::square(&[1], 1, 1, 2))).unwrap_err();
    assert_eq!(
        err,
        RefError::DimMismatch {
            what: "layout block rows (ceil(L / block))",
            got: 1,
            expected: 2
        }
    );
    // Wrong head count.
    let err =
        attention_forward(&x, &x, &x, d, &with(Layout::square(&[1; 8], 2, 2, 2))).unwrap_err();
    assert_eq!(
        err,
        RefError::DimMismatch {
            what: "layout heads",
            got: 2,
            expected: 1
        }
    );
    // Wrong layout length, a value of 2, a zero block.
    let err =
        attention_forward(&x, &x, &x, d, &with(Layout::square(&[1; 3], 1, 2, 2))).unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            what: "layout",
            got: 3,
            expected: 4
        }
    );
    let err = attention_forward(&x, &x, &x, d, &with(Layout::square(&[1, 2, 0, 1], 1, 2, 2)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layout[head 0, block row 0, block col 1] is 2, expected 0 or 1"
    );
    let err = attention_forward(&x, &x, &x, d, &with(Layout::square(&[1], 1, 1, 0))).unwrap_err();
    assert_eq!(err, RefError::ZeroSize { what: "block" });
}
