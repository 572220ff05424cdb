//! Random-LTD ops and the layer wrapper against plain candle equivalents (`index_select`,
//! `index_add`, masks), for the outputs and every gradient.

mod common;

use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::values;
use ltd_candle::{
    LayerMask, LtdCandleError, MaskArg, RandomLtd, gather_tokens, route, sample_token_indices,
    scatter_tokens,
};
use ltd_core::HiddenOrder;
use proptest::prelude::*;

fn tensor(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::from_vec(values(dims, seed), dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Batch entry `b` of a hidden tensor as `[S, C]`.
fn row(t: &Tensor, b: usize, order: HiddenOrder) -> Tensor {
    match order {
        HiddenOrder::BatchSeq => t.i(b).unwrap(),
        HiddenOrder::SeqBatch => t.i((.., b)).unwrap(),
    }
    .contiguous()
    .unwrap()
}

/// Stacks `[n, C]` rows back into the order.
fn stack(rows: &[Tensor], order: HiddenOrder) -> Tensor {
    let dim = match order {
        HiddenOrder::BatchSeq => 0,
        HiddenOrder::SeqBatch => 1,
    };
    Tensor::stack(rows, dim).unwrap()
}

/// `gather` with `index_select`.
fn gather_plain(h: &Tensor, idx: &Tensor, order: HiddenOrder) -> Tensor {
    let b = idx.dims()[0];
    let rows: Vec<Tensor> = (0..b)
        .map(|i| {
            row(h, i, order)
                .index_select(&idx.i(i).unwrap(), 0)
                .unwrap()
        })
        .collect();
    stack(&rows, order)
}

/// `route` with a keep mask and `index_add`.
fn route_plain(h: &Tensor, out: &Tensor, idx: &Tensor, order: HiddenOrder) -> Tensor {
    let b = idx.dims()[0];
    let rows: Vec<Tensor> = (0..b)
        .map(|i| {
            let hb = row(h, i, order);
            let (s, c) = hb.dims2().unwrap();
            let ib = idx.i(i).unwrap();
            let ones = Tensor::ones((ib.dims()[0], 1), hb.dtype(), hb.device()).unwrap();
            let kept = Tensor::zeros((s, 1), hb.dtype(), hb.device())
                .unwrap()
                .index_add(&ib, &ones, 0)
                .unwrap();
            let dropped = kept.affine(-1.0, 1.0).unwrap();
            let written = Tensor::zeros((s, c), hb.dtype(), hb.device())
                .unwrap()
                .index_add(&ib, &row(out, i, order), 0)
                .unwrap();
            hb.broadcast_mul(&dropped).unwrap().add(&written).unwrap()
        })
        .collect();
    stack(&rows, order)
}

fn dims(order: HiddenOrder, b: usize, s: usize, c: usize) -> Vec<usize> {
    match order {
        HiddenOrder::BatchSeq => vec![b, s, c],
        HiddenOrder::SeqBatch => vec![s, b, c],
    }
}

fn assert_same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a: Vec<f32> = a
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = b
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b, "{what}");
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a: Vec<f32> = a
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = b
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

fn order_strategy() -> impl Strategy<Value = HiddenOrder> {
    prop_oneof![Just(HiddenOrder::BatchSeq), Just(HiddenOrder::SeqBatch)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    /// gather_tokens and route (values and gradients of h and the layer output) equal their
    /// index_select / index_add versions bit for bit.
    #[test]
    fn token_ops_match_plain_candle(
        (b, s, c) in (1usize..=3, 1usize..=24, 1usize..=9),
        r_frac in 0.0f64..1.0,
        order in order_strategy(),
        dtype in prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        seed in 0u64..1000,
        strided in any::<bool>(),
    ) {
        let r = 1 + ((s - 1) as f64 * r_frac) as usize;
        let idx = sample_token_indices(seed, 3, 2, b, s, r, &Device::Cpu).unwrap().i(1).unwrap();
        let hd = dims(order, b, s, c);
        // A strided h: a narrow of a wider tensor (channel stride 1, row pitch c + 2).
        let base = tensor(&[hd[0], hd[1], c + 2], seed, dtype);
        let h = Var::from_tensor(&base).unwrap();
        let hv = if strided { h.narrow(2, 1, c).unwrap() } else { h.narrow(2, 0, c).unwrap().contiguous().unwrap() };
        let out = Var::from_tensor(&tensor(&dims(order, b, r, c), seed + 1, dtype)).unwrap();
        let w1 = tensor(&dims(order, b, r, c), seed + 2, DType::F32);
        let w2 = tensor(&hd, seed + 3, DType::F32);

        let loss = |part: Tensor, y: Tensor| {
            (part.to_dtype(DType::F32).unwrap() * &w1).unwrap().sum_all().unwrap()
                .add(&(y.to_dtype(DType::F32).unwrap() * &w2).unwrap().sum_all().unwrap()).unwrap()
        };
        let part = gather_tokens(&hv, &idx, order).unwrap();
        let y = route(&hv, &out, &idx, order).unwrap();
        let plain_part = gather_plain(&hv, &idx, order);
        let plain_y = route_plain(&hv, &out, &idx, order);
        assert_same("part", &part, &plain_part);
        assert_same("y", &y, &plain_y);
        let g = loss(part, y).backward().unwrap();
        let pg = loss(plain_part, plain_y).backward().unwrap();
        assert_same("dh", g.get(&h).unwrap(), pg.get(&h).unwrap());
        assert_same("dout", g.get(&out).unwrap(), pg.get(&out).unwrap());
    }
}

/// A DeepSpeed config with `layers` layers, LTD on `ids`.
fn config(layers: usize, ids: &[usize], kind: &str, order: &str, min: u64, max: u64) -> String {
    format!(
        r#"{{"train_batch_size": 4, "data_efficiency": {{"data_routing": {{"random_ltd": {{
        "enabled": true, "total_layer_num": {layers}, "random_ltd_layer_num": {n},
        "random_ltd_layer_id": {ids:?}, "model_mask_name": "attention_mask",
        "model_type": "{kind}", "hidden_state_order": "{order}",
        "random_ltd_schedule": {{"min_value": {min}, "max_value": {max},
          "schedule_type": "fixed_linear",
          "schedule_config": {{"require_steps": 10, "seq_per_step": 2}}}}}}}}}}}}"#,
        n = ids.len()
    )
}

/// The per-layer computation of the test model: `tanh(x Wᵀ) + mask term`, where the mask term
/// makes the output depend on the mask the layer receives.
fn layer_fn(
    w: &Tensor,
    x: &Tensor,
    mask: Option<&Tensor>,
    order: HiddenOrder,
) -> candle_core::Result<Tensor> {
    let y = x.broadcast_matmul(&w.t()?)?.tanh()?;
    let Some(m) = mask else { return Ok(y) };
    // Row sums of the mask over keys, per (batch, query): [B, n] -> hidden order, one channel.
    let m = m.to_dtype(DType::F32)?.sum(3)?.squeeze(1)?; // [B, rows]
    let n = match order {
        HiddenOrder::BatchSeq => x.dims()[1],
        HiddenOrder::SeqBatch => x.dims()[0],
    };
    let m = m.broadcast_as((m.dims()[0], n))?.contiguous()?;
    let m = match order {
        HiddenOrder::BatchSeq => m.unsqueeze(2)?,
        HiddenOrder::SeqBatch => m.t()?.unsqueeze(2)?,
    };
    y.broadcast_add(&(m * 0.01)?.to_dtype(y.dtype())?)
}

/// Gathers a `[B, 1, S, S]` / `[B, 1, 1, S]` mask at `idx` with index_select (rows, then columns).
fn gather_mask_plain(mask: &Tensor, idx: &Tensor) -> Tensor {
    let b = idx.dims()[0];
    let rows: Vec<Tensor> = (0..b)
        .map(|i| {
            let ib = idx.i(i).unwrap();
            let m = mask.i((i, 0)).unwrap().contiguous().unwrap(); // [rows, S]
            let m = if m.dims()[0] == 1 {
                m
            } else {
                m.index_select(&ib, 0).unwrap()
            };
            m.contiguous()
                .unwrap()
                .index_select(&ib, 1)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
        })
        .collect();
    Tensor::stack(&rows, 0).unwrap()
}

/// A three-layer model, LTD on layers 1 and 2, run through the wrapper and through plain
/// candle with the same indices; compares the output and the gradients of h and every weight.
fn wrapper_matches_plain(kind: &str, order: HiddenOrder, mask_kind: u8) {
    let order_name = match order {
        HiddenOrder::BatchSeq => "batch_seq_dim",
        HiddenOrder::SeqBatch => "seq_batch_dim",
    };
    let (b, s, c) = (3, 12, 5);
    let ltd =
        RandomLtd::from_deepspeed_json(&config(3, &[2, 1], kind, order_name, 4, 12), 99).unwrap();
    let r = ltd.begin_step(3).unwrap();
    assert!(r < s);
    let weights: Vec<Var> = (0..3)
        .map(|i| Var::from_tensor(&tensor(&[c, c], 50 + i, DType::F32)).unwrap())
        .collect();
    let layers: Vec<_> = (0..3)
        .map(|i| ltd.wrap(i, weights[i].as_tensor().clone()).unwrap())
        .collect();
    let h = Var::from_tensor(&tensor(&dims(order, b, s, c), 7, DType::F32)).unwrap();
    let wl = tensor(&dims(order, b, s, c), 8, DType::F32);
    // 1: a float [B,1,S,S] causal + padding mask; 2: a u8 [B,1,1,S] padding mask.
    let mask = match mask_kind {
        1 => {
            let v: Vec<f32> = (0..b * s * s)
                .map(|i| {
                    let (bb, qi, kj) = (i / (s * s), (i / s) % s, i % s);
                    if kj <= qi && kj + bb < s { 0.0 } else { -1e4 }
                })
                .collect();
            Some(Tensor::from_vec(v, (b, 1, s, s), &Device::Cpu).unwrap())
        }
        2 => {
            let v: Vec<u8> = (0..b * s).map(|i| u8::from(i % s + i / s < s)).collect();
            Some(Tensor::from_vec(v, (b, 1, 1, s), &Device::Cpu).unwrap())
        }
        _ => None,
    };
    let arg = mask.as_ref().map_or(MaskArg::None, MaskArg::Tensor);

    let mut x = h.as_tensor().clone();
    for layer in &layers {
        x = layer
            .forward_with(&x, arg, |w, t, ctx| {
                let m = match &ctx.mask {
                    LayerMask::Tensor(m) => Some(m.clone()),
                    LayerMask::None => None,
                    LayerMask::Causal => panic!("no causal flag was given"),
                };
                if let Some(pos) = &ctx.positions {
                    // The layer is told the kept positions, and gets the mask gathered there.
                    let id = ltd.ltd_id(ctx.layer_index).unwrap();
                    let idx = ltd.sampled_indices().unwrap().i(id).unwrap();
                    assert_same("positions", pos, &idx);
                    if let (Some(m), Some(full)) = (&m, &mask) {
                        assert_same("gathered mask", m, &gather_mask_plain(full, &idx));
                    }
                }
                layer_fn(w, t, m.as_ref(), order)
            })
            .unwrap();
    }
    let g = (&x * &wl).unwrap().sum_all().unwrap().backward().unwrap();

    let all = ltd.sampled_indices().unwrap();
    assert_same(
        "indices",
        &all,
        &sample_token_indices(99, 3, 2, b, s, r, &Device::Cpu).unwrap(),
    );
    let mut p = h.as_tensor().clone();
    for (i, w) in weights.iter().enumerate() {
        p = match ltd.ltd_id(i) {
            None => layer_fn(w, &p, mask.as_ref(), order).unwrap(),
            Some(id) => {
                let idx = all.i(id).unwrap();
                let part = gather_plain(&p, &idx, order);
                let m = mask.as_ref().map(|m| gather_mask_plain(m, &idx));
                let out = layer_fn(w, &part, m.as_ref(), order).unwrap();
                route_plain(&p, &out, &idx, order)
            }
        };
    }
    let pg = (&p * &wl).unwrap().sum_all().unwrap().backward().unwrap();
    assert_close("y", &x, &p, 1e-6);
    assert_close("dh", g.get(&h).unwrap(), pg.get(&h).unwrap(), 1e-6);
    for w in &weights {
        assert_close("dw", g.get(w).unwrap(), pg.get(w).unwrap(), 1e-5);
    }
}

#[test]
fn decoder_wrapper_matches_plain_candle_both_orders() {
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        for mask in [0, 1] {
            wrapper_matches_plain("decoder", order, mask);
        }
    }
}

#[test]
fn encoder_wrapper_matches_plain_candle_both_orders() {
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        for mask in [1, 2] {
            wrapper_matches_plain("encoder", order, mask);
        }
    }
}

/// The gradient at dropped rows is the output's gradient itself (the skip path); kept rows get
/// the layer's vector-Jacobian product.
#[test]
fn dropped_tokens_get_the_gradient_through_the_skip_path() {
    let ltd =
        RandomLtd::from_deepspeed_json(&config(2, &[0], "decoder", "batch_seq_dim", 6, 16), 5)
            .unwrap();
    ltd.begin_step(0).unwrap();
    let layer = ltd.wrap(0, ()).unwrap();
    let h = Var::from_tensor(&tensor(&[2, 16, 3], 1, DType::F32)).unwrap();
    let w = tensor(&[2, 16, 3], 2, DType::F32);
    let y = layer
        .forward_with(&h, MaskArg::Causal, |_, x, ctx| {
            assert!(matches!(ctx.mask, LayerMask::Causal));
            x * 3.0
        })
        .unwrap();
    let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = g.get(&h).unwrap();
    let idx = ltd
        .sampled_indices()
        .unwrap()
        .i(0)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap();
    for (bb, kept) in idx.iter().enumerate() {
        for pos in 0..16u32 {
            let got = g.i((bb, pos as usize)).unwrap().to_vec1::<f32>().unwrap();
            let want = w.i((bb, pos as usize)).unwrap().to_vec1::<f32>().unwrap();
            let factor = if kept.contains(&pos) { 3.0 } else { 1.0 };
            let want: Vec<f32> = want.iter().map(|x| x * factor).collect();
            assert_eq!(got, want, "row ({bb}, {pos})");
        }
    }
}

#[test]
fn pass_through_in_eval_for_other_layers_and_when_r_reaches_s() {
    let ltd =
        RandomLtd::from_deepspeed_json(&config(12, &[1], "decoder", "batch_seq_dim", 4, 8), 5)
            .unwrap();
    let h = tensor(&[1, 8, 2], 3, DType::F32);
    let seen = |layer: usize| {
        let l = ltd.wrap(layer, ()).unwrap();
        let mut n = 0;
        l.forward_with(&h, MaskArg::None, |_, x, ctx| {
            n = x.dims()[1];
            assert_eq!(ctx.drops_tokens(), n < 8);
            Ok(x.clone())
        })
        .unwrap();
        n
    };
    ltd.begin_step(0).unwrap(); // r = 4
    assert_eq!(seen(1), 4);
    assert_eq!(seen(10), 8, "exact layer ids: 10 is not 1");
    ltd.set_training(false);
    assert_eq!(seen(1), 8, "eval mode");
    ltd.set_training(true);
    ltd.begin_step(100).unwrap(); // r = max = 8 = S
    assert_eq!(seen(1), 8, "r >= S");
}

#[test]
fn recomputation_reuses_the_step_indices() {
    let ltd =
        RandomLtd::from_deepspeed_json(&config(3, &[1, 2], "decoder", "seq_batch_dim", 4, 16), 77)
            .unwrap();
    ltd.begin_step(2).unwrap();
    let layer = ltd.wrap(2, ()).unwrap();
    let h = tensor(&[16, 2, 4], 1, DType::F32);
    let run = || {
        layer
            .forward_with(&h, MaskArg::None, |_, x, _| x.exp())
            .unwrap()
    };
    let (a, b) = (run(), run());
    assert_same("recomputed output", &a, &b);
    let first = ltd.sampled_indices().unwrap();
    ltd.begin_step(3).unwrap();
    run();
    assert!(
        first
            .ne(&ltd.sampled_indices().unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<u8>()
            .unwrap()
            > 0,
        "a new step draws new indices"
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let ltd =
        RandomLtd::from_deepspeed_json(&config(3, &[1], "encoder", "batch_seq_dim", 4, 16), 1)
            .unwrap();
    let layer = ltd.wrap(1, ()).unwrap();
    let h = tensor(&[1, 16, 4], 1, DType::F32);
    let e = layer
        .forward_with(&h, MaskArg::None, |_, x, _| Ok(x.clone()))
        .unwrap_err();
    assert!(
        matches!(e, LtdCandleError::State(_)),
        "before begin_step: {e}"
    );
    ltd.begin_step(0).unwrap();
    let e = layer
        .forward_with(&h, MaskArg::Causal, |_, x, _| Ok(x.clone()))
        .unwrap_err();
    assert!(matches!(e, LtdCandleError::State(_)), "causal encoder: {e}");
    let e = layer
        .forward_with(&h, MaskArg::None, |_, x, _| x.narrow(1, 0, 1))
        .unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Shape {
                what: "layer output",
                ..
            }
        ),
        "{e}"
    );

    let idx = Tensor::new(&[[0u32, 3]], &Device::Cpu).unwrap();
    let e = gather_tokens(
        &h.to_dtype(DType::F64).unwrap(),
        &idx,
        HiddenOrder::BatchSeq,
    )
    .unwrap_err();
    assert!(matches!(e, LtdCandleError::Unsupported { .. }), "{e}");
    let e = gather_tokens(
        &h,
        &idx.to_dtype(DType::I64).unwrap(),
        HiddenOrder::BatchSeq,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Unsupported {
                what: "indices",
                ..
            }
        ),
        "{e}"
    );
    for bad in [[[3u32, 0]], [[2, 2]], [[0, 16]]] {
        let e = route(
            &h,
            &tensor(&[1, 2, 4], 2, DType::F32),
            &Tensor::new(&bad, &Device::Cpu).unwrap(),
            HiddenOrder::BatchSeq,
        )
        .unwrap_err();
        assert!(
            matches!(e, LtdCandleError::InvalidIndex { .. }),
            "{bad:?}: {e}"
        );
    }
    let e = scatter_tokens(
        &h,
        &tensor(&[1, 3, 4], 2, DType::F32),
        &idx,
        HiddenOrder::BatchSeq,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Shape {
                what: "layer output",
                ..
            }
        ),
        "{e}"
    );
    let e = sample_token_indices(0, 0, 1, 1, 8, 9, &Device::Cpu).unwrap_err();
    assert!(matches!(e, LtdCandleError::Core(_)), "r > S: {e}");
    let _ = Arc::clone(&ltd);
}
