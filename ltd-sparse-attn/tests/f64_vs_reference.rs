//! The f64 CPU path against `ltd-reference` (f64 too), to `TOL` relative: fused attention
//! (output, logsumexp, dq, dk, dv, dbias) on random layouts, lengths that are and are not
//! multiples of the block, causal or not, additive or boolean key-padding masks, optional bias
//! and scale; fully masked rows; NaN propagation; `SparseSelfAttention`; block-sparse matmul
//! and softmax. Every output buffer starts as NaN, so an unwritten element fails.

mod common;

use common::{AttnCase as Case, Data, Kpm, mask_values, matmul_reference, mode_ref, ref_layout};
use ltd_reference::{AttnDims, Mask};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, BlockSparseMatMul,
    KeyPaddingMask, Layout, MaskMode, MatMulMode, SoftmaxOptions, attention_backward,
    attention_forward,
};
use proptest::prelude::*;

/// `|got - want| <= TOL * (1 + |want|)`: relative for values of magnitude one or more, absolute
/// below (sums that cancel to near zero keep the rounding error of their terms).
const TOL: f64 = 1e-12;

/// Elementwise within `TOL`; NaN matches NaN only and an infinity the same infinity.
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= TOL * (1.0 + w.abs())
        };
        assert!(ok, "{what}[{i}]: got {g:e}, want {w:e} (tol {TOL:e})");
    }
}

fn nan(n: usize) -> Vec<f64> {
    vec![f64::NAN; n]
}

/// One attention problem: inputs, masks and options, for ours and for the oracle.
struct Problem {
    layout: Layout,
    shape: AttentionShape,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    dout: Vec<f64>,
    bias: Option<Vec<f64>>,
    kpm: Kpm,
    keep: Vec<bool>,
    /// The additive mask as our f32 API takes it, and widened for the oracle.
    additive: Vec<f32>,
    additive_f64: Vec<f64>,
    keep_f64: Vec<f64>,
    causal: bool,
    scale: Option<f32>,
}

impl Problem {
    fn options(&self) -> AttentionOptions<'_, f64> {
        AttentionOptions {
            scale: self.scale,
            causal: self.causal,
            key_padding_mask: match self.kpm {
                Kpm::None => None,
                Kpm::Additive => Some(KeyPaddingMask::Additive(&self.additive)),
                Kpm::Keep => Some(KeyPaddingMask::Keep(&self.keep)),
            },
            bias: self.bias.as_deref(),
        }
    }

    fn oracle_options(&self) -> ltd_reference::AttentionOptions<'_, f64> {
        let scale = match self.scale {
            Some(s) => f64::from(s),
            None => 1.0 / (self.shape.head_dim as f64).sqrt(),
        };
        ltd_reference::AttentionOptions {
            bias: self.bias.as_deref(),
            key_padding: match self.kpm {
                Kpm::None => None,
                Kpm::Additive => Some(Mask {
                    values: &self.additive_f64,
                    mode: ltd_reference::MaskMode::Add,
                }),
                Kpm::Keep => Some(Mask {
                    values: &self.keep_f64,
                    mode: ltd_reference::MaskMode::Mul,
                }),
            },
            causal: self.causal,
            layout: Some(ref_layout(&self.layout)),
            ..ltd_reference::AttentionOptions::new(scale)
        }
    }

    fn dims(&self) -> AttnDims {
        let s = self.shape;
        AttnDims {
            batch: s.batch,
            heads: s.heads,
            seq: s.seq_len,
            head_dim: s.head_dim,
        }
    }

    fn inputs(&self) -> AttentionInputs<'_, f64> {
        AttentionInputs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
        }
    }

    /// Runs ours and the oracle, forward and backward, and compares everything.
    fn check(&self) -> Outputs {
        let (shape, n) = (self.shape, self.shape.qkv_len());
        let (opts, inputs) = (self.options(), self.inputs());
        let mut out = nan(n);
        let mut lse = nan(shape.lse_len());
        attention_forward(&self.layout, shape, &inputs, &opts, &mut out, &mut lse).unwrap();
        let ropts = self.oracle_options();
        let (q, k, v) = (&self.q, &self.k, &self.v);
        let want = ltd_reference::attention_forward(q, k, v, self.dims(), &ropts).unwrap();
        assert_close("out", &out, &want.out);
        assert_close("lse", &lse, &want.lse);

        let (mut dq, mut dk, mut dv) = (nan(n), nan(n), nan(n));
        let mut dbias = self.bias.as_ref().map(|_| nan(shape.bias_len()));
        let grads = AttentionGrads {
            dq: &mut dq,
            dk: &mut dk,
            dv: &mut dv,
            dbias: dbias.as_deref_mut(),
        };
        let layout = &self.layout;
        attention_backward(layout, shape, &inputs, &opts, &out, &self.dout, &lse, grads).unwrap();
        let wg =
            ltd_reference::attention_backward(q, k, v, &self.dout, self.dims(), &ropts).unwrap();
        assert_close("dq", &dq, &wg.dq);
        assert_close("dk", &dk, &wg.dk);
        assert_close("dv", &dv, &wg.dv);
        if let Some(db) = &dbias {
            assert_close("dbias", db, &wg.dbias);
        }
        Outputs {
            out,
            lse,
            dq,
            dk,
            dv,
        }
    }
}

struct Outputs {
    out: Vec<f64>,
    lse: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

fn problem(c: &Case) -> Problem {
    let mut data = Data::new(c.seed);
    let layout = data.layout(c.heads, c.seq.div_ceil(c.block), c.block, c.density);
    let shape = AttentionShape {
        batch: c.batch,
        heads: c.heads,
        seq_len: c.seq,
        head_dim: c.head_dim,
    };
    let n = shape.qkv_len();
    let (q, k, v, dout) = (
        data.vec_f64(n, -1.0, 1.0),
        data.vec_f64(n, -1.0, 1.0),
        data.vec_f64(n, -1.0, 1.0),
        data.vec_f64(n, -1.0, 1.0),
    );
    let bias = c.bias.then(|| data.vec_f64(shape.bias_len(), -1.0, 1.0));
    // Drop ~25% of keys (sometimes all of a batch row's).
    let keep: Vec<bool> = (0..c.batch * c.seq).map(|_| data.coin(0.75)).collect();
    let additive: Vec<f32> = keep
        .iter()
        .map(|&k| {
            if k {
                -0.25 * data.unit()
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Problem {
        layout,
        shape,
        q,
        k,
        v,
        dout,
        bias,
        kpm: c.kpm,
        additive_f64: additive.iter().map(|&x| f64::from(x)).collect(),
        keep_f64: keep.iter().map(|&k| k as u8 as f64).collect(),
        keep,
        additive,
        causal: c.causal,
        scale: c.explicit_scale.then_some(0.3),
    }
}

/// (block, seq, head_dim): 1–3 block-rows for blocks 16/32, a few cases at 64.
fn sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        4 => (Just(16usize), 1..=48usize, 1..=24usize),
        3 => (Just(32usize), 1..=96usize, 1..=16usize),
        1 => (Just(64usize), 1..=128usize, 1..=8usize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn f64_attention_matches_reference(
        (block, seq, head_dim) in sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![1 => Just(0.0f32), 4 => Just(1.0f32), 8 => 0.1f32..1.0],
        causal in any::<bool>(),
        kpm in prop_oneof![Just(Kpm::None), Just(Kpm::Additive), Just(Kpm::Keep)],
        bias in any::<bool>(),
        explicit_scale in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let case = Case { block, seq, head_dim, heads, batch, density, causal, kpm, bias, explicit_scale, seed };
        problem(&case).check();
    }
}

fn fixed_case(seq: usize, causal: bool, kpm: Kpm, bias: bool) -> Case {
    Case {
        block: 16,
        seq,
        head_dim: 8,
        heads: 2,
        batch: 2,
        density: 0.7,
        causal,
        kpm,
        bias,
        explicit_scale: false,
        seed: seq as u64,
    }
}

#[test]
fn fully_masked_rows_give_zero_output_and_gradients_and_minus_inf_lse() {
    // L = 40: blocks 16, 16 and a partial 8. Every key of batch 0 is padded.
    let mut p = problem(&fixed_case(40, true, Kpm::Keep, true));
    p.keep[..40].fill(false);
    p.keep_f64[..40].fill(0.0);
    let r = p.check();
    let half = p.shape.qkv_len() / 2;
    assert!(r.out[..half].iter().all(|&x| x == 0.0));
    assert!(r.lse[..2 * 40].iter().all(|&x| x == f64::NEG_INFINITY));
    assert!(
        r.lse[2 * 40..]
            .iter()
            .all(|x| x.is_finite() || *x == f64::NEG_INFINITY)
    );
    for g in [&r.dq, &r.dk, &r.dv] {
        assert!(g[..half].iter().all(|&x| x == 0.0));
        assert!(g[half..].iter().all(|x| x.is_finite()));
    }
}

#[test]
fn partial_last_block_causal_bias_and_masks_match_reference() {
    for seq in [32, 40, 33] {
        for kpm in [Kpm::None, Kpm::Additive, Kpm::Keep] {
            for (causal, bias) in [(false, false), (true, false), (false, true), (true, true)] {
                problem(&fixed_case(seq, causal, kpm, bias)).check();
            }
        }
    }
}

#[test]
fn nan_and_inf_propagate_as_in_the_reference() {
    // A dense layout, not causal: the oracle's NaN row reaches every key, and so does ours.
    let dense = |mut p: Problem| {
        p.layout = Layout::from_mask(2, 3, 16, vec![1; 2 * 9]).unwrap();
        p
    };
    // NaN in one query row: that row's output, lse and dq are NaN, and every dk, dv of its head.
    let mut p = dense(problem(&fixed_case(40, false, Kpm::None, true)));
    p.q[3 * 8..4 * 8].fill(f64::NAN);
    let r = p.check();
    assert!(r.lse[3].is_nan() && r.out[3 * 8..4 * 8].iter().all(|x| x.is_nan()));
    assert!(r.lse[4].is_finite() && r.out[4 * 8].is_finite());
    assert!(r.dq[3 * 8].is_nan() && r.dq[4 * 8].is_finite());
    assert!(r.dk[..40 * 8].iter().all(|x| x.is_nan()));
    assert!(r.dk[40 * 8..].iter().all(|x| x.is_finite()));
    // NaN in the bias and +inf in the additive padding mask. No key is masked out: a NaN row
    // makes the oracle's probabilities NaN at masked keys too, where ours skips the key.
    let mut p = dense(problem(&fixed_case(40, false, Kpm::Additive, true)));
    p.additive.iter_mut().for_each(|x| *x = x.max(-1.0));
    p.additive_f64.iter_mut().for_each(|x| *x = x.max(-1.0));
    p.bias.as_mut().unwrap()[(40 + 7) * 40 + 5] = f64::NAN; // head 1, query 7, key 5
    p.additive[40 + 9] = f32::INFINITY; // batch 1, key 9
    p.additive_f64[40 + 9] = f64::INFINITY;
    let r = p.check();
    assert!(r.lse[40 + 7].is_nan() && r.lse[40 + 6].is_finite());
    assert!(r.lse[2 * 40..].iter().all(|x| x.is_nan()));
}

#[test]
fn sparse_self_attention_runs_f64_with_family_layouts() {
    use ltd_sparse_attn::{BigBirdConfig, Direction, FixedConfig, SparseSelfAttention};
    let mut fixed = FixedConfig::new(2);
    fixed.block = 16;
    fixed.attention = Direction::Unidirectional;
    fixed.num_local_blocks = 2;
    let mut bigbird = BigBirdConfig::new(2);
    bigbird.block = 16;
    bigbird.different_layout_per_head = true;
    bigbird.num_sliding_window_blocks = 1;
    bigbird.num_random_blocks = 1;
    bigbird.seed = 5;
    for (config, causal) in [(fixed.into(), true), (bigbird.into(), false)] {
        let attn = SparseSelfAttention::new(config).unwrap();
        for seq in [32usize, 40, 100] {
            let mut p = problem(&fixed_case(seq, causal, Kpm::Keep, true));
            p.layout = (*attn.layout(seq).unwrap()).clone();
            let want = p.check();
            let (shape, n, opts) = (p.shape, p.shape.qkv_len(), p.options());
            let (mut out, mut lse) = (nan(n), nan(shape.lse_len()));
            attn.forward(shape, &p.inputs(), &opts, &mut out, &mut lse)
                .unwrap();
            assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), {
                want.out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            });
            let (mut dq, mut dk, mut dv) = (nan(n), nan(n), nan(n));
            let grads = AttentionGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
                dbias: None,
            };
            attn.backward(shape, &p.inputs(), &opts, &out, &p.dout, &lse, grads)
                .unwrap();
            assert_eq!((dq, dk, dv), (want.dq, want.dk, want.dv));
            assert_eq!(lse, want.lse);
        }
    }
}

#[test]
fn default_scale_is_computed_in_f64() {
    // D = 3: 1 / sqrt(3) differs between f32 and f64, and the f64 path uses the f64 value.
    let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: 1,
        head_dim: 3,
    };
    let (q, v) = ([1.0f64, 1.0, 1.0], [2.0f64, 0.0, 0.0]);
    let inputs = AttentionInputs {
        q: &q,
        k: &q,
        v: &v,
    };
    let (mut out, mut lse) = (nan(3), nan(1));
    let opts = AttentionOptions::new();
    attention_forward(&layout, shape, &inputs, &opts, &mut out, &mut lse).unwrap();
    // One key: lse is its score, 3 * (1 / sqrt(3)), with the scale rounded to f64, not f32.
    assert_eq!(lse[0], 3.0 * (1.0 / 3f64.sqrt()));
    assert_ne!(lse[0], f64::from(3.0 * (1.0 / 3f32.sqrt())));
    assert_eq!(out, [2.0, 0.0, 0.0]);
}

/// (block, blocks per side, dense dim) for the primitives.
fn op_sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        3 => (Just(16usize), 1..=3usize, 1..=16usize),
        1 => (Just(32usize), 1..=2usize, 1..=8usize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn f64_matmul_matches_reference(
        mode in prop_oneof![Just(MatMulMode::Sdd), Just(MatMulMode::Dsd), Just(MatMulMode::Dds)],
        trans_a in any::<bool>(),
        trans_b in any::<bool>(),
        (block, nb, f) in op_sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![Just(0.0f32), 0.1f32..1.0, Just(1.0f32)],
        seed in any::<u64>(),
    ) {
        let mut data = Data::new(seed);
        let layout = data.layout(heads, nb, block, density);
        let mm = BlockSparseMatMul::new(mode, trans_a, trans_b);
        let (la, lb, lc) = mm.operand_lens(&layout, batch, f);
        let a = data.vec_f64(la, -1.0, 1.0);
        let b = data.vec_f64(lb, -1.0, 1.0);
        let dc = data.vec_f64(lc, -1.0, 1.0);
        let (want, wa, wb) = matmul_reference(mm, &layout, batch, f, (&a, &b, &dc));
        let mut c = nan(lc);
        mm.forward(&layout, &a, &b, batch, f, &mut c).unwrap();
        assert_close("c", &c, &want);
        let (mut da, mut db) = (nan(la), nan(lb));
        mm.backward(&layout, &a, &b, &dc, batch, f, &mut da, &mut db).unwrap();
        assert_close("da", &da, &wa);
        assert_close("db", &db, &wb);
    }

    #[test]
    fn f64_softmax_matches_reference(
        (block, nb, _f) in op_sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![0.1f32..1.0, Just(1.0f32)],
        scale in prop_oneof![Just(1.0f32), 0.1f32..2.0],
        rpe in any::<bool>(),
        kpm in prop_oneof![Just(None), Just(Some(MaskMode::Add)), Just(Some(MaskMode::Mul))],
        am in prop_oneof![Just(None), Just(Some(MaskMode::Add)), Just(Some(MaskMode::Mul))],
        seed in any::<u64>(),
    ) {
        check_softmax(block, nb, heads, batch, density, scale, rpe, kpm, am, seed);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_softmax(
    block: usize,
    nb: usize,
    heads: usize,
    batch: usize,
    density: f32,
    scale: f32,
    rpe: bool,
    kpm: Option<MaskMode>,
    am: Option<MaskMode>,
    seed: u64,
) {
    let mut data = Data::new(seed);
    let layout = data.layout(heads, nb, block, density);
    let rl = ref_layout(&layout);
    let s = nb * block;
    let n = batch * layout.nnz() * block * block;
    let x = data.vec_f64(n, -2.0, 2.0);
    let rpe = rpe.then(|| data.vec_f64(batch * heads * s * s, -1.0, 1.0));
    let kpm_v = kpm.map(|m| mask_values(&mut data, batch * s, m, f64::from));
    let am_v = am.map(|m| mask_values(&mut data, s * s, m, f64::from));
    let opts = SoftmaxOptions {
        scale,
        rpe: rpe.as_deref(),
        key_padding_mask: kpm_v.as_deref(),
        key_padding_mask_mode: kpm.unwrap_or_default(),
        attn_mask: am_v.as_deref(),
        attn_mask_mode: am.unwrap_or_default(),
    };
    let ropts = ltd_reference::SoftmaxOptions {
        scale: f64::from(scale),
        rpe: rpe.as_deref(),
        key_padding: kpm_v.as_deref().map(|values| Mask {
            values,
            mode: mode_ref(kpm.unwrap()),
        }),
        attn_mask: am_v.as_deref().map(|values| Mask {
            values,
            mode: mode_ref(am.unwrap()),
        }),
    };
    let mut y = nan(n);
    ltd_sparse_attn::softmax_forward(&layout, &x, batch, &opts, &mut y).unwrap();
    let want = ltd_reference::block_sparse_softmax(&x, batch, &rl, &ropts).unwrap();
    assert_close("y", &y, &want);
    let dy = data.vec_f64(n, -1.0, 1.0);
    let mut dx = nan(n);
    ltd_sparse_attn::softmax_backward(&layout, &want, &dy, batch, scale, &mut dx).unwrap();
    let want_dx =
        ltd_reference::block_sparse_softmax_backward(&want, &dy, batch, &rl, f64::from(scale))
            .unwrap();
    assert_close("dx", &dx, &want_dx);
}
