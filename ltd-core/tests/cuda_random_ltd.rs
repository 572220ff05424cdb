//! GPU Random-LTD ops against the CPU sampler (bit for bit) and `ltd-reference` (gather, scatter,
//! route, mask gathers), all dtypes, both orders, odd and even C, padded strides. Outputs are
//! poisoned before each launch. Without a GPU the `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

mod gpu_support;

use gpu_support::{cases, gpu};
use half::{bf16, f16};
use ltd_core::cuda::{
    CudaHidden, CudaHiddenMut, CudaSampledIndices, MaskForm, gather_cuda, mask_gather_cuda,
    route_cuda, sample_tokens_cuda, scatter_cuda,
};
use ltd_core::{CoreError, CudaDevice, Element, HiddenLayout, HiddenOrder, TokenSampler};
use ltd_reference as reference;
use proptest::prelude::*;

fn sampler_matches(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    r: usize,
) {
    let gpu = sample_tokens_cuda(dev, seed, step, layers, batch, seq, r)
        .unwrap()
        .download(dev)
        .unwrap();
    let cpu = TokenSampler::new(seed)
        .sample(step, layers, batch, seq, r)
        .unwrap();
    assert_eq!(
        gpu.as_slice(),
        cpu.as_slice(),
        "seed {seed} step {step} L{layers} B{batch} S{seq} r{r}"
    );
    reference::check_sampled_indices(gpu.as_slice(), layers, batch, r, seq).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(40)))]
    #[test]
    fn gpu_sampler_is_bit_identical_to_cpu(
        seed in any::<u64>(), step in any::<u64>(), layers in 1usize..4, batch in 1usize..5,
        seq in 1usize..3000, frac in 0.0f64..=1.0,
    ) {
        let dev = gpu();
        let r = ((seq as f64 * frac).round() as usize).clamp(1, seq);
        sampler_matches(&dev, seed, step, layers, batch, seq, r);
    }
}

#[test]
fn gpu_sampler_edge_sizes() {
    let dev = gpu();
    sampler_matches(&dev, 1, 2, 1, 1, 1, 1); // S = 1
    sampler_matches(&dev, 3, 4, 2, 3, 777, 777); // r = S, S not a multiple of anything
    sampler_matches(&dev, 5, 6, 22, 8, 2048, 1024); // the paper's shape
    sampler_matches(&dev, 7, 8, 1, 2, 2049, 2048); // just past upstream's limit
    sampler_matches(&dev, 9, 10, 1, 1, 40_000, 12_345); // keys in opted-in shared memory
    sampler_matches(&dev, 15, 16, 2, 1, 12_100, 6_000); // keys just under 48 KB + static smem
    sampler_matches(&dev, 11, 12, 1, 1, 131_072, 65_536); // keys recomputed per pass
    sampler_matches(&dev, 13, 14, 2, 2, 131_072, 131_072);
}

#[test]
fn gpu_resample_matches_cpu() {
    let dev = gpu();
    let mut idx = sample_tokens_cuda(&dev, 4, 0, 3, 2, 500, 100).unwrap();
    for step in [1u64, 2, u64::MAX] {
        idx.resample(&dev, 4, step).unwrap();
        let cpu = TokenSampler::new(4).sample(step, 3, 2, 500, 100).unwrap();
        assert_eq!(idx.download(&dev).unwrap().as_slice(), cpu.as_slice());
    }
}

#[test]
fn gpu_sampler_writes_every_slot() {
    // Deterministic: fill the buffer with a valid sample whose value differs from the expected
    // output at *every* slot, then resample into it. A slot the kernel skipped keeps the old
    // value and fails the comparison (no reliance on the allocator reusing poisoned memory).
    let dev = gpu();
    for (l, b, s, r) in [(2, 3, 8, 3), (1, 2, 40, 20), (1, 1, 3000, 1)] {
        let sampler = TokenSampler::new(5);
        let old = sampler.sample(0, l, b, s, r).unwrap();
        let (step, new) = (1..10_000u64)
            .map(|t| (t, sampler.sample(t, l, b, s, r).unwrap()))
            .find(|(_, n)| n.as_slice().iter().zip(old.as_slice()).all(|(a, o)| a != o))
            .expect("some step differs from step 0 at every slot");
        let mut idx = CudaSampledIndices::upload(&dev, &old).unwrap();
        idx.resample(&dev, 5, step).unwrap();
        assert_eq!(
            idx.download(&dev).unwrap().as_slice(),
            new.as_slice(),
            "L{l} B{b} S{s} r{r}"
        );
    }
}

#[test]
fn gpu_sampler_rejects_bad_sizes() {
    let dev = gpu();
    for (l, b, s, r) in [
        (0, 1, 8, 4),
        (1, 0, 8, 4),
        (1, 1, 0, 1),
        (1, 1, 8, 0),
        (1, 1, 8, 9),
    ] {
        let e = sample_tokens_cuda(&dev, 0, 0, l, b, s, r)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidSize { .. }),
            "{l} {b} {s} {r}: {e}"
        );
    }
}

/// Host copy of a contiguous tensor placed in a buffer with `layout` (padding = `pad_value`).
fn place<T: Copy>(dense: &[T], layout: &HiddenLayout, pad_value: T) -> Vec<T> {
    let mut buf = vec![pad_value; layout.min_buffer_len()];
    let c = layout.channels();
    for b in 0..layout.batch() {
        for s in 0..layout.seq() {
            let src = match layout.order() {
                HiddenOrder::BatchSeq => (b * layout.seq() + s) * c,
                HiddenOrder::SeqBatch => (s * layout.batch() + b) * c,
            };
            let dst = layout.offset(b, s);
            buf[dst..dst + c].copy_from_slice(&dense[src..src + c]);
        }
    }
    buf
}

/// The inverse of [`place`].
fn extract<T: Copy + Default>(buf: &[T], layout: &HiddenLayout) -> Vec<T> {
    let c = layout.channels();
    let mut dense = vec![T::default(); layout.batch() * layout.seq() * c];
    for b in 0..layout.batch() {
        for s in 0..layout.seq() {
            let dst = match layout.order() {
                HiddenOrder::BatchSeq => (b * layout.seq() + s) * c,
                HiddenOrder::SeqBatch => (s * layout.batch() + b) * c,
            };
            let src = layout.offset(b, s);
            dense[dst..dst + c].copy_from_slice(&buf[src..src + c]);
        }
    }
    dense
}

/// A layout with `pad` extra elements after every row (pad 0 = contiguous).
fn padded(order: HiddenOrder, batch: usize, seq: usize, c: usize, pad: usize) -> HiddenLayout {
    let pitch = c + pad;
    let (bs, ss) = match order {
        HiddenOrder::BatchSeq => (seq * pitch, pitch),
        HiddenOrder::SeqBatch => (pitch, batch * pitch),
    };
    HiddenLayout::strided(order, batch, seq, c, bs, ss).unwrap()
}

fn ref_dims(order: HiddenOrder, batch: usize, seq: usize, channels: usize) -> reference::Hidden {
    let order = match order {
        HiddenOrder::BatchSeq => reference::HiddenOrder::BatchSeq,
        HiddenOrder::SeqBatch => reference::HiddenOrder::SeqBatch,
    };
    reference::Hidden {
        batch,
        seq,
        channels,
        order,
    }
}

#[allow(clippy::too_many_arguments)]
fn check_ops<T: Element + cudarc::driver::DeviceRepr + Default>(
    dev: &CudaDevice,
    order: HiddenOrder,
    batch: usize,
    seq: usize,
    c: usize,
    r: usize,
    pads: (usize, usize, usize),
    seed: u64,
) {
    let poison = T::from_f32_lossy(-7777.0);
    let val = |i: usize, salt: usize| {
        T::from_f32_lossy(((i * 31 + salt * 7919 + seed as usize) % 1000) as f32 / 8.0)
    };
    let n_full = batch * seq * c;
    let n_part = batch * r * c;
    let h: Vec<T> = (0..n_full).map(|i| val(i, 1)).collect();
    let part: Vec<T> = (0..n_part).map(|i| val(i, 2)).collect();
    let layers = 2;
    let idx = sample_tokens_cuda(dev, seed, 5, layers, batch, seq, r).unwrap();
    let host_idx = idx.download(dev).unwrap();
    let full_l = padded(order, batch, seq, c, pads.0);
    let part_l = padded(order, batch, r, c, pads.1);
    let out_full_l = padded(order, batch, seq, c, pads.2);
    let out_part_l = padded(order, batch, r, c, pads.2);
    let dims = ref_dims(order, batch, seq, c);
    for layer in 0..layers {
        let li = &host_idx.as_slice()[layer * batch * r..(layer + 1) * batch * r];
        // gather
        let d_h = dev.upload(&place(&h, &full_l, poison)).unwrap();
        let mut d_out = dev
            .upload(&vec![poison; out_part_l.min_buffer_len()])
            .unwrap();
        gather_cuda(
            dev,
            CudaHidden::new(&d_h, full_l).unwrap(),
            &idx,
            layer,
            CudaHiddenMut::new(&mut d_out, out_part_l).unwrap(),
        )
        .unwrap();
        let got = extract(&dev.download(&d_out).unwrap(), &out_part_l);
        assert_eq!(
            got,
            reference::gather(&h, dims, li, r).unwrap(),
            "gather {order:?} B{batch} S{seq} C{c} r{r}"
        );
        // scatter in place into a copy of h
        let d_part = dev.upload(&place(&part, &part_l, poison)).unwrap();
        let mut d_y = dev.upload(&place(&h, &out_full_l, poison)).unwrap();
        scatter_cuda(
            dev,
            CudaHidden::new(&d_part, part_l).unwrap(),
            &idx,
            layer,
            CudaHiddenMut::new(&mut d_y, out_full_l).unwrap(),
        )
        .unwrap();
        let got = extract(&dev.download(&d_y).unwrap(), &out_full_l);
        let expected = reference::scatter(&h, dims, &part, li, r).unwrap();
        assert_eq!(got, expected, "scatter {order:?} B{batch} S{seq} C{c} r{r}");
        // route out of place into a poisoned y: every row must be written
        let mut d_y = dev
            .upload(&vec![poison; out_full_l.min_buffer_len()])
            .unwrap();
        route_cuda(
            dev,
            CudaHidden::new(&d_h, full_l).unwrap(),
            CudaHidden::new(&d_part, part_l).unwrap(),
            &idx,
            layer,
            CudaHiddenMut::new(&mut d_y, out_full_l).unwrap(),
        )
        .unwrap();
        let got = extract(&dev.download(&d_y).unwrap(), &out_full_l);
        assert_eq!(got, expected, "route {order:?} B{batch} S{seq} C{c} r{r}");
        // gather backward = route(g_pass, g_part); scatter backward's g_part = gather(g_y): both
        // are the ops above, checked against the reference's backward oracles here.
        let g_h = reference::gather_backward(&h, dims, &part, li, r).unwrap();
        assert_eq!(got, g_h, "gather backward via route");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]
    #[test]
    fn gpu_gather_scatter_route_match_reference(
        seq_major in any::<bool>(), batch in 1usize..4, seq in 1usize..200, frac in 0.0f64..=1.0,
        c in prop_oneof![Just(1usize), Just(3), Just(8), Just(64), Just(67), Just(256), 1usize..300],
        pads in (0usize..3, 0usize..9, 0usize..5), seed in any::<u64>(), dtype in 0u8..3,
    ) {
        let dev = gpu();
        let order = if seq_major { HiddenOrder::SeqBatch } else { HiddenOrder::BatchSeq };
        let r = ((seq as f64 * frac).round() as usize).clamp(1, seq);
        match dtype {
            0 => check_ops::<f32>(&dev, order, batch, seq, c, r, pads, seed),
            1 => check_ops::<f16>(&dev, order, batch, seq, c, r, pads, seed),
            _ => check_ops::<bf16>(&dev, order, batch, seq, c, r, pads, seed),
        }
    }
}

#[test]
fn gpu_ops_large_rows_vector_path() {
    // C = 4096 bf16 rows (8 KB): the 16-byte path with the unrolled loop, both orders.
    let dev = gpu();
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        check_ops::<bf16>(&dev, order, 2, 300, 4096, 150, (0, 0, 0), 3);
        check_ops::<f32>(&dev, order, 2, 64, 1024, 17, (4, 8, 0), 4);
    }
}

#[test]
fn gpu_ops_tensors_over_2_pow_31_elements() {
    // [B=1, S=70000, C=32768] bf16 = 2.29e9 elements (4.6 GB): rows past position 65536 start
    // beyond 2^31 elements, so 32-bit offsets would wrap. Only the kept rows carry data.
    let dev = gpu();
    let (b, s, c, r) = (1usize, 70_000usize, 32_768usize, 2_000usize);
    let idx = sample_tokens_cuda(&dev, 77, 0, 1, b, s, r).unwrap();
    let kept = idx.download(&dev).unwrap().as_slice().to_vec();
    assert!(kept.iter().filter(|&&p| p as usize * c >= 1 << 31).count() > 50);
    let Ok(mut h) = dev.stream().alloc_zeros::<bf16>(b * s * c) else {
        eprintln!("skipping: could not allocate 4.6 GB");
        return;
    };
    let row = |p: usize| -> Vec<bf16> {
        (0..c)
            .map(|j| bf16::from_f32(((p * 7 + j) % 251) as f32))
            .collect()
    };
    for &p in &kept {
        let p = p as usize;
        dev.stream()
            .memcpy_htod(&row(p), &mut h.slice_mut(p * c..(p + 1) * c))
            .unwrap();
    }
    let full = HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, s, c).unwrap();
    let part_l = HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, r, c).unwrap();
    let mut part = dev.upload(&vec![bf16::from_f32(-1.0); b * r * c]).unwrap();
    gather_cuda(
        &dev,
        CudaHidden::new(&h, full).unwrap(),
        &idx,
        0,
        CudaHiddenMut::new(&mut part, part_l).unwrap(),
    )
    .unwrap();
    let got = dev.download(&part).unwrap();
    for (k, &p) in kept.iter().enumerate() {
        assert!(
            got[k * c..(k + 1) * c] == row(p as usize)[..],
            "gathered row {k} (position {p})"
        );
    }
    // Scatter the rows back doubled into h (in place) and read two far rows back.
    let doubled: Vec<bf16> = got
        .iter()
        .map(|v| bf16::from_f32(v.to_f32() * 2.0))
        .collect();
    let d_doubled = dev.upload(&doubled).unwrap();
    scatter_cuda(
        &dev,
        CudaHidden::new(&d_doubled, part_l).unwrap(),
        &idx,
        0,
        CudaHiddenMut::new(&mut h, full).unwrap(),
    )
    .unwrap();
    for k in [r - 1, r - 2] {
        let p = kept[k] as usize;
        let back = dev
            .stream()
            .clone_dtoh(&h.slice(p * c..(p + 1) * c))
            .unwrap();
        assert!(
            back[..] == doubled[k * c..(k + 1) * c],
            "scattered row {k} (position {p})"
        );
    }
}

#[test]
fn gpu_ops_reject_mismatched_shapes() {
    let dev = gpu();
    let idx = sample_tokens_cuda(&dev, 0, 0, 1, 2, 16, 4).unwrap();
    let h = dev.upload(&vec![0.0f32; 2 * 16 * 8]).unwrap();
    let mut part = dev.upload(&vec![0.0f32; 2 * 5 * 8]).unwrap();
    let full = HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 16, 8).unwrap();
    let wrong_r = HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 5, 8).unwrap();
    let e = gather_cuda(
        &dev,
        CudaHidden::new(&h, full).unwrap(),
        &idx,
        0,
        CudaHiddenMut::new(&mut part, wrong_r).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(e, CoreError::ShapeMismatch { what: "part", .. }),
        "{e}"
    );
    let right = HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 4, 8).unwrap();
    let e = gather_cuda(
        &dev,
        CudaHidden::new(&h, full).unwrap(),
        &idx,
        1,
        CudaHiddenMut::new(&mut part, right).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(e, CoreError::InvalidSize { what: "layer", .. }),
        "{e}"
    );
    let other_seq = HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 8, 8).unwrap();
    let e = gather_cuda(
        &dev,
        CudaHidden::new(&h, other_seq).unwrap(),
        &idx,
        0,
        CudaHiddenMut::new(&mut part, right).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::ShapeMismatch {
                what: "indices",
                ..
            }
        ),
        "{e}"
    );
    let small = dev.upload(&[0.0f32; 10]).unwrap();
    assert!(matches!(
        CudaHidden::new(&small, full),
        Err(CoreError::BufferTooSmall { .. })
    ));
}

fn check_masks<M>(
    dev: &CudaDevice,
    layers: usize,
    batch: usize,
    seq: usize,
    r: usize,
    seed: u64,
    make: impl Fn(usize) -> M,
) where
    M: cudarc::driver::DeviceRepr + Copy + PartialEq + std::fmt::Debug,
{
    let idx = sample_tokens_cuda(dev, seed, 0, layers, batch, seq, r).unwrap();
    let host_idx = idx.download(dev).unwrap();
    let full: Vec<M> = (0..batch * seq * seq).map(&make).collect();
    let kpm: Vec<M> = (0..batch * seq).map(|i| make(i * 7 + 3)).collect();
    let d_full = dev.upload(&full).unwrap();
    let mut out = dev
        .upload(&vec![make(usize::MAX / 2); layers * batch * r * r])
        .unwrap();
    mask_gather_cuda(dev, &d_full, MaskForm::Full, &idx, &mut out).unwrap();
    let expected = reference::encoder_mask_gather(
        &full,
        reference::EncoderMaskForm::Full,
        host_idx.as_slice(),
        layers,
        batch,
        r,
        seq,
    )
    .unwrap();
    assert_eq!(
        dev.download(&out).unwrap(),
        expected,
        "full mask L{layers} B{batch} S{seq} r{r}"
    );
    if layers == 1 {
        let dec =
            reference::decoder_mask_gather(&full, host_idx.as_slice(), batch, r, seq).unwrap();
        assert_eq!(dev.download(&out).unwrap(), dec, "decoder mask");
    }
    let d_kpm = dev.upload(&kpm).unwrap();
    let mut out = dev
        .upload(&vec![make(usize::MAX / 2); layers * batch * r])
        .unwrap();
    mask_gather_cuda(dev, &d_kpm, MaskForm::KeyPadding, &idx, &mut out).unwrap();
    let expected = reference::encoder_mask_gather(
        &kpm,
        reference::EncoderMaskForm::KeyPadding,
        host_idx.as_slice(),
        layers,
        batch,
        r,
        seq,
    )
    .unwrap();
    assert_eq!(dev.download(&out).unwrap(), expected, "key-padding mask");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]
    #[test]
    fn gpu_mask_gathers_match_reference(layers in 1usize..4, batch in 1usize..4, seq in 1usize..150, frac in 0.0f64..=1.0, seed in any::<u64>()) {
        let dev = gpu();
        let r = ((seq as f64 * frac).round() as usize).clamp(1, seq);
        check_masks(&dev, layers, batch, seq, r, seed, |i| (i % 3 == 0) as u8);
        check_masks(&dev, layers, batch, seq, r, seed, |i| f16::from_f32((i % 1000) as f32));
        check_masks(&dev, layers, batch, seq, r, seed, |i| -((i % 100_000) as f32));
    }
}

#[test]
fn gpu_mask_gather_single_kept_token() {
    // r = 1: a full mask gathers one element per row, a key-padding mask one per row too; the
    // kernel must not confuse the two forms (it once did).
    let dev = gpu();
    for seq in [1, 2, 7, 300] {
        check_masks(&dev, 3, 2, seq, 1, seq as u64, |i| (i % 1000) as f32);
    }
}

#[test]
fn gpu_mask_gather_rejects_wrong_sizes() {
    let dev = gpu();
    let idx =
        CudaSampledIndices::upload(&dev, &TokenSampler::new(1).sample(0, 1, 2, 16, 4).unwrap())
            .unwrap();
    let mask = dev.upload(&vec![0u8; 2 * 16 * 15]).unwrap();
    let mut out = dev.upload(&[0u8; 2 * 4 * 4]).unwrap();
    let e = mask_gather_cuda(&dev, &mask, MaskForm::Full, &idx, &mut out).unwrap_err();
    assert!(
        matches!(e, CoreError::ShapeMismatch { what: "mask", .. }),
        "{e}"
    );
    let mask = dev.upload(&vec![0u64; 2 * 16 * 16]).unwrap();
    let mut out = dev.upload(&vec![0u64; 2 * 4 * 4]).unwrap();
    let e = mask_gather_cuda(&dev, &mask, MaskForm::Full, &idx, &mut out).unwrap_err();
    assert!(matches!(e, CoreError::InvalidArgument { .. }), "{e}");
}
