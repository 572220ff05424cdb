//! Property tests: fused block-sparse attention (forward output and logsumexp, backward dq, dk,
//! dv, dbias) against `ltd-reference`'s dense layout-restricted attention, for f32/f16/bf16,
//! blocks 16/32/64/128, random layouts and densities, lengths that are and are not multiples of
//! the block, causal or not, additive or boolean key-padding masks, optional bias.

mod common;

use common::{
    AttnCase as Case, Data, Kpm, TestElement, assert_close, assert_close_f32, poisoned, ref_layout,
};
use ltd_reference::{AttnDims, Mask, MaskMode};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, KeyPaddingMask, Layout,
    attention_backward, attention_forward,
};
use proptest::prelude::*;

fn check<T: TestElement>(c: &Case) {
    let mut data = Data::new(c.seed);
    let nb = c.seq.div_ceil(c.block);
    let layout: Layout = data.layout(c.heads, nb, c.block, c.density);
    let shape = AttentionShape {
        batch: c.batch,
        heads: c.heads,
        seq_len: c.seq,
        head_dim: c.head_dim,
    };
    let n = shape.qkv_len();
    let q: Vec<T> = data.vec(n, -1.0, 1.0);
    let k: Vec<T> = data.vec(n, -1.0, 1.0);
    let v: Vec<T> = data.vec(n, -1.0, 1.0);
    let dout: Vec<T> = data.vec(n, -1.0, 1.0);
    let bias: Option<Vec<T>> = c.bias.then(|| data.vec(shape.bias_len(), -1.0, 1.0));
    // Key-padding: drop ~25% of keys (sometimes all of a batch row's keys).
    let keep: Vec<bool> = (0..c.batch * c.seq).map(|_| data.coin(0.75)).collect();
    let additive: Vec<f32> = keep
        .iter()
        .map(|&k| {
            if k {
                T::from_f32_lossy(-0.25 * data.unit()).to_f32()
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect(); // values exact in T, so both sides see the same mask
    let additive_t: Vec<T> = additive.iter().map(|&x| T::from_f32_lossy(x)).collect();
    let keep_t: Vec<T> = keep
        .iter()
        .map(|&k| T::from_f32_lossy(k as u8 as f32))
        .collect();
    let scale = if c.explicit_scale {
        0.3f32
    } else {
        1.0 / (c.head_dim as f32).sqrt()
    };

    let opts = AttentionOptions {
        scale: c.explicit_scale.then_some(scale),
        causal: c.causal,
        key_padding_mask: match c.kpm {
            Kpm::None => None,
            Kpm::Additive => Some(KeyPaddingMask::Additive(&additive)),
            Kpm::Keep => Some(KeyPaddingMask::Keep(&keep)),
        },
        bias: bias.as_deref(),
    };
    let ropts = ltd_reference::AttentionOptions {
        bias: bias.as_deref(),
        key_padding: match c.kpm {
            Kpm::None => None,
            Kpm::Additive => Some(Mask {
                values: &additive_t,
                mode: MaskMode::Add,
            }),
            Kpm::Keep => Some(Mask {
                values: &keep_t,
                mode: MaskMode::Mul,
            }),
        },
        causal: c.causal,
        layout: Some(ref_layout(&layout)),
        ..ltd_reference::AttentionOptions::new(scale as f64)
    };
    let dims = AttnDims {
        batch: c.batch,
        heads: c.heads,
        seq: c.seq,
        head_dim: c.head_dim,
    };
    let inputs = AttentionInputs {
        q: &q,
        k: &k,
        v: &v,
    };

    let mut out = poisoned::<T>(n);
    let mut lse = vec![f32::NAN; shape.lse_len()];
    attention_forward(&layout, shape, &inputs, &opts, &mut out, &mut lse).unwrap();
    let want = ltd_reference::attention_forward(&q, &k, &v, dims, &ropts).unwrap();
    assert_close("out", &out, &want.out);
    let want_lse: Vec<f32> = want.lse.iter().map(|&x| x as f32).collect();
    // lse is f32 for every dtype, computed from the same rounded inputs.
    assert_close_f32("lse", &lse, &want_lse, 1e-4, 1e-4);

    let (mut dq, mut dk, mut dv) = (poisoned::<T>(n), poisoned::<T>(n), poisoned::<T>(n));
    let mut dbias = c.bias.then(|| poisoned::<T>(shape.bias_len()));
    let grads = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: dbias.as_deref_mut(),
    };
    attention_backward(&layout, shape, &inputs, &opts, &out, &dout, &lse, grads).unwrap();
    let wg = ltd_reference::attention_backward(&q, &k, &v, &dout, dims, &ropts).unwrap();
    assert_close("dq", &dq, &wg.dq);
    assert_close("dk", &dk, &wg.dk);
    assert_close("dv", &dv, &wg.dv);
    if let Some(db) = &dbias {
        assert_close("dbias", db, &wg.dbias);
    }
}

/// (block, seq, head_dim): 1–3 block-rows and D 8–32 for blocks 16/32, a few cases at 64/128.
fn sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        4 => (Just(16usize), 1..=48usize, 8..=32usize),
        3 => (Just(32usize), 1..=96usize, 8..=32usize),
        1 => (Just(64usize), 1..=128usize, 8..=16usize),
        1 => (Just(128usize), 1..=200usize, 8..=12usize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fused_attention_matches_reference(
        dtype in 0..3usize,
        (block, seq, head_dim) in sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![Just(1.0f32), 0.1f32..1.0],
        causal in any::<bool>(),
        kpm in prop_oneof![Just(Kpm::None), Just(Kpm::Additive), Just(Kpm::Keep)],
        bias in any::<bool>(),
        explicit_scale in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let case = Case { block, seq, head_dim, heads, batch, density, causal, kpm, bias, explicit_scale, seed };
        for_dtype!(dtype, T => check::<T>(&case));
    }
}

#[test]
fn fully_masked_rows_give_zero_output_and_gradients() {
    // One block, every key of batch 0 padded: its rows are empty.
    let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
    let shape = AttentionShape {
        batch: 2,
        heads: 1,
        seq_len: 10,
        head_dim: 8,
    };
    let mut data = Data::new(3);
    let x: Vec<f32> = data.vec(shape.qkv_len(), -1.0, 1.0);
    let mut keep = vec![true; 20];
    keep[..10].fill(false);
    let opts = AttentionOptions {
        key_padding_mask: Some(KeyPaddingMask::Keep(&keep)),
        ..AttentionOptions::new()
    };
    let inputs = AttentionInputs {
        q: &x,
        k: &x,
        v: &x,
    };
    let mut out = poisoned::<f32>(x.len());
    let mut lse = vec![f32::NAN; shape.lse_len()];
    attention_forward(&layout, shape, &inputs, &opts, &mut out, &mut lse).unwrap();
    assert!(out[..80].iter().all(|&v| v == 0.0));
    assert!(lse[..10].iter().all(|&v| v == f32::NEG_INFINITY));
    assert!(out[80..].iter().all(|v| v.is_finite()));
    let dout = vec![1.0f32; x.len()];
    let (mut dq, mut dk, mut dv) = (poisoned(x.len()), poisoned(x.len()), poisoned(x.len()));
    let grads = AttentionGrads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
        dbias: None,
    };
    attention_backward(&layout, shape, &inputs, &opts, &out, &dout, &lse, grads).unwrap();
    for g in [&dq, &dk, &dv] {
        assert!(g[..80].iter().all(|&v| v == 0.0));
        assert!(g[80..].iter().all(|v| v.is_finite()));
    }
}

#[test]
fn sparse_self_attention_with_family_layouts_matches_reference() {
    use ltd_sparse_attn::{
        BigBirdConfig, Direction, FixedConfig, SparseSelfAttention, SparsityConfig,
    };
    let mut fixed = FixedConfig::new(2);
    fixed.attention = Direction::Unidirectional;
    fixed.num_local_blocks = 2;
    let mut bigbird = BigBirdConfig::new(2);
    bigbird.different_layout_per_head = true;
    bigbird.block = 32;
    bigbird.seed = 9;
    for (config, causal) in [(SparsityConfig::from(fixed), true), (bigbird.into(), false)] {
        let attn = SparseSelfAttention::new(config).unwrap();
        for seq in [100usize, 130] {
            let shape = AttentionShape {
                batch: 2,
                heads: 2,
                seq_len: seq,
                head_dim: 16,
            };
            let mut data = Data::new(seq as u64);
            let n = shape.qkv_len();
            let (q, k, v): (Vec<half::bf16>, Vec<_>, Vec<_>) = (
                data.vec(n, -1.0, 1.0),
                data.vec(n, -1.0, 1.0),
                data.vec(n, -1.0, 1.0),
            );
            let opts = AttentionOptions {
                causal,
                ..AttentionOptions::new()
            };
            let inputs = AttentionInputs {
                q: &q,
                k: &k,
                v: &v,
            };
            let mut out = poisoned(n);
            let mut lse = vec![f32::NAN; shape.lse_len()];
            attn.forward(shape, &inputs, &opts, &mut out, &mut lse)
                .unwrap();
            let layout = attn.layout(seq).unwrap();
            let ropts = ltd_reference::AttentionOptions {
                causal,
                layout: Some(ref_layout(&layout)),
                ..ltd_reference::AttentionOptions::new(0.25)
            };
            let dims = AttnDims {
                batch: 2,
                heads: 2,
                seq,
                head_dim: 16,
            };
            let want = ltd_reference::attention_forward(&q, &k, &v, dims, &ropts).unwrap();
            assert_close("out", &out, &want.out);
        }
        assert_eq!(attn.cache().len(), 2);
    }
}
