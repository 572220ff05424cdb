//! `sparse_attention_forward` / `sparse_attention_backward` against the autograd op: the same
//! output and log-sum-exp-driven gradients bit for bit (they run the same kernels and glue), with
//! bias, key padding and both memory orders; bad arguments are typed errors. The `gpu_*` test
//! (feature `cuda`) checks the same on candle's CUDA stream with no device copies.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::values;
use ltd_candle::{
    LtdCandleError, QkvLayout, SparseAttentionGrads, SparseAttentionOptions, sparse_attention,
    sparse_attention_backward, sparse_attention_forward,
};
use ltd_sparse_attn::{BigBirdConfig, SparseSelfAttention};

fn tensor(dims: &[usize], seed: u64, dtype: DType, dev: &Device) -> Tensor {
    Tensor::from_vec(values(dims, seed), dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Candle's gradient accumulation (`zeros + g`) turns -0 into +0: zeros compare equal.
    v.iter()
        .map(|&x| if x == 0.0 { 0 } else { x.to_bits() })
        .collect()
}

/// The autograd op's output and gradients for the loss `sum(out * w)`, and the functional
/// pair's for `dout = w`.
fn both_ways(
    [q, k, v]: [&Tensor; 3],
    w: &Tensor,
    attn: &SparseSelfAttention,
    opts: &SparseAttentionOptions,
) -> ((Tensor, [Tensor; 4]), (Tensor, SparseAttentionGrads)) {
    let vars = [q, k, v].map(|t| Var::from_tensor(t).unwrap());
    let bias_var = opts.bias.as_ref().map(|b| Var::from_tensor(b).unwrap());
    let graph_opts = SparseAttentionOptions {
        bias: bias_var.as_ref().map(|b| b.as_tensor().clone()),
        ..opts.clone()
    };
    let out = sparse_attention(&vars[0], &vars[1], &vars[2], attn, &graph_opts).unwrap();
    let g = (out.to_dtype(DType::F32).unwrap() * w.to_dtype(DType::F32).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grad = |x: &Var| g.get(x).unwrap().clone();
    let dbias = bias_var
        .as_ref()
        .map(grad)
        .unwrap_or_else(|| Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap());
    let graph = (
        out.detach(),
        [grad(&vars[0]), grad(&vars[1]), grad(&vars[2]), dbias],
    );
    let (fout, lse) = sparse_attention_forward(q, k, v, attn, opts).unwrap();
    let dout = w.to_dtype(q.dtype()).unwrap();
    let fg = sparse_attention_backward(q, k, v, &fout, &lse, &dout, attn, opts).unwrap();
    (graph, (fout, fg))
}

fn check_same(dev: &Device, dtype: DType, order: QkvLayout, with_extras: bool, d: usize) {
    let (b, h, l) = (2, 2, 80);
    let attn = SparseSelfAttention::new(BigBirdConfig::new(h).into()).unwrap();
    let dims = match order {
        QkvLayout::Bhld => [b, h, l, d],
        QkvLayout::Blhd => [b, l, h, d],
    };
    let [q, k, v] = [1, 2, 3].map(|s| tensor(&dims, s, dtype, dev));
    // The loss weights are exact in every dtype, so `dout` is the same in both ways.
    let w = tensor(&dims, 4, dtype, dev).to_dtype(DType::F32).unwrap();
    let opts = SparseAttentionOptions {
        causal: true,
        layout: order,
        key_padding_mask: with_extras.then(|| {
            let keep: Vec<u8> = (0..b * l).map(|i| u8::from(i % 7 != 3)).collect();
            Tensor::from_vec(keep, (b, l), dev).unwrap()
        }),
        bias: with_extras.then(|| tensor(&[b, h, l, l], 5, dtype, dev)),
        ..Default::default()
    };
    let ((out, g), (fout, fg)) = both_ways([&q, &k, &v], &w, &attn, &opts);
    let what = format!("{dtype:?} {order:?} extras={with_extras}");
    assert_eq!(bits(&out), bits(&fout), "{what}: out");
    assert_eq!(bits(&g[1]), bits(&fg.dk), "{what}: dk");
    assert_eq!(bits(&g[2]), bits(&fg.dv), "{what}: dv");
    // dq: the GPU sums f32 atomics in no fixed order; the CPU is exact.
    if dev.is_cpu() {
        assert_eq!(bits(&g[0]), bits(&fg.dq), "{what}: dq");
    } else {
        let (a, e) = (bits(&g[0]), bits(&fg.dq));
        let close = a.iter().zip(&e).all(|(x, y)| {
            let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
            (x - y).abs() <= 1e-6 + y.abs() / 64.0
        });
        assert!(close, "{what}: dq");
    }
    match (&fg.dbias, with_extras) {
        (Some(db), true) => assert_eq!(bits(&g[3]), bits(db), "{what}: dbias"),
        (None, false) => {}
        (got, _) => panic!("{what}: dbias {got:?}"),
    }
}

#[test]
fn functional_pair_equals_the_autograd_op_bit_for_bit() {
    for dtype in [DType::F32, DType::BF16] {
        for order in [QkvLayout::Bhld, QkvLayout::Blhd] {
            for extras in [false, true] {
                check_same(&Device::Cpu, dtype, order, extras, 8);
            }
        }
    }
}

#[test]
fn functional_backward_checks_its_extra_arguments() {
    let dev = Device::Cpu;
    let attn = SparseSelfAttention::new(BigBirdConfig::new(2).into()).unwrap();
    let x = tensor(&[1, 2, 64, 4], 1, DType::F32, &dev);
    let opts = SparseAttentionOptions::default();
    let (out, lse) = sparse_attention_forward(&x, &x, &x, &attn, &opts).unwrap();
    assert_eq!(lse.dims(), &[1, 2, 64]);
    assert_eq!(lse.dtype(), DType::F32);
    let bwd = |out: &Tensor, lse: &Tensor, dout: &Tensor| {
        sparse_attention_backward(&x, &x, &x, out, lse, dout, &attn, &opts).unwrap_err()
    };
    let e = bwd(&out, &lse.narrow(2, 0, 32).unwrap(), &out);
    assert!(
        matches!(e, LtdCandleError::Shape { what: "lse", .. }),
        "{e}"
    );
    let e = bwd(&out, &lse.to_dtype(DType::F16).unwrap(), &out);
    assert!(
        matches!(e, LtdCandleError::DTypeMismatch { what: "lse", .. }),
        "{e}"
    );
    let e = bwd(&out.narrow(2, 0, 16).unwrap(), &lse, &out);
    assert!(
        matches!(e, LtdCandleError::Shape { what: "out", .. }),
        "{e}"
    );
    let e = bwd(&out, &lse, &out.to_dtype(DType::BF16).unwrap());
    assert!(
        matches!(e, LtdCandleError::DTypeMismatch { what: "dout", .. }),
        "{e}"
    );
    // A strided (transposed) log-sum-exp of the right shape is read correctly.
    let t = lse.transpose(1, 2).unwrap().contiguous().unwrap();
    let strided = t.transpose(1, 2).unwrap();
    assert!(!strided.is_contiguous());
    let a = sparse_attention_backward(&x, &x, &x, &out, &lse, &out, &attn, &opts).unwrap();
    let b = sparse_attention_backward(&x, &x, &x, &out, &strided, &out, &attn, &opts).unwrap();
    assert_eq!(bits(&a.dq), bits(&b.dq));
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_functional_pair_equals_the_autograd_op() {
    let dev = match candle_core::CudaDevice::new_with_stream(0) {
        Ok(d) => Device::Cuda(d),
        Err(e) => {
            panic!("the gpu_* tests need a CUDA device ({e}); skip them with `-- --skip gpu_`")
        }
    };
    for dtype in [DType::F16, DType::BF16] {
        for order in [QkvLayout::Bhld, QkvLayout::Blhd] {
            for extras in [false, true] {
                check_same(&dev, dtype, order, extras, 64);
            }
        }
    }
    // Contiguous [B, H, L, D]: no device copy in either function.
    let attn = SparseSelfAttention::new(BigBirdConfig::new(2).into()).unwrap();
    let x = tensor(&[2, 2, 128, 64], 9, DType::BF16, &dev);
    let opts = SparseAttentionOptions::default();
    let before = ltd_candle::cuda_device_copies();
    let (out, lse) = sparse_attention_forward(&x, &x, &x, &attn, &opts).unwrap();
    sparse_attention_backward(&x, &x, &x, &out, &lse, &out, &attn, &opts).unwrap();
    assert_eq!(ltd_candle::cuda_device_copies() - before, 0);
}
