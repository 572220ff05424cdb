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
use std::time::Duration;

use clap::{Args, ValueEnum};
use ltd_core::{HiddenOrder, ModelKind};
use ltd_scheduler::{HiddenStateOrder, ModelType, RandomLtdConfig, RandomLtdScheduler};
use ltd_sparse_attn::{FixedConfig, SparseSelfAttention, SparsityConfig};

use crate::block::{Dims, SplitMix, Weights};
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
    /// Training step whose reserved length r is used (scaled from max_value to --seq)
    /// [default: the middle of the config's schedule, where r is between its min and max].
    #[arg(long, value_parser = parse_count)]
    pub step: Option<u64>,
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

mod check;
mod context;
mod steps;

pub(crate) use context::{Ctx, StepResult, from_rows, to_rows};

use check::{RowCheck, check_rows, ok, oracle, weight_error};
use context::ref_dims;
#[cfg(feature = "cuda")]
use steps::gpu_attention_device;
use steps::{explicit_cpu, gpu_step, via_router};

/// The run's configuration, resolved from the arguments and the DeepSpeed config.
struct Setup {
    ctx: Ctx,
    ltd: RandomLtdConfig,
    scheduler: RandomLtdScheduler,
    sparse: SparsityConfig,
    sparse_note: &'static str,
    source: String,
    r_full: u64,
    layer_ids: Vec<usize>,
    tol: f64,
}

/// Runs `ltd demo`.
pub fn run(args: &DemoArgs, out: &mut impl Write) -> Result<()> {
    let setup = setup(args)?;
    write_header(out, &setup)?;
    let result = run_step(args, &setup.ctx, out)?;
    write_times(out, &result)?;
    let failed = check(out, args, &setup, &result)?;
    write_savings(out, &setup)?;
    if failed.is_empty() {
        writeln!(out, "\nPASS")?;
        Ok(())
    } else {
        writeln!(out, "\nFAIL")?;
        Err(CliError::CheckFailed(failed.join(", ")))
    }
}

/// Reads the config, checks the arguments and builds the step's context.
fn setup(args: &DemoArgs) -> Result<Setup> {
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
    source.print_warnings(heads);
    let max_value = ltd.schedule.max_value;
    // The middle of the ramp, so the default step drops tokens whatever the config's schedule.
    let step = args.step.unwrap_or(ltd.schedule.require_steps / 2);
    let r_full = scheduler.reserved_length_at(step);
    let reserved = ((r_full as f64 * seq as f64 / max_value as f64).round() as usize).clamp(1, seq);
    if reserved >= seq {
        return Err(CliError::usage(format!(
            "--step {step}: the schedule keeps all {seq} tokens there (r = {r_full} of \
             max_value {max_value}), so the demo would drop nothing; pick a step before \
             require_steps = {} (or leave --step out for the middle of the schedule)",
            ltd.schedule.require_steps
        )));
    }
    let layer_ids = ltd.sorted_layer_ids();
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
        layer_index: layer_ids[0],
        seed: args.seed,
        step,
        causal: ltd.model_type == ModelType::Decoder,
        dims,
        weights: Weights::init(dims, args.seed),
        attn,
        h,
        gy,
        #[cfg(feature = "cuda")]
        gpu_attention,
    };
    let source = if source.is_embedded() {
        "embedded default (the DeepSpeed docs' GPT-3 1.3B random-LTD example + a Fixed sparse layout)"
            .to_owned()
    } else {
        source.source_name.clone()
    };
    Ok(Setup {
        ctx,
        ltd,
        scheduler,
        sparse,
        sparse_note,
        source,
        r_full,
        layer_ids,
        tol,
    })
}

/// The config, schedule, model and layer lines.
fn write_header(out: &mut impl Write, setup: &Setup) -> Result<()> {
    let Setup { ctx, ltd, .. } = setup;
    let (seq, reserved, channels, heads) = (ctx.seq, ctx.reserved, ctx.channels, ctx.dims.heads);
    writeln!(
        out,
        "ltd demo: one Random-LTD + block-sparse attention training step, checked against ltd-reference\n"
    )?;
    writeln!(out, "config     {}", setup.source)?;
    writeln!(
        out,
        "schedule   step {}: r = {} of {}; scaled to this demo's S = {seq}: r = {reserved}",
        grouped(setup.ctx.step),
        setup.r_full,
        ltd.schedule.max_value
    )?;
    writeln!(
        out,
        "model      B {}, S {seq}, C {channels}, {heads} heads of {}, MLP {}, f32, {}, {}",
        ctx.batch,
        channels / heads,
        ctx.dims.ffn,
        ltd.hidden_state_order.name(),
        if ctx.causal {
            "decoder (causal)"
        } else {
            "encoder"
        }
    )?;
    let layout_r = ctx.attn.layout(reserved)?;
    writeln!(
        out,
        "layer      model layer {} (token-dropping layer 0 of {}); {} layout, block {}, at length r: {} x {} blocks, density {:.1}%{}",
        ctx.layer_index,
        setup.layer_ids.len(),
        setup.sparse.mode_name(),
        setup.sparse.block(),
        layout_r.num_blocks(),
        layout_r.num_blocks(),
        100.0 * layout_r.density(),
        setup.sparse_note,
    )?;
    Ok(())
}

/// Runs the step where `--device` says, and prints where it ran and the kept positions.
fn run_step(args: &DemoArgs, ctx: &Ctx, out: &mut impl Write) -> Result<StepResult> {
    let (mut result, device_line) = match args.device {
        DeviceChoice::Cpu => (explicit_cpu(ctx)?, "cpu (every step)".to_owned()),
        choice => match gpu_step(ctx, choice == DeviceChoice::Cuda)? {
            Some((res, line)) => (res, line),
            None => {
                let line = if cfg!(feature = "cuda") {
                    "cpu (every step; no CUDA device found)"
                } else {
                    "cpu (every step; built without --features cuda)"
                };
                (explicit_cpu(ctx)?, line.to_owned())
            }
        },
    };
    if let Some(delta) = args.perturb {
        // The first kept row of batch 0, channel 0.
        let s0 = result.idx_all[0] as usize;
        let o = ref_dims(ctx).offset(0, s0, 0);
        result.y[o] += delta;
    }
    writeln!(out, "device     {device_line}")?;
    let reserved = ctx.reserved;
    let kept0 = &result.idx_all[..reserved.min(16)];
    writeln!(
        out,
        "kept       batch 0: {}{} ({reserved} of {} positions, sorted)",
        kept0
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        if reserved > 16 { " ..." } else { "" },
        ctx.seq
    )?;
    Ok(result)
}

/// The time of every step and their total.
fn write_times(out: &mut impl Write, result: &StepResult) -> Result<()> {
    writeln!(out, "\n  {:<38} {:>12}", "step", "time")?;
    let mut total = Duration::ZERO;
    for (name, t) in &result.times {
        if !name.starts_with(' ') {
            total += *t;
        }
        writeln!(out, "  {name:<38} {:>12}", ms(*t))?;
    }
    writeln!(out, "  {:<38} {:>12}", "total", ms(total))?;
    Ok(())
}

/// Compares the step with the oracle and the router run, prints the checks, and returns what
/// failed.
fn check(
    out: &mut impl Write,
    args: &DemoArgs,
    setup: &Setup,
    result: &StepResult,
) -> Result<Vec<String>> {
    let (ctx, tol) = (&setup.ctx, setup.tol);
    let (checked, t_oracle) = timed(|| -> Result<_> {
        let oracle = oracle(ctx, &result.idx_all)?;
        let kind = if ctx.causal {
            ModelKind::Decoder
        } else {
            ModelKind::Encoder
        };
        let router = via_router(ctx, kind, setup.layer_ids.clone())?;
        Ok((oracle, router))
    });
    let (oracle, router) = checked?;
    writeln!(
        out,
        "  {:<38} {:>12}",
        "oracle (f64) + router cross-check",
        ms(t_oracle)
    )?;
    let idx = &result.idx_all[..ctx.batch * ctx.reserved];
    let y_chk = check_rows(ctx, &result.y, &oracle.y, &ctx.h, idx);
    let g_chk = check_rows(ctx, &result.grad_h, &oracle.grad_h, &ctx.gy, idx);
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
        "\ncheck vs the oracle (ltd-reference gather/scatter/attention + the same block in f64),
error = |ours - oracle| / (1 + |oracle|), tolerance {tol:.0e}:"
    )?;
    let y_ok = y_chk.max_err <= tol && y_chk.dropped_mismatch.is_none();
    let g_ok = g_chk.max_err <= tol && g_chk.dropped_mismatch.is_none();
    let w_ok = w_err <= tol;
    write_row_checks(
        out,
        [
            ("output y", &y_chk, "h", y_ok),
            ("gradient dL/dh", &g_chk, "dL/dy", g_ok),
        ],
    )?;
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
    Ok(failed)
}

/// One line per row check: kept rows' error, dropped rows' identity.
fn write_row_checks(
    out: &mut impl Write,
    checks: [(&str, &RowCheck, &str, bool); 2],
) -> Result<()> {
    for (name, chk, dropped_what, pass) in checks {
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
    Ok(())
}

/// Tokens this layer skipped, and the layer-token saving at the config's size.
fn write_savings(out: &mut impl Write, setup: &Setup) -> Result<()> {
    let Setup { ctx, ltd, .. } = setup;
    let (batch, seq) = (ctx.batch, ctx.seq);
    let max_value = ltd.schedule.max_value;
    let skipped = batch * (seq - ctx.reserved);
    let (l_tot, l_ltd) = (ltd.total_layer_num as f64, ltd.random_ltd_layer_num as f64);
    let step_saving = 1.0
        - (setup.r_full as f64 * l_ltd + max_value as f64 * (l_tot - l_ltd))
            / (max_value as f64 * l_tot);
    let horizon = ltd.schedule.require_steps;
    writeln!(
        out,
        "\ntokens skipped  this layer skipped {skipped} of {} tokens this step ({:.1}%)",
        batch * seq,
        100.0 * skipped as f64 / (batch * seq) as f64
    )?;
    writeln!(
        out,
        "layer-tokens    at the config's size ({} layers, {} dropping, S {max_value}): {:.1}% fewer at step {}, {:.2}% fewer over the {} scheduled steps",
        ltd.total_layer_num,
        ltd.random_ltd_layer_num,
        100.0 * step_saving,
        grouped(setup.ctx.step),
        100.0 * setup.scheduler.layer_token_saving(horizon)?,
        grouped(horizon)
    )?;
    Ok(())
}
