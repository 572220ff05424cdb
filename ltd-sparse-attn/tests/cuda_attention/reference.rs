//! The fused forward and backward against the CPU reference on random cases, and the shared check.

use crate::common::{Data, make_layout, poisoned};
use crate::gpu_support::{cases, gpu};
use half::{bf16, f16};
use ltd_core::{CudaDevice, Element};
use ltd_reference as reference;
use ltd_reference::RefElement;
use ltd_sparse_attn::cuda::{
    CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions,
    attention_backward_cuda, attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, Layout};
use proptest::prelude::*;

/// The host inputs of one [`check`] case, drawn from its seed in a fixed order.
struct Inputs<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    /// Additive key-padding mask `[B, L]`: the last quarter of the keys of batch row 0 dropped
    /// when a mask is used, else all zero.
    kpm: Vec<f32>,
    /// `kpm` in `T`, for the reference.
    kpm_t: Vec<T>,
    /// A relative-position-like additive bias `[B, H, L, L]` (small, so it shifts but does not
    /// swamp the scores).
    bias: Vec<T>,
}

impl<T: Element + RefElement> Inputs<T> {
    fn new(data: &mut Data, shape: AttentionShape, with_kpm: bool) -> Self {
        let (batch, seq) = (shape.batch, shape.seq_len);
        let n = shape.qkv_len();
        let q: Vec<T> = data.vec(n, -1.0, 1.0);
        let k: Vec<T> = data.vec(n, -1.0, 1.0);
        let v: Vec<T> = data.vec(n, -1.0, 1.0);
        let kpm: Vec<f32> = (0..batch * seq)
            .map(|i| {
                if with_kpm && i < seq && i >= seq - seq / 4 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let kpm_t: Vec<T> = kpm.iter().map(|&x| T::from_f32_lossy(x)).collect();
        let bias: Vec<T> = data.vec(n / shape.head_dim * seq, -0.5, 0.5);
        Inputs {
            q,
            k,
            v,
            kpm,
            kpm_t,
            bias,
        }
    }

    /// The reference's options for the same call: the layout, causality and the masks in use.
    fn reference_options<'a>(
        &'a self,
        layout: &'a Layout,
        shape: AttentionShape,
        causal: bool,
        with_kpm: bool,
        with_bias: bool,
    ) -> reference::AttentionOptions<'a, T> {
        let nb = layout.num_blocks();
        let mut ropts = reference::AttentionOptions::new(1.0 / (shape.head_dim as f64).sqrt());
        ropts.causal = causal;
        ropts.layout = Some(reference::Layout::new(
            layout.mask(),
            shape.heads,
            nb,
            nb,
            layout.block(),
        ));
        if with_bias {
            ropts.bias = Some(&self.bias);
        }
        if with_kpm {
            ropts.key_padding = Some(reference::Mask {
                values: &self.kpm_t,
                mode: reference::MaskMode::Add,
            });
        }
        ropts
    }
}

/// The forward's output and logsumexp against the reference's, elementwise.
fn assert_forward_close<T: Element + RefElement>(
    got: &[T],
    got_lse: &[f32],
    expected: &reference::AttentionOutput<T>,
    ctx: &str,
) {
    let (rtol, atol) = match T::DTYPE {
        ltd_core::DType::F16 => (3e-2, 2e-3),
        _ => (5e-2, 1e-2),
    };
    for (i, (g, e)) in got.iter().zip(&expected.out).enumerate() {
        let (g, e) = (g.to_f32() as f64, RefElement::to_f64(*e));
        assert!(
            (g - e).abs() <= atol + rtol * e.abs(),
            "out[{i}] = {g}, expected {e} ({ctx})"
        );
    }
    for (i, (g, e)) in got_lse.iter().zip(&expected.lse).enumerate() {
        if e.is_infinite() {
            assert!(
                *g == f32::NEG_INFINITY,
                "lse[{i}] = {g}, expected -inf ({ctx})"
            );
        } else {
            assert!(
                (*g as f64 - e).abs() <= 1e-3 + 1e-3 * e.abs(),
                "lse[{i}] = {g}, expected {e} ({ctx})"
            );
        }
    }
}

/// Each named GPU gradient against the reference's: finite, relative L2 error within the
/// dtype's limit (bf16/f16 operands: 1e-3..1e-2 expected) and no element off by more than a
/// share of the tensor's largest magnitude (catches a wrong row or tile the norm would hide).
fn assert_grads_close<T: Element + RefElement + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    checks: &[(&str, &cudarc::driver::CudaSlice<T>, &Vec<T>)],
    ctx: &str,
) {
    let (rel_limit, elem_frac) = match T::DTYPE {
        ltd_core::DType::F16 => (1e-2, 0.03),
        _ => (3e-2, 0.05),
    };
    for &(what, got, want) in checks {
        let got: Vec<f64> = dev
            .download(got)
            .unwrap()
            .iter()
            .map(|x| x.to_f32() as f64)
            .collect();
        let want: Vec<f64> = want.iter().map(|x| RefElement::to_f64(*x)).collect();
        let max = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let (mut num, mut den) = (0.0, 0.0);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.is_finite(), "{what}[{i}] = {g} ({ctx})");
            assert!(
                (g - w).abs() <= elem_frac * max + 1e-6,
                "{what}[{i}] = {g}, expected {w} (max {max}) ({ctx})"
            );
            num += (g - w) * (g - w);
            den += w * w;
        }
        if den > 0.0 {
            let rel = (num / den).sqrt();
            assert!(rel <= rel_limit, "{what} relative error {rel} ({ctx})");
        }
    }
}

/// The fused forward and backward of `kernel` on one case (inputs drawn from `seed`) against the
/// reference: out and lse, then dq, dk, dv and, with a bias, dbias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check<
    T: Element + RefElement + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
>(
    dev: &CudaDevice,
    layout: &Layout,
    batch: usize,
    heads: usize,
    seq: usize,
    d: usize,
    causal: bool,
    with_kpm: bool,
    with_bias: bool,
    seed: u64,
    kernel: CudaAttentionKernel,
) {
    let shape = AttentionShape {
        batch,
        heads,
        seq_len: seq,
        head_dim: d,
    };
    let n = shape.qkv_len();
    let mut data = Data::new(seed);
    let inputs = Inputs::<T>::new(&mut data, shape, with_kpm);
    let (q, k, v) = (&inputs.q, &inputs.k, &inputs.v);

    let gpu_layout = CudaAttentionLayout::new(dev, layout).unwrap();
    let (dq, dk, dv) = (
        dev.upload(q).unwrap(),
        dev.upload(k).unwrap(),
        dev.upload(v).unwrap(),
    );
    let d_kpm = dev.upload(&inputs.kpm).unwrap();
    let d_bias = dev.upload(&inputs.bias).unwrap();
    let mut out = dev.upload(&poisoned::<T>(n)).unwrap();
    let mut lse = dev.upload(&vec![f32::NAN; shape.lse_len()]).unwrap();
    let opts = CudaAttentionOptions {
        scale: None,
        causal,
        key_padding_mask: with_kpm.then_some((&d_kpm).into()),
        bias: with_bias.then_some((&d_bias).into()),
        kernel,
    };
    attention_forward_cuda(
        dev,
        &gpu_layout,
        shape,
        (&dq, &dk, &dv),
        &opts,
        &mut out,
        &mut lse,
    )
    .unwrap();
    let got = dev.download(&out).unwrap();
    let got_lse = dev.download(&lse).unwrap();

    let ropts = inputs.reference_options(layout, shape, causal, with_kpm, with_bias);
    let dims = reference::AttnDims {
        batch,
        heads,
        seq,
        head_dim: d,
    };
    let expected = reference::attention_forward(q, k, v, dims, &ropts).unwrap();
    let ctx = format!(
        "{:?} B{batch} H{heads} L{seq} D{d} block {} causal {causal} kpm {with_kpm} bias {with_bias} kernel {:?}",
        T::DTYPE,
        layout.block(),
        kernel.resolve(dev.compute_capability())
    );
    assert_forward_close(&got, &got_lse, &expected, &ctx);

    // Backward: dq, dk, dv against the reference gradients of the same inputs.
    let dout: Vec<T> = data.vec(n, -1.0, 1.0);
    let d_dout = dev.upload(&dout).unwrap();
    let poison = || dev.upload(&poisoned::<T>(n)).unwrap();
    let (mut gq, mut gk, mut gv) = (poison(), poison(), poison());
    // dbias starts poisoned: the op must zero it and fill every visible position.
    let mut gbias = dev.upload(&poisoned::<T>(inputs.bias.len())).unwrap();
    attention_backward_cuda(
        dev,
        &gpu_layout,
        shape,
        (&dq, &dk, &dv),
        (&out, &lse),
        &d_dout,
        &opts,
        CudaAttentionGrads {
            dbias: with_bias.then_some((&mut gbias).into()),
            ..CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv)
        },
    )
    .unwrap();
    let want = reference::attention_backward(q, k, v, &dout, dims, &ropts).unwrap();
    let mut checks = vec![
        ("dq", &gq, &want.dq),
        ("dk", &gk, &want.dk),
        ("dv", &gv, &want.dv),
    ];
    if with_bias {
        checks.push(("dbias", &gbias, &want.dbias));
    }
    assert_grads_close(dev, &checks, &ctx);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(40)))]
    #[test]
    fn gpu_fused_forward_matches_reference(
        family in 0u8..5, block in prop_oneof![Just(16usize), Just(32), Just(64), Just(128)],
        seq_blocks in 1usize..6, ragged in 0usize..128, batch in 1usize..3, heads in 1usize..4,
        d in prop_oneof![Just(64usize), Just(128)], causal in any::<bool>(), uni in any::<bool>(),
        kpm in any::<bool>(), bias in any::<bool>(), bf in any::<bool>(), seed in any::<u64>(),
        which in 0usize..6,
    ) {
        let dev = gpu();
        // Any remainder: with block 128 and L % 128 in 1..=64, the layout's padded length holds
        // a 64-row query tile entirely past L (the backward must still find its statistics).
        let seq = (seq_blocks * block).saturating_sub(ragged % block).max(1);
        let layout = make_layout(family, heads, block, seq, uni, seed);
        // Every kernel the device runs gets a share of the cases (the Hopper ones on an H100).
        let kernel = [
            CudaAttentionKernel::MmaSync,
            CudaAttentionKernel::Auto,
            CudaAttentionKernel::Wgmma,
            CudaAttentionKernel::WgmmaPairs,
            CudaAttentionKernel::WgmmaGathered,
            CudaAttentionKernel::WgmmaWarpSpecialized,
        ][which];
        let kernel = if kernel.runs_on(dev.compute_capability()) { kernel } else { CudaAttentionKernel::Auto };
        if bf {
            check::<bf16>(&dev, &layout, batch, heads, seq, d, causal, kpm, bias, seed, kernel);
        } else {
            check::<f16>(&dev, &layout, batch, heads, seq, d, causal, kpm, bias, seed, kernel);
        }
    }
}
