//! Property tests: block-sparse matmul (sdd/dsd/dds, all transposes, forward and backward) and
//! block-sparse softmax (forward with scale/rpe/masks in both modes, backward) against
//! `ltd-reference`, for f32/f16/bf16, blocks 16/32/64/128, random layouts and densities.

mod common;

use common::{
    Data, TestElement, assert_close, mask_values, matmul_reference, mode_ref, poisoned, ref_layout,
};
use ltd_reference::Mask;
use ltd_sparse_attn::{BlockSparseMatMul, MaskMode, MatMulMode, SoftmaxOptions};
use proptest::prelude::*;

/// (block, blocks per side, dense dim) sized so that each case stays fast in debug builds.
fn sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        4 => (Just(16usize), 1..=3usize, 1..=24usize),
        3 => (Just(32usize), 1..=3usize, 1..=20usize),
        1 => (Just(64usize), 1..=2usize, 1..=12usize),
        1 => (Just(128usize), 1..=2usize, 1..=6usize),
    ]
}

struct MatmulCase {
    mode: MatMulMode,
    trans_a: bool,
    trans_b: bool,
    block: usize,
    nb: usize,
    f: usize,
    heads: usize,
    batch: usize,
    density: f32,
    seed: u64,
}

fn check_matmul<T: TestElement>(c: &MatmulCase) {
    let mut data = Data::new(c.seed);
    let layout = data.layout(c.heads, c.nb, c.block, c.density);
    let mm = BlockSparseMatMul::new(c.mode, c.trans_a, c.trans_b);
    let (la, lb, lc) = mm.operand_lens(&layout, c.batch, c.f);
    let a: Vec<T> = data.vec(la, -1.0, 1.0);
    let b: Vec<T> = data.vec(lb, -1.0, 1.0);
    let dc: Vec<T> = data.vec(lc, -1.0, 1.0);
    let (want, wa, wb) = matmul_reference(mm, &layout, c.batch, c.f, (&a, &b, &dc));

    let mut out = poisoned::<T>(lc);
    mm.forward(&layout, &a, &b, c.batch, c.f, &mut out).unwrap();
    assert_close("c", &out, &want);

    let (mut da, mut db) = (poisoned::<T>(la), poisoned::<T>(lb));
    mm.backward(&layout, &a, &b, &dc, c.batch, c.f, &mut da, &mut db)
        .unwrap();
    assert_close("da", &da, &wa);
    assert_close("db", &db, &wb);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul_matches_reference(
        dtype in 0..3usize,
        mode in prop_oneof![Just(MatMulMode::Sdd), Just(MatMulMode::Dsd), Just(MatMulMode::Dds)],
        trans_a in any::<bool>(),
        trans_b in any::<bool>(),
        (block, nb, f) in sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![Just(0.0f32), 0.1f32..1.0, Just(1.0f32)],
        seed in any::<u64>(),
    ) {
        let case = MatmulCase { mode, trans_a, trans_b, block, nb, f, heads, batch, density, seed };
        for_dtype!(dtype, T => check_matmul::<T>(&case));
    }
}

struct SoftmaxCase {
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
}

fn check_softmax<T: TestElement>(c: &SoftmaxCase) {
    let mut data = Data::new(c.seed);
    let layout = data.layout(c.heads, c.nb, c.block, c.density);
    let rl = ref_layout(&layout);
    let s = c.nb * c.block;
    let n = c.batch * layout.nnz() * c.block * c.block;
    let x: Vec<T> = data.vec(n, -2.0, 2.0);
    let rpe: Option<Vec<T>> = c
        .rpe
        .then(|| data.vec(c.batch * c.heads * s * s, -1.0, 1.0));
    let kpm: Option<Vec<T>> = c
        .kpm
        .map(|m| mask_values(&mut data, c.batch * s, m, T::from_f32_lossy));
    let am: Option<Vec<T>> =
        c.am.map(|m| mask_values(&mut data, s * s, m, T::from_f32_lossy));
    let opts = SoftmaxOptions {
        scale: c.scale,
        rpe: rpe.as_deref(),
        key_padding_mask: kpm.as_deref(),
        key_padding_mask_mode: c.kpm.unwrap_or_default(),
        attn_mask: am.as_deref(),
        attn_mask_mode: c.am.unwrap_or_default(),
    };
    let ropts = ltd_reference::SoftmaxOptions {
        scale: c.scale as f64,
        rpe: rpe.as_deref(),
        key_padding: kpm.as_deref().map(|v| Mask {
            values: v,
            mode: mode_ref(c.kpm.unwrap()),
        }),
        attn_mask: am.as_deref().map(|v| Mask {
            values: v,
            mode: mode_ref(c.am.unwrap()),
        }),
    };
    let mut y = poisoned::<T>(n);
    ltd_sparse_attn::softmax_forward(&layout, &x, c.batch, &opts, &mut y).unwrap();
    let want = ltd_reference::block_sparse_softmax(&x, c.batch, &rl, &ropts).unwrap();
    assert_close("y", &y, &want);

    // In place gives the same bits.
    let mut inplace = x.clone();
    ltd_sparse_attn::softmax_forward_in_place(&layout, &mut inplace, c.batch, &opts).unwrap();
    assert_eq!(
        common::widen(&inplace)
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        common::widen(&y)
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );

    let dy: Vec<T> = data.vec(n, -1.0, 1.0);
    let mut dx = poisoned::<T>(n);
    ltd_sparse_attn::softmax_backward(&layout, &want, &dy, c.batch, c.scale, &mut dx).unwrap();
    let want_dx =
        ltd_reference::block_sparse_softmax_backward(&want, &dy, c.batch, &rl, c.scale as f64)
            .unwrap();
    assert_close("dx", &dx, &want_dx);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn softmax_matches_reference(
        dtype in 0..3usize,
        (block, nb, _f) in sizes(),
        heads in 1..=2usize,
        batch in 1..=2usize,
        density in prop_oneof![0.1f32..1.0, Just(1.0f32)],
        scale in prop_oneof![Just(1.0f32), 0.1f32..2.0],
        rpe in any::<bool>(),
        kpm in prop_oneof![Just(None), Just(Some(MaskMode::Add)), Just(Some(MaskMode::Mul))],
        am in prop_oneof![Just(None), Just(Some(MaskMode::Add)), Just(Some(MaskMode::Mul))],
        seed in any::<u64>(),
    ) {
        let case = SoftmaxCase { block, nb, heads, batch, density, scale, rpe, kpm, am, seed };
        for_dtype!(dtype, T => check_softmax::<T>(&case));
    }
}

#[test]
fn fully_masked_softmax_rows_are_zero_not_nan() {
    let layout = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    let x = vec![half::bf16::from_f32(0.5); 3 * 256];
    let mut kpm = vec![half::bf16::ONE; 32];
    kpm[16..].fill(half::bf16::ZERO); // keys of block 1 masked (mul mode)
    let opts = SoftmaxOptions {
        key_padding_mask: Some(&kpm),
        key_padding_mask_mode: MaskMode::Mul,
        ..SoftmaxOptions::new()
    };
    let mut y = poisoned(x.len());
    ltd_sparse_attn::softmax_forward(&layout, &x, 1, &opts, &mut y).unwrap();
    // Tile 2 is block-row 1's only tile: all its keys are masked, so it is all zeros.
    assert!(y[2 * 256..].iter().all(|v| v.to_f32() == 0.0));
    // Block-row 0 spreads over its 16 unmasked keys.
    assert!(
        y[..256]
            .iter()
            .all(|v| (v.to_f32() - 1.0 / 16.0).abs() < 1e-3)
    );
    assert!(y[256..512].iter().all(|v| v.to_f32() == 0.0));
    let mut dx = poisoned(x.len());
    ltd_sparse_attn::softmax_backward(&layout, &y, &x, 1, 1.0, &mut dx).unwrap();
    assert!(dx[2 * 256..].iter().all(|v| v.to_f32() == 0.0));
}
