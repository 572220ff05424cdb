//! `docs/design.md`, "Bad input and failure": every bad input a caller can construct is a typed
//! error, never a panic.

use half::{bf16, f16};
use ltd_core::*;

const BS: HiddenOrder = HiddenOrder::BatchSeq;
const SB: HiddenOrder = HiddenOrder::SeqBatch;

fn invalid_size(e: CoreError, name: &str) {
    match &e {
        CoreError::InvalidSize { what, .. } => assert!(what.contains(name), "{e}"),
        _ => panic!("expected InvalidSize({name}), got {e:?}"),
    }
}

fn shape_mismatch(e: CoreError, name: &str) {
    match &e {
        CoreError::ShapeMismatch { what, .. } => assert!(what.contains(name), "{e}"),
        _ => panic!("expected ShapeMismatch({name}), got {e:?}"),
    }
}

fn invalid_index(e: CoreError, reason_part: &str) {
    match &e {
        CoreError::InvalidIndex { reason, .. } => assert!(reason.contains(reason_part), "{e}"),
        _ => panic!("expected InvalidIndex({reason_part}), got {e:?}"),
    }
}

#[test]
fn reserved_length_zero_or_above_s() {
    let h = [0.0f32; 8];
    let hidden = HiddenView::new(&h, BS, 1, 4, 2).unwrap();
    let mut out = [0.0f32; 10];
    // r = 0.
    let e = gather(
        &hidden,
        &IndexView::new(&[], 1, 0).unwrap(),
        &mut HiddenViewMut::new(&mut out, BS, 1, 0, 2).unwrap(),
    )
    .unwrap_err();
    invalid_size(e, "r");
    // r = 5 > S = 4.
    let idx = [0, 1, 2, 3, 3];
    let e = gather(
        &hidden,
        &IndexView::new(&idx, 1, 5).unwrap(),
        &mut HiddenViewMut::new(&mut out, BS, 1, 5, 2).unwrap(),
    )
    .unwrap_err();
    invalid_size(e, "r");
    assert_eq!(
        gather_tensor(&hidden, &IndexView::new(&idx, 1, 5).unwrap())
            .unwrap_err()
            .to_string(),
        "r (reserved length) = 5 is invalid: expected 1 <= r <= S = 4"
    );
    let e = route_tensor(&hidden, &hidden, &IndexView::new(&[], 1, 0).unwrap()).unwrap_err();
    invalid_size(e, "r");
    // Samplers.
    invalid_size(TokenSampler::new(0).sample(0, 1, 1, 4, 0).unwrap_err(), "r");
    invalid_size(TokenSampler::new(0).sample(0, 1, 1, 4, 5).unwrap_err(), "r");
    // Mask gathers.
    let m = [0u8; 16];
    let mask = MaskView::new(&m, 1, 4, 4).unwrap();
    invalid_size(
        gather_masks(&mask, &LayerIndicesView::new(&[], 1, 1, 0).unwrap()).unwrap_err(),
        "r",
    );
    invalid_size(
        gather_masks(
            &mask,
            &LayerIndicesView::new(&[0, 1, 2, 3, 0], 1, 1, 5).unwrap(),
        )
        .unwrap_err(),
        "r",
    );
}

#[test]
fn empty_sequence_batch_channels_or_layers() {
    let h: [f32; 0] = [];
    let mut out = [0.0f32; 4];
    // S = 0.
    let e = gather(
        &HiddenView::new(&h, BS, 1, 0, 2).unwrap(),
        &IndexView::new(&[0], 1, 1).unwrap(),
        &mut HiddenViewMut::new(&mut out, BS, 1, 1, 2).unwrap(),
    )
    .unwrap_err();
    invalid_size(e, "S");
    // B = 0.
    let e = gather(
        &HiddenView::new(&h, SB, 0, 4, 2).unwrap(),
        &IndexView::new(&[], 0, 1).unwrap(),
        &mut HiddenViewMut::new(&mut out, SB, 0, 1, 2).unwrap(),
    )
    .unwrap_err();
    invalid_size(e, "B");
    // C = 0.
    let e = route_tensor(
        &HiddenView::new(&h, BS, 1, 4, 0).unwrap(),
        &HiddenView::new(&h, BS, 1, 1, 0).unwrap(),
        &IndexView::new(&[0], 1, 1).unwrap(),
    )
    .unwrap_err();
    invalid_size(e, "C");
    // Samplers: L, B, S = 0 and S beyond i32 positions (refused before any allocation).
    invalid_size(TokenSampler::new(0).sample(0, 0, 1, 4, 1).unwrap_err(), "L");
    invalid_size(TokenSampler::new(0).sample(0, 1, 0, 4, 1).unwrap_err(), "B");
    invalid_size(TokenSampler::new(0).sample(0, 1, 1, 0, 1).unwrap_err(), "S");
    invalid_size(
        TokenSampler::new(0)
            .sample(0, 1, 1, MAX_SEQ_LEN + 1, 1)
            .unwrap_err(),
        "S",
    );
    // Mask gathers with B = 0 / L = 0.
    let m = [0u8; 4];
    invalid_size(
        gather_masks(
            &MaskView::new(&m, 0, 2, 2).unwrap(),
            &LayerIndicesView::new(&[], 1, 0, 1).unwrap(),
        )
        .unwrap_err(),
        "B",
    );
    invalid_size(
        gather_masks(
            &MaskView::new(&m, 1, 2, 2).unwrap(),
            &LayerIndicesView::new(&[], 0, 1, 1).unwrap(),
        )
        .unwrap_err(),
        "L",
    );
}

#[test]
fn bad_indices_given_to_scatter_route_and_backward() {
    let h = [0.0f32; 10];
    let hidden = HiddenView::new(&h, BS, 1, 5, 2).unwrap();
    let part = HiddenView::new(&h[..6], BS, 1, 3, 2).unwrap();
    let mut y = [0.0f32; 10];
    let mut gp = [0.0f32; 6];
    for (idx, reason) in [
        ([0, 2, 1], "ascending"),
        ([0, 2, 2], "duplicate"),
        ([0, 2, 5], "[0, S = 5)"),
        ([-1, 0, 1], "[0, S = 5)"),
    ] {
        let iv = IndexView::new(&idx, 1, 3).unwrap();
        invalid_index(
            scatter(
                &hidden,
                &part,
                &iv,
                &mut HiddenViewMut::new(&mut y, BS, 1, 5, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            route(
                &hidden,
                &part,
                &iv,
                &mut HiddenViewMut::new(&mut y, BS, 1, 5, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            scatter_in_place(
                &mut HiddenViewMut::new(&mut y, BS, 1, 5, 2).unwrap(),
                &part,
                &iv,
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            gather_backward(
                &hidden,
                &part,
                &iv,
                &mut HiddenViewMut::new(&mut y, BS, 1, 5, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            scatter_backward(
                &hidden,
                &iv,
                &mut HiddenViewMut::new(&mut gp, BS, 1, 3, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            route_backward_to_layer(
                &hidden,
                &iv,
                &mut HiddenViewMut::new(&mut gp, BS, 1, 3, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
        invalid_index(
            route_backward_to_hidden(
                &hidden,
                &part,
                &iv,
                &mut HiddenViewMut::new(&mut y, BS, 1, 5, 2).unwrap(),
            )
            .unwrap_err(),
            reason,
        );
    }
    // The message names the place and the rule.
    let e = route_tensor(&hidden, &part, &IndexView::new(&[0, 2, 2], 1, 3).unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "indices[0, 0, 2] = 2 is invalid: duplicate of the previous position 2; expected distinct, strictly ascending positions"
    );
    // The layer of an [L, B, r] view is named.
    let all = [0, 1, 2, 0, 9, 1];
    let e = gather_tensor(
        &hidden,
        &LayerIndicesView::new(&all, 2, 1, 3)
            .unwrap()
            .layer(1)
            .unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::InvalidIndex {
                layer: 1,
                row: 0,
                pos: 1,
                value: 9,
                ..
            }
        ),
        "{e}"
    );
    // Gathers accept repeats and any order, but not out-of-range positions.
    assert!(gather_tensor(&hidden, &IndexView::new(&[4, 0, 4], 1, 3).unwrap()).is_ok());
    invalid_index(
        gather_tensor(&hidden, &IndexView::new(&[0, 5, 1], 1, 3).unwrap()).unwrap_err(),
        "[0, S = 5)",
    );
    // Masks too.
    let m = [0u8; 25];
    let mut out = [0u8; 4];
    invalid_index(
        gather_mask(
            &MaskView::new(&m, 1, 5, 5).unwrap(),
            &IndexView::new(&[0, 7], 1, 2).unwrap(),
            &mut out,
        )
        .unwrap_err(),
        "[0, S = 5)",
    );
}

#[test]
fn shape_mismatches() {
    let h = [0.0f32; 24];
    let hidden = HiddenView::new(&h, BS, 2, 4, 3).unwrap(); // [B=2, S=4, C=3]
    let idx = [0, 1, 2, 3];
    let iv = IndexView::new(&idx, 2, 2).unwrap();
    let mut buf = [0.0f32; 24];
    // Output with the wrong r, the wrong C, the wrong order.
    shape_mismatch(
        gather(
            &hidden,
            &iv,
            &mut HiddenViewMut::new(&mut buf, BS, 2, 3, 3).unwrap(),
        )
        .unwrap_err(),
        "output",
    );
    shape_mismatch(
        gather(
            &hidden,
            &iv,
            &mut HiddenViewMut::new(&mut buf, BS, 2, 2, 2).unwrap(),
        )
        .unwrap_err(),
        "output",
    );
    let e = gather(
        &hidden,
        &iv,
        &mut HiddenViewMut::new(&mut buf, SB, 2, 2, 3).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "output has shape [2, 2, 3], expected [B=2, r=2, C=3]"
    );
    // Indices for another batch size.
    shape_mismatch(
        gather_tensor(&hidden, &IndexView::new(&idx, 1, 2).unwrap()).unwrap_err(),
        "indices",
    );
    // Layer output / part of the wrong shape, output of the wrong shape.
    let part = HiddenView::new(&h[..9], BS, 1, 3, 3).unwrap();
    shape_mismatch(
        route_tensor(&hidden, &part, &iv).unwrap_err(),
        "layer output",
    );
    let good_part = HiddenView::new(&h[..12], BS, 2, 2, 3).unwrap();
    shape_mismatch(
        scatter(
            &hidden,
            &good_part,
            &iv,
            &mut HiddenViewMut::new(&mut buf, BS, 2, 3, 3).unwrap(),
        )
        .unwrap_err(),
        "output",
    );
    shape_mismatch(
        gather_backward(
            &hidden,
            &part,
            &iv,
            &mut HiddenViewMut::new(&mut buf, BS, 2, 4, 3).unwrap(),
        )
        .unwrap_err(),
        "part",
    );
    // Sampler output of the wrong length.
    shape_mismatch(
        TokenSampler::new(0)
            .sample_into(0, 1, 1, 4, 2, &mut [0; 3])
            .unwrap_err(),
        "sampler output",
    );
    // Buffers that do not cover their shape and strides; overlapping outputs.
    assert!(matches!(
        HiddenView::new(&h, BS, 2, 4, 4),
        Err(CoreError::BufferTooSmall {
            got: 24,
            needed: 32,
            ..
        })
    ));
    assert!(matches!(
        IndexView::new(&idx, 3, 2),
        Err(CoreError::BufferTooSmall { .. })
    ));
    let overlapping = HiddenLayout::strided(BS, 2, 4, 3, 3, 3).unwrap();
    assert!(matches!(
        HiddenViewMut::strided(&mut buf, overlapping),
        Err(CoreError::OverlappingRows { .. })
    ));
    assert!(matches!(
        HiddenTensor::from_vec(vec![0.0f32; 5], BS, 1, 2, 3),
        Err(CoreError::ShapeMismatch { .. })
    ));
}

#[test]
fn wrong_mask_shapes() {
    let m = [0u8; 48];
    let idx = [0, 1, 1, 2];
    let all = LayerIndicesView::new(&idx, 1, 2, 2).unwrap();
    // Rows neither S nor 1.
    shape_mismatch(
        gather_masks(&MaskView::new(&m, 2, 3, 4).unwrap(), &all).unwrap_err(),
        "mask",
    );
    // Batch different from the indices'.
    shape_mismatch(
        gather_masks(&MaskView::new(&m, 3, 4, 4).unwrap(), &all).unwrap_err(),
        "mask",
    );
    // Wrong output length.
    let mut out = [0u8; 7];
    shape_mismatch(
        gather_masks_into(&MaskView::new(&m, 2, 4, 4).unwrap(), &all, &mut out).unwrap_err(),
        "mask output",
    );
    shape_mismatch(
        gather_mask(
            &MaskView::new(&m, 2, 1, 4).unwrap(),
            &all.layer(0).unwrap(),
            &mut out,
        )
        .unwrap_err(),
        "mask output",
    );
    // Sampler masks whose S is not the sampled S.
    let mask = MaskView::new(&m, 1, 4, 4).unwrap();
    let e = TokenSampler::new(0)
        .sample_encoder(0, 1, 1, 6, 2, &mask)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "mask has shape [1, 1, 4, 4], expected [B, 1, S=6, S=6] or [B, 1, 1, S=6]"
    );
    shape_mismatch(
        TokenSampler::new(0)
            .sample_decoder(0, 1, 1, 6, 2, &DecoderMask::Tensor(mask))
            .unwrap_err(),
        "mask",
    );
    // Sampler mask with a batch that is not the sampled batch.
    shape_mismatch(
        TokenSampler::new(0)
            .sample_encoder(0, 1, 2, 4, 2, &mask)
            .unwrap_err(),
        "mask",
    );
    // Mask buffers too short.
    assert!(matches!(
        MaskView::new(&m, 4, 4, 4),
        Err(CoreError::BufferTooSmall { .. })
    ));
}

#[test]
fn dtype_mismatches() {
    let h32 = [0.0f32; 8];
    let h16 = [f16::ZERO; 8];
    let mut o32 = [0.0f32; 8];
    let mut obf = [bf16::ZERO; 8];
    let idx = [1, 2];
    let iv = IndexView::new(&idx, 1, 2).unwrap();
    let e = gather_any(
        HiddenView::new(&h32, BS, 1, 4, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut obf, BS, 1, 2, 2).unwrap().into(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "output has dtype bf16, expected f32 (the dtype of the hidden states)"
    );
    let e = route_any(
        HiddenView::new(&h32, BS, 1, 4, 2).unwrap().into(),
        HiddenView::new(&h16[..4], BS, 1, 2, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut o32, BS, 1, 4, 2).unwrap().into(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::DTypeMismatch {
                what: "layer output",
                got: DType::F16,
                expected: DType::F32
            }
        ),
        "{e}"
    );
    let e = route_any(
        HiddenView::new(&h16, BS, 1, 4, 2).unwrap().into(),
        HiddenView::new(&h16[..4], BS, 1, 2, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut o32, BS, 1, 4, 2).unwrap().into(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::DTypeMismatch {
                what: "output",
                got: DType::F32,
                expected: DType::F16
            }
        ),
        "{e}"
    );
    let e = scatter_backward_any(
        HiddenView::new(&h16, BS, 1, 4, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut obf[..4], BS, 1, 2, 2)
            .unwrap()
            .into(),
    )
    .unwrap_err();
    assert!(matches!(e, CoreError::DTypeMismatch { .. }), "{e}");
    let e = gather_backward_any(
        HiddenView::new(&h16, BS, 1, 4, 2).unwrap().into(),
        HiddenView::new(&h32[..4], BS, 1, 2, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut obf, BS, 1, 4, 2).unwrap().into(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::DTypeMismatch {
                what: "gradient of the part",
                ..
            }
        ),
        "{e}"
    );
    // Matching dtypes work through the same entry points.
    gather_any(
        HiddenView::new(&h32, BS, 1, 4, 2).unwrap().into(),
        &iv,
        HiddenViewMut::new(&mut o32[..4], BS, 1, 2, 2)
            .unwrap()
            .into(),
    )
    .unwrap();
}

#[test]
fn router_configuration_and_masks() {
    let base = RouterConfig {
        seed: 0,
        ltd_layers: vec![1, 2],
        order: BS,
        kind: ModelKind::Encoder,
    };
    assert!(matches!(
        TokenDropRouter::<u8>::new(RouterConfig {
            ltd_layers: vec![],
            ..base.clone()
        }),
        Err(CoreError::InvalidArgument { .. })
    ));
    let e = TokenDropRouter::<u8>::new(RouterConfig {
        ltd_layers: vec![3, 1, 3],
        ..base.clone()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ltd_layers: got [3, 1, 3] (layer 3 twice), expected distinct model layer indices"
    );
    let mut router = TokenDropRouter::<u8>::new(base).unwrap();
    assert!(matches!(
        router.prepare_step(0, 1, 8, 4, ModelMask::Causal),
        Err(CoreError::InvalidArgument { .. })
    ));
    invalid_size(
        router
            .prepare_step(0, 1, 8, 0, ModelMask::None)
            .unwrap_err(),
        "r",
    );
}
