//! The candle op's cost over the raw kernel calls (feature `cuda`; a benchmark, not a test):
//! sparse attention forward + backward at the GPU bench shapes (bf16, 16 heads), timed with
//! events in one run, three ways on candle's stream:
//! - `raw`: `ltd_sparse_attn::cuda::attention_forward_cuda` / `attention_backward_cuda` on
//!   preallocated buffers (the output gradient preset to ones);
//! - `op`: the candle op, forward and backward ([`ltd_candle::sparse_attention_forward`] /
//!   [`ltd_candle::sparse_attention_backward`]: the same glue the autograd op runs, allocating
//!   its outputs as candle tensors), with a preset ones output gradient;
//! - `autograd`: `sparse_attention(..)?.backward()`, which adds candle's own bookkeeping on top
//!   of the op: the seed gradient (`ones_like`) and, per input, a zero tensor plus the gradient
//!   (candle's `GradStore` accumulation, paid by every candle op).
//!
//! The target is `op / raw` within 1.05. Also gather + route of a Random-LTD layer
//! (`[B, S, C]`, C = 1024) raw against the candle ops. Prints the device copies the glue made
//! per call (`ltd_candle::cuda_device_copies`), which must be 0 for contiguous `[B, H, L, D]`.
//!
//! `cargo bench -p ltd-candle --features cuda --bench candle_overhead`

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("candle_overhead: built without `--features cuda`; nothing to measure");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = gpu::run() {
        println!("candle_overhead: {e}");
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{DType, Device, IndexOp, Tensor, Var};
    use half::bf16;
    use ltd_candle::{
        SparseAttentionOptions, cuda_device_copies, gather_tokens, route, sample_token_indices,
        sparse_attention, sparse_attention_backward, sparse_attention_forward,
    };
    use ltd_core::cuda::{CudaHidden, CudaHiddenMut, gather_cuda, route_cuda, sample_tokens_cuda};
    use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder};
    use ltd_sparse_attn::cuda::{
        CudaAttentionGrads, CudaAttentionOptions, attention_backward_cuda, attention_forward_cuda,
    };
    use ltd_sparse_attn::{
        AttentionShape, BigBirdConfig, FixedConfig, SparseSelfAttention, SparsityConfig,
    };

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    fn configs() -> Vec<(&'static str, SparsityConfig)> {
        let mut fixed = FixedConfig::new(16);
        fixed.block = 64;
        let mut bigbird = BigBirdConfig::new(16);
        bigbird.block = 64;
        bigbird.num_random_blocks = 1;
        bigbird.seed = 1;
        let mut bigbird128 = bigbird.clone();
        bigbird128.block = 128;
        vec![
            ("fixed_b64", fixed.into()),
            ("bigbird_b64", bigbird.into()),
            ("bigbird_b128", bigbird128.into()),
        ]
    }

    pub fn run() -> Res<()> {
        let cdev = candle_core::CudaDevice::new_with_stream(0)?;
        let dev = CudaDevice::from_stream(cdev.cuda_stream())?;
        let device = Device::Cuda(cdev);
        println!("candle_overhead on {dev}");
        println!(
            "\n{:<14} {:>6} {:>3} {:>4} {:>10} {:>10} {:>8} {:>12} {:>8} {:>7}",
            "layout", "S", "B", "D", "raw us", "op us", "op/raw", "autograd us", "ag/raw", "copies"
        );
        for seq in [4096usize, 16384] {
            let batch = 16384 / seq;
            for d in [64usize, 128] {
                for (name, config) in configs() {
                    attention_cell(&dev, &device, name, config, seq, batch, d)?;
                }
            }
        }
        println!(
            "\n{:<14} {:>6} {:>3} {:>5} {:>5} {:>12} {:>12} {:>8} {:>8}",
            "gather+route", "S", "B", "C", "r", "raw us", "candle us", "ratio", "copies"
        );
        for (b, s, c, r) in [
            (8usize, 2048usize, 1024usize, 1024usize),
            (4, 4096, 1024, 1024),
        ] {
            tokens_cell(&dev, &device, b, s, c, r)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_cell(
        dev: &CudaDevice,
        device: &Device,
        name: &str,
        config: SparsityConfig,
        seq: usize,
        batch: usize,
        d: usize,
    ) -> Res<()> {
        let heads = 16;
        let attn = SparseSelfAttention::new(config)?;
        let shape = AttentionShape {
            batch,
            heads,
            seq_len: seq,
            head_dim: d,
        };
        let n = shape.qkv_len();
        let layout = attn.cuda_layout(dev, seq)?;
        // Raw kernels on preallocated buffers.
        let host: Vec<bf16> = (0..n)
            .map(|i| bf16::from_f32(((i * 7919 % 1000) as f32 - 500.0) / 1000.0))
            .collect();
        let (q, k, v) = (dev.upload(&host)?, dev.upload(&host)?, dev.upload(&host)?);
        let dout = dev.upload(&vec![bf16::ONE; n])?;
        let mut out = dev.upload(&vec![bf16::ZERO; n])?;
        let mut lse = dev.upload(&vec![0f32; shape.lse_len()])?;
        let (mut dq, mut dk, mut dv) = (
            dev.upload(&vec![bf16::ZERO; n])?,
            dev.upload(&vec![bf16::ZERO; n])?,
            dev.upload(&vec![bf16::ZERO; n])?,
        );
        let opts = CudaAttentionOptions {
            causal: true,
            ..Default::default()
        };
        let raw = dev.median_time_us(3, 10, 7, || -> Res<()> {
            attention_forward_cuda(dev, &layout, shape, (&q, &k, &v), &opts, &mut out, &mut lse)?;
            let grads = CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv);
            attention_backward_cuda(
                dev,
                &layout,
                shape,
                (&q, &k, &v),
                (&out, &lse),
                &dout,
                &opts,
                grads,
            )?;
            Ok(())
        })?;
        // The candle op on candle's stream.
        let t = Tensor::from_vec(host, (batch, heads, seq, d), device)?;
        let ones = Tensor::ones((batch, heads, seq, d), DType::BF16, device)?;
        let copts = SparseAttentionOptions {
            causal: true,
            ..Default::default()
        };
        let copies = cuda_device_copies();
        let mut calls = 0u64;
        let op = dev.median_time_us(3, 10, 7, || -> Res<()> {
            calls += 1;
            let (o, lse) = sparse_attention_forward(&t, &t, &t, &attn, &copts)?;
            sparse_attention_backward(&t, &t, &t, &o, &lse, &ones, &attn, &copts)?;
            Ok(())
        })?;
        let (qv, kv, vv) = (
            Var::from_tensor(&t)?,
            Var::from_tensor(&t)?,
            Var::from_tensor(&t)?,
        );
        let autograd = dev.median_time_us(3, 10, 7, || -> Res<()> {
            calls += 1;
            let _grads = sparse_attention(&qv, &kv, &vv, &attn, &copts)?.backward()?;
            Ok(())
        })?;
        let per_call = (cuda_device_copies() - copies) as f64 / calls as f64;
        println!(
            "{name:<14} {seq:>6} {batch:>3} {d:>4} {raw:>10.1} {op:>10.1} {:>8.3} {autograd:>12.1} {:>8.3} {per_call:>7.1}",
            op / raw,
            autograd / raw
        );
        Ok(())
    }

    fn tokens_cell(
        dev: &CudaDevice,
        device: &Device,
        b: usize,
        s: usize,
        c: usize,
        r: usize,
    ) -> Res<()> {
        let full = HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, s, c)?;
        let kept = HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, r, c)?;
        let idx = sample_tokens_cuda(dev, 1, 0, 1, b, s, r)?;
        let h = dev.upload(&vec![bf16::ONE; b * s * c])?;
        let mut part = dev.upload(&vec![bf16::ZERO; b * r * c])?;
        let mut y = dev.upload(&vec![bf16::ZERO; b * s * c])?;
        let raw = dev.median_time_us(3, 20, 7, || -> Res<()> {
            gather_cuda(
                dev,
                CudaHidden::new(&h, full)?,
                &idx,
                0,
                CudaHiddenMut::new(&mut part, kept)?,
            )?;
            route_cuda(
                dev,
                CudaHidden::new(&h, full)?,
                CudaHidden::new(&part, kept)?,
                &idx,
                0,
                CudaHiddenMut::new(&mut y, full)?,
            )?;
            Ok(())
        })?;
        let ht = Tensor::ones((b, s, c), DType::BF16, device)?;
        let cidx = sample_token_indices(1, 0, 1, b, s, r, device)?.i(0)?;
        let copies = cuda_device_copies();
        let candle = dev.median_time_us(3, 20, 7, || -> Res<()> {
            let p = gather_tokens(&ht, &cidx, HiddenOrder::BatchSeq)?;
            let _y = route(&ht, &p, &cidx, HiddenOrder::BatchSeq)?;
            Ok(())
        })?;
        let copies = cuda_device_copies() - copies;
        println!(
            "{:<14} {s:>6} {b:>3} {c:>5} {r:>5} {raw:>12.1} {candle:>12.1} {:>8.3} {copies:>8}",
            "bf16",
            candle / raw
        );
        Ok(())
    }
}
