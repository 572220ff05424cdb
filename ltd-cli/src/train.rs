//! `ltd train`: train a small byte-level GPT with and without Random-LTD (and sparse
//! attention), write a CSV per run and loss-curve PNGs, and report the saving. The model and loop
//! live in `ltd-train`; this module parses flags, draws progress and writes files.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ltd_train::{
    Corpus, Dataset, Overrides, RunResult, SaveEvery, StepRecord, TrainConfig, Trainer, Variant,
    csv, drive, write_atomic,
};

use crate::error::{CliError, Result};
use crate::plot::{self, MultiLineChart, Series, grouped};
use crate::train_parallel::{Job, ParallelArgs};

/// Arguments of `ltd train`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ltd train --compare                     baseline vs Random-LTD on the embedded corpus (a few minutes)
  ltd train --compare --sparse            adds a run with the config's sparse_attention layout
  ltd train ds_config.json --layers 12    your DeepSpeed config (random_ltd, optimizer, scheduler, sparse_attention)
  ltd train --data book.txt --steps 1000  any UTF-8 text
  ltd train --save ck --save-every 50     checkpoints in ck/<run>/; continue with --resume ck
  ltd train --print-config > ds.json      start your own config from the embedded default

Files (in --out): <run>.csv per run (step, train_loss, val_loss, layer_tokens, wall_clock_s, lr,
reserved_length), loss-vs-steps.png and loss-vs-layer-tokens.png.

Environment: LTD_TRAIN_PROFILE=1 prints, after each run, where its steps spent their time by phase
(each phase waits for the device, so profiled steps run slower); CANDLE_NUM_THREADS caps the CPU
threads.")]
pub struct TrainArgs {
    /// A whole DeepSpeed JSON config; the embedded default when omitted.
    pub config: Option<PathBuf>,
    /// Train on this UTF-8 text file instead of the embedded corpus.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Run the baseline and Random-LTD with the same steps, seed and data order.
    #[arg(long)]
    pub compare: bool,
    /// Use the config's sparse_attention layout (with --compare: add a sparse-attention run).
    #[arg(long)]
    pub sparse: bool,
    /// A single run without Random-LTD.
    #[arg(long, conflicts_with = "compare")]
    pub baseline: bool,
    /// Transformer blocks [default: 6].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden size [default: 96].
    #[arg(long)]
    pub width: Option<usize>,
    /// Attention heads [default: 4].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Sequence length in bytes [default: 128].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Optimizer steps [default: the scheduler's total_num_steps, else 300].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Sequences per step (must agree with train_batch_size if the config has one).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed of initialisation, data split and order, and token sampling [default: data_efficiency.seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate (overrides optimizer.params.lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Index the Random-LTD run's learning rate by consumed layer-tokens instead of steps.
    #[arg(long)]
    pub layer_token_lr: bool,
    /// Steps between validation evaluations [default: steps / 10].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Validation windows per periodic evaluation, 0 for all (the final one uses all) [default: 64].
    #[arg(long)]
    pub eval_windows: Option<usize>,
    /// Fraction of the text held out for validation [default: 0.1].
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Directory for the CSV and PNG files.
    #[arg(long, value_name = "DIR", default_value = "ltd-train-out")]
    pub out: PathBuf,
    /// Write checkpoints into DIR/<run>/ (weights and optimizer in safetensors, state in JSON).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Steps between checkpoints [default: --eval-every].
    #[arg(long, requires = "save")]
    pub save_every: Option<u64>,
    /// Continue from the checkpoints in DIR/<run>/.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Where to train (cuda: build with --features train-cuda; the fused attention kernels need width / heads = 64 or 128).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the config's JSON (the embedded default without a file) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Data-parallel training over several GPUs.
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

impl TrainArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            layers: self.layers,
            width: self.width,
            heads: self.heads,
            seq_len: self.seq_len,
            steps: self.steps,
            batch: self.batch,
            seed: self.seed,
            lr: self.lr,
            eval_every: self.eval_every,
            eval_windows: self.eval_windows,
            val_fraction: self.val_fraction,
            layer_token_lr: self.layer_token_lr,
        }
    }

    fn variants(&self, config: &TrainConfig) -> Vec<Variant> {
        if self.compare {
            let mut v = vec![Variant::BASELINE, Variant::RANDOM_LTD];
            if self.sparse {
                v.push(Variant::SPARSE);
            }
            return v;
        }
        let random_ltd = !self.baseline && config.random_ltd.is_some();
        vec![Variant {
            random_ltd,
            sparse: self.sparse,
        }]
    }
}

/// The device of `--device`; rank `rank` of a data-parallel job uses GPU `rank`.
#[cfg_attr(not(feature = "train-cuda"), allow(unused_variables))]
fn device(name: &str, rank: usize) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        #[cfg(feature = "train-cuda")]
        _ => Device::new_cuda(rank).map_err(|e| CliError::Train(e.into())),
        #[cfg(not(feature = "train-cuda"))]
        _ => Err(CliError::usage(
            "--device cuda: this ltd was built without candle's CUDA backend; rebuild with --features train-cuda",
        )),
    }
}

fn progress_bar(steps: u64, quiet: bool, name: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(name.to_owned());
    pb
}

/// One untimed step and evaluation of each variant on a throwaway model, so that the first run's
/// wall-clock does not include what a process pays once on a GPU (loading and JIT-compiling
/// kernel images, cuBLAS's workspace), which would flatter every later run against it.
fn warm_up(
    config: &TrainConfig,
    variants: &[Variant],
    data: &Dataset,
    device: &Device,
) -> Result<()> {
    for &variant in variants {
        let mut t = Trainer::new(config, variant, data, device)?;
        t.step()?;
        t.evaluate(1)?;
    }
    Ok(())
}

/// A rank other than 0: the same warm-up and runs as rank 0, with no output.
fn train_quietly(
    args: &TrainArgs,
    config: &TrainConfig,
    variants: &[Variant],
    data: &Dataset,
    device: &Device,
    job: &Job,
) -> Result<()> {
    if device.is_cuda() {
        warm_up(config, variants, data, device)?;
    }
    for &variant in variants {
        train_variant(
            args,
            config,
            variant,
            data,
            device,
            job,
            &mut std::io::sink(),
        )?;
    }
    Ok(())
}

/// With `LTD_TRAIN_PROFILE=1`: where the run's steps spent their time, by phase (the
/// evaluations' forward phases included, so the forward's milliseconds per step are a little
/// high; the warm-up's are discarded before the runs).
fn print_profile(out: &mut impl Write, name: &str, steps: u64) -> Result<()> {
    let phases = ltd_train::take_profile();
    let total: f64 = phases.iter().map(|p| p.1).sum();
    if phases.is_empty() || total <= 0.0 {
        return Ok(());
    }
    writeln!(
        out,
        "{name}: where the time goes (LTD_TRAIN_PROFILE; each phase waits for the device)"
    )?;
    for (phase, secs, _) in phases {
        writeln!(
            out,
            "  {phase:<36} {:>9.2} ms/step {:>6.1}%",
            1e3 * secs / steps.max(1) as f64,
            100.0 * secs / total
        )?;
    }
    Ok(())
}

/// Runs `ltd train`.
pub fn run(args: &TrainArgs, out: &mut impl Write) -> Result<()> {
    if args.print_config {
        let text = match &args.config {
            Some(p) => std::fs::read_to_string(p).map_err(|e| CliError::read(p, e))?,
            None => ltd_train::DEFAULT_DEEPSPEED_CONFIG.to_owned(),
        };
        write!(out, "{text}")?;
        return Ok(());
    }
    let overrides = args.overrides();
    let config = match &args.config {
        Some(path) => TrainConfig::from_file(path, &overrides)?,
        None => TrainConfig::embedded(&overrides)?,
    };
    let corpus = match &args.data {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::embedded(),
    };
    let data = Dataset::new(
        &corpus,
        config.model.seq_len,
        config.val_fraction,
        config.seed,
    )?;
    let variants = args.variants(&config);
    for &variant in &variants {
        Trainer::check_variant(&config, variant)?;
    }
    let place = args.parallel.place()?;
    place.per_rank_batch(config.batch)?;
    let device = device(&args.device, place.rank())?;
    let job = Job::join(&args.parallel, place, &device)?;
    if !place.is_leader() {
        // The other ranks train in step with rank 0 and write nothing.
        return train_quietly(args, &config, &variants, &data, &device, &job);
    }
    describe(out, &config, &corpus, &data, &variants)?;
    job.describe(out)?;
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::write(&args.out, e))?;
    if device.is_cuda() {
        warm_up(&config, &variants, &data, &device)?;
        ltd_train::take_profile(); // the warm-up's phases are not the runs'
        writeln!(
            out,
            "warm-up: one untimed step and evaluation per run (kernels load once per process)"
        )?;
    }

    let mut finished = Vec::new();
    for variant in variants {
        let run = train_variant(args, &config, variant, &data, &device, &job, out)?;
        if let Some(result) = report_run(args, &config, &run, out)? {
            finished.push(result);
        }
    }
    write_charts(&args.out, &finished)?;
    summary(out, &finished)
}

/// Trains (or resumes) one variant to its last step, drawing progress.
fn train_variant(
    args: &TrainArgs,
    config: &TrainConfig,
    variant: Variant,
    data: &Dataset,
    device: &Device,
    job: &Job,
    out: &mut impl Write,
) -> Result<Trainer> {
    let name = variant.name();
    let run = match &args.resume {
        Some(dir) => Trainer::resume(config, variant, data, device, &dir.join(name))?,
        None => Trainer::new(config, variant, data, device)?,
    };
    let mut run = job.attach(run)?;
    if args.resume.is_some() {
        writeln!(
            out,
            "{name}: resumed at step {} of {}",
            run.steps_done(),
            config.steps
        )?;
    }
    let pb = progress_bar(config.steps, args.quiet || !job.place().is_leader(), name);
    pb.set_position(run.steps_done());
    let tokens_per_step = (config.batch * config.model.seq_len) as f64;
    let mut last_wall = run.history().last().map_or(0.0, |r| r.wall_clock_s);
    let save_dir = args.save.as_ref().map(|d| d.join(name));
    let save = save_dir.as_deref().map(|dir| SaveEvery {
        dir,
        every: args.save_every.unwrap_or(config.eval_every),
    });
    drive(&mut run, save, |r: &StepRecord| {
        let dt = (r.wall_clock_s - last_wall).max(1e-9);
        last_wall = r.wall_clock_s;
        let val = r
            .val_loss
            .map(|v| format!(" val {v:.3}"))
            .unwrap_or_default();
        pb.set_message(format!(
            "loss {:.3}{val} | {:.0} tok/s | r {}",
            r.train_loss,
            tokens_per_step / dt,
            r.reserved_length
        ));
        pb.set_position(r.step);
    })?;
    pb.finish_and_clear();
    Ok(run)
}

/// Rank 0's report of a finished run: its CSV, its line, the layer-token check and the profile
/// (`None` on the other ranks, which write nothing).
fn report_run(
    args: &TrainArgs,
    config: &TrainConfig,
    run: &Trainer,
    out: &mut impl Write,
) -> Result<Option<(RunResult, Vec<StepRecord>)>> {
    if !run.data_parallel().is_leader() {
        return Ok(None);
    }
    let name = run.variant().name();
    let csv_path = args.out.join(format!("{name}.csv"));
    write_atomic(&csv_path, csv(run.history()).as_bytes())?;
    let result = RunResult::of(run).ok_or_else(|| {
        CliError::CheckFailed(format!("{name}: the run ended without a final evaluation"))
    })?;
    writeln!(
        out,
        "{name}: val loss {:.4}, {} layer-tokens, {:.1} s -> {}",
        result.val_loss,
        grouped(result.layer_tokens),
        result.wall_clock_s,
        csv_path.display()
    )?;
    if let Some(s) = run.scheduler() {
        let predicted = s.total_layer_tokens(config.steps)?;
        if predicted != result.layer_tokens {
            return Err(CliError::CheckFailed(format!(
                "{name}: consumed {} layer-tokens, the scheduler predicts {predicted}",
                result.layer_tokens
            )));
        }
    }
    print_profile(out, name, config.steps)?;
    Ok(Some((result, run.history().to_vec())))
}

fn describe(
    out: &mut impl Write,
    c: &TrainConfig,
    corpus: &Corpus,
    data: &Dataset,
    variants: &[Variant],
) -> Result<()> {
    let m = &c.model;
    writeln!(
        out,
        "model: GPT, {} layers, width {}, {} heads, seq {} bytes, byte-level vocab 256",
        m.layers, m.width, m.heads, m.seq_len
    )?;
    writeln!(
        out,
        "data: {} ({} bytes): {} train / {} validation windows; seed {}",
        corpus.source_name(),
        grouped(corpus.bytes().len() as u64),
        data.train_windows(),
        data.val_windows(),
        c.seed
    )?;
    writeln!(
        out,
        "config: {}; {} steps x {} sequences; AdamW lr {} ({}){}",
        c.source_name,
        c.steps,
        c.batch,
        c.optimizer.lr,
        c.lr_schedule.name(),
        if c.layer_token_lr {
            ", LayerToken LR under Random-LTD"
        } else {
            ""
        }
    )?;
    if let Some(ltd) = &c.random_ltd {
        let s = &ltd.schedule;
        writeln!(
            out,
            "random-LTD: layers {:?} of {}, r {} -> {} over {} steps (step {})",
            ltd.sorted_layer_ids(),
            ltd.total_layer_num,
            s.min_value,
            s.max_value,
            s.require_steps,
            s.seq_per_step
        )?;
    }
    let names: Vec<&str> = variants.iter().map(Variant::name).collect();
    writeln!(out, "runs: {}", names.join(", "))?;
    Ok(())
}

/// Moving average of the training loss over `window` steps, as `(x, loss)` with `x` from `key`.
fn smoothed(
    history: &[StepRecord],
    window: usize,
    key: impl Fn(&StepRecord) -> f64,
) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    history
        .iter()
        .enumerate()
        .map(|(i, r)| {
            sum += r.train_loss;
            if i >= window {
                sum -= history[i - window].train_loss;
            }
            (key(r), sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// A chart file: name, title, x label and the x value of a record.
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StepRecord) -> f64,
);

fn write_charts(dir: &Path, runs: &[(RunResult, Vec<StepRecord>)]) -> Result<()> {
    let charts: [ChartSpec; 2] = [
        ("loss-vs-steps.png", "Loss against steps", "step", |r| {
            r.step as f64
        }),
        (
            "loss-vs-layer-tokens.png",
            "Loss against layer-tokens",
            "layer-tokens consumed",
            |r| r.layer_tokens as f64,
        ),
    ];
    let all = runs.iter().flat_map(|(_, h)| h.iter());
    let y_max = all
        .clone()
        .map(|r| r.train_loss)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_min = all
        .flat_map(|r| [Some(r.train_loss), r.val_loss])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    for (file, title, x_label, key) in charts {
        let x_max = runs
            .iter()
            .filter_map(|(_, h)| h.last().map(key))
            .fold(0.0, f64::max);
        let series = runs
            .iter()
            .map(|(r, h)| Series {
                legend: format!("{} (train, smoothed; squares: val)", r.name),
                points: smoothed(h, (h.len() / 50).max(1), key),
                markers: h
                    .iter()
                    .filter_map(|s| Some((key(s), s.val_loss?)))
                    .collect(),
            })
            .collect();
        let chart = MultiLineChart {
            title,
            x_label,
            y_label: "loss (nats per byte)",
            x_max,
            y_min: (y_min * 0.95).max(0.0).floor(),
            y_max,
            series,
            reference: None,
            legend_top: true,
        };
        write_atomic(&dir.join(file), &plot::multi_line_chart_png(&chart)?)?;
    }
    Ok(())
}

fn summary(out: &mut impl Write, runs: &[(RunResult, Vec<StepRecord>)]) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<18} {:>9} {:>9} {:>16} {:>8} {:>10} {:>8}",
        "run", "val loss", "vs base", "layer-tokens", "saved", "wall (s)", "saved"
    )?;
    let base = runs.iter().map(|(r, _)| r).find(|r| r.name == "baseline");
    for (r, _) in runs {
        let compared = base.filter(|b| b.name != r.name).map(|b| r.against(b));
        let (loss, tokens, wall) = match compared {
            Some((tokens, wall, loss)) => (
                format!("{loss:+.2}%"),
                format!("{tokens:.1}%"),
                format!("{wall:.1}%"),
            ),
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        writeln!(
            out,
            "{:<18} {:>9.4} {:>9} {:>16} {:>8} {:>10.1} {:>8}",
            r.name,
            r.val_loss,
            loss,
            grouped(r.layer_tokens),
            tokens,
            r.wall_clock_s,
            wall
        )?;
    }
    if base.is_some() && runs.len() > 1 {
        writeln!(
            out,
            "(vs base: relative validation-loss change, + is worse; saved: fewer layer-tokens / less training wall-clock than the baseline)"
        )?;
    }
    Ok(())
}
