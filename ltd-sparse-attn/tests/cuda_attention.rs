//! The fused GPU attention forward against `ltd-reference` (dense attention restricted to the
//! layout, f64), bf16 and f16, head dims 64 and 128, layout blocks 16/32/64/128, every layout
//! family, lengths that are and are not multiples of the block, causal and key-padding masks.
//! Outputs are poisoned (NaN) first. Without a GPU the `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

// The GPU test support shared with ltd-core's tests (one file, included by path).
#[path = "../../ltd-core/tests/gpu_support/mod.rs"]
mod gpu_support;

mod common;

use common::{Data, kernels, make_layout, poisoned};
use gpu_support::{cases, gpu};
use half::{bf16, f16};
use ltd_core::{CudaDevice, Element};
use ltd_reference as reference;
use ltd_reference::RefElement;
use ltd_sparse_attn::cuda::{
    CoarseTables, CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout,
    CudaAttentionOptions, attention_backward_cuda, attention_forward_cuda,
};
use ltd_sparse_attn::plan::GatheredTables;
use ltd_sparse_attn::{
    AttentionShape, BSLongformerConfig, BigBirdConfig, Direction, FixedConfig, Layout,
    SparseAttnError,
};
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

#[allow(clippy::too_many_arguments)]
fn check<T: Element + RefElement + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
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
        which in 0usize..5,
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
        ][which];
        let kernel = if kernel.runs_on(dev.compute_capability()) { kernel } else { CudaAttentionKernel::Auto };
        if bf {
            check::<bf16>(&dev, &layout, batch, heads, seq, d, causal, kpm, bias, seed, kernel);
        } else {
            check::<f16>(&dev, &layout, batch, heads, seq, d, causal, kpm, bias, seed, kernel);
        }
    }
}

#[test]
fn gpu_fused_forward_long_sequence() {
    // Many chunks per query tile (online softmax across chunks), block 16 and 128.
    let dev = gpu();
    for kernel in kernels(&dev) {
        for (block, family, d) in [(16, 0u8, 64), (128, 2, 128), (64, 1, 64), (32, 3, 128)] {
            let layout = make_layout(family, 2, block, 1000, false, 3);
            check::<bf16>(
                &dev,
                &layout,
                1,
                2,
                1000,
                d,
                true,
                true,
                block == 64,
                7,
                kernel,
            );
        }
    }
}

#[test]
fn gpu_query_tile_past_the_end() {
    // L = 900 with block 128: the layout covers 1024 rows, so its last 64-row query tile
    // (rows 960..1024) lies entirely past L. The backward still visits it for every key chunk
    // whose column holds that block (its rows see no key and add nothing) and must find its
    // row statistics there.
    let dev = gpu();
    for kernel in kernels(&dev) {
        for (family, d, causal) in [(4u8, 64, false), (1, 128, true), (2, 64, false)] {
            let layout = make_layout(family, 2, 128, 900, false, 5);
            check::<bf16>(&dev, &layout, 2, 2, 900, d, causal, true, false, 11, kernel);
        }
    }
}

#[test]
fn gpu_fully_masked_rows_are_zero() {
    let dev = gpu();
    let layout = make_layout(4, 1, 16, 40, false, 0);
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: 40,
        head_dim: 64,
    };
    let x = dev
        .upload(&vec![bf16::from_f32(0.25); shape.qkv_len()])
        .unwrap();
    let kpm = dev.upload(&[f32::NEG_INFINITY; 40]).unwrap();
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let mut out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
    let mut lse = dev.upload(&[f32::NAN; 40]).unwrap();
    // Every kernel; the backward below recomputes the forward with Auto.
    for kernel in kernels(&dev) {
        let opts = CudaAttentionOptions {
            key_padding_mask: Some((&kpm).into()),
            kernel,
            ..Default::default()
        };
        attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &opts, &mut out, &mut lse).unwrap();
        assert!(
            dev.download(&out)
                .unwrap()
                .iter()
                .all(|v| v.to_f32() == 0.0),
            "{kernel:?}"
        );
        assert!(
            dev.download(&lse)
                .unwrap()
                .iter()
                .all(|&v| v == f32::NEG_INFINITY),
            "{kernel:?}"
        );
        // Poison again so the next call must write everything.
        out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
        lse = dev.upload(&[f32::NAN; 40]).unwrap();
    }
    let opts = CudaAttentionOptions {
        key_padding_mask: Some((&kpm).into()),
        ..Default::default()
    };
    attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &opts, &mut out, &mut lse).unwrap();
    // Their gradients are zero too (not NaN).
    let n = shape.qkv_len();
    let (mut gq, mut gk, mut gv) = (
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
    );
    attention_backward_cuda(
        &dev,
        &gl,
        shape,
        (&x, &x, &x),
        (&out, &lse),
        &x,
        &opts,
        CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv),
    )
    .unwrap();
    for g in [&gq, &gk, &gv] {
        assert!(dev.download(g).unwrap().iter().all(|v| v.to_f32() == 0.0));
    }
}

#[test]
fn gpu_tables_are_cached_per_length() {
    let dev = gpu();
    let attn = ltd_sparse_attn::SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let a = attn.cuda_layout(&dev, 100).unwrap();
    let b = attn.cuda_layout(&dev, 110).unwrap(); // same block count (7 blocks of 16)
    let c = attn.cuda_layout(&dev, 200).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(c.heads(), 2);
}

#[test]
fn gpu_rejects_bad_input() {
    let dev = gpu();
    let layout = make_layout(0, 2, 16, 64, false, 0);
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let shape = AttentionShape {
        batch: 1,
        heads: 2,
        seq_len: 64,
        head_dim: 64,
    };
    let x = dev.upload(&vec![bf16::ZERO; shape.qkv_len()]).unwrap();
    let mut out = dev.upload(&vec![bf16::ZERO; shape.qkv_len()]).unwrap();
    let mut lse = dev.upload(&vec![0.0f32; shape.lse_len()]).unwrap();
    let o = CudaAttentionOptions::default();
    let wrong_heads = AttentionShape { heads: 1, ..shape };
    let e = attention_forward_cuda(&dev, &gl, wrong_heads, (&x, &x, &x), &o, &mut out, &mut lse)
        .unwrap_err();
    assert!(
        matches!(
            e,
            SparseAttnError::HeadMismatch {
                expected: 2,
                actual: 1
            }
        ),
        "{e}"
    );
    let wrong_d = AttentionShape {
        head_dim: 32,
        ..shape
    };
    let e = attention_forward_cuda(&dev, &gl, wrong_d, (&x, &x, &x), &o, &mut out, &mut lse)
        .unwrap_err();
    assert!(matches!(e, SparseAttnError::InvalidArgument { .. }), "{e}");
    let wrong_len = AttentionShape {
        seq_len: 100,
        ..shape
    };
    let e = attention_forward_cuda(&dev, &gl, wrong_len, (&x, &x, &x), &o, &mut out, &mut lse)
        .unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    let f = dev.upload(&vec![0.0f32; shape.qkv_len()]).unwrap();
    let mut fo = dev.upload(&vec![0.0f32; shape.qkv_len()]).unwrap();
    let e = attention_forward_cuda(
        &dev,
        &gl,
        shape,
        (&f, &f, &f),
        &CudaAttentionOptions::default(),
        &mut fo,
        &mut lse,
    )
    .unwrap_err();
    assert!(matches!(e, SparseAttnError::InvalidArgument { .. }), "{e}");
    // A bias of the wrong size.
    let short_bias = dev.upload(&[bf16::ZERO; 10]).unwrap();
    let with_bias = CudaAttentionOptions {
        bias: Some((&short_bias).into()),
        ..Default::default()
    };
    let e = attention_forward_cuda(
        &dev,
        &gl,
        shape,
        (&x, &x, &x),
        &with_bias,
        &mut out,
        &mut lse,
    )
    .unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    // Outputs of the wrong length are named: out, lse (forward), dout (backward).
    let is_shape = |e: &SparseAttnError, name: &str| matches!(e, SparseAttnError::ShapeMismatch { what, .. } if what == name);
    let mut short_out = dev.upload(&vec![bf16::ZERO; shape.qkv_len() - 1]).unwrap();
    let e = attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &o, &mut short_out, &mut lse)
        .unwrap_err();
    assert!(is_shape(&e, "out"), "{e}");
    let mut short_lse = dev.upload(&vec![0.0f32; shape.lse_len() + 1]).unwrap();
    let e = attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &o, &mut out, &mut short_lse)
        .unwrap_err();
    assert!(is_shape(&e, "lse"), "{e}");
    let short_dout = dev.upload(&vec![bf16::ZERO; shape.qkv_len() - 1]).unwrap();
    let (mut dq, mut dk, mut dv) = (
        dev.upload(&vec![bf16::ZERO; shape.qkv_len()]).unwrap(),
        dev.upload(&vec![bf16::ZERO; shape.qkv_len()]).unwrap(),
        dev.upload(&vec![bf16::ZERO; shape.qkv_len()]).unwrap(),
    );
    let grads = CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv);
    let e = attention_backward_cuda(
        &dev,
        &gl,
        shape,
        (&x, &x, &x),
        (&out, &lse),
        &short_dout,
        &o,
        grads,
    )
    .unwrap_err();
    assert!(is_shape(&e, "dout"), "{e}");
}

#[test]
fn gpu_split_rows_match_whole_rows() {
    // BigBird's global rows and columns (19 chunks at L = 1200, pieces of at most 16) are split
    // on a GPU of any size: compare with the reference through the regular check (forward and
    // backward, every kernel the device runs), causal, key padding and bias included.
    let dev = gpu();
    let mut c = BigBirdConfig::new(2);
    c.block = 64;
    c.num_global_blocks = 2;
    let layout = c.make_layout(1200).unwrap();
    let t = CoarseTables::new(&layout);
    let (fwd, bwd) = (
        t.forward_split_chunks(dev.sm_count()),
        t.backward_split_chunks(dev.sm_count()),
    );
    assert!(!t.forward_plan(fwd).split.is_empty());
    assert!(!t.backward_plan(bwd).split.is_empty());
    assert!(!t.backward_pair_plan(bwd).split.is_empty());
    for kernel in kernels(&dev) {
        check::<bf16>(
            &dev, &layout, 2, 2, 1200, 64, false, true, false, 11, kernel,
        );
        check::<f16>(
            &dev, &layout, 1, 2, 1200, 128, true, false, true, 12, kernel,
        );
    }
}

#[test]
fn gpu_bias_tiles_and_per_element_bias_match_the_reference() {
    // The kernels read a bias one 64 x 64 tile per (query tile, chunk) (TMA on Hopper,
    // cp.async in the mma.sync ones, whose forward takes the tiles only where they keep its
    // CTAs per SM: on an H100, not on an A100) when its rows are 16-byte multiples
    // (L % 8 == 0), and per element otherwise: both against the reference, with dbias, on a
    // layout with split rows and columns, every kernel.
    let dev = gpu();
    let mut c = BigBirdConfig::new(2);
    c.block = 64;
    c.num_global_blocks = 2;
    for (seq, causal, kpm) in [
        (1200, false, true),
        (1196, true, false),
        (1131, false, false),
    ] {
        let layout = c.make_layout(seq).unwrap();
        // The global rows and columns are split into pieces on this device (so the bias reaches
        // the partial outputs and the combine kernels too).
        let t = CoarseTables::new(&layout);
        let sm = dev.sm_count();
        assert!(
            !t.forward_plan(t.forward_split_chunks(sm)).split.is_empty(),
            "L {seq}: no split row"
        );
        assert!(
            !t.backward_plan(t.backward_split_chunks(sm))
                .split
                .is_empty(),
            "L {seq}: no split column"
        );
        for kernel in kernels(&dev) {
            check::<bf16>(&dev, &layout, 2, 2, seq, 64, causal, kpm, true, 21, kernel);
            check::<f16>(&dev, &layout, 1, 2, seq, 128, causal, kpm, true, 22, kernel);
        }
    }
}

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

#[test]
fn gpu_wgmma_kernel_only_where_it_runs() {
    let dev = gpu();
    let layout = make_layout(0, 1, 16, 64, false, 0);
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: 64,
        head_dim: 64,
    };
    let x = dev.upload(&vec![bf16::ONE; shape.qkv_len()]).unwrap();
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    for kernel in [
        CudaAttentionKernel::Wgmma,
        CudaAttentionKernel::WgmmaPairs,
        CudaAttentionKernel::WgmmaGathered,
    ] {
        let mut out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
        let mut lse = dev.upload(&[f32::NAN; 64]).unwrap();
        let opts = CudaAttentionOptions::<bf16> {
            kernel,
            ..Default::default()
        };
        let r = attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &opts, &mut out, &mut lse);
        if dev.compute_capability() == (9, 0) {
            r.unwrap();
            // Every key equals every query: the output is v = 1 everywhere.
            assert!(
                dev.download(&out)
                    .unwrap()
                    .iter()
                    .all(|v| v.to_f32() == 1.0),
                "{kernel:?}"
            );
        } else {
            let e = r.unwrap_err();
            assert!(
                matches!(e, SparseAttnError::InvalidArgument { ref what, .. } if what == "kernel"),
                "{e}"
            );
        }
    }
}

/// Every kernel choice the device runs besides `MmaSync` (the at-scale tests compare them with
/// it).
fn kernels_besides_mma_sync(dev: &CudaDevice) -> Vec<CudaAttentionKernel> {
    kernels(dev)
        .into_iter()
        .filter(|&k| k != CudaAttentionKernel::MmaSync)
        .collect()
}

/// An additive key-padding mask `[batch, seq]` on the device that drops the last `dropped`
/// keys of batch row 1 and keeps everything else.
fn drop_last_keys_of_row_1(
    dev: &CudaDevice,
    batch: usize,
    seq: usize,
    dropped: usize,
) -> cudarc::driver::CudaSlice<f32> {
    let kpm: Vec<f32> = (0..batch * seq)
        .map(|i| {
            if i / seq == 1 && i % seq >= seq - dropped {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    dev.upload(&kpm).unwrap()
}

/// A bf16 device buffer, downloaded as f32.
fn download_f32(dev: &CudaDevice, x: &cudarc::driver::CudaSlice<bf16>) -> Vec<f32> {
    dev.download(x)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect()
}

/// Forward output and lse of one kernel on `layout`, outputs poisoned with NaN first.
fn forward_with(
    dev: &CudaDevice,
    gl: &CudaAttentionLayout,
    shape: AttentionShape,
    qkv: (
        &cudarc::driver::CudaSlice<bf16>,
        &cudarc::driver::CudaSlice<bf16>,
        &cudarc::driver::CudaSlice<bf16>,
    ),
    opts: &CudaAttentionOptions<bf16>,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
    let mut lse = dev.upload(&vec![f32::NAN; shape.lse_len()]).unwrap();
    attention_forward_cuda(dev, gl, shape, qkv, opts, &mut out, &mut lse).unwrap();
    (download_f32(dev, &out), dev.download(&lse).unwrap())
}

/// The at-scale tests' layouts of `heads` heads over `seq` tokens: BSLongformer (block 64),
/// BigBird of `bigbird_block` with a different random layout per head, and a block-64 layout
/// holding block (row r, column c) of head h where `on(h, r, c)`.
fn at_scale_layouts(
    heads: usize,
    seq: usize,
    bigbird_block: usize,
    on: impl Fn(usize, usize, usize) -> bool,
) -> (Layout, Layout, Layout) {
    let mut longformer = BSLongformerConfig::new(heads);
    longformer.block = 64;
    let mut bigbird = BigBirdConfig::new(heads);
    bigbird.block = bigbird_block;
    bigbird.different_layout_per_head = true;
    let nb = seq.div_ceil(64);
    let mask: Vec<u8> = (0..heads * nb * nb)
        .map(|i| u8::from(on(i / (nb * nb), (i / nb) % nb, i % nb)))
        .collect();
    (
        longformer.make_layout(seq).unwrap(),
        bigbird.make_layout(seq).unwrap(),
        Layout::from_mask(heads, nb, 64, mask).unwrap(),
    )
}

#[test]
fn gpu_forward_kernels_agree_at_scale() {
    // The reference checks above run small shapes (a few dozen CTAs). At the bench's size
    // (B 4, H 16, L 4096: thousands of work items, several waves of CTAs) compare every other
    // kernel the device runs (Auto, and on an H100 the Hopper ones) with the mma.sync one
    // (itself checked against the reference) on BSLongformer (global rows split into
    // pieces), BigBird with random blocks, and a layout with empty rows between short ones;
    // causal and key padding on half of the cases.
    let dev = gpu();
    let others = kernels_besides_mma_sync(&dev);
    let (heads, seq) = (16usize, 4096usize);
    // Row r of head h: empty when (7 r + h) % 9 == 0, else the diagonal block, its right
    // neighbour and column 0; row 0 sees every column (split into pieces).
    let (longformer, bigbird, empty_rows) = at_scale_layouts(heads, seq, 64, |h, r, c| {
        r == 0 || ((7 * r + h) % 9 != 0 && (c == r || c == r + 1 || c == 0))
    });
    let layouts = [
        ("bslongformer", longformer),
        ("bigbird", bigbird),
        ("empty rows", empty_rows),
    ];
    let mut data = Data::new(0x9e37_79b9_7f4a_7c15);
    for d in [64usize, 128] {
        let shape = AttentionShape {
            batch: 4,
            heads,
            seq_len: seq,
            head_dim: d,
        };
        let n = shape.qkv_len();
        let q = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let k = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let v = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let kpm = drop_last_keys_of_row_1(&dev, 4, seq, 1000);
        for (li, (name, layout)) in layouts.iter().enumerate() {
            let gl = CudaAttentionLayout::new(&dev, layout).unwrap();
            let masked = (li + d / 64) % 2 == 0;
            let opts = |kernel| CudaAttentionOptions {
                causal: masked,
                key_padding_mask: masked.then_some((&kpm).into()),
                kernel,
                ..Default::default()
            };
            let (want_o, want_l) = forward_with(
                &dev,
                &gl,
                shape,
                (&q, &k, &v),
                &opts(CudaAttentionKernel::MmaSync),
            );
            for &kernel in &others {
                let got = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(kernel));
                let ctx = format!("{kernel:?}, {name}, D {d}, causal and key padding {masked}");
                assert_forwards_agree(&got, (&want_o[..], &want_l[..]), "mma.sync", &ctx);
            }
        }
    }
}

/// Asserts that two forwards of one call agree: lse equal (infinities of rows with no visible
/// key) or within 1e-3 relative, outputs within bf16 rounding (both round f32 sums to 8 bits;
/// the sums differ in order only). `want_is` names the kernel `want` came from.
fn assert_forwards_agree(
    (got_o, got_l): &(Vec<f32>, Vec<f32>),
    (want_o, want_l): (&[f32], &[f32]),
    want_is: &str,
    ctx: &str,
) {
    for (i, (g, w)) in got_l.iter().zip(want_l).enumerate() {
        let same = g == w || (g - w).abs() <= 1e-3 * (1.0 + w.abs());
        assert!(same, "lse[{i}] = {g}, {want_is} {w} ({ctx})");
    }
    for (i, (g, w)) in got_o.iter().zip(want_o).enumerate() {
        let close = (g - w).abs() <= 2e-2 + 1e-2 * w.abs();
        assert!(close, "out[{i}] = {g}, {want_is} {w} ({ctx})");
    }
}

#[test]
fn gpu_backward_kernels_agree_at_scale() {
    // The backward's reference checks run small shapes too. At a bench-like size (B 2, H 16,
    // L 4000: 63 key chunks, so a pair of chunks has its second past the last) compare dQ, dK
    // and dV of every other kernel the device runs (Auto, which runs the pair backward at
    // D 128 on BigBird block 128; Wgmma; WgmmaPairs everywhere) with the mma.sync one (itself
    // checked against the reference), from the same forward output; long columns are split
    // into pieces (global blocks) and some columns are empty. Causal and key padding on half
    // of the cases.
    let dev = gpu();
    let others = kernels_besides_mma_sync(&dev);
    let (batch, heads, seq) = (2usize, 16usize, 4000usize);
    // Column c of head h: empty when (5 c + h) % 7 == 0, else the diagonal block, the one above
    // and row 0; column 0 is seen by every row (split into pieces).
    let (longformer, bigbird, empty_columns) = at_scale_layouts(heads, seq, 128, |h, r, c| {
        c == 0 || ((5 * c + h) % 7 != 0 && (r == c || r + 1 == c || r == 0))
    });
    // Row r of head h: empty when (7 r + h) % 9 == 0 (no key sees it, so its dq is 0 from the
    // zeroed accumulator alone), else column 0, the diagonal and the block right of it.
    let nb = seq.div_ceil(64);
    let empty_rows = Layout::from_mask(
        heads,
        nb,
        64,
        (0..heads * nb * nb)
            .map(|i| {
                let (h, r, c) = (i / (nb * nb), (i / nb) % nb, i % nb);
                u8::from((7 * r + h) % 9 != 0 && (c == 0 || c == r || c == r + 1))
            })
            .collect(),
    )
    .unwrap();
    let layouts = [
        ("bigbird b128", bigbird),
        ("bslongformer b64", longformer),
        ("empty columns", empty_columns),
        ("empty rows", empty_rows),
    ];
    let mut data = Data::new(0x2545_f491_4f6c_dd1d);
    for d in [64usize, 128] {
        let shape = AttentionShape {
            batch,
            heads,
            seq_len: seq,
            head_dim: d,
        };
        let n = shape.qkv_len();
        let q = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let k = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let v = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
        let dout = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
        let kpm = drop_last_keys_of_row_1(&dev, batch, seq, 900);
        for (li, (name, layout)) in layouts.iter().enumerate() {
            let gl = CudaAttentionLayout::new(&dev, layout).unwrap();
            let masked = (li + d / 64) % 2 == 1;
            let opts = |kernel| CudaAttentionOptions {
                causal: masked,
                key_padding_mask: masked.then_some((&kpm).into()),
                kernel,
                ..Default::default()
            };
            let mut out = dev.upload(&poisoned::<bf16>(n)).unwrap();
            let mut lse = dev.upload(&vec![f32::NAN; shape.lse_len()]).unwrap();
            let mma = opts(CudaAttentionKernel::MmaSync);
            attention_forward_cuda(&dev, &gl, shape, (&q, &k, &v), &mma, &mut out, &mut lse)
                .unwrap();
            let grads = |opts: &CudaAttentionOptions<bf16>| -> [Vec<f32>; 3] {
                let poison = || dev.upload(&poisoned::<bf16>(n)).unwrap();
                let (mut gq, mut gk, mut gv) = (poison(), poison(), poison());
                let g = CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv);
                attention_backward_cuda(
                    &dev,
                    &gl,
                    shape,
                    (&q, &k, &v),
                    (&out, &lse),
                    &dout,
                    opts,
                    g,
                )
                .unwrap();
                [gq, gk, gv].map(|x| download_f32(&dev, &x))
            };
            let want = grads(&mma);
            for &kernel in &others {
                let got = grads(&opts(kernel));
                let pairs = kernel.backward_pairs(dev.compute_capability(), &gl, d, false);
                let ctx = format!(
                    "{kernel:?} (pair backward {pairs}), {name}, D {d}, causal and key padding {masked}"
                );
                for (what, g, w) in [
                    ("dq", &got[0], &want[0]),
                    ("dk", &got[1], &want[1]),
                    ("dv", &got[2], &want[2]),
                ] {
                    // Both round f32 sums to bf16; the sums differ in order (dQ's reductions
                    // arrive in any order), so compare against the tensor's scale.
                    let max = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    let (mut num, mut den) = (0.0f64, 0.0f64);
                    for (i, (g, w)) in g.iter().zip(w).enumerate() {
                        assert!(
                            g.is_finite() && (g - w).abs() <= 2e-2 * max + 1e-2 * w.abs(),
                            "{what}[{i}] = {g}, mma.sync {w} (max {max}) ({ctx})"
                        );
                        num += ((g - w) as f64).powi(2);
                        den += (*w as f64).powi(2);
                    }
                    let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
                    assert!(rel <= 1e-2, "{what} relative difference {rel} ({ctx})");
                }
            }
        }
    }
}

/// Bit patterns of a downloaded buffer, for exact comparisons.
fn bits<T: Element + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    x: &cudarc::driver::CudaSlice<T>,
) -> Vec<u32> {
    dev.download(x)
        .unwrap()
        .iter()
        .map(|v| v.to_f32().to_bits())
        .collect()
}

/// `[pad zeros | parts...]` in one device buffer: the parts then start at `pad`, `pad + len`, ...
fn packed<T: Element + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    pad: usize,
    parts: &[&[T]],
) -> cudarc::driver::CudaSlice<T> {
    let mut host = vec![T::from_f32_lossy(0.0); pad];
    for p in parts {
        host.extend_from_slice(p);
    }
    dev.upload(&host).unwrap()
}

/// Forward and backward read through views at (16-byte aligned) offsets of bigger buffers, and
/// through raw device pointers, give exactly the whole-buffer results (dq up to the order of
/// its f32 atomics), with a key-padding mask and a bias, on every kernel family.
#[test]
fn gpu_views_and_raw_pointers_match_whole_buffers() {
    let dev = gpu();
    let b = ViewBuffers::new(&dev);
    let (n, nl) = (b.shape.qkv_len(), b.shape.lse_len());
    for kernel in kernels(&dev) {
        let whole_opts = CudaAttentionOptions {
            causal: true,
            key_padding_mask: Some((&b.wkpm).into()),
            bias: Some((&b.wbias).into()),
            kernel,
            ..Default::default()
        };
        let view_opts = CudaAttentionOptions {
            key_padding_mask: Some(b.pkpm.slice(4..).into()),
            bias: Some(b.pbias.slice(8..).into()),
            ..whole_opts.clone()
        };
        let mut out = dev.upload(&poisoned::<bf16>(n)).unwrap();
        let mut lse = dev.upload(&vec![f32::NAN; nl]).unwrap();
        attention_forward_cuda(
            &dev,
            &b.gl,
            b.shape,
            (&b.wq, &b.wk, &b.wv),
            &whole_opts,
            &mut out,
            &mut lse,
        )
        .unwrap();
        let (vout, vlse) = b.forward_through_views(&dev, &view_opts, (&out, &lse));
        b.forward_through_raw_pointers(&dev, &whole_opts, (&out, &lse));
        b.backward_through_views(
            &dev,
            (&whole_opts, &view_opts),
            (&out, &lse),
            (&vout, &vlse),
        );
    }
}

/// The buffers of `gpu_views_and_raw_pointers_match_whole_buffers`: each input whole, and the
/// same values packed at offsets of bigger buffers.
struct ViewBuffers {
    shape: AttentionShape,
    gl: CudaAttentionLayout,
    wq: cudarc::driver::CudaSlice<bf16>,
    wk: cudarc::driver::CudaSlice<bf16>,
    wv: cudarc::driver::CudaSlice<bf16>,
    wdo: cudarc::driver::CudaSlice<bf16>,
    wbias: cudarc::driver::CudaSlice<bf16>,
    wkpm: cudarc::driver::CudaSlice<f32>,
    /// q, k, v and dout after 8 (16 bytes of) bf16 of padding.
    qkv: cudarc::driver::CudaSlice<bf16>,
    /// The bias after 8 bf16 of padding.
    pbias: cudarc::driver::CudaSlice<bf16>,
    /// The key-padding mask after 4 f32 of padding.
    pkpm: cudarc::driver::CudaSlice<f32>,
}

impl ViewBuffers {
    fn new(dev: &CudaDevice) -> Self {
        let shape = AttentionShape {
            batch: 2,
            heads: 2,
            seq_len: 200,
            head_dim: 64,
        };
        let n = shape.qkv_len();
        let layout = BigBirdConfig::new(2).make_layout(shape.seq_len).unwrap();
        let gl = CudaAttentionLayout::new(dev, &layout).unwrap();
        let mut data = Data::new(91);
        let (q, k, v, dout): (Vec<bf16>, Vec<bf16>, Vec<bf16>, Vec<bf16>) = (
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
        );
        let bias: Vec<bf16> = data.vec(n / shape.head_dim * shape.seq_len, -0.5, 0.5);
        let kpm: Vec<f32> = (0..shape.batch * shape.seq_len)
            .map(|i| if i % 9 == 4 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let (wq, wk, wv, wdo) = (
            dev.upload(&q).unwrap(),
            dev.upload(&k).unwrap(),
            dev.upload(&v).unwrap(),
            dev.upload(&dout).unwrap(),
        );
        let (wbias, wkpm) = (dev.upload(&bias).unwrap(), dev.upload(&kpm).unwrap());
        ViewBuffers {
            shape,
            gl,
            wq,
            wk,
            wv,
            wdo,
            wbias,
            wkpm,
            qkv: packed(dev, 8, &[&q, &k, &v, &dout]),
            pbias: packed(dev, 8, &[&bias]),
            pkpm: packed(dev, 4, &[&kpm]),
        }
    }

    /// Elements of the bias `[B, H, L, L]`.
    fn bias_len(&self) -> usize {
        self.shape.qkv_len() / self.shape.head_dim * self.shape.seq_len
    }

    /// q, k and v as views of the packed buffer.
    fn qkv_views(
        &self,
    ) -> (
        cudarc::driver::CudaView<'_, bf16>,
        cudarc::driver::CudaView<'_, bf16>,
        cudarc::driver::CudaView<'_, bf16>,
    ) {
        let n = self.shape.qkv_len();
        (
            self.qkv.slice(8..8 + n),
            self.qkv.slice(8 + n..8 + 2 * n),
            self.qkv.slice(8 + 2 * n..8 + 3 * n),
        )
    }

    /// The forward with inputs of one packed buffer and outputs at offsets of bigger ones gives
    /// the whole-buffer `(out, lse)` and leaves the outputs' surroundings alone; returns the
    /// bigger output buffers (out at 16, lse at 1).
    fn forward_through_views(
        &self,
        dev: &CudaDevice,
        view_opts: &CudaAttentionOptions<'_, bf16>,
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) -> (
        cudarc::driver::CudaSlice<bf16>,
        cudarc::driver::CudaSlice<f32>,
    ) {
        let (n, nl) = (self.shape.qkv_len(), self.shape.lse_len());
        let kernel = view_opts.kernel;
        let mut vout = dev.upload(&poisoned::<bf16>(n + 24)).unwrap();
        let mut vlse = dev.upload(&vec![f32::NAN; nl + 3]).unwrap();
        attention_forward_cuda(
            dev,
            &self.gl,
            self.shape,
            self.qkv_views(),
            view_opts,
            vout.slice_mut(16..16 + n),
            vlse.slice_mut(1..1 + nl),
        )
        .unwrap();
        let vo = bits(dev, &vout);
        assert_eq!(
            &vo[16..16 + n],
            &bits(dev, out)[..],
            "{kernel:?}: out through views"
        );
        let vl = bits(dev, &vlse);
        assert_eq!(
            &vl[1..1 + nl],
            &bits(dev, lse)[..],
            "{kernel:?}: lse through views"
        );
        assert!(
            vo[..16]
                .iter()
                .chain(&vo[16 + n..])
                .all(|b| f32::from_bits(*b).is_nan()),
            "{kernel:?}: out outside the view untouched"
        );
        (vout, vlse)
    }

    /// The forward through raw pointers into the packed buffers gives the whole-buffer
    /// `(out, lse)`.
    fn forward_through_raw_pointers(
        &self,
        dev: &CudaDevice,
        whole_opts: &CudaAttentionOptions<'_, bf16>,
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) {
        use cudarc::driver::{DevicePtr, DevicePtrMut};
        use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
        let (n, nl, nb) = (self.shape.qkv_len(), self.shape.lse_len(), self.bias_len());
        let kpm_len = self.shape.batch * self.shape.seq_len;
        let kernel = whole_opts.kernel;
        let mut rout = dev.upload(&poisoned::<bf16>(n)).unwrap();
        let mut rlse = dev.upload(&vec![f32::NAN; nl]).unwrap();
        {
            let s = dev.stream();
            let (base, _g1) = self.qkv.device_ptr(s);
            let (b_ptr, _g2) = self.pbias.device_ptr(s);
            let (m_ptr, _g3) = self.pkpm.device_ptr(s);
            let (o_ptr, _g4) = rout.device_ptr_mut(s);
            let (l_ptr, _g5) = rlse.device_ptr_mut(s);
            // SAFETY: each pointer addresses `len` initialised elements of its buffer, on this
            // device, alive and used by nothing else until the synchronize below.
            let (rq, rk, rv, rb, rm, ro, rl) = unsafe {
                (
                    DeviceBuf::<bf16>::from_raw(base + 16, n),
                    DeviceBuf::<bf16>::from_raw(base + 16 + 2 * n as u64, n),
                    DeviceBuf::<bf16>::from_raw(base + 16 + 4 * n as u64, n),
                    DeviceBuf::<bf16>::from_raw(b_ptr + 16, nb),
                    DeviceBuf::<f32>::from_raw(m_ptr + 16, kpm_len),
                    DeviceBufMut::<bf16>::from_raw(o_ptr, n),
                    DeviceBufMut::<f32>::from_raw(l_ptr, nl),
                )
            };
            let raw_opts = CudaAttentionOptions {
                key_padding_mask: Some(rm),
                bias: Some(rb),
                ..whole_opts.clone()
            };
            attention_forward_cuda(dev, &self.gl, self.shape, (rq, rk, rv), &raw_opts, ro, rl)
                .unwrap();
            dev.synchronize().unwrap();
        }
        assert_eq!(
            bits(dev, &rout),
            bits(dev, out),
            "{kernel:?}: out through raw pointers"
        );
        assert_eq!(
            bits(dev, &rlse),
            bits(dev, lse),
            "{kernel:?}: lse through raw pointers"
        );
    }

    /// The backward on whole buffers, then through views (inputs packed, gradients in one
    /// `[3, n]` buffer after 8 elements, dbias at an offset), gives the same gradients (dq up to
    /// the order of its f32 atomics).
    fn backward_through_views(
        &self,
        dev: &CudaDevice,
        (whole_opts, view_opts): (
            &CudaAttentionOptions<'_, bf16>,
            &CudaAttentionOptions<'_, bf16>,
        ),
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
        (vout, vlse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) {
        let (n, nl, nb) = (self.shape.qkv_len(), self.shape.lse_len(), self.bias_len());
        let kernel = whole_opts.kernel;
        let poison = || dev.upload(&poisoned::<bf16>(n)).unwrap();
        let (mut gq, mut gk, mut gv) = (poison(), poison(), poison());
        let mut gb = dev.upload(&poisoned::<bf16>(nb)).unwrap();
        let grads = CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv).with_dbias(&mut gb);
        attention_backward_cuda(
            dev,
            &self.gl,
            self.shape,
            (&self.wq, &self.wk, &self.wv),
            (out, lse),
            &self.wdo,
            whole_opts,
            grads,
        )
        .unwrap();
        let mut g3 = dev.upload(&poisoned::<bf16>(8 + 3 * n)).unwrap();
        let mut vgb = dev.upload(&poisoned::<bf16>(nb + 8)).unwrap();
        {
            let (_, mut tail) = g3.split_at_mut(8);
            let (vdq, mut rest) = tail.split_at_mut(n);
            let (vdk, vdv) = rest.split_at_mut(n);
            let grads = CudaAttentionGrads::new(vdq, vdk, vdv).with_dbias(vgb.slice_mut(8..));
            let saved = (vout.slice(16..16 + n), vlse.slice(1..1 + nl));
            let vdout = self.qkv.slice(8 + 3 * n..);
            attention_backward_cuda(
                dev,
                &self.gl,
                self.shape,
                self.qkv_views(),
                saved,
                vdout,
                view_opts,
                grads,
            )
            .unwrap();
        }
        let g3b = bits(dev, &g3);
        assert_eq!(
            &g3b[8 + n..8 + 2 * n],
            &bits(dev, &gk)[..],
            "{kernel:?}: dk through views"
        );
        assert_eq!(
            &g3b[8 + 2 * n..],
            &bits(dev, &gv)[..],
            "{kernel:?}: dv through views"
        );
        assert_eq!(
            &bits(dev, &vgb)[8..],
            &bits(dev, &gb)[..],
            "{kernel:?}: dbias through views"
        );
        // dq sums f32 atomics in no fixed order: equal up to the last bf16 bit.
        let (vdq, wdq) = (dev.download(&g3).unwrap(), dev.download(&gq).unwrap());
        for (i, (a, b)) in vdq[8..8 + n].iter().zip(&wdq).enumerate() {
            let (a, b) = (a.to_f32(), b.to_f32());
            assert!(
                (a - b).abs() <= b.abs() / 64.0 + 1e-6,
                "{kernel:?}: dq[{i}] {a} vs {b}"
            );
        }
    }
}

/// A q, k, v, out or gradient view that breaks the kernels' 16-byte alignment is a typed error
/// naming the buffer and its alignment (both kernel families load these rows in 16-byte
/// pieces, so there is no kernel to fall back to); an lse raw pointer off its f32 alignment
/// too. A bias at such an offset is not refused: the per-element kernels read it, with the
/// same result as the aligned bias up to rounding.
#[test]
fn gpu_misaligned_views_are_typed_errors() {
    use ltd_core::cuda::DeviceBufMut;
    let dev = gpu();
    let shape = AttentionShape {
        batch: 1,
        heads: 2,
        seq_len: 128,
        head_dim: 64,
    };
    let (n, nl) = (shape.qkv_len(), shape.lse_len());
    let gl =
        CudaAttentionLayout::new(&dev, &FixedConfig::new(2).make_layout(128).unwrap()).unwrap();
    let mut data = Data::new(5);
    let x: Vec<bf16> = data.vec(n + 8, -1.0, 1.0);
    let big = dev.upload(&x).unwrap();
    let mut out = dev.upload(&vec![bf16::ZERO; n + 8]).unwrap();
    let mut lse = dev.upload(&vec![0.0f32; nl + 1]).unwrap();
    let opts = CudaAttentionOptions::<bf16>::default();
    let misaligned = |e: SparseAttnError, name: &str, align: u64, required: u64| match e {
        SparseAttnError::Misaligned {
            what,
            alignment,
            required: r,
            ..
        } => assert_eq!((what.as_str(), alignment, r), (name, align, required)),
        other => panic!("{name}: expected Misaligned, got {other}"),
    };
    let aligned = big.slice(..n);
    let e = attention_forward_cuda(
        &dev,
        &gl,
        shape,
        (big.slice(1..1 + n), aligned.slice(..), aligned.slice(..)),
        &opts,
        out.slice_mut(..n),
        lse.slice_mut(..nl),
    )
    .unwrap_err();
    misaligned(e, "q", 2, 16);
    let e = attention_forward_cuda(
        &dev,
        &gl,
        shape,
        (big.slice(..n), big.slice(..n), big.slice(4..4 + n)),
        &opts,
        out.slice_mut(..n),
        lse.slice_mut(..nl),
    )
    .unwrap_err();
    misaligned(e, "v", 8, 16);
    let e = attention_forward_cuda(
        &dev,
        &gl,
        shape,
        (big.slice(..n), big.slice(..n), big.slice(..n)),
        &opts,
        out.slice_mut(2..2 + n),
        lse.slice_mut(..nl),
    )
    .unwrap_err();
    misaligned(e, "out", 4, 16);
    {
        use cudarc::driver::DevicePtrMut;
        let (l_ptr, _g) = lse.device_ptr_mut(dev.stream());
        // SAFETY: never dereferenced: the call is refused before any launch.
        let bad = unsafe { DeviceBufMut::<f32>::from_raw(l_ptr + 2, nl) };
        let e = attention_forward_cuda(
            &dev,
            &gl,
            shape,
            (big.slice(..n), big.slice(..n), big.slice(..n)),
            &opts,
            out.slice_mut(..n),
            bad,
        )
        .unwrap_err();
        misaligned(e, "lse", 2, 4);
    }
    let mut g = dev.upload(&vec![bf16::ZERO; 3 * n + 8]).unwrap();
    {
        let (_, mut tail) = g.split_at_mut(3);
        let (dq, mut rest) = tail.split_at_mut(n);
        let (dk, mut rest) = rest.split_at_mut(n);
        let (dv, _) = rest.split_at_mut(n); // every gradient exactly n long: only dq's start is off
        let e = attention_backward_cuda(
            &dev,
            &gl,
            shape,
            (big.slice(..n), big.slice(..n), big.slice(..n)),
            (big.slice(..n), lse.slice(..nl)),
            big.slice(..n),
            &opts,
            CudaAttentionGrads::new(dq, dk, dv),
        )
        .unwrap_err();
        misaligned(e, "dq", 2, 16);
    }
    // A bias 3 elements in: read element by element, same result as an aligned one.
    let nb = n / shape.head_dim * shape.seq_len;
    let b: Vec<bf16> = data.vec(nb, -0.5, 0.5);
    let (aligned_bias, odd_bias) = (dev.upload(&b).unwrap(), packed(&dev, 3, &[&b]));
    let run = |opts: &CudaAttentionOptions<bf16>| {
        let mut o = dev.upload(&poisoned::<bf16>(n)).unwrap();
        let mut l = dev.upload(&vec![f32::NAN; nl]).unwrap();
        attention_forward_cuda(
            &dev,
            &gl,
            shape,
            (big.slice(..n), big.slice(..n), big.slice(..n)),
            opts,
            &mut o,
            &mut l,
        )
        .unwrap();
        (dev.download(&o).unwrap(), dev.download(&l).unwrap())
    };
    for kernel in kernels(&dev) {
        let (want_o, want_l) = run(&CudaAttentionOptions {
            bias: Some((&aligned_bias).into()),
            kernel,
            ..Default::default()
        });
        let (got_o, got_l) = run(&CudaAttentionOptions {
            bias: Some(odd_bias.slice(3..).into()),
            kernel,
            ..Default::default()
        });
        for (i, (a, b)) in got_o.iter().zip(&want_o).enumerate() {
            let (a, b) = (a.to_f32(), b.to_f32());
            assert!(
                (a - b).abs() <= 1e-2 + b.abs() / 64.0,
                "{kernel:?}: out[{i}] {a} vs {b}"
            );
        }
        for (i, (a, b)) in got_l.iter().zip(&want_l).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "{kernel:?}: lse[{i}] {a} vs {b}"
            );
        }
    }
}

/// `SparseSelfAttention`'s GPU calls check lengths before building a layout (a huge length
/// with short buffers is a length error) and do nothing for an empty batch.
#[test]
fn gpu_module_checks_before_the_layout() {
    use ltd_sparse_attn::SparseSelfAttention;
    let dev = gpu();
    let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let x = dev.upload(&[bf16::ZERO; 64]).unwrap();
    let mut out = dev.upload(&[bf16::ZERO; 64]).unwrap();
    let mut lse = dev.upload(&[0.0f32; 4]).unwrap();
    let huge = AttentionShape {
        batch: 1,
        heads: 2,
        seq_len: 1 << 40,
        head_dim: 64,
    };
    let opts = CudaAttentionOptions::default();
    let e = attn
        .forward_cuda(&dev, huge, (&x, &x, &x), &opts, &mut out, &mut lse)
        .unwrap_err();
    assert!(
        matches!(e, SparseAttnError::ShapeMismatch { ref what, .. } if what == "q"),
        "{e}"
    );
    assert!(attn.cache().is_empty(), "no layout was built");
    let empty = AttentionShape {
        batch: 0,
        heads: 2,
        seq_len: 128,
        head_dim: 64,
    };
    let none = dev.upload(&[bf16::ZERO; 1]).unwrap();
    let mut none_out = dev.upload(&[bf16::ZERO; 1]).unwrap();
    let mut none_lse = dev.upload(&[0.0f32; 1]).unwrap();
    attn.forward_cuda(
        &dev,
        empty,
        (none.slice(..0), none.slice(..0), none.slice(..0)),
        &opts,
        none_out.slice_mut(..0),
        none_lse.slice_mut(..0),
    )
    .unwrap();
    let one = || dev.upload(&[bf16::ZERO; 1]).unwrap();
    let (mut a, mut b, mut c) = (one(), one(), one());
    let grads = CudaAttentionGrads::new(a.slice_mut(..0), b.slice_mut(..0), c.slice_mut(..0));
    attn.backward_cuda(
        &dev,
        empty,
        (none.slice(..0), none.slice(..0), none.slice(..0)),
        (none.slice(..0), none_lse.slice(..0)),
        none.slice(..0),
        &opts,
        grads,
    )
    .unwrap();
    assert!(attn.cache().is_empty(), "no layout for an empty batch");
}

/// Layouts of block 16 and 32 whose key chunks mostly hold one or two active 16-key slices per
/// query tile, so the gathered forward packs them: Fixed (bi- and unidirectional, windows of one
/// chunk), BigBird of block 16 and 32, Variable of block 16 and 32, and "stripes" (block 16:
/// the diagonal, slice 3 of every chunk for all rows, slice 1 of every other chunk for even
/// rows; long enough rows are split into pieces).
fn gathered_layouts(heads: usize, seq: usize, seed: u64) -> Vec<(&'static str, Layout)> {
    let fixed = |dir| {
        let mut c = FixedConfig::new(heads);
        c.num_local_blocks = 4;
        c.attention = dir;
        c.make_layout(seq).unwrap()
    };
    let mut bigbird32 = BigBirdConfig::new(heads);
    bigbird32.block = 32;
    bigbird32.seed = seed;
    vec![
        ("fixed b16", fixed(Direction::Bidirectional)),
        ("fixed b16 unidirectional", fixed(Direction::Unidirectional)),
        ("bigbird b16", make_layout(1, heads, 16, seq, false, seed)),
        ("bigbird b32", bigbird32.make_layout(seq).unwrap()),
        ("variable b16", make_layout(3, heads, 16, seq, false, seed)),
        ("variable b32", make_layout(3, heads, 32, seq, true, seed)),
        ("stripes b16", stripes(heads, seq)),
    ]
}

/// The "stripes" layout of [`gathered_layouts`].
fn stripes(heads: usize, seq: usize) -> Layout {
    let nb = seq.div_ceil(16);
    let mask: Vec<u8> = (0..heads * nb * nb)
        .map(|i| {
            let (r, c) = ((i / nb) % nb, i % nb);
            u8::from(c == r || c % 4 == 3 || (c % 8 == 1 && r % 2 == 0))
        })
        .collect();
    Layout::from_mask(heads, nb, 16, mask).unwrap()
}

/// Whether the gathered forward runs for `kernel` on `layout` (no bias), building its tables.
fn runs_gathered(dev: &CudaDevice, layout: &Layout, kernel: CudaAttentionKernel) -> bool {
    let gl = CudaAttentionLayout::new(dev, layout).unwrap();
    kernel.forward_gathered(dev.compute_capability(), &gl, false)
}

/// The device when it runs the gathered forward (compute capability 9.0), else `None` after a
/// note that the test has nothing to check.
fn gathered_gpu() -> Option<CudaDevice> {
    let dev = gpu();
    if CudaAttentionKernel::WgmmaGathered.runs_on(dev.compute_capability()) {
        Some(dev)
    } else {
        eprintln!("the gathered forward runs on compute capability 9.0 only: nothing to check");
        None
    }
}

#[test]
fn gpu_gathered_forward_matches_reference() {
    // The gathered Hopper forward (forced, so it cannot pass on the plain path) against the
    // reference, and the backward after it: every gathered layout, lengths that are not
    // multiples of 64 or 16, D 64 and 128, bf16 and f16, causal and key padding each on and off.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let cases = [
        (1000usize, 64usize, false, true, true),
        (777, 128, true, false, false),
        (1001, 64, true, true, false),
        (960, 128, false, false, true),
    ];
    for (i, &(seq, d, causal, kpm, bf)) in cases.iter().enumerate() {
        for (name, layout) in gathered_layouts(2, seq, i as u64) {
            assert!(runs_gathered(&dev, &layout, forced), "{name} L {seq}");
            let seed = 100 + i as u64;
            if bf {
                check::<bf16>(
                    &dev, &layout, 2, 2, seq, d, causal, kpm, false, seed, forced,
                );
            } else {
                check::<f16>(
                    &dev, &layout, 2, 2, seq, d, causal, kpm, false, seed, forced,
                );
            }
        }
    }
    // Auto takes it where the gathered table is markedly shorter (Fixed b16), never with a bias.
    let (_, fixed) = gathered_layouts(2, 1000, 0).swap_remove(0);
    assert!(runs_gathered(&dev, &fixed, CudaAttentionKernel::Auto));
    assert!(!runs_gathered(&dev, &fixed, CudaAttentionKernel::Wgmma));
    let gl = CudaAttentionLayout::new(&dev, &fixed).unwrap();
    assert!(!CudaAttentionKernel::Auto.forward_gathered((9, 0), &gl, true));
    let auto = CudaAttentionKernel::Auto;
    check::<bf16>(&dev, &fixed, 1, 2, 1000, 128, true, true, false, 5, auto);
    // With a bias the plain forward runs (no gathered bias kernel).
    check::<f16>(&dev, &fixed, 1, 2, 1000, 64, false, false, true, 6, forced);
}

#[test]
fn gpu_gathered_forward_split_rows_match_reference() {
    // Rows of the stripes layout hold more gathered chunks than a piece (16 entries) at
    // L = 4500, so they are split and combined; forward and backward against the reference.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let seq = 4500;
    let layout = stripes(1, seq);
    let g = GatheredTables::new(&CoarseTables::new(&layout));
    assert!(
        !g.forward_plan(g.forward_split_chunks(dev.sm_count()))
            .split
            .is_empty()
    );
    assert!(runs_gathered(&dev, &layout, forced));
    check::<bf16>(&dev, &layout, 1, 1, seq, 64, false, true, false, 21, forced);
    check::<f16>(
        &dev, &layout, 1, 1, seq, 128, true, false, false, 22, forced,
    );
}

#[test]
fn gpu_gathered_forward_agrees_with_plain_at_scale() {
    // The bench's Fixed block-16 layout (16 local blocks) at L = 16384 (rows of 20 entries, 16
    // of them gathered) and BigBird block 16 at L = 4096 (global rows split): the
    // gathered forward against the plain Hopper one, causal and key padding on half the cases.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let mut fixed = FixedConfig::new(4);
    fixed.num_local_blocks = 16;
    let mut bigbird = BigBirdConfig::new(4);
    bigbird.block = 16;
    bigbird.different_layout_per_head = true;
    let mut data = Data::new(0x5eed);
    for (name, layout, seq) in [
        ("fixed b16", fixed.make_layout(16384).unwrap(), 16384usize),
        ("bigbird b16", bigbird.make_layout(4096).unwrap(), 4096),
    ] {
        let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
        assert!(forced.forward_gathered(dev.compute_capability(), &gl, false));
        assert!(CudaAttentionKernel::Auto.forward_gathered(dev.compute_capability(), &gl, false));
        for d in [64usize, 128] {
            let shape = AttentionShape {
                batch: 2,
                heads: 4,
                seq_len: seq,
                head_dim: d,
            };
            let n = shape.qkv_len();
            let q = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
            let k = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
            let v = dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap();
            let kpm = drop_last_keys_of_row_1(&dev, 2, seq, seq / 3);
            let masked = d == 128;
            let opts = |kernel| CudaAttentionOptions {
                causal: masked,
                key_padding_mask: masked.then_some((&kpm).into()),
                kernel,
                ..Default::default()
            };
            let plain = opts(CudaAttentionKernel::Wgmma);
            let (want_o, want_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &plain);
            let got = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(forced));
            let ctx = format!("{name}, D {d}, causal and key padding {masked}");
            assert_forwards_agree(&got, (&want_o[..], &want_l[..]), "plain", &ctx);
        }
    }
}

#[test]
fn gpu_gathered_forward_nan_key_poisons_exactly_the_rows_that_see_it() {
    // A NaN in one key of K poisons (NaN output and lse) exactly the rows that see that key
    // (layout, causal), in the gathered forward as on the CPU path: key 1020 is in the summary
    // block of window 3 (a gathered slice of every other window's tiles), key 1000 in window 3
    // only (its slice is in no gathered chunk; the plain kernel loads it with the summary slice
    // and masks it). Every other row is finite and equals the plain forward's.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let seq = 2000;
    let mut c = FixedConfig::new(1);
    c.num_local_blocks = 16; // windows of 256 keys, block 16
    let layout = c.make_layout(seq).unwrap();
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    assert!(forced.forward_gathered(dev.compute_capability(), &gl, false));
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: seq,
        head_dim: 64,
    };
    let n = shape.qkv_len();
    let mut data = Data::new(77);
    let q = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
    let v = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
    let k_host: Vec<bf16> = data.vec(n, -1.0, 1.0);
    for bad in [1020usize, 1000] {
        let mut kh = k_host.clone();
        kh[bad * 64 + 5] = bf16::NAN;
        let k = dev.upload(&kh).unwrap();
        for causal in [false, true] {
            let opts = |kernel| CudaAttentionOptions::<bf16> {
                causal,
                kernel,
                ..Default::default()
            };
            let (got_o, got_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(forced));
            let plain = opts(CudaAttentionKernel::Wgmma);
            let (want_o, want_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &plain);
            let mut poisoned_rows = 0;
            for row in 0..seq {
                let sees = layout.is_active(0, row / 16, bad / 16) && (!causal || bad <= row);
                let ctx = format!("NaN key {bad}, row {row}, causal {causal}");
                let o = &got_o[row * 64..(row + 1) * 64];
                if sees {
                    poisoned_rows += 1;
                    assert!(got_l[row].is_nan(), "lse {} ({ctx})", got_l[row]);
                    assert!(o.iter().all(|x| x.is_nan()), "{ctx}");
                    continue;
                }
                let (w, wo) = (want_l[row], &want_o[row * 64..(row + 1) * 64]);
                assert!(!got_l[row].is_nan(), "{ctx}");
                assert!(
                    got_l[row] == w || (got_l[row] - w).abs() <= 1e-3 * (1.0 + w.abs()),
                    "{ctx}"
                );
                for (g, w) in o.iter().zip(wo) {
                    assert!(
                        g.is_finite() && (g - w).abs() <= 2e-2 + 1e-2 * w.abs(),
                        "{ctx}: {g} vs {w}"
                    );
                }
            }
            // Key 1020 is seen by every row without the causal mask, key 1000 by window 3 only.
            assert!(poisoned_rows > 0, "key {bad}");
            assert!(
                bad == 1020 || poisoned_rows < seq,
                "key {bad}: {poisoned_rows} rows"
            );
        }
    }
}
