//! Mask gathers against `ltd-reference`: decoder masks at the kept positions (one layer, and all
//! layers), encoder masks in both forms for all layers; every mask element type; strided and
//! broadcast masks; outputs poisoned before each call.

mod common;

use common::Rng;
use half::{bf16, f16};
use ltd_core::*;
use ltd_reference::EncoderMaskForm;
use proptest::prelude::*;

/// Mask element types with a value that never comes out of the gathers (the poison) and a way to
/// make random values.
trait TestMask: MaskElement {
    fn poison() -> Self;
    fn random(rng: &mut Rng) -> Self;
}
impl TestMask for bool {
    fn poison() -> Self {
        false
    }
    fn random(_: &mut Rng) -> Self {
        true // with a `false` poison: every output element must be written to be true
    }
}
impl TestMask for u8 {
    fn poison() -> Self {
        255
    }
    fn random(rng: &mut Rng) -> Self {
        rng.below(255) as u8
    }
}
impl TestMask for f32 {
    fn poison() -> Self {
        f32::NAN
    }
    fn random(rng: &mut Rng) -> Self {
        if rng.below(3) == 0 {
            f32::NEG_INFINITY
        } else {
            rng.unit()
        }
    }
}
impl TestMask for f16 {
    fn poison() -> Self {
        f16::NAN
    }
    fn random(rng: &mut Rng) -> Self {
        if rng.below(3) == 0 {
            f16::NEG_INFINITY
        } else {
            f16::from_f32(rng.unit())
        }
    }
}
impl TestMask for bf16 {
    fn poison() -> Self {
        bf16::NAN
    }
    fn random(rng: &mut Rng) -> Self {
        if rng.below(3) == 0 {
            bf16::NEG_INFINITY
        } else {
            bf16::from_f32(rng.unit())
        }
    }
}

/// A `[B,1,rows,S]` mask stored with padding (or a zero batch stride), and its contiguous copy.
fn strided_mask<M: TestMask>(
    rng: &mut Rng,
    b: usize,
    rows: usize,
    s: usize,
    kind: usize,
) -> (Vec<M>, usize, usize, Vec<M>) {
    let (batch_stride, row_stride) = match kind % 3 {
        0 => (rows * s, s),
        1 => (rows * (s + 2) + 1, s + 2),
        _ => (0, s), // one mask broadcast over the batch
    };
    let len = if b == 0 {
        0
    } else {
        (b - 1) * batch_stride + (rows - 1) * row_stride + s
    };
    let buf: Vec<M> = (0..len).map(|_| M::random(rng)).collect();
    let mut dense = Vec::with_capacity(b * rows * s);
    for bb in 0..b {
        for i in 0..rows {
            let o = bb * batch_stride + i * row_stride;
            dense.extend_from_slice(&buf[o..o + s]);
        }
    }
    (buf, batch_stride, row_stride, dense)
}

fn same<M: TestMask>(a: &[M], b: &[M]) -> bool {
    // Compare through Debug: -inf equals -inf, and the poison (NaN, 255, false) never matches.
    let poison = format!("{:?}", M::poison());
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (fx, fy) = (format!("{x:?}"), format!("{y:?}"));
            fx == fy && fx != poison
        })
}

fn check_masks<M: TestMask>(
    l: usize,
    b: usize,
    s: usize,
    r: usize,
    kind: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let idx: Vec<i32> = (0..l)
        .flat_map(|_| {
            if seed.is_multiple_of(2) {
                rng.sorted_indices(b, s, r)
            } else {
                rng.any_indices(b, s, r)
            }
        })
        .collect();
    let all = LayerIndicesView::new(&idx, l, b, r).unwrap();

    // Full [B,1,S,S] masks: decoder (per layer and all layers) and encoder.
    let (buf, bs, rs, dense) = strided_mask::<M>(&mut rng, b, s, s, kind);
    let mask = MaskView::strided(&buf, b, s, s, bs, rs).unwrap();
    let want_all =
        ltd_reference::encoder_mask_gather(&dense, EncoderMaskForm::Full, &idx, l, b, r, s)
            .unwrap();
    let mut out = vec![M::poison(); l * b * r * r];
    gather_masks_into(&mask, &all, &mut out).unwrap();
    prop_assert!(same(&out, &want_all), "full mask gather_masks_into");
    let t = gather_masks(&mask, &all).unwrap();
    prop_assert_eq!(t.shape(), [l, b, 1, r, r]);
    prop_assert!(same(t.as_slice(), &want_all));
    let GatheredDecoderMask::Tensor(d) =
        gather_decoder_masks(&DecoderMask::Tensor(mask), &all).unwrap()
    else {
        return Err(TestCaseError::fail("tensor in, tensor out"));
    };
    prop_assert!(same(d.as_slice(), &want_all));
    for layer in 0..l {
        let li = all.layer(layer).unwrap();
        let want = ltd_reference::decoder_mask_gather(
            &dense,
            &idx[layer * b * r..(layer + 1) * b * r],
            b,
            r,
            s,
        )
        .unwrap();
        let mut out = vec![M::poison(); b * r * r];
        gather_mask(&mask, &li, &mut out).unwrap();
        prop_assert!(same(&out, &want), "decoder mask layer {}", layer);
        let per_layer = d.layer(layer).unwrap();
        for bb in 0..b {
            for i in 0..r {
                for j in 0..r {
                    prop_assert_eq!(
                        format!("{:?}", per_layer.get(bb, i, j).unwrap()),
                        format!("{:?}", want[(bb * r + i) * r + j])
                    );
                }
            }
        }
    }

    // Key-padding [B,1,1,S] masks.
    let (buf, bs, rs, dense) = strided_mask::<M>(&mut rng, b, 1, s, kind + 1);
    let mask = MaskView::strided(&buf, b, 1, s, bs, rs).unwrap();
    let want =
        ltd_reference::encoder_mask_gather(&dense, EncoderMaskForm::KeyPadding, &idx, l, b, r, s)
            .unwrap();
    let mut out = vec![M::poison(); l * b * r];
    gather_masks_into(&mask, &all, &mut out).unwrap();
    prop_assert!(same(&out, &want), "key padding gather");
    let t = gather_masks(&mask, &all).unwrap();
    prop_assert_eq!(t.shape(), [l, b, 1, if s == 1 { r } else { 1 }, r]);
    prop_assert!(same(t.as_slice(), &want));
    Ok(())
}

fn check_all_types(
    l: usize,
    b: usize,
    s: usize,
    r: usize,
    kind: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    check_masks::<bool>(l, b, s, r, kind, seed)?;
    check_masks::<u8>(l, b, s, r, kind, seed)?;
    check_masks::<f32>(l, b, s, r, kind, seed)?;
    check_masks::<f16>(l, b, s, r, kind, seed)?;
    check_masks::<bf16>(l, b, s, r, kind, seed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mask_gathers_match_reference(
        l in 1usize..4,
        b in 1usize..4,
        s in 1usize..20,
        r_frac in 0.0f64..=1.0,
        kind in 0usize..3,
        seed in any::<u64>(),
    ) {
        let r = 1 + ((s - 1) as f64 * r_frac).round() as usize;
        check_all_types(l, b, s, r, kind, seed)?;
    }
}

#[test]
fn large_mask_gathers_take_the_parallel_path() {
    // 2 layers x B 2 x 200 x 200 = 160k elements > PARALLEL_MIN_ELEMENTS.
    for kind in 0..3 {
        check_masks::<f32>(2, 2, 230, 200, kind, 4).unwrap();
        check_masks::<u8>(2, 2, 230, 200, kind, 5).unwrap();
    }
}

/// Upstream's `[:r, :r]` slice is wrong for padding and documents; ours follows the positions.
#[test]
fn decoder_mask_follows_kept_positions_not_the_top_left_corner() {
    // S = 6, two documents {0,1,2} and {3,4,5}, causal within each; B = 1.
    let s = 6;
    let mut mask = vec![0u8; s * s];
    for i in 0..s {
        for j in 0..=i {
            mask[i * s + j] = u8::from(i / 3 == j / 3);
        }
    }
    let idx = [1, 2, 4]; // r = 3
    let mut out = [9u8; 9];
    gather_mask(
        &MaskView::new(&mask, 1, s, s).unwrap(),
        &IndexView::new(&idx, 1, 3).unwrap(),
        &mut out,
    )
    .unwrap();
    // Position 4 sees itself only (3 dropped, 1 and 2 in another document).
    assert_eq!(out, [1, 0, 0, 1, 1, 0, 0, 0, 1]);
    let m = &mask;
    let corner: Vec<u8> = (0..3)
        .flat_map(|i| (0..3).map(move |j| m[i * s + j]))
        .collect();
    assert_ne!(&out[..], &corner[..]);
}
