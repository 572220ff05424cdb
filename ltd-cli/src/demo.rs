//! `ltd demo`: one training step's worth of Random-LTD work at a small size, checked against the
//! `ltd-reference` oracles.
//!
//! Sample the kept positions of every token-dropping layer, gather the kept tokens of one layer,
//! run a small transformer block on them (block-sparse attention through
//! `ltd_sparse_attn::attention_forward`, Q/K/V/O projections, a GELU MLP), route the result back,
//! then backward through `route_backward_to_layer`, the block (MLP, `attention_backward`) and
//! `route_backward_to_hidden`. The same step is computed again in `f64` from the oracles
//! (`ltd_reference::{gather, scatter, attention_forward, ...}` plus the same MLP code in `f64`)
//! and compared row by row: kept rows within the tolerance, dropped rows bit-identical to the
//! input (forward) and to the incoming gradient (backward). The step is also run through
//! `TokenDropRouter` with the block as a `Layer`, which must give identical results.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ltd_core::{
    HiddenOrder, HiddenTensor, HiddenView, Layer, LayerInput, LayerOutput, ModelKind, ModelMask,
    RouterConfig, TokenDropRouter, TokenSampler, gather_tensor, route_backward_to_hidden,
    route_backward_to_layer, route_tensor,
};
use ltd_scheduler::{HiddenStateOrder, ModelType, RandomLtdScheduler};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, FixedConfig, Layout,
    SparseSelfAttention, attention_backward, attention_forward,
};

use crate::block::{self, AttentionBackend, Dims, SplitMix, Weights};
use crate::config::DeepSpeedConfig;
use crate::error::{CliError, Result};
use crate::plan::parse_count;
use crate::plot::grouped;
use crate::timing::{ms, timed};

/// Where the Random-LTD steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The GPU when this build has `cuda` and a device is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The GPU (an error when there is none or the build lacks `--features cuda`).
    Cuda,
}

/// Arguments of `ltd demo`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ltd demo                          the embedded default: B 2, S 256, C 64, 4 heads, Fixed block 16
  ltd demo --step 20k               an earlier step of the schedule (fewer tokens kept)
  ltd demo --config ds_config.json  your config's schedule and sparse_attention section
  ltd demo --seq 512 --hidden 128 --heads 8
  ltd demo --device cpu             stay on the CPU even when a GPU is present (cuda builds)
  ltd demo --gpu-attention --hidden 256 --heads 4   attention on the GPU too (bf16, head dim 64)

Exit status: 0 when every check passes, 1 when a check fails, 2 for bad arguments.")]
pub struct DemoArgs {
    /// A DeepSpeed JSON config (random_ltd and sparse_attention sections) [default: embedded].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training step whose reserved length r is used (scaled from max_value to --seq).
    #[arg(long, default_value = "100000", value_parser = parse_count)]
    pub step: u64,
    /// Batch size B.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub batch: u64,
    /// Sequence length S.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub seq: u64,
    /// Hidden size C.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub hidden: u64,
    /// Attention heads (must divide --hidden).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub heads: u64,
    /// Seed of the token sampler and of the demo's data.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Largest accepted |ours - oracle| / (1 + |oracle|) on kept rows and weight gradients
    /// [default: 1e-4; 2e-2 with --gpu-attention, whose inputs are rounded to bf16].
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Run the block's attention on the GPU too (bf16; needs --features cuda, a device, and a head
    /// dimension --hidden / --heads of 64 or 128, e.g. --hidden 256 --heads 4).
    #[arg(long)]
    pub gpu_attention: bool,
    /// Where the sampling, gather and route steps run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Add this to one output element of the path under test (to see the check fail).
    #[arg(long, hide = true)]
    pub perturb: Option<f32>,
}

/// Everything one demo step needs.
pub(crate) struct Ctx {
    /// Hidden-state order (from the config's `hidden_state_order`).
    pub order: HiddenOrder,
    /// Batch `B`.
    pub batch: usize,
    /// Sequence length `S`.
    pub seq: usize,
    /// Hidden size `C`.
    pub channels: usize,
    /// Kept tokens per sequence `r`.
    pub reserved: usize,
    /// Token-dropping layers (all are sampled in one call).
    pub layers: usize,
    /// Compact id of the demo's layer among the token-dropping layers.
    pub ltd_id: usize,
    /// Model index of the demo's layer.
    pub layer_index: usize,
    /// Sampler seed.
    pub seed: u64,
    /// Training step (keys the sampler).
    pub step: u64,
    /// Token-level causal attention (decoders).
    pub causal: bool,
    /// Block sizes (with `tokens = r`).
    pub dims: Dims,
    /// Block parameters.
    pub weights: Weights<f32>,
    /// The sparse attention module (layouts cached per length).
    pub attn: SparseSelfAttention,
    /// Hidden states, in `order`.
    pub h: Vec<f32>,
    /// Gradient of the loss with respect to the routed output, in `order`.
    pub gy: Vec<f32>,
    /// Run the block's attention on this GPU (bf16) instead of the CPU.
    #[cfg(feature = "cuda")]
    pub gpu_attention: Option<ltd_core::CudaDevice>,
}

/// What the path under test produced.
pub(crate) struct StepResult {
    /// Kept positions of every token-dropping layer, `[L, B, r]`.
    pub idx_all: Vec<i32>,
    /// Routed output.
    pub y: Vec<f32>,
    /// Gradient with respect to the hidden states.
    pub grad_h: Vec<f32>,
    /// Gradients of the block's parameters.
    pub grad_w: Weights<f32>,
    /// Time of every step, in order.
    pub times: Vec<(&'static str, Duration)>,
}

/// The fused block-sparse attention of `ltd-sparse-attn` as the block's attention.
pub(crate) struct SparseBackend {
    layout: Arc<Layout>,
    shape: AttentionShape,
    causal: bool,
    lse: Vec<f32>,
}

impl SparseBackend {
    fn options(&self) -> AttentionOptions<'static, f32> {
        AttentionOptions {
            causal: self.causal,
            ..AttentionOptions::new()
        }
    }
}

impl AttentionBackend<f32> for SparseBackend {
    fn forward(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; q.len()];
        self.lse = vec![0.0f32; self.shape.lse_len()];
        attention_forward(
            &self.layout,
            self.shape,
            &AttentionInputs { q, k, v },
            &self.options(),
            &mut out,
            &mut self.lse,
        )?;
        Ok(out)
    }

    fn backward(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let n = q.len();
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        attention_backward(
            &self.layout,
            self.shape,
            &AttentionInputs { q, k, v },
            &self.options(),
            out,
            dout,
            &self.lse,
            AttentionGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
                dbias: None,
            },
        )?;
        Ok((dq, dk, dv))
    }
}

/// The attention the block runs: the CPU fused op, or (opt-in, `--gpu-attention`) the GPU fused
/// op in bf16.
pub(crate) enum Backend {
    /// `ltd_sparse_attn::attention_forward` / `attention_backward` in f32.
    Cpu(SparseBackend),
    /// `ltd_sparse_attn::cuda::attention_{forward,backward}_cuda` in bf16.
    #[cfg(feature = "cuda")]
    Gpu(Box<crate::gpu::GpuAttention>),
}

impl AttentionBackend<f32> for Backend {
    fn forward(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        match self {
            Backend::Cpu(b) => b.forward(q, k, v),
            #[cfg(feature = "cuda")]
            Backend::Gpu(b) => b.forward(q, k, v),
        }
    }

    fn backward(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        match self {
            Backend::Cpu(b) => b.backward(q, k, v, out, dout),
            #[cfg(feature = "cuda")]
            Backend::Gpu(b) => b.backward(q, k, v, out, dout),
        }
    }
}

/// The oracle's attention: `ltd_reference::attention_{forward,backward}` (f64 inside) on the
/// same layout, restricted to its active tiles.
struct ReferenceBackend {
    layout: Arc<Layout>,
    dims: ltd_reference::AttnDims,
    causal: bool,
}

impl ReferenceBackend {
    fn narrow(x: &[f64]) -> Vec<f32> {
        x.iter().map(|&v| v as f32).collect()
    }
    fn widen(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| f64::from(v)).collect()
    }
    fn options(&self) -> ltd_reference::AttentionOptions<'_, f32> {
        ltd_reference::AttentionOptions {
            causal: self.causal,
            layout: Some(ltd_reference::Layout::square(
                self.layout.mask(),
                self.layout.num_heads(),
                self.layout.num_blocks(),
                self.layout.block(),
            )),
            ..ltd_reference::AttentionOptions::new(1.0 / (self.dims.head_dim as f64).sqrt())
        }
    }
}

impl AttentionBackend<f64> for ReferenceBackend {
    fn forward(&mut self, q: &[f64], k: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        let (q, k, v) = (Self::narrow(q), Self::narrow(k), Self::narrow(v));
        let res = ltd_reference::attention_forward(&q, &k, &v, self.dims, &self.options())?;
        Ok(Self::widen(&res.out))
    }

    fn backward(
        &mut self,
        q: &[f64],
        k: &[f64],
        v: &[f64],
        _out: &[f64],
        dout: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let (q, k, v, dout) = (
            Self::narrow(q),
            Self::narrow(k),
            Self::narrow(v),
            Self::narrow(dout),
        );
        let g = ltd_reference::attention_backward(&q, &k, &v, &dout, self.dims, &self.options())?;
        Ok((Self::widen(&g.dq), Self::widen(&g.dk), Self::widen(&g.dv)))
    }
}

/// A view's tokens as `[B * n, C]` rows, batch-major.
pub(crate) fn to_rows(v: &HiddenView<'_, f32>) -> Vec<f32> {
    let l = v.layout();
    let mut rows = Vec::with_capacity(l.batch() * l.seq() * l.channels());
    for b in 0..l.batch() {
        for s in 0..l.seq() {
            rows.extend_from_slice(v.row(b, s).expect("in range"));
        }
    }
    rows
}

/// `[B * n, C]` rows back to a tensor in `order`.
pub(crate) fn from_rows(
    rows: &[f32],
    order: HiddenOrder,
    batch: usize,
    n: usize,
    c: usize,
) -> Result<HiddenTensor<f32>> {
    let mut t = HiddenTensor::zeros(order, batch, n, c)?;
    let layout = *t.layout();
    let data = t.as_mut_slice();
    for b in 0..batch {
        for s in 0..n {
            let o = layout.offset(b, s);
            data[o..o + c].copy_from_slice(&rows[(b * n + s) * c..(b * n + s + 1) * c]);
        }
    }
    Ok(t)
}

fn ref_dims(ctx: &Ctx) -> ltd_reference::Hidden {
    ltd_reference::Hidden {
        batch: ctx.batch,
        seq: ctx.seq,
        channels: ctx.channels,
        order: match ctx.order {
            HiddenOrder::BatchSeq => ltd_reference::HiddenOrder::BatchSeq,
            HiddenOrder::SeqBatch => ltd_reference::HiddenOrder::SeqBatch,
        },
    }
}

impl Ctx {
    /// The block's sizes for `n` tokens per sequence.
    fn dims_for(&self, n: usize) -> Dims {
        Dims {
            tokens: n,
            ..self.dims
        }
    }

    /// The block's attention for `n` tokens per sequence (the layout is built for length `n`).
    pub(crate) fn backend(&self, n: usize) -> Result<Backend> {
        let layout = self.attn.layout(n)?;
        let shape = AttentionShape {
            batch: self.batch,
            heads: self.dims.heads,
            seq_len: n,
            head_dim: self.dims.head_dim(),
        };
        #[cfg(feature = "cuda")]
        if let Some(dev) = &self.gpu_attention {
            return Ok(Backend::Gpu(Box::new(crate::gpu::GpuAttention::new(
                dev,
                &layout,
                shape,
                self.causal,
            )?)));
        }
        Ok(Backend::Cpu(SparseBackend {
            layout,
            shape,
            causal: self.causal,
            lse: Vec::new(),
        }))
    }

    /// The block's forward on `[B * n, C]` rows: output rows, activations, the attention state
    /// and the time spent in attention.
    pub(crate) fn block_forward(
        &self,
        x_rows: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, block::Activations<f32>, Backend, Duration)> {
        let mut backend = self.backend(n)?;
        let (y, acts, t) = block::forward(&self.weights, self.dims_for(n), x_rows, &mut backend)?;
        Ok((y, acts, backend, t.0))
    }

    /// The block's backward for `dy_rows` after [`Ctx::block_forward`].
    pub(crate) fn block_backward(
        &self,
        acts: &block::Activations<f32>,
        backend: &mut Backend,
        dy_rows: &[f32],
        n: usize,
    ) -> Result<(block::Grads<f32>, Duration)> {
        let (g, t) = block::backward(&self.weights, self.dims_for(n), acts, dy_rows, backend)?;
        Ok((g, t.0))
    }

    fn full_view<'a>(&self, data: &'a [f32]) -> Result<HiddenView<'a, f32>> {
        Ok(HiddenView::new(
            data,
            self.order,
            self.batch,
            self.seq,
            self.channels,
        )?)
    }
}

/// The explicit CPU path: every step called by hand and timed.
fn explicit_cpu(ctx: &Ctx) -> Result<StepResult> {
    let (b, s, c, r) = (ctx.batch, ctx.seq, ctx.channels, ctx.reserved);
    let mut times = Vec::new();
    let (idx_all, t) = timed(|| TokenSampler::new(ctx.seed).sample(ctx.step, ctx.layers, b, s, r));
    let idx_all = idx_all?;
    times.push(("sample (all token-dropping layers)", t));
    let idx = idx_all.layer(ctx.ltd_id)?;
    let h = ctx.full_view(&ctx.h)?;

    let (part, t) = timed(|| gather_tensor(&h, &idx));
    let part = part?;
    times.push(("gather kept tokens", t));

    let (fwd, t) = timed(|| ctx.block_forward(&to_rows(&part.view()), r));
    let (out_rows, acts, mut backend, t_attn) = fwd?;
    times.push(("block forward", t));
    times.push(("  of which sparse attention", t_attn));
    let out = from_rows(&out_rows, ctx.order, b, r, c)?;

    let (y, t) = timed(|| route_tensor(&h, &out.view(), &idx));
    let y = y?;
    times.push(("route (fused scatter)", t));

    let gy = ctx.full_view(&ctx.gy)?;
    let mut grad_out = HiddenTensor::zeros(ctx.order, b, r, c)?;
    let (res, t) = timed(|| route_backward_to_layer(&gy, &idx, &mut grad_out.view_mut()));
    res?;
    times.push(("route backward (to layer)", t));

    let (bwd, t) = timed(|| ctx.block_backward(&acts, &mut backend, &to_rows(&grad_out.view()), r));
    let (grads, t_attn) = bwd?;
    times.push(("block backward", t));
    times.push(("  of which sparse attention", t_attn));
    let grad_in = from_rows(&grads.dx, ctx.order, b, r, c)?;

    let mut grad_h = HiddenTensor::zeros(ctx.order, b, s, c)?;
    let (res, t) =
        timed(|| route_backward_to_hidden(&gy, &grad_in.view(), &idx, &mut grad_h.view_mut()));
    res?;
    times.push(("route backward (to hidden)", t));

    Ok(StepResult {
        idx_all: idx_all.into_vec(),
        y: y.into_vec(),
        grad_h: grad_h.into_vec(),
        grad_w: grads.weights,
        times,
    })
}

/// The same step through `TokenDropRouter` with the block as a `Layer`.
fn via_router(ctx: &Ctx, kind: ModelKind, ltd_layers: Vec<usize>) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut router = TokenDropRouter::<bool>::new(RouterConfig {
        seed: ctx.seed,
        ltd_layers,
        order: ctx.order,
        kind,
    })?;
    let mask = if ctx.causal {
        ModelMask::Causal
    } else {
        ModelMask::None
    };
    let h = ctx.full_view(&ctx.h)?;
    let gy = ctx.full_view(&ctx.gy)?;
    let mut layer = DemoLayer { ctx };
    let y = router.forward(ctx.layer_index, ctx.step, ctx.reserved, &mut layer, h, mask)?;
    let gh = router.backward(
        ctx.layer_index,
        ctx.step,
        ctx.reserved,
        &mut layer,
        h,
        mask,
        gy,
    )?;
    Ok((y.hidden.into_vec(), gh.into_vec()))
}

/// The oracle: the same step in f64 from `ltd-reference` and the f64 instance of the block.
struct Oracle {
    y: Vec<f64>,
    grad_h: Vec<f64>,
    grad_w: Weights<f64>,
}

fn oracle(ctx: &Ctx, idx_all: &[i32]) -> Result<Oracle> {
    let (b, s, r) = (ctx.batch, ctx.seq, ctx.reserved);
    ltd_reference::check_sampled_indices(idx_all, ctx.layers, b, r, s)?;
    let idx = &idx_all[ctx.ltd_id * b * r..(ctx.ltd_id + 1) * b * r];
    let dims = ref_dims(ctx);
    let part_dims = ltd_reference::Hidden { seq: r, ..dims };
    let h: Vec<f64> = ctx.h.iter().map(|&v| f64::from(v)).collect();
    let gy: Vec<f64> = ctx.gy.iter().map(|&v| f64::from(v)).collect();
    let w64: Weights<f64> = ctx.weights.cast();
    let bdims = ctx.dims_for(r);
    let rows_of = |data: &[f64], d: ltd_reference::Hidden| -> Vec<f64> {
        let mut rows = Vec::with_capacity(data.len());
        for bb in 0..d.batch {
            for ss in 0..d.seq {
                let o = d.offset(bb, ss, 0);
                rows.extend_from_slice(&data[o..o + d.channels]);
            }
        }
        rows
    };
    let unrows = |rows: &[f64], d: ltd_reference::Hidden| -> Vec<f64> {
        let mut data = vec![0.0; rows.len()];
        for bb in 0..d.batch {
            for ss in 0..d.seq {
                let o = d.offset(bb, ss, 0);
                let src = (bb * d.seq + ss) * d.channels;
                data[o..o + d.channels].copy_from_slice(&rows[src..src + d.channels]);
            }
        }
        data
    };
    let mut attn = ReferenceBackend {
        layout: ctx.attn.layout(r)?,
        dims: ltd_reference::AttnDims {
            batch: b,
            heads: bdims.heads,
            seq: r,
            head_dim: bdims.head_dim(),
        },
        causal: ctx.causal,
    };
    let part = ltd_reference::gather(&h, dims, idx, r)?;
    let (out_rows, acts, _) = block::forward(&w64, bdims, &rows_of(&part, part_dims), &mut attn)?;
    let y = ltd_reference::scatter(&h, dims, &unrows(&out_rows, part_dims), idx, r)?;
    let (g_pass, g_part) = ltd_reference::scatter_backward(&gy, dims, idx, r)?;
    let (grads, _) = block::backward(&w64, bdims, &acts, &rows_of(&g_part, part_dims), &mut attn)?;
    let grad_h =
        ltd_reference::gather_backward(&g_pass, dims, &unrows(&grads.dx, part_dims), idx, r)?;
    Ok(Oracle {
        y,
        grad_h,
        grad_w: grads.weights,
    })
}

/// Row-by-row comparison of a full `[B, S, C]` result with the oracle.
struct RowCheck {
    max_err: f64,
    kept_rows: usize,
    dropped_rows: usize,
    dropped_mismatch: Option<(usize, usize)>,
    worst: (usize, usize),
}

fn check_rows(
    ctx: &Ctx,
    ours: &[f32],
    oracle: &[f64],
    dropped_want: &[f32],
    idx: &[i32],
) -> RowCheck {
    let (b, s, c, r) = (ctx.batch, ctx.seq, ctx.channels, ctx.reserved);
    let dims = ref_dims(ctx);
    let mut chk = RowCheck {
        max_err: 0.0,
        kept_rows: 0,
        dropped_rows: 0,
        dropped_mismatch: None,
        worst: (0, 0),
    };
    for bb in 0..b {
        let kept = &idx[bb * r..(bb + 1) * r];
        for ss in 0..s {
            let o = dims.offset(bb, ss, 0);
            let is_kept = kept.binary_search(&(ss as i32)).is_ok();
            if is_kept {
                chk.kept_rows += 1;
                for e in 0..c {
                    let (a, w) = (f64::from(ours[o + e]), oracle[o + e]);
                    let err = (a - w).abs() / (1.0 + w.abs());
                    // NaN must fail too.
                    if err.is_nan() || err > chk.max_err {
                        chk.max_err = if err.is_nan() { f64::INFINITY } else { err };
                        chk.worst = (bb, ss);
                    }
                }
            } else {
                chk.dropped_rows += 1;
                let same = (0..c).all(|e| {
                    ours[o + e].to_bits() == dropped_want[o + e].to_bits()
                        && oracle[o + e] == f64::from(dropped_want[o + e])
                });
                if !same && chk.dropped_mismatch.is_none() {
                    chk.dropped_mismatch = Some((bb, ss));
                }
            }
        }
    }
    chk
}

fn weight_error(ours: &Weights<f32>, oracle: &Weights<f64>) -> (f64, &'static str) {
    let mut worst = (0.0f64, "Wq");
    for ((name, a), (_, w)) in ours.named().into_iter().zip(oracle.named()) {
        let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(w)
            .map(|(&x, &y)| (f64::from(x) - y).abs() / scale)
            .fold(
                0.0f64,
                |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
            );
        if err > worst.0 || err.is_nan() {
            worst = (err, name);
        }
    }
    worst
}

fn ok(pass: bool) -> &'static str {
    if pass { "ok" } else { "FAILED" }
}

/// Runs `ltd demo`.
pub fn run(args: &DemoArgs, out: &mut impl Write) -> Result<()> {
    let tol = args
        .tolerance
        .unwrap_or(if args.gpu_attention { 2e-2 } else { 1e-4 });
    if !tol.is_finite() || tol <= 0.0 {
        return Err(CliError::usage(format!(
            "--tolerance: {tol} is not a positive number"
        )));
    }
    let (batch, seq, channels, heads) = (
        args.batch as usize,
        args.seq as usize,
        args.hidden as usize,
        args.heads as usize,
    );
    if channels % heads != 0 {
        return Err(CliError::usage(format!(
            "--heads {heads} does not divide --hidden {channels}"
        )));
    }
    let source = DeepSpeedConfig::load(args.config.as_deref())?;
    let ltd = source.require_random_ltd()?;
    let ltd = match ltd.global_batch_size {
        Some(_) => ltd,
        // The saving is a ratio: any batch size gives the same value.
        None => ltd.with_global_batch_size(args.batch)?,
    };
    let scheduler = RandomLtdScheduler::new(&ltd).map_err(|e| CliError::Config {
        source_name: source.source_name.clone(),
        message: e.to_string(),
    })?;
    let (sparse, sparse_note) = match source.sparse_attention(heads)? {
        Some(s) => (s, ""),
        None => (
            FixedConfig::new(heads).into(),
            " (the config has no sparse_attention section: DeepSpeed's default Fixed layout)",
        ),
    };
    let attn = SparseSelfAttention::new(sparse.clone())?;

    let max_value = ltd.schedule.max_value;
    let r_full = scheduler.reserved_length_at(args.step);
    let reserved = ((r_full as f64 * seq as f64 / max_value as f64).round() as usize).clamp(1, seq);
    let layer_ids = ltd.sorted_layer_ids();
    let layer_index = layer_ids[0];
    let causal = ltd.model_type == ModelType::Decoder;
    let order = match ltd.hidden_state_order {
        HiddenStateOrder::BatchSeqDim => HiddenOrder::BatchSeq,
        HiddenStateOrder::SeqBatchDim => HiddenOrder::SeqBatch,
    };
    let dims = Dims {
        batch,
        tokens: reserved,
        channels,
        heads,
        ffn: 4 * channels,
    };
    #[cfg(feature = "cuda")]
    let gpu_attention = gpu_attention_device(args, dims.head_dim())?;
    #[cfg(not(feature = "cuda"))]
    if args.gpu_attention {
        return Err(CliError::usage(
            "--gpu-attention: this ltd was built without CUDA support; rebuild with --features cuda",
        ));
    }
    let mut rng = SplitMix(args.seed ^ 0x5EED);
    let n = batch * seq * channels;
    let h: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    let gy: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    let ctx = Ctx {
        order,
        batch,
        seq,
        channels,
        reserved,
        layers: layer_ids.len(),
        ltd_id: 0,
        layer_index,
        seed: args.seed,
        step: args.step,
        causal,
        dims,
        weights: Weights::init(dims, args.seed),
        attn,
        h,
        gy,
        #[cfg(feature = "cuda")]
        gpu_attention,
    };

    writeln!(
        out,
        "ltd demo: one Random-LTD + block-sparse attention training step, checked against ltd-reference
"
    )?;
    let what = if source.is_embedded() {
        "embedded default (the DeepSpeed docs' GPT-3 1.3B random-LTD example + a Fixed sparse layout)"
            .to_owned()
    } else {
        source.source_name.clone()
    };
    writeln!(out, "config     {what}")?;
    writeln!(
        out,
        "schedule   step {}: r = {r_full} of {max_value}; scaled to this demo's S = {seq}: r = {reserved}",
        grouped(args.step)
    )?;
    writeln!(
        out,
        "model      B {batch}, S {seq}, C {channels}, {heads} heads of {}, MLP {}, f32, {}, {}",
        channels / heads,
        dims.ffn,
        ltd.hidden_state_order.name(),
        if causal {
            "decoder (causal)"
        } else {
            "encoder"
        }
    )?;
    let layout_r = ctx.attn.layout(reserved)?;
    writeln!(
        out,
        "layer      model layer {layer_index} (token-dropping layer 0 of {}); {} layout, block {}, at length r: {} x {} blocks, density {:.1}%{sparse_note}",
        layer_ids.len(),
        sparse.mode_name(),
        sparse.block(),
        layout_r.num_blocks(),
        layout_r.num_blocks(),
        100.0 * layout_r.density(),
    )?;

    let device_line;
    let result = match args.device {
        DeviceChoice::Cpu => {
            device_line = "cpu (every step)".to_owned();
            explicit_cpu(&ctx)?
        }
        choice => match gpu_step(&ctx, choice == DeviceChoice::Cuda)? {
            Some((res, line)) => {
                device_line = line;
                res
            }
            None => {
                device_line = if cfg!(feature = "cuda") {
                    "cpu (every step; no CUDA device found)".to_owned()
                } else {
                    "cpu (every step; built without --features cuda)".to_owned()
                };
                explicit_cpu(&ctx)?
            }
        },
    };
    let mut result = result;
    if let Some(delta) = args.perturb {
        // The first kept row of batch 0, channel 0.
        let s0 = result.idx_all[0] as usize;
        let o = ref_dims(&ctx).offset(0, s0, 0);
        result.y[o] += delta;
    }
    writeln!(out, "device     {device_line}")?;
    let kept0 = &result.idx_all[..reserved.min(16)];
    writeln!(
        out,
        "kept       batch 0: {}{} ({reserved} of {seq} positions, sorted)",
        kept0
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        if reserved > 16 { " ..." } else { "" }
    )?;

    writeln!(
        out,
        "
  {:<38} {:>12}",
        "step", "time"
    )?;
    let mut total = Duration::ZERO;
    for (name, t) in &result.times {
        if !name.starts_with(' ') {
            total += *t;
        }
        writeln!(out, "  {name:<38} {:>12}", ms(*t))?;
    }
    writeln!(out, "  {:<38} {:>12}", "total", ms(total))?;

    let (checked, t_oracle) = timed(|| -> Result<_> {
        let oracle = oracle(&ctx, &result.idx_all)?;
        let kind = if causal {
            ModelKind::Decoder
        } else {
            ModelKind::Encoder
        };
        let router = via_router(&ctx, kind, layer_ids.clone())?;
        Ok((oracle, router))
    });
    let (oracle, router) = checked?;
    writeln!(
        out,
        "  {:<38} {:>12}",
        "oracle (f64) + router cross-check",
        ms(t_oracle)
    )?;

    let idx = &result.idx_all[..batch * reserved];
    let y_chk = check_rows(&ctx, &result.y, &oracle.y, &ctx.h, idx);
    let g_chk = check_rows(&ctx, &result.grad_h, &oracle.grad_h, &ctx.gy, idx);
    let (w_err, w_name) = weight_error(&result.grad_w, &oracle.grad_w);
    // The GPU attention's backward accumulates dq with atomics, so two runs agree only to
    // rounding; everything else is bit-reproducible.
    let bitwise = !args.gpu_attention;
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                if bitwise {
                    x.to_bits() == y.to_bits()
                } else {
                    (f64::from(x) - f64::from(y)).abs() <= tol * (1.0 + f64::from(y).abs())
                }
            })
    };
    let router_same = same(&router.0, &result.y) && same(&router.1, &result.grad_h);

    writeln!(
        out,
        "
check vs the oracle (ltd-reference gather/scatter/attention + the same block in f64),
error = |ours - oracle| / (1 + |oracle|), tolerance {tol:.0e}:"
    )?;
    let y_ok = y_chk.max_err <= tol && y_chk.dropped_mismatch.is_none();
    let g_ok = g_chk.max_err <= tol && g_chk.dropped_mismatch.is_none();
    let w_ok = w_err <= tol;
    for (name, chk, dropped_what, pass) in [
        ("output y", &y_chk, "h", y_ok),
        ("gradient dL/dh", &g_chk, "dL/dy", g_ok),
    ] {
        writeln!(
            out,
            "  {name:<16} {} kept rows: max error {:.2e}; {} dropped rows: {}  {}",
            chk.kept_rows,
            chk.max_err,
            chk.dropped_rows,
            match chk.dropped_mismatch {
                None => format!("identical to {dropped_what}"),
                Some((b, s)) => format!("row (b {b}, s {s}) differs from {dropped_what}"),
            },
            ok(pass)
        )?;
    }
    writeln!(
        out,
        "  {:<16} max error {w_err:.2e} (worst {w_name}; relative to each tensor's largest entry)  {}",
        "weight gradients",
        ok(w_ok)
    )?;
    writeln!(
        out,
        "  {:<16} TokenDropRouter with the block as a Layer: {}  {}",
        "router",
        match (router_same, bitwise) {
            (true, true) => "identical y and dL/dh",
            (true, false) => "the same y and dL/dh within the tolerance",
            (false, _) => "different results",
        },
        ok(router_same)
    )?;
    writeln!(
        out,
        "  {:<16} every row sorted, distinct and in range (ltd_reference::check_sampled_indices)  ok",
        "sampler"
    )?;

    // Savings.
    let skipped = batch * (seq - reserved);
    let (l_tot, l_ltd) = (ltd.total_layer_num as f64, ltd.random_ltd_layer_num as f64);
    let step_saving = 1.0
        - (r_full as f64 * l_ltd + max_value as f64 * (l_tot - l_ltd)) / (max_value as f64 * l_tot);
    let horizon = ltd.schedule.require_steps;
    writeln!(
        out,
        "
tokens skipped  this layer skipped {skipped} of {} tokens this step ({:.1}%)",
        batch * seq,
        100.0 * skipped as f64 / (batch * seq) as f64
    )?;
    writeln!(
        out,
        "layer-tokens    at the config's size ({} layers, {} dropping, S {max_value}): {:.1}% fewer at step {}, {:.2}% fewer over the {} scheduled steps",
        ltd.total_layer_num,
        ltd.random_ltd_layer_num,
        100.0 * step_saving,
        grouped(args.step),
        100.0 * scheduler.layer_token_saving(horizon)?,
        grouped(horizon)
    )?;
    if y_ok && g_ok && w_ok && router_same {
        writeln!(
            out,
            "
PASS"
        )?;
        Ok(())
    } else {
        let mut failed = Vec::new();
        if !y_ok {
            failed.push(format!(
                "output (worst kept row b {} s {})",
                y_chk.worst.0, y_chk.worst.1
            ));
        }
        if !g_ok {
            failed.push(format!(
                "gradient (worst kept row b {} s {})",
                g_chk.worst.0, g_chk.worst.1
            ));
        }
        if !w_ok {
            failed.push(format!("weight gradient {w_name}"));
        }
        if !router_same {
            failed.push("router cross-check".to_owned());
        }
        writeln!(
            out,
            "
FAIL"
        )?;
        Err(CliError::CheckFailed(failed.join(", ")))
    }
}

/// Runs the step with the sampling, gather and route steps on the GPU when one is available.
/// `None` means: use the CPU. `required` turns "no GPU" into an error.
#[cfg(feature = "cuda")]
fn gpu_step(ctx: &Ctx, required: bool) -> Result<Option<(StepResult, String)>> {
    match ltd_core::CudaDevice::new(0) {
        Ok(dev) => {
            let res = crate::gpu::explicit_gpu(ctx, &dev)?;
            let block = if ctx.gpu_attention.is_some() {
                "the block's attention on the GPU too (bf16), its projections and MLP on the CPU"
            } else {
                "the block (attention, MLP) on the CPU in f32 (--gpu-attention runs the attention on the GPU in bf16 for head dims 64 and 128)"
            };
            Ok(Some((
                res,
                format!("{dev}: sampling, gather and route on the GPU; {block}"),
            )))
        }
        Err(e) if required => Err(CliError::usage(format!("--device cuda: {e}"))),
        Err(_) => Ok(None),
    }
}

/// The device for `--gpu-attention`, checked against the other arguments.
#[cfg(feature = "cuda")]
fn gpu_attention_device(args: &DemoArgs, head_dim: usize) -> Result<Option<ltd_core::CudaDevice>> {
    if !args.gpu_attention {
        return Ok(None);
    }
    if args.device == DeviceChoice::Cpu {
        return Err(CliError::usage(
            "--gpu-attention cannot be used with --device cpu",
        ));
    }
    if head_dim != 64 && head_dim != 128 {
        return Err(CliError::usage(format!(
            "--gpu-attention needs a head dimension (--hidden / --heads) of 64 or 128; this run has {head_dim} (try --hidden 256 --heads 4)"
        )));
    }
    ltd_core::CudaDevice::new(0)
        .map(Some)
        .map_err(|e| CliError::usage(format!("--gpu-attention: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn gpu_step(_ctx: &Ctx, required: bool) -> Result<Option<(StepResult, String)>> {
    if required {
        return Err(CliError::usage(
            "--device cuda: this ltd was built without CUDA support; rebuild with --features cuda",
        ));
    }
    Ok(None)
}

/// The block as a `Layer` for `TokenDropRouter` (backward recomputes the forward).
struct DemoLayer<'a> {
    ctx: &'a Ctx,
}

impl Layer<f32> for DemoLayer<'_> {
    type Extra = ();
    type Error = CliError;

    fn forward(&mut self, input: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, ()>> {
        let l = *input.hidden.layout();
        let n = l.seq();
        let mut backend = self.ctx.backend(n)?;
        let (y, _, _) = block::forward(
            &self.ctx.weights,
            self.ctx.dims_for(n),
            &to_rows(&input.hidden),
            &mut backend,
        )?;
        Ok(LayerOutput {
            hidden: from_rows(&y, l.order(), l.batch(), n, l.channels())?,
            extra: (),
        })
    }

    fn backward(
        &mut self,
        input: LayerInput<'_, f32, bool>,
        grad_output: HiddenView<'_, f32>,
    ) -> Result<HiddenTensor<f32>> {
        let l = *input.hidden.layout();
        let n = l.seq();
        let dims = self.ctx.dims_for(n);
        let mut backend = self.ctx.backend(n)?;
        let (_, acts, _) = block::forward(
            &self.ctx.weights,
            dims,
            &to_rows(&input.hidden),
            &mut backend,
        )?;
        let (g, _) = block::backward(
            &self.ctx.weights,
            dims,
            &acts,
            &to_rows(&grad_output),
            &mut backend,
        )?;
        from_rows(&g.dx, l.order(), l.batch(), n, l.channels())
    }
}
