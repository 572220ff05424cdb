//! The layer wrapper: its output and gradient against an oracle that computes the same routed
//! model directly (kept rows through the layer at their true positions and with the original
//! mask, dropped rows unchanged; no gather, no scatter), finite differences as a second check,
//! and the pass-through / selection / once-per-step rules.

mod common;

use common::Rng;
use ltd_core::*;

/// A tiny token-mixing layer that uses positions and masks:
/// `y[b,k,c] = tanh(w[c] x[b,k,c] + a * sum_{j allowed(k,j)} x[b,j,c] + 0.01 * pos(b,k))`.
/// Extra output: the positions it saw (tuple-like second output).
struct MixLayer {
    w: Vec<f32>,
    a: f32,
    calls: Vec<(usize, Vec<Vec<usize>>)>, // (layer_index, positions per batch row)
    fail: bool,
    wrong_shape: bool,
}

#[derive(Debug)]
struct LayerBroke;
impl std::fmt::Display for LayerBroke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("layer broke")
    }
}
impl std::error::Error for LayerBroke {}

fn allowed(mask: &LayerMask<'_, u8>, b: usize, k: usize, j: usize) -> bool {
    match mask {
        LayerMask::None => true,
        LayerMask::Causal => j <= k,
        LayerMask::Tensor(m) => {
            let row = if m.rows() == 1 { 0 } else { k };
            m.get(b, row, j).unwrap() != 0
        }
    }
}

impl MixLayer {
    fn new(c: usize, rng: &mut Rng) -> MixLayer {
        MixLayer {
            w: (0..c).map(|_| rng.unit()).collect(),
            a: 0.3,
            calls: vec![],
            fail: false,
            wrong_shape: false,
        }
    }

    /// Pre-activations and outputs, `[b][k][c]`.
    fn run(&self, input: &LayerInput<'_, f32, u8>) -> Vec<Vec<Vec<f32>>> {
        let l = input.hidden.layout();
        let (bn, n, c) = (l.batch(), l.seq(), l.channels());
        (0..bn)
            .map(|b| {
                (0..n)
                    .map(|k| {
                        (0..c)
                            .map(|ch| {
                                let x = |j: usize| input.hidden.row(b, j).unwrap()[ch];
                                let mixed: f32 = (0..n)
                                    .filter(|&j| allowed(&input.mask, b, k, j))
                                    .map(x)
                                    .sum();
                                let p = input.positions.position(b, k).unwrap() as f32;
                                (self.w[ch] * x(k) + self.a * mixed + 0.01 * p).tanh()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }
}

fn to_tensor(order: HiddenOrder, v: &[Vec<Vec<f32>>]) -> HiddenTensor<f32> {
    let (b, n, c) = (v.len(), v[0].len(), v[0][0].len());
    let mut t = HiddenTensor::zeros(order, b, n, c).unwrap();
    for (bb, rows) in v.iter().enumerate() {
        for (k, row) in rows.iter().enumerate() {
            let o = t.layout().offset(bb, k);
            t.as_mut_slice()[o..o + c].copy_from_slice(row);
        }
    }
    t
}

impl Layer<f32, u8> for MixLayer {
    type Extra = Vec<Vec<usize>>;
    type Error = LayerBroke;

    fn forward(
        &mut self,
        input: LayerInput<'_, f32, u8>,
    ) -> Result<LayerOutput<f32, Self::Extra>, LayerBroke> {
        if self.fail {
            return Err(LayerBroke);
        }
        let l = *input.hidden.layout();
        let positions: Vec<Vec<usize>> = (0..l.batch())
            .map(|b| {
                (0..l.seq())
                    .map(|k| input.positions.position(b, k).unwrap())
                    .collect()
            })
            .collect();
        self.calls.push((input.layer_index, positions.clone()));
        let mut y = self.run(&input);
        if self.wrong_shape {
            y.iter_mut().for_each(|rows| {
                rows.pop();
            });
        }
        Ok(LayerOutput {
            hidden: to_tensor(l.order(), &y),
            extra: positions,
        })
    }

    fn backward(
        &mut self,
        input: LayerInput<'_, f32, u8>,
        grad: HiddenView<'_, f32>,
    ) -> Result<HiddenTensor<f32>, LayerBroke> {
        let l = *input.hidden.layout();
        let (bn, n, c) = (l.batch(), l.seq(), l.channels());
        let y = self.run(&input);
        let gz: Vec<Vec<Vec<f32>>> = (0..bn)
            .map(|b| {
                (0..n)
                    .map(|k| {
                        (0..c)
                            .map(|ch| {
                                grad.row(b, k).unwrap()[ch] * (1.0 - y[b][k][ch] * y[b][k][ch])
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let gx: Vec<Vec<Vec<f32>>> = (0..bn)
            .map(|b| {
                (0..n)
                    .map(|j| {
                        (0..c)
                            .map(|ch| {
                                let mixed: f32 = (0..n)
                                    .filter(|&k| allowed(&input.mask, b, k, j))
                                    .map(|k| gz[b][k][ch])
                                    .sum();
                                self.w[ch] * gz[b][j][ch] + self.a * mixed
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Ok(to_tensor(l.order(), &gx))
    }
}

/// The model mask used by the oracle at true positions.
#[derive(Clone)]
enum OracleMask {
    None,
    Causal,
    Full(Vec<u8>),   // [B, S, S]
    KeyPad(Vec<u8>), // [B, S]
}

impl OracleMask {
    fn allows(&self, s: usize, b: usize, q: usize, k: usize) -> bool {
        match self {
            OracleMask::None => true,
            OracleMask::Causal => k <= q,
            OracleMask::Full(m) => m[(b * s + q) * s + k] != 0,
            OracleMask::KeyPad(m) => m[b * s + k] != 0,
        }
    }
    fn model_mask(&self, b: usize, s: usize) -> ModelMask<'_, u8> {
        match self {
            OracleMask::None => ModelMask::None,
            OracleMask::Causal => ModelMask::Causal,
            OracleMask::Full(m) => ModelMask::Tensor(MaskView::new(m, b, s, s).unwrap()),
            OracleMask::KeyPad(m) => ModelMask::Tensor(MaskView::new(m, b, 1, s).unwrap()),
        }
    }
}

/// The routed model computed directly in f64: `(y, grad_h)` for loss `sum(gy * y)`.
#[allow(clippy::too_many_arguments)]
fn oracle(
    layer: &MixLayer,
    order: HiddenOrder,
    b: usize,
    s: usize,
    c: usize,
    h: &[f32],
    gy: &[f32],
    kept: &[Vec<i32>],
    mask: &OracleMask,
) -> (Vec<f64>, Vec<f64>) {
    let at = |bb: usize, ss: usize, ch: usize| match order {
        HiddenOrder::BatchSeq => (bb * s + ss) * c + ch,
        HiddenOrder::SeqBatch => (ss * b + bb) * c + ch,
    };
    let mut y: Vec<f64> = h.iter().map(|&x| x as f64).collect();
    let mut gh: Vec<f64> = gy.iter().map(|&x| x as f64).collect();
    for bb in 0..b {
        let pos: Vec<usize> = kept[bb].iter().map(|&p| p as usize).collect();
        let mut gz = vec![vec![0.0f64; c]; pos.len()];
        for (ki, &q) in pos.iter().enumerate() {
            for ch in 0..c {
                let mixed: f64 = pos
                    .iter()
                    .filter(|&&kp| mask.allows(s, bb, q, kp))
                    .map(|&kp| h[at(bb, kp, ch)] as f64)
                    .sum();
                let z = layer.w[ch] as f64 * h[at(bb, q, ch)] as f64
                    + layer.a as f64 * mixed
                    + 0.01 * q as f64;
                let out = z.tanh();
                y[at(bb, q, ch)] = out;
                gz[ki][ch] = gy[at(bb, q, ch)] as f64 * (1.0 - out * out);
            }
        }
        for (ji, &kp) in pos.iter().enumerate() {
            for ch in 0..c {
                let mixed: f64 = pos
                    .iter()
                    .enumerate()
                    .filter(|&(_, &q)| mask.allows(s, bb, q, kp))
                    .map(|(ki, _)| gz[ki][ch])
                    .sum();
                gh[at(bb, kp, ch)] = layer.w[ch] as f64 * gz[ji][ch] + layer.a as f64 * mixed;
            }
        }
    }
    (y, gh)
}

fn masks(rng: &mut Rng, b: usize, s: usize) -> Vec<(ModelKind, OracleMask)> {
    // Causal + padding + two documents per row.
    let mut full = vec![0u8; b * s * s];
    for bb in 0..b {
        let pad_from = s - bb; // row bb has bb padded positions at the end
        let doc_split = 1 + rng.below(s - 1);
        for q in 0..s {
            for k in 0..=q {
                full[(bb * s + q) * s + k] =
                    u8::from(k < pad_from && (q < doc_split) == (k < doc_split));
            }
        }
    }
    let keypad: Vec<u8> = (0..b * s).map(|_| u8::from(rng.below(4) != 0)).collect();
    let bidir: Vec<u8> = (0..b * s * s)
        .map(|_| u8::from(rng.below(3) != 0))
        .collect();
    vec![
        (ModelKind::Decoder, OracleMask::None),
        (ModelKind::Decoder, OracleMask::Causal),
        (ModelKind::Decoder, OracleMask::Full(full)),
        (ModelKind::Encoder, OracleMask::KeyPad(keypad)),
        (ModelKind::Encoder, OracleMask::Full(bidir)),
    ]
}

#[test]
fn routed_output_and_gradient_match_the_direct_oracle() {
    let mut rng = Rng(3);
    let (b, s, c, r) = (3, 11, 4, 6);
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        for (kind, mask) in masks(&mut rng, b, s) {
            let h: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
            let gy: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
            let hidden = HiddenView::new(&h, order, b, s, c).unwrap();
            let grad_y = HiddenView::new(&gy, order, b, s, c).unwrap();
            let mut layer = MixLayer::new(c, &mut rng);
            let mut router = TokenDropRouter::<u8>::new(RouterConfig {
                seed: 11,
                ltd_layers: vec![2, 5],
                order,
                kind,
            })
            .unwrap();
            for step in [0u64, 1] {
                let out = router
                    .forward(5, step, r, &mut layer, hidden, mask.model_mask(b, s))
                    .unwrap();
                let idx = router.sampled_indices().unwrap().layer(1).unwrap();
                let kept: Vec<Vec<i32>> = (0..b).map(|bb| idx.row(bb).unwrap().to_vec()).collect();
                // The layer saw the true positions, and they are returned as its extra output.
                assert_eq!(
                    out.extra,
                    kept.iter()
                        .map(|row| row.iter().map(|&p| p as usize).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                );
                let (want_y, want_gh) = oracle(&layer, order, b, s, c, &h, &gy, &kept, &mask);
                for (i, (&got, &want)) in out.hidden.as_slice().iter().zip(&want_y).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-5,
                        "{order:?} {kind:?} y[{i}] = {got}, oracle {want}"
                    );
                }
                let gh = router
                    .backward(
                        5,
                        step,
                        r,
                        &mut layer,
                        hidden,
                        mask.model_mask(b, s),
                        grad_y,
                    )
                    .unwrap();
                for (i, (&got, &want)) in gh.as_slice().iter().zip(&want_gh).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-5,
                        "{order:?} {kind:?} grad_h[{i}] = {got}, oracle {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let mut rng = Rng(8);
    let (b, s, c, r) = (2, 7, 3, 4);
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let mut h: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
        let gy: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
        let mut layer = MixLayer::new(c, &mut rng);
        let mut router = TokenDropRouter::<u8>::new(RouterConfig {
            seed: 1,
            ltd_layers: vec![0],
            order,
            kind: ModelKind::Decoder,
        })
        .unwrap();
        let loss = |router: &mut TokenDropRouter<u8>, layer: &mut MixLayer, h: &[f32]| -> f64 {
            let y = router
                .forward(
                    0,
                    4,
                    r,
                    layer,
                    HiddenView::new(h, order, b, s, c).unwrap(),
                    ModelMask::Causal,
                )
                .unwrap();
            y.hidden
                .as_slice()
                .iter()
                .zip(&gy)
                .map(|(&a, &g)| a as f64 * g as f64)
                .sum()
        };
        let gh = router
            .backward(
                0,
                4,
                r,
                &mut layer,
                HiddenView::new(&h, order, b, s, c).unwrap(),
                ModelMask::Causal,
                HiddenView::new(&gy, order, b, s, c).unwrap(),
            )
            .unwrap();
        let eps = 1e-2f32;
        for i in 0..h.len() {
            let x = h[i];
            h[i] = x + eps;
            let up = loss(&mut router, &mut layer, &h);
            h[i] = x - eps;
            let down = loss(&mut router, &mut layer, &h);
            h[i] = x;
            let fd = (up - down) / (2.0 * eps as f64);
            let an = gh.as_slice()[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-3 * (1.0 + an.abs()),
                "{order:?} element {i}: finite difference {fd}, backward {an}"
            );
        }
    }
}

#[test]
fn pass_through_in_eval_mode_for_r_at_least_s_and_for_other_layers() {
    let mut rng = Rng(1);
    let (b, s, c) = (2, 6, 2);
    let h: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
    let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, b, s, c).unwrap();
    let mut layer = MixLayer::new(c, &mut rng);
    let direct = {
        let input = LayerInput {
            hidden,
            positions: TokenPositions::All { seq: s },
            mask: LayerMask::Causal,
            layer_index: 0,
        };
        to_tensor(HiddenOrder::BatchSeq, &layer.run(&input))
    };
    // Layers 1 and 10 drop; 0, 11 and 100 do not (exact index, not a substring).
    let cfg = RouterConfig {
        seed: 0,
        ltd_layers: vec![10, 1],
        order: HiddenOrder::BatchSeq,
        kind: ModelKind::Decoder,
    };
    let mut router = TokenDropRouter::<u8>::new(cfg).unwrap();
    for layer_index in [0, 11, 100] {
        let y = router
            .forward(layer_index, 0, 3, &mut layer, hidden, ModelMask::Causal)
            .unwrap();
        assert_eq!(y.hidden, direct, "layer {layer_index}");
        assert_eq!(y.extra[0], (0..s).collect::<Vec<_>>());
    }
    assert!(
        router.sampled_indices().is_none(),
        "no sampling for pass-through calls"
    );
    // r >= S.
    for r in [s, s + 5] {
        assert_eq!(
            router
                .forward(1, 0, r, &mut layer, hidden, ModelMask::Causal)
                .unwrap()
                .hidden,
            direct
        );
    }
    // Eval mode.
    router.set_training(false);
    assert_eq!(
        router
            .forward(1, 0, 3, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .hidden,
        direct
    );
    router.set_training(true);
    assert_ne!(
        router
            .forward(1, 0, 3, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .hidden,
        direct
    );
    // Pass-through backward is the layer's own backward on all tokens.
    let gy = vec![1.0f32; b * s * c];
    let g = HiddenView::new(&gy, HiddenOrder::BatchSeq, b, s, c).unwrap();
    let via_router = router
        .backward(0, 0, 3, &mut layer, hidden, ModelMask::Causal, g)
        .unwrap();
    let input = LayerInput {
        hidden,
        positions: TokenPositions::All { seq: s },
        mask: LayerMask::Causal,
        layer_index: 0,
    };
    assert_eq!(via_router, layer.backward(input, g).unwrap());
}

#[test]
fn indices_are_sampled_once_per_step_for_all_layers_and_reused() {
    let mut rng = Rng(2);
    let (b, s, c, r) = (3, 16, 2, 5);
    let h: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
    let hidden = HiddenView::new(&h, HiddenOrder::SeqBatch, b, s, c).unwrap();
    let mut layer = MixLayer::new(c, &mut rng);
    let cfg = RouterConfig {
        seed: 99,
        ltd_layers: vec![3, 7, 4],
        order: HiddenOrder::SeqBatch,
        kind: ModelKind::Decoder,
    };
    let mut router = TokenDropRouter::<u8>::new(cfg).unwrap();
    // A pipeline stage that only holds layer 7 can start there: no need for LTD layer 0 first.
    let first = router
        .forward(7, 42, r, &mut layer, hidden, ModelMask::Causal)
        .unwrap()
        .extra;
    let all = TokenSampler::new(99).sample(42, 3, b, s, r).unwrap();
    assert_eq!(router.sampled_indices(), Some(&all));
    for (id, layer_index) in [(0, 3), (1, 4), (2, 7)] {
        let seen = router
            .forward(layer_index, 42, r, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .extra;
        let want: Vec<Vec<usize>> = (0..b)
            .map(|bb| {
                all.layer(id)
                    .unwrap()
                    .row(bb)
                    .unwrap()
                    .iter()
                    .map(|&p| p as usize)
                    .collect()
            })
            .collect();
        assert_eq!(seen, want, "layer {layer_index}");
    }
    // Recomputation of layer 7 (activation checkpointing) and its backward see the same positions.
    assert_eq!(
        router
            .forward(7, 42, r, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .extra,
        first
    );
    // A new router (another process, a restart) gets the same indices for the same step.
    let mut other = TokenDropRouter::<u8>::new(RouterConfig {
        seed: 99,
        ltd_layers: vec![3, 4, 7],
        order: HiddenOrder::SeqBatch,
        kind: ModelKind::Decoder,
    })
    .unwrap();
    assert_eq!(
        other
            .forward(7, 42, r, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .extra,
        first
    );
    // The next step samples anew.
    assert_ne!(
        router
            .forward(7, 43, r, &mut layer, hidden, ModelMask::Causal)
            .unwrap()
            .extra,
        first
    );
}

#[test]
fn layer_errors_wrong_outputs_and_wrong_orders_are_errors() {
    let mut rng = Rng(4);
    let (b, s, c) = (1, 6, 2);
    let h: Vec<f32> = (0..b * s * c).map(|_| rng.unit()).collect();
    let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, b, s, c).unwrap();
    let cfg = RouterConfig {
        seed: 0,
        ltd_layers: vec![0],
        order: HiddenOrder::BatchSeq,
        kind: ModelKind::Decoder,
    };
    let mut router = TokenDropRouter::<u8>::new(cfg).unwrap();
    let mut layer = MixLayer::new(c, &mut rng);
    layer.fail = true;
    let e = router
        .forward(0, 0, 3, &mut layer, hidden, ModelMask::None)
        .unwrap_err();
    assert_eq!(e.to_string(), "layer 0 failed in forward: layer broke");
    assert!(std::error::Error::source(&e).is_some());
    layer.fail = false;
    layer.wrong_shape = true;
    let e = router
        .forward(0, 0, 3, &mut layer, hidden, ModelMask::None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::ShapeMismatch {
                what: "layer output",
                ..
            }
        ),
        "{e}"
    );
    layer.wrong_shape = false;
    let t = HiddenView::new(&h, HiddenOrder::SeqBatch, b, s, c).unwrap();
    assert!(matches!(
        router.forward(0, 0, 3, &mut layer, t, ModelMask::None),
        Err(CoreError::ShapeMismatch { .. })
    ));
    let g = HiddenView::new(&h[..10], HiddenOrder::BatchSeq, b, 5, c).unwrap();
    assert!(matches!(
        router.backward(0, 0, 3, &mut layer, hidden, ModelMask::None, g),
        Err(CoreError::ShapeMismatch { .. })
    ));
}
