//! Typed errors of the fused attention: bad shapes, misaligned views, kernels the GPU lacks.

use crate::common::{Data, kernels, make_layout, poisoned};
use crate::gpu_support::gpu;
use crate::packed;
use half::bf16;
use ltd_sparse_attn::cuda::{
    CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions,
    attention_backward_cuda, attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, FixedConfig, SparseAttnError};

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
        CudaAttentionKernel::WgmmaWarpSpecialized,
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
