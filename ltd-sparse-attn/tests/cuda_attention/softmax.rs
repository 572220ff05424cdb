//! The GPU block-sparse softmax (forward and backward) against the CPU reference, and its checks.

use crate::common::{Data, make_layout, poisoned};
use crate::gpu_support::{cases, gpu};
use half::{bf16, f16};
use ltd_core::{CudaDevice, Element};
use ltd_reference as reference;
use ltd_reference::RefElement;
use ltd_sparse_attn::cuda::CudaAttentionLayout;
use ltd_sparse_attn::{Layout, SparseAttnError};
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn check_softmax<T: Element + RefElement + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    layout: &Layout,
    batch: usize,
    with_rpe: bool,
    kpm_mode: Option<ltd_sparse_attn::MaskMode>,
    am_mode: Option<ltd_sparse_attn::MaskMode>,
    seed: u64,
) {
    use ltd_sparse_attn::MaskMode;
    use ltd_sparse_attn::cuda::{CudaSoftmaxOptions, softmax_backward_cuda, softmax_forward_cuda};
    let (heads, nb, b) = (layout.num_heads(), layout.num_blocks(), layout.block());
    let s = nb * b;
    let n = batch * layout.nnz() * b * b;
    let mut data = Data::new(seed);
    let x: Vec<T> = data.vec(n, -2.0, 2.0);
    let dy: Vec<T> = data.vec(n, -1.0, 1.0);
    let rpe: Vec<T> = data.vec(batch * heads * s * s, -0.5, 0.5);
    // Mask values per mode: add uses 0 / -inf, mul uses 1 / 0 (about one key in five hidden).
    let mut mask = |len: usize, mode: MaskMode| -> Vec<T> {
        (0..len)
            .map(|_| {
                let hide = data.coin(0.2);
                T::from_f32_lossy(match mode {
                    MaskMode::Add => {
                        if hide {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    }
                    MaskMode::Mul => {
                        if hide {
                            0.0
                        } else {
                            1.0
                        }
                    }
                })
            })
            .collect()
    };
    let kpm = kpm_mode.map(|m| mask(batch * s, m));
    let am = am_mode.map(|m| mask(s * s, m));
    let gl = CudaAttentionLayout::new(dev, layout).unwrap();
    let scale = 0.4f32;
    let (dx_, drpe) = (dev.upload(&x).unwrap(), dev.upload(&rpe).unwrap());
    let dkpm = kpm.as_ref().map(|v| dev.upload(v).unwrap());
    let dam = am.as_ref().map(|v| dev.upload(v).unwrap());
    let opts = CudaSoftmaxOptions {
        scale,
        rpe: with_rpe.then_some((&drpe).into()),
        key_padding_mask: dkpm.as_ref().map(Into::into),
        key_padding_mask_mode: kpm_mode.unwrap_or(MaskMode::Add),
        attn_mask: dam.as_ref().map(Into::into),
        attn_mask_mode: am_mode.unwrap_or(MaskMode::Add),
    };
    let mut y = dev.upload(&poisoned::<T>(n)).unwrap();
    softmax_forward_cuda(dev, &gl, batch, &dx_, &opts, &mut y).unwrap();
    let got_y = dev.download(&y).unwrap();

    let rl = reference::Layout::new(layout.mask(), heads, nb, nb, b);
    let ref_mode = |m: MaskMode| match m {
        MaskMode::Add => reference::MaskMode::Add,
        MaskMode::Mul => reference::MaskMode::Mul,
    };
    let mut ropts = reference::SoftmaxOptions::new(scale as f64);
    if with_rpe {
        ropts.rpe = Some(&rpe);
    }
    if let (Some(v), Some(m)) = (&kpm, kpm_mode) {
        ropts.key_padding = Some(reference::Mask {
            values: v,
            mode: ref_mode(m),
        });
    }
    if let (Some(v), Some(m)) = (&am, am_mode) {
        ropts.attn_mask = Some(reference::Mask {
            values: v,
            mode: ref_mode(m),
        });
    }
    let want_y = reference::block_sparse_softmax(&x, batch, &rl, &ropts).unwrap();
    let (rtol, atol) = match T::DTYPE {
        ltd_core::DType::F32 => (5e-4, 5e-5),
        ltd_core::DType::F16 => (3e-2, 2e-3),
        ltd_core::DType::BF16 => (5e-2, 1e-2),
    };
    let ctx = format!(
        "{:?} Z{batch} H{heads} nb{nb} b{b} rpe {with_rpe} kpm {kpm_mode:?} am {am_mode:?}",
        T::DTYPE
    );
    for (i, (g, w)) in got_y.iter().zip(&want_y).enumerate() {
        let (g, w) = (g.to_f32() as f64, RefElement::to_f64(*w));
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "y[{i}] = {g}, expected {w} ({ctx})"
        );
    }
    // Backward on the reference's y (so both sides start from the same rounded values).
    let d_y = dev.upload(&want_y).unwrap();
    let d_dy = dev.upload(&dy).unwrap();
    let mut dx = dev.upload(&poisoned::<T>(n)).unwrap();
    softmax_backward_cuda(dev, &gl, batch, &d_y, &d_dy, scale, &mut dx).unwrap();
    let want_dx =
        reference::block_sparse_softmax_backward(&want_y, &dy, batch, &rl, scale as f64).unwrap();
    for (i, (g, w)) in dev.download(&dx).unwrap().iter().zip(&want_dx).enumerate() {
        let (g, w) = (g.to_f32() as f64, RefElement::to_f64(*w));
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "dx[{i}] = {g}, expected {w} ({ctx})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]
    #[test]
    fn gpu_block_sparse_softmax_matches_reference(
        family in 0u8..5, block in prop_oneof![Just(16usize), Just(32), Just(64)], nb in 1usize..5,
        batch in 1usize..3, heads in 1usize..3, rpe in any::<bool>(),
        kpm in prop_oneof![Just(None), Just(Some(ltd_sparse_attn::MaskMode::Add)), Just(Some(ltd_sparse_attn::MaskMode::Mul))],
        am in prop_oneof![Just(None), Just(Some(ltd_sparse_attn::MaskMode::Add)), Just(Some(ltd_sparse_attn::MaskMode::Mul))],
        dtype in 0u8..3, seed in any::<u64>(),
    ) {
        let dev = gpu();
        let layout = make_layout(family, heads, block, nb * block, seed % 2 == 0, seed);
        match dtype {
            0 => check_softmax::<f32>(&dev, &layout, batch, rpe, kpm, am, seed),
            1 => check_softmax::<f16>(&dev, &layout, batch, rpe, kpm, am, seed),
            _ => check_softmax::<bf16>(&dev, &layout, batch, rpe, kpm, am, seed),
        }
    }
}

#[test]
fn gpu_softmax_rejects_bad_buffers() {
    use ltd_sparse_attn::cuda::{CudaSoftmaxOptions, softmax_forward_cuda};
    let dev = gpu();
    let layout = make_layout(0, 1, 16, 64, false, 0);
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let n = layout.nnz() * 256;
    let x = dev.upload(&vec![0.0f32; n]).unwrap();
    let mut short = dev.upload(&vec![0.0f32; n - 1]).unwrap();
    let e = softmax_forward_cuda(&dev, &gl, 1, &x, &CudaSoftmaxOptions::default(), &mut short)
        .unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    let bad_mask = dev.upload(&[0.0f32; 3]).unwrap();
    let opts = CudaSoftmaxOptions {
        key_padding_mask: Some((&bad_mask).into()),
        ..Default::default()
    };
    let mut y = dev.upload(&vec![0.0f32; n]).unwrap();
    let e = softmax_forward_cuda(&dev, &gl, 1, &x, &opts, &mut y).unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
}
