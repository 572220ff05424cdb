//! ltd-sparse-attn on the CPU: fused block-sparse attention (forward, and forward + backward)
//! at several layout densities against the dense reference oracle (`ltd-reference`, f64 loops)
//! and against the fused op on a dense layout. Time should scale with density.
//!
//! Size: B 1, H 2, L 512, D 64, block 64 (8 x 8 blocks per head), f32. Small enough that the
//! whole file runs in about a minute on 2 cores.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, Layout, attention_backward,
    attention_forward,
};

const SHAPE: AttentionShape = AttentionShape {
    batch: 1,
    heads: 2,
    seq_len: 512,
    head_dim: 64,
};
const BLOCK: usize = 64;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, mut s: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// A layout with the diagonal plus the first `per_row - 1` off-diagonal blocks of every row in
/// a rotating order, so every row has exactly `per_row` active blocks (density `per_row / nb`).
fn layout_with(per_row: usize) -> Layout {
    let nb = SHAPE.seq_len / BLOCK;
    let mut mask = vec![0u8; SHAPE.heads * nb * nb];
    for h in 0..SHAPE.heads {
        for r in 0..nb {
            for k in 0..per_row {
                let c = (r + k * 3) % nb;
                mask[(h * nb + r) * nb + c] = 1;
            }
        }
    }
    Layout::from_mask(SHAPE.heads, nb, BLOCK, mask).expect("valid layout")
}

fn fused(c: &mut Criterion) {
    let n = SHAPE.qkv_len();
    let (q, k, v, dout) = (values(n, 1), values(n, 2), values(n, 3), values(n, 4));
    let inputs = AttentionInputs {
        q: &q,
        k: &k,
        v: &v,
    };
    let opts = AttentionOptions::<f32> {
        causal: false,
        ..AttentionOptions::new()
    };
    let nb = SHAPE.seq_len / BLOCK;

    let mut group = c.benchmark_group("sparse_attn/fused_f32_L512_D64_b64");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for per_row in [1usize, 2, 4, 8] {
        let layout = layout_with(per_row);
        let density = format!("density_{:.3}", per_row as f64 / nb as f64);
        let mut out = vec![0.0f32; n];
        let mut lse = vec![0.0f32; SHAPE.lse_len()];
        group.bench_function(format!("forward/{density}"), |b| {
            b.iter(|| {
                attention_forward(
                    &layout,
                    SHAPE,
                    black_box(&inputs),
                    &opts,
                    &mut out,
                    &mut lse,
                )
                .expect("forward")
            })
        });
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        group.bench_function(format!("forward_backward/{density}"), |b| {
            b.iter(|| {
                attention_forward(
                    &layout,
                    SHAPE,
                    black_box(&inputs),
                    &opts,
                    &mut out,
                    &mut lse,
                )
                .expect("forward");
                let grads = AttentionGrads {
                    dq: &mut dq,
                    dk: &mut dk,
                    dv: &mut dv,
                    dbias: None,
                };
                attention_backward(&layout, SHAPE, &inputs, &opts, &out, &dout, &lse, grads)
                    .expect("backward")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sparse_attn/reference_dense_f64_L512_D64");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let dims = ltd_reference::AttnDims {
        batch: SHAPE.batch,
        heads: SHAPE.heads,
        seq: SHAPE.seq_len,
        head_dim: SHAPE.head_dim,
    };
    let ropts = ltd_reference::AttentionOptions::<f32>::new(1.0 / 8.0);
    group.bench_function("forward", |b| {
        b.iter(|| {
            ltd_reference::attention_forward(black_box(&q), &k, &v, dims, &ropts)
                .expect("reference")
        })
    });
    group.finish();
}

criterion_group!(benches, fused);
criterion_main!(benches);
