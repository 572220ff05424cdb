//! The candle ops on CUDA tensors (feature `cuda`): the same properties as the CPU tests, on a
//! non-default candle stream, with tensors read at offsets (narrowed views). Every test is named
//! `gpu_*`: without a GPU they fail rather than pass having checked nothing, so skip them by
//! name there (`-- --skip gpu_`, as `.ci/run` does). A build with candle's `cuda` links the
//! driver library, so without one the binary does not start at all.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::values;
use ltd_candle::{
    LayerMask, LtdCandleError, MaskArg, QkvLayout, RandomLtd, SparseAttentionOptions,
    gather_tokens, route, sample_token_indices, sparse_attention,
};
use ltd_core::HiddenOrder;
use ltd_sparse_attn::{BigBirdConfig, FixedConfig, SparseSelfAttention};

/// Held by every test here: `cuda_device_copies` counts for the whole process, so a test that
/// asserts a count of zero must not run beside one that copies.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A candle device on GPU 0 with a stream of its own (not the default stream).
fn gpu() -> Device {
    match candle_core::CudaDevice::new_with_stream(0) {
        Ok(d) => Device::Cuda(d),
        Err(e) => panic!(
            "the gpu_* tests need a CUDA device ({e}); skip them with `-- --skip gpu_` on a machine without one"
        ),
    }
}

fn host(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::from_vec(values(dims, seed), dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn to_host_f32(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(what: &str, gpu: &Tensor, cpu: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(gpu.dims(), cpu.dims(), "{what}: shapes");
    let (a, b) = (to_host_f32(gpu), to_host_f32(cpu));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: gpu {x} vs cpu {y}"
        );
    }
}

#[test]
fn gpu_sampler_matches_cpu_bit_for_bit() {
    let _serial = serial();
    let dev = gpu();
    for (l, b, s, r) in [(3, 2, 100, 37), (22, 8, 2048, 1024), (1, 1, 5000, 1)] {
        let g = sample_token_indices(11, 7, l, b, s, r, &dev).unwrap();
        let c = sample_token_indices(11, 7, l, b, s, r, &Device::Cpu).unwrap();
        let g: Vec<u32> = g
            .to_device(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let c: Vec<u32> = c.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, c, "L {l} B {b} S {s} r {r}");
    }
}

/// gather_tokens and route (values and gradients) on the GPU equal the CPU's bit for bit, with
/// the hidden states read through an offset, strided view.
#[test]
fn gpu_token_ops_match_cpu() {
    let _serial = serial();
    let dev = gpu();
    for (order, dtype, (b, s, c, r)) in [
        (HiddenOrder::BatchSeq, DType::F32, (2, 64, 24, 20)),
        (HiddenOrder::SeqBatch, DType::BF16, (3, 50, 16, 7)),
        (HiddenOrder::BatchSeq, DType::F16, (1, 33, 5, 33)),
    ] {
        let dims = match order {
            HiddenOrder::BatchSeq => [b, s, c + 3],
            HiddenOrder::SeqBatch => [s, b, c + 3],
        };
        let part_dims = match order {
            HiddenOrder::BatchSeq => [b, r, c],
            HiddenOrder::SeqBatch => [r, b, c],
        };
        let run = |d: &Device| {
            let base = Var::from_tensor(&host(&dims, 1, dtype).to_device(d).unwrap()).unwrap();
            let h = base.narrow(2, 2, c).unwrap(); // offset 2, row pitch c + 3
            let out = Var::from_tensor(&host(&part_dims, 2, dtype).to_device(d).unwrap()).unwrap();
            let idx = sample_token_indices(5, 1, 2, b, s, r, d)
                .unwrap()
                .i(1)
                .unwrap();
            let part = gather_tokens(&h, &idx, order).unwrap();
            let y = route(&h, &out, &idx, order).unwrap();
            let w1 = host(&part_dims, 3, DType::F32).to_device(d).unwrap();
            let w2 = host(h.dims(), 4, DType::F32).to_device(d).unwrap();
            let loss = (part.to_dtype(DType::F32).unwrap() * &w1)
                .unwrap()
                .sum_all()
                .unwrap()
                .add(
                    &(y.to_dtype(DType::F32).unwrap() * &w2)
                        .unwrap()
                        .sum_all()
                        .unwrap(),
                )
                .unwrap();
            let g = loss.backward().unwrap();
            (
                part,
                y,
                g.get(&base).unwrap().clone(),
                g.get(&out).unwrap().clone(),
            )
        };
        let (gp, gy, gh, go) = run(&dev);
        let (cp, cy, ch, co) = run(&Device::Cpu);
        for (what, g, c) in [
            ("part", gp, cp),
            ("y", gy, cy),
            ("dh", gh, ch),
            ("dout", go, co),
        ] {
            assert_eq!(
                to_host_f32(&g),
                to_host_f32(&c),
                "{what} {order:?} {dtype:?}"
            );
        }
    }
}

/// The wrapper on the GPU (sampler, mask gather, gather, route) equals the CPU's.
#[test]
fn gpu_wrapper_matches_cpu() {
    let _serial = serial();
    let dev = gpu();
    let json = r#"{"train_batch_size": 2, "data_efficiency": {"data_routing": {"random_ltd": {
      "enabled": true, "total_layer_num": 3, "random_ltd_layer_num": 2, "random_ltd_layer_id": [1, 2],
      "model_mask_name": "attention_mask", "model_type": "encoder", "hidden_state_order": "seq_batch_dim",
      "random_ltd_schedule": {"min_value": 32, "max_value": 96, "schedule_type": "fixed_linear",
        "schedule_config": {"require_steps": 10, "seq_per_step": 16}}}}}}"#;
    let (b, s, c) = (2, 96, 32);
    let run = |d: &Device| {
        let ltd = RandomLtd::from_deepspeed_json(json, 3).unwrap();
        ltd.begin_step(2).unwrap();
        let h = Var::from_tensor(&host(&[s, b, c], 9, DType::F32).to_device(d).unwrap()).unwrap();
        let mask = host(&[b, 1, s, s], 10, DType::F32).to_device(d).unwrap();
        let w = Var::from_tensor(&host(&[c, c], 11, DType::F32).to_device(d).unwrap()).unwrap();
        let mut x = h.as_tensor().clone();
        let mut masks = vec![];
        for i in 0..3 {
            let layer = ltd.wrap(i, w.as_tensor().clone()).unwrap();
            x = layer
                .forward_with(&x, MaskArg::Tensor(&mask), |w, t, ctx| {
                    if let LayerMask::Tensor(m) = &ctx.mask {
                        masks.push(m.clone());
                    }
                    t.broadcast_matmul(&w.t()?)?.tanh()
                })
                .unwrap();
        }
        let g = x.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        (
            x,
            masks,
            g.get(&h).unwrap().clone(),
            g.get(&w).unwrap().clone(),
        )
    };
    let (gx, gm, gh, gw) = run(&dev);
    let (cx, cm, ch, cw) = run(&Device::Cpu);
    assert_eq!(gm.len(), 3);
    for (g, c) in gm.iter().zip(&cm) {
        assert_eq!(to_host_f32(g), to_host_f32(c), "gathered masks");
    }
    assert_close("y", &gx, &cx, 1e-5, 1e-4);
    assert_close("dh", &gh, &ch, 1e-4, 1e-3);
    assert_close("dw", &gw, &cw, 1e-3, 1e-3);
}

/// The attention op on the GPU (bf16 / f16, D 64 and 128) against the same op on the CPU (f32
/// compute), forward and every gradient; q, k, v are offset views of one projection.
#[test]
fn gpu_attention_matches_cpu() {
    let _serial = serial();
    let dev = gpu();
    for (dtype, d, l, order, causal, kpm, bias) in [
        (DType::BF16, 64, 256, QkvLayout::Bhld, true, false, false),
        (DType::F16, 64, 200, QkvLayout::Blhd, false, true, true),
        (DType::BF16, 128, 130, QkvLayout::Blhd, true, true, false),
    ] {
        let (b, h) = (2, 2);
        let attn = SparseSelfAttention::new(BigBirdConfig::new(h).into()).unwrap();
        let qkv_dims = match order {
            QkvLayout::Bhld => [b, h, l, 3 * d],
            QkvLayout::Blhd => [b, l, h, 3 * d],
        };
        let run = |dv: &Device| {
            let qkv = Var::from_tensor(&host(&qkv_dims, 21, dtype).to_device(dv).unwrap()).unwrap();
            let (q, k, v) = (
                qkv.narrow(3, 0, d).unwrap(),
                qkv.narrow(3, d, d).unwrap(),
                qkv.narrow(3, 2 * d, d).unwrap(),
            );
            let bias_v = bias.then(|| {
                Var::from_tensor(&host(&[b, h, l, l], 22, dtype).to_device(dv).unwrap()).unwrap()
            });
            let keep: Vec<u8> = (0..b * l).map(|i| u8::from(i % 7 != 3)).collect();
            let opts = SparseAttentionOptions {
                causal,
                key_padding_mask: kpm.then(|| Tensor::from_vec(keep.clone(), (b, l), dv).unwrap()),
                bias: bias_v.as_ref().map(|v| v.as_tensor().clone()),
                layout: order,
                ..Default::default()
            };
            let out = sparse_attention(&q, &k, &v, &attn, &opts).unwrap();
            let w = host(out.dims(), 23, DType::F32).to_device(dv).unwrap();
            let g = (out.to_dtype(DType::F32).unwrap() * w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (
                out,
                g.get(&qkv).unwrap().clone(),
                bias_v.map(|v| g.get(&v).unwrap().clone()),
            )
        };
        let (go, gg, gb) = run(&dev);
        let (co, cg, cb) = run(&Device::Cpu);
        let tol = if dtype == DType::BF16 { 3e-2 } else { 5e-3 };
        assert_close("out", &go, &co, tol, tol);
        assert_close("dqkv", &gg, &cg, 4.0 * tol, 4.0 * tol);
        if let (Some(g), Some(c)) = (gb, cb) {
            assert_close("dbias", &g, &c, 4.0 * tol, 4.0 * tol);
        }
    }
}

#[test]
fn gpu_unsupported_combinations_are_typed_errors() {
    let _serial = serial();
    let dev = gpu();
    let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let x = host(&[1, 2, 64, 64], 1, DType::F32)
        .to_device(&dev)
        .unwrap();
    let e = sparse_attention(&x, &x, &x, &attn, &SparseAttentionOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Unsupported {
                what: "CUDA attention dtype",
                ..
            }
        ),
        "{e}"
    );
    let y = host(&[1, 2, 64, 32], 1, DType::BF16)
        .to_device(&dev)
        .unwrap();
    let e = sparse_attention(&y, &y, &y, &attn, &SparseAttentionOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            LtdCandleError::Unsupported {
                what: "CUDA attention head dim",
                ..
            }
        ),
        "{e}"
    );
    let cpu = host(&[1, 2, 64, 64], 1, DType::BF16);
    let g = cpu.to_device(&dev).unwrap();
    let e = sparse_attention(&g, &cpu, &g, &attn, &SparseAttentionOptions::default()).unwrap_err();
    assert!(
        matches!(e, LtdCandleError::DeviceMismatch { what: "k", .. }),
        "{e}"
    );
}

/// q, k, v that start at offsets of their storage (two of one `[3, B, H, L, D]` projection
/// indexed, one a narrow along the batch) are read in place: forward and backward make no device
/// copy, and give exactly what fresh contiguous tensors of the same values give.
#[test]
fn gpu_attention_offset_views_make_no_copies() {
    let _serial = serial();
    let dev = gpu();
    let (b, h, l, d) = (2, 2, 192, 64);
    let attn = SparseSelfAttention::new(BigBirdConfig::new(h).into()).unwrap();
    let packed = Var::from_tensor(
        &host(&[3, b, h, l, d], 31, DType::BF16)
            .to_device(&dev)
            .unwrap(),
    )
    .unwrap();
    let wide = Var::from_tensor(
        &host(&[2 * b, h, l, d], 32, DType::BF16)
            .to_device(&dev)
            .unwrap(),
    )
    .unwrap();
    let w = host(&[b, h, l, d], 33, DType::F32).to_device(&dev).unwrap();
    let opts = SparseAttentionOptions {
        causal: true,
        ..Default::default()
    };
    let run = |q: &Tensor, k: &Tensor, v: &Tensor| {
        let out = sparse_attention(q, k, v, &attn, &opts).unwrap();
        let g = (out.to_dtype(DType::F32).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        (out, g)
    };
    let (q, k) = (packed.i(1).unwrap(), packed.i(2).unwrap());
    let v = wide.narrow(0, b, b).unwrap(); // starts B*H*L*D elements in
    assert!(q.layout().start_offset() > 0 && v.layout().start_offset() > 0);
    let before = ltd_candle::cuda_device_copies();
    let (out, g) = run(&q, &k, &v);
    assert_eq!(
        ltd_candle::cuda_device_copies() - before,
        0,
        "offset views copied"
    );
    let dp = g.get(&packed).unwrap();
    let (dq, dk) = (dp.i(1).unwrap(), dp.i(2).unwrap());
    let dv = g.get(&wide).unwrap().narrow(0, b, b).unwrap();
    let fresh = [&q, &k, &v].map(|x| Var::from_tensor(&x.copy().unwrap()).unwrap());
    let (want_out, wg) = run(&fresh[0], &fresh[1], &fresh[2]);
    let want = fresh.each_ref().map(|x| wg.get(x).unwrap().clone());
    let bits = |t: &Tensor| -> Vec<u32> { to_host_f32(t).iter().map(|x| x.to_bits()).collect() };
    assert_eq!(bits(&out), bits(&want_out), "out");
    // dk, dv exactly; dq sums f32 atomics in no fixed order (equal up to the last bf16 bit).
    assert_eq!(bits(&dk), bits(&want[1]), "dk");
    assert_eq!(bits(&dv), bits(&want[2]), "dv");
    assert_close("dq", &dq, &want[0], 1e-6, 1.0 / 64.0);
}
