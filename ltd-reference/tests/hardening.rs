//! Regression tests for the oracle on hostile input (issue 24): NaN and +inf propagate (a NaN
//! query row is NaN, not zeros), excluded keys contribute nothing, and sizes past this machine's
//! memory are typed errors at once.

use std::time::{Duration, Instant};

use ltd_reference::*;

fn dims() -> AttnDims {
    AttnDims {
        batch: 1,
        heads: 1,
        seq: 4,
        head_dim: 2,
    }
}

fn x() -> Vec<f32> {
    (0..8).map(|i| (i as f32 - 3.5) / 4.0).collect()
}

#[test]
fn nan_in_q_is_nan_not_zero() {
    let mut q = x();
    q[0] = f32::NAN;
    q[1] = f32::NAN; // every score of row 0 is NaN
    let r = attention_forward(&q, &x(), &x(), dims(), &AttentionOptions::new(1.0)).unwrap();
    assert!(r.out[..2].iter().all(|v| v.is_nan()) && r.lse[0].is_nan());
    assert!(r.out[2..].iter().all(|v| v.is_finite()));
    let g = attention_backward(
        &q,
        &x(),
        &x(),
        &[1.0; 8],
        dims(),
        &AttentionOptions::new(1.0),
    )
    .unwrap();
    assert!(g.dv.iter().all(|v| v.is_nan()), "{:?}", g.dv);
}

#[test]
fn plus_inf_scores_are_nan_and_excluded_keys_contribute_nothing() {
    let kpm = [0.0f32, f32::INFINITY, 0.0, 0.0];
    let opts = AttentionOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Add,
        }),
        ..AttentionOptions::new(1.0)
    };
    let r = attention_forward(&x(), &x(), &x(), dims(), &opts).unwrap();
    assert!(r.out.iter().all(|v| v.is_nan()) && r.lse.iter().all(|v| v.is_nan()));
    // Causal: key 3 is excluded for rows 0..3, so its NaN value reaches only row 3.
    let mut v = x();
    v[6] = f32::NAN;
    let causal = AttentionOptions {
        causal: true,
        ..AttentionOptions::new(1.0)
    };
    let r = attention_forward(&x(), &x(), &v, dims(), &causal).unwrap();
    assert!(r.out[..6].iter().all(|v| v.is_finite()), "{:?}", r.out);
    assert!(r.out[6].is_nan() && r.out[7].is_finite(), "{:?}", r.out);
}

#[test]
fn sizes_past_memory_are_typed_errors() {
    // L = 2^25 with D = 1: the inputs are 128 MiB each (zeroed lazily), the L x L probabilities
    // of one head would be 2^53 bytes.
    let seq = 1usize << 25;
    let x = vec![0.0f32; seq];
    let dims = AttnDims {
        batch: 1,
        heads: 1,
        seq,
        head_dim: 1,
    };
    let start = Instant::now();
    let err = attention_forward(&x, &x, &x, dims, &AttentionOptions::new(1.0)).unwrap_err();
    assert!(matches!(err, RefError::AllocationTooLarge { .. }), "{err}");
    let err = attention_backward(&x, &x, &x, &x, dims, &AttentionOptions::new(1.0)).unwrap_err();
    assert!(matches!(err, RefError::AllocationTooLarge { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}
