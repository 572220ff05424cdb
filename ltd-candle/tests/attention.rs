//! `sparse_attention` against candle's own dense attention (the layout as a mask, gradients by
//! candle autograd), against `ltd-reference` (f64), and by finite differences.

mod common;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, dense_attention, tolerance, values};
use ltd_candle::{LtdCandleError, QkvLayout, SparseAttentionOptions, sparse_attention};
use ltd_sparse_attn::{BigBirdConfig, FixedConfig, Layout, SparseAttnError, SparseSelfAttention};
use proptest::prelude::*;

fn tensor(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::from_vec(values(dims, seed), dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// One configuration of a comparison run.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    heads: usize,
    seq: usize,
    head_dim: usize,
    layout_mask: Vec<u8>,
    causal: bool,
    /// 0: none, 1: u8 keep mask, 2: f32 additive mask.
    kpm: u8,
    bias: bool,
    order: QkvLayout,
    /// Pass [B, L, H, D] as a transposed view (not contiguous).
    strided: bool,
    dtype: DType,
    seed: u64,
}

impl Case {
    fn layout(&self) -> Arc<Layout> {
        let nb = self.seq.div_ceil(16);
        Arc::new(Layout::from_mask(self.heads, nb, 16, self.layout_mask.clone()).unwrap())
    }
}

/// Runs ours and candle's dense attention on the same inputs and compares the output and the
/// gradients of q, k, v (and the bias).
fn compare_with_dense(c: &Case) {
    let (b, h, l, d) = (c.batch, c.heads, c.seq, c.head_dim);
    let dims = [b, h, l, d];
    let layout = c.layout();
    // Inputs rounded to the dtype first, so both sides see the same values.
    let q = Var::from_tensor(&tensor(&dims, c.seed, c.dtype)).unwrap();
    let k = Var::from_tensor(&tensor(&dims, c.seed + 1, c.dtype)).unwrap();
    let v = Var::from_tensor(&tensor(&dims, c.seed + 2, c.dtype)).unwrap();
    let w = tensor(&dims, c.seed + 3, DType::F32);
    let bias = c
        .bias
        .then(|| Var::from_tensor(&tensor(&[b, h, l, l], c.seed + 4, c.dtype)).unwrap());
    let keep: Vec<u8> = values(&[b, l], c.seed + 5)
        .iter()
        .map(|&x| u8::from(x > -0.6))
        .collect();
    let keep = Tensor::from_vec(keep, (b, l), &Device::Cpu).unwrap();
    let zeros = Tensor::zeros((b, l), DType::F32, &Device::Cpu).unwrap();
    let neg = Tensor::full(f32::NEG_INFINITY, (b, l), &Device::Cpu).unwrap();
    let additive = keep.where_cond(&zeros, &neg).unwrap();
    let kpm_ours = match c.kpm {
        1 => Some(keep.clone()),
        2 => Some(additive.clone()),
        _ => None,
    };
    let scale = 0.7;

    let to_order = |t: &Tensor| match (c.order, c.strided) {
        (QkvLayout::Bhld, _) => t.clone(),
        (QkvLayout::Blhd, true) => t.transpose(1, 2).unwrap(),
        (QkvLayout::Blhd, false) => t.transpose(1, 2).unwrap().contiguous().unwrap(),
    };
    let opts = SparseAttentionOptions {
        scale: Some(scale),
        causal: c.causal,
        key_padding_mask: kpm_ours,
        bias: bias.as_ref().map(|v| v.as_tensor().clone()),
        layout: c.order,
    };
    let ours =
        sparse_attention(&to_order(&q), &to_order(&k), &to_order(&v), &layout, &opts).unwrap();
    let ours = match c.order {
        QkvLayout::Bhld => ours,
        QkvLayout::Blhd => ours.transpose(1, 2).unwrap(),
    };
    let grads = (ours.to_dtype(DType::F32).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();

    // The reference in f32 on the same (rounded) values.
    let f = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap();
    let (rq, rk, rv) = (f(&q), f(&k), f(&v));
    let rbias = bias.as_ref().map(|t| f(t));
    let kpm_ref = (c.kpm != 0).then_some(&additive);
    let reference = dense_attention(
        &rq,
        &rk,
        &rv,
        &layout,
        scale,
        c.causal,
        kpm_ref,
        rbias.as_ref().map(|v| v.as_tensor()),
    )
    .unwrap();
    let rgrads = (&reference * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();

    let (atol, rtol) = tolerance(c.dtype);
    assert_close("out", &ours, &reference, atol, rtol);
    let g = |gs: &candle_core::backprop::GradStore, t: &Var| gs.get(t).unwrap().clone();
    // Gradients sum over L keys: allow a little more.
    let (atol, rtol) = (atol * 4.0, rtol * 2.0);
    assert_close("dq", &g(&grads, &q), &g(&rgrads, &rq), atol, rtol);
    assert_close("dk", &g(&grads, &k), &g(&rgrads, &rk), atol, rtol);
    assert_close("dv", &g(&grads, &v), &g(&rgrads, &rv), atol, rtol);
    if let (Some(bv), Some(rb)) = (&bias, &rbias) {
        assert_close("dbias", &g(&grads, bv), &g(&rgrads, rb), atol, rtol);
    }
}

fn full_mask(heads: usize, seq: usize) -> Vec<u8> {
    vec![1; heads * seq.div_ceil(16).pow(2)]
}

#[test]
fn fixed_layout_causal_matches_dense() {
    let layout = FixedConfig::new(2).make_layout(70).unwrap();
    compare_with_dense(&Case {
        batch: 2,
        heads: 2,
        seq: 70,
        head_dim: 8,
        layout_mask: layout.mask().to_vec(),
        causal: true,
        kpm: 0,
        bias: false,
        order: QkvLayout::Bhld,
        strided: false,
        dtype: DType::F32,
        seed: 1,
    });
}

#[test]
fn bigbird_with_bias_and_padding_blhd_matches_dense() {
    let layout = BigBirdConfig::new(2).make_layout(50).unwrap();
    for (kpm, strided) in [(1, true), (2, false)] {
        compare_with_dense(&Case {
            batch: 2,
            heads: 2,
            seq: 50,
            head_dim: 4,
            layout_mask: layout.mask().to_vec(),
            causal: false,
            kpm,
            bias: true,
            order: QkvLayout::Blhd,
            strided,
            dtype: DType::F32,
            seed: 7,
        });
    }
}

#[test]
fn half_precision_dtypes_match_dense() {
    for dtype in [DType::F16, DType::BF16] {
        compare_with_dense(&Case {
            batch: 1,
            heads: 2,
            seq: 33,
            head_dim: 8,
            layout_mask: full_mask(2, 33),
            causal: true,
            kpm: 1,
            bias: true,
            order: QkvLayout::Bhld,
            strided: false,
            dtype,
            seed: 11,
        });
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (1usize..=2, 1usize..=2, 1usize..=40, 1usize..=8)
        .prop_flat_map(|(batch, heads, seq, head_dim)| {
            let nb = seq.div_ceil(16);
            (
                Just((batch, heads, seq, head_dim)),
                proptest::collection::vec(0u8..=1, heads * nb * nb),
                any::<bool>(),
                0u8..=2,
                any::<bool>(),
                prop_oneof![Just(QkvLayout::Bhld), Just(QkvLayout::Blhd)],
                any::<bool>(),
                prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                (batch, heads, seq, head_dim),
                layout_mask,
                causal,
                kpm,
                bias,
                order,
                strided,
                dtype,
                seed,
            )| Case {
                batch,
                heads,
                seq,
                head_dim,
                layout_mask,
                causal,
                kpm,
                bias,
                order,
                strided,
                dtype,
                seed: seed % 1_000_000,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    /// Random shapes, layouts (empty rows included: those give zeros), masks, orders, strides
    /// and dtypes.
    #[test]
    fn random_cases_match_dense(c in case_strategy()) {
        compare_with_dense(&c);
    }
}

#[test]
fn matches_ltd_reference_f64_oracle() {
    let (b, h, l, d) = (2, 2, 37, 5);
    let attn = SparseSelfAttention::new(BigBirdConfig::new(h).into()).unwrap();
    let layout = attn.layout(l).unwrap();
    let dims = [b, h, l, d];
    let (qv, kv, vv, bv) = (
        values(&dims, 21),
        values(&dims, 22),
        values(&dims, 23),
        values(&[b, h, l, l], 24),
    );
    let dout = values(&dims, 25);
    let t = |x: &[f32], dims: &[usize]| {
        Var::from_tensor(&Tensor::from_vec(x.to_vec(), dims, &Device::Cpu).unwrap()).unwrap()
    };
    let (q, k, v, bias) = (
        t(&qv, &dims),
        t(&kv, &dims),
        t(&vv, &dims),
        t(&bv, &[b, h, l, l]),
    );
    let opts = SparseAttentionOptions {
        causal: true,
        bias: Some(bias.as_tensor().clone()),
        ..Default::default()
    };
    let out = sparse_attention(&q, &k, &v, &attn, &opts).unwrap();
    let g = (&out * Tensor::from_vec(dout.clone(), &dims[..], &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();

    let ref_layout = ltd_reference::Layout::square(layout.mask(), h, layout.num_blocks(), 16);
    let ref_opts = ltd_reference::AttentionOptions {
        causal: true,
        bias: Some(&bv[..]),
        layout: Some(ref_layout),
        ..ltd_reference::AttentionOptions::new(1.0 / (d as f64).sqrt())
    };
    let rdims = ltd_reference::AttnDims {
        batch: b,
        heads: h,
        seq: l,
        head_dim: d,
    };
    let rf = ltd_reference::attention_forward(&qv, &kv, &vv, rdims, &ref_opts).unwrap();
    let rg = ltd_reference::attention_backward(&qv, &kv, &vv, &dout, rdims, &ref_opts).unwrap();
    let as_t = |x: Vec<f32>, dims: &[usize]| Tensor::from_vec(x, dims, &Device::Cpu).unwrap();
    assert_close("out", &out, &as_t(rf.out, &dims), 1e-5, 1e-4);
    assert_close("dq", g.get(&q).unwrap(), &as_t(rg.dq, &dims), 1e-4, 1e-3);
    assert_close("dk", g.get(&k).unwrap(), &as_t(rg.dk, &dims), 1e-4, 1e-3);
    assert_close("dv", g.get(&v).unwrap(), &as_t(rg.dv, &dims), 1e-4, 1e-3);
    assert_close(
        "dbias",
        g.get(&bias).unwrap(),
        &as_t(rg.dbias, &[b, h, l, l]),
        1e-4,
        1e-3,
    );
}

/// Central differences of `sum(out * w)` with respect to every input element.
#[test]
fn gradients_match_finite_differences() {
    let (b, h, l, d) = (1, 1, 6, 3);
    let dims = [b, h, l, d];
    let layout = Arc::new(Layout::from_mask(1, 1, 16, vec![1]).unwrap());
    let w = Tensor::from_vec(values(&dims, 31), &dims[..], &Device::Cpu).unwrap();
    let inputs: Vec<Vec<f32>> = vec![
        values(&dims, 32),
        values(&dims, 33),
        values(&dims, 34),
        values(&[b, h, l, l], 35),
    ];
    let loss = |x: &[Vec<f32>]| -> f64 {
        let t =
            |v: &Vec<f32>, dims: &[usize]| Tensor::from_vec(v.clone(), dims, &Device::Cpu).unwrap();
        let opts = SparseAttentionOptions {
            causal: true,
            bias: Some(t(&x[3], &[b, h, l, l])),
            ..Default::default()
        };
        let out = sparse_attention(
            &t(&x[0], &dims),
            &t(&x[1], &dims),
            &t(&x[2], &dims),
            &layout,
            &opts,
        )
        .unwrap();
        let o: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let wv: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        o.iter()
            .zip(&wv)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let vars: Vec<Var> = inputs
        .iter()
        .zip([&dims[..], &dims[..], &dims[..], &[b, h, l, l][..]])
        .map(|(v, dims)| {
            Var::from_tensor(&Tensor::from_vec(v.clone(), dims, &Device::Cpu).unwrap()).unwrap()
        })
        .collect();
    let opts = SparseAttentionOptions {
        causal: true,
        bias: Some(vars[3].as_tensor().clone()),
        ..Default::default()
    };
    let out = sparse_attention(&vars[0], &vars[1], &vars[2], &layout, &opts).unwrap();
    let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let eps = 1e-2f32;
    for (which, var) in vars.iter().enumerate() {
        let analytic: Vec<f32> = grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, a) in analytic.iter().enumerate() {
            let mut plus = inputs.clone();
            plus[which][i] += eps;
            let mut minus = inputs.clone();
            minus[which][i] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
            assert!(
                (f64::from(*a) - numeric).abs() < 2e-3,
                "input {which} element {i}: analytic {a} vs numeric {numeric}"
            );
        }
    }
}

#[test]
fn any_length_uses_a_layout_per_length_and_backward_twice_agrees() {
    let attn = SparseSelfAttention::new(FixedConfig::new(1).into()).unwrap();
    for l in [5, 40, 100] {
        let x = Var::from_tensor(&tensor(&[1, 1, l, 4], l as u64, DType::F32)).unwrap();
        let out = sparse_attention(&x, &x, &x, &attn, &SparseAttentionOptions::default()).unwrap();
        assert_eq!(out.dims(), &[1, 1, l, 4]);
        let loss = out.sqr().unwrap().sum_all().unwrap();
        let g1 = loss.backward().unwrap().get(&x).unwrap().clone();
        let g2 = loss.backward().unwrap().get(&x).unwrap().clone();
        assert_close("grad twice", &g1, &g2, 0.0, 0.0);
    }
    assert_eq!(attn.cache().len(), 3);
}

#[test]
fn nan_propagates_and_masked_rows_are_zero() {
    let layout = Arc::new(Layout::from_mask(1, 2, 16, vec![1, 0, 0, 0]).unwrap()); // block row 1 empty
    let mut qv = values(&[1, 1, 20, 2], 41);
    qv[0] = f32::NAN;
    let q = Tensor::from_vec(qv, (1, 1, 20, 2), &Device::Cpu).unwrap();
    let kv = tensor(&[1, 1, 20, 2], 42, DType::F32);
    let out = sparse_attention(&q, &kv, &kv, &layout, &SparseAttentionOptions::default()).unwrap();
    let o: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    assert!(o[0].is_nan() && o[1].is_nan(), "row 0 read a NaN query");
    assert!(o[2..32].iter().all(|x| x.is_finite()));
    assert!(o[32..].iter().all(|&x| x == 0.0), "rows 16.. see no key");
}

#[test]
fn bad_arguments_are_typed_errors() {
    let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let x = tensor(&[1, 2, 16, 4], 1, DType::F32);
    let opts = SparseAttentionOptions::default();
    let e = sparse_attention(&x.to_dtype(DType::F64).unwrap(), &x, &x, &attn, &opts).unwrap_err();
    assert!(matches!(e, LtdCandleError::Unsupported { .. }), "{e}");
    let e = sparse_attention(&x, &x.to_dtype(DType::F16).unwrap(), &x, &attn, &opts).unwrap_err();
    assert!(
        matches!(e, LtdCandleError::DTypeMismatch { what: "k", .. }),
        "{e}"
    );
    let three = tensor(&[1, 3, 16, 4], 1, DType::F32);
    let e = sparse_attention(&three, &three, &three, &attn, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::SparseAttn(SparseAttnError::HeadMismatch {
                expected: 2,
                actual: 3
            })
        ),
        "{e}"
    );
    let e = sparse_attention(&x, &x.narrow(2, 0, 8).unwrap(), &x, &attn, &opts).unwrap_err();
    assert!(matches!(e, LtdCandleError::Shape { what: "k", .. }), "{e}");
    let bad_kpm = SparseAttentionOptions {
        key_padding_mask: Some(Tensor::zeros((1, 16), DType::I64, &Device::Cpu).unwrap()),
        ..Default::default()
    };
    let e = sparse_attention(&x, &x, &x, &attn, &bad_kpm).unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Unsupported {
                what: "key_padding_mask",
                ..
            }
        ),
        "{e}"
    );
    let bad_bias = SparseAttentionOptions {
        bias: Some(Tensor::zeros((1, 2, 16, 16), DType::F16, &Device::Cpu).unwrap()),
        ..Default::default()
    };
    let e = sparse_attention(&x, &x, &x, &attn, &bad_bias).unwrap_err();
    assert!(
        matches!(e, LtdCandleError::DTypeMismatch { what: "bias", .. }),
        "{e}"
    );
    // A fixed layout for another length.
    let fixed = Arc::new(FixedConfig::new(2).make_layout(64).unwrap());
    let e = sparse_attention(&x, &x, &x, &fixed, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::SparseAttn(SparseAttnError::LayoutLengthMismatch { .. })
        ),
        "{e}"
    );
}
