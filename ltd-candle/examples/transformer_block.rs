//! A small candle transformer block (pre-norm attention with a block-sparse layout, then an MLP)
//! wrapped for Random-LTD, trained for a few steps: forward, backward and an SGD update, with
//! the reserved length growing on DeepSpeed's schedule.
//!
//! `cargo run -p ltd-candle --example transformer_block` (CPU), or with `--features cuda` on a
//! GPU (f32 falls back to nothing: the GPU attention kernels take bf16 / f16 with head dim 64 or
//! 128, so the example picks bf16 and head dim 64 there).

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use ltd_candle::{
    LayerContext, LayerMask, MaskArg, QkvLayout, RandomLtd, SparseAttentionOptions,
    sparse_attention,
};
use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};

/// One pre-norm block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
struct Block {
    qkv: Linear,
    proj: Linear,
    up: Linear,
    down: Linear,
    heads: usize,
    attn: SparseSelfAttention,
}

fn rms_norm(x: &Tensor) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let norm = (x.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?;
    x.broadcast_div(&norm)?.to_dtype(dtype)
}

impl Block {
    fn new(vb: VarBuilder, channels: usize, heads: usize) -> candle_core::Result<Block> {
        let mut fixed = FixedConfig::new(heads);
        fixed.attention = ltd_sparse_attn::Direction::Unidirectional;
        Ok(Block {
            qkv: linear(channels, 3 * channels, vb.pp("qkv"))?,
            proj: linear(channels, channels, vb.pp("proj"))?,
            up: linear(channels, 4 * channels, vb.pp("up"))?,
            down: linear(4 * channels, channels, vb.pp("down"))?,
            heads,
            attn: SparseSelfAttention::new(fixed.into()).map_err(candle_core::Error::wrap)?,
        })
    }

    /// The block on `[B, n, C]` tokens (all of them, or the kept ones).
    fn forward(&self, x: &Tensor, ctx: &LayerContext) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let d = c / self.heads;
        let qkv = self
            .qkv
            .forward(&rms_norm(x)?)?
            .reshape((b, n, 3, self.heads, d))?;
        // [B, n, H, D] views of the projection: no transpose copy on the CPU.
        let (q, k, v) = (
            qkv.narrow(2, 0, 1)?.squeeze(2)?,
            qkv.narrow(2, 1, 1)?.squeeze(2)?,
            qkv.narrow(2, 2, 1)?.squeeze(2)?,
        );
        let opts = SparseAttentionOptions {
            causal: matches!(ctx.mask, LayerMask::Causal),
            layout: QkvLayout::Blhd,
            ..Default::default()
        };
        let a = sparse_attention(&q, &k, &v, &self.attn, &opts)?.reshape((b, n, c))?;
        let x = (x + self.proj.forward(&a)?)?;
        let h = self.up.forward(&rms_norm(&x)?)?.gelu()?;
        x + self.down.forward(&h)?
    }
}

const CONFIG: &str = r#"{
  "train_batch_size": 2,
  "data_efficiency": {"data_routing": {"random_ltd": {
    "enabled": true, "total_layer_num": 3, "random_ltd_layer_num": 1, "random_ltd_layer_id": [1],
    "model_mask_name": "attention_mask", "model_type": "decoder",
    "hidden_state_order": "batch_seq_dim",
    "random_ltd_schedule": {"min_value": 64, "max_value": 256, "schedule_type": "fixed_linear",
      "schedule_config": {"require_steps": 6, "seq_per_step": 32}}}}}
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = if cfg!(feature = "cuda") {
        Device::cuda_if_available(0)?
    } else {
        Device::Cpu
    };
    // The GPU kernels take bf16 / f16 and head dim 64 or 128; the CPU takes any.
    let (dtype, heads, channels) = if device.is_cuda() {
        (DType::BF16, 2, 128)
    } else {
        (DType::F32, 4, 64)
    };
    let (batch, seq) = (2, 256);
    println!("device {device:?}, dtype {dtype:?}");

    let ltd = RandomLtd::from_deepspeed_json(CONFIG, 1234)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &device);
    let blocks = (0..3)
        .map(|i| {
            ltd.wrap(i, Block::new(vb.pp(format!("block{i}")), channels, heads)?)
                .map_err(Into::into)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let x = Tensor::randn(0f32, 1.0, (batch, seq, channels), &device)?.to_dtype(dtype)?;
    let target = Tensor::randn(0f32, 1.0, (batch, seq, channels), &device)?.to_dtype(dtype)?;

    for step in 0..8u64 {
        let r = ltd.begin_step(step)?;
        let mut h = x.clone();
        for block in &blocks {
            h = block.forward_with(&h, MaskArg::Causal, |blk, t, ctx| blk.forward(t, ctx))?;
        }
        let loss = (h - &target)?.to_dtype(DType::F32)?.sqr()?.mean_all()?;
        let grads = loss.backward()?;
        for var in varmap.all_vars() {
            if let Some(g) = grads.get(&var) {
                var.set(&(var.as_tensor() - (g * 0.01)?)?)?;
            }
        }
        println!(
            "step {step}: r = {r:3} of {seq}, loss {:.4}",
            loss.to_scalar::<f32>()?
        );
    }
    Ok(())
}
