//! `ltd plan`: the Random-LTD schedule, layer-token budget and sparse layout of a DeepSpeed config.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler};
use ltd_sparse_attn::SparsityConfig;

use crate::config::{DEFAULT_HEADS, DeepSpeedConfig};
use crate::error::{CliError, Result, write_file};
use crate::plot::{self, grouped, short};

/// Arguments of `ltd plan`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ltd plan                                  the embedded default (GPT-3 1.3B example + Fixed layout)
  ltd plan ds_config.json                   your DeepSpeed config (data_efficiency + sparse_attention)
  ltd plan --steps 100k --png r.png         budget over 100,000 steps, schedule chart as PNG
  ltd plan --train-tokens 300G              steps from a token budget (global batch x max_value)
  ltd plan --layout-png layout.png --heads 16
  ltd plan --print-config > ds_config.json  start your own config from the embedded default

Counts accept suffixes: 200k, 1.5M, 300G (or 300B), 2T, and plain or scientific numbers (3e11).")]
pub struct PlanArgs {
    /// A whole DeepSpeed JSON config; the embedded default when omitted.
    pub config: Option<PathBuf>,
    /// Training steps for the layer-token budget [default: the schedule's require_steps].
    #[arg(long, value_parser = parse_count, conflicts_with = "train_tokens")]
    pub steps: Option<u64>,
    /// Training tokens instead of steps: steps = ceil(tokens / (global batch x max_value)).
    #[arg(long, value_parser = parse_count)]
    pub train_tokens: Option<u64>,
    /// Global batch size in sequences (overrides train_batch_size / global_batch_size, and fills
    /// them in where the config says "auto").
    #[arg(long, value_parser = parse_positive_count)]
    pub global_batch: Option<u64>,
    /// Rows of the schedule table.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub rows: u64,
    /// Width of the terminal chart in columns.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(16..=400))]
    pub width: u64,
    /// Plain ASCII terminal chart (no Unicode blocks).
    #[arg(long)]
    pub ascii: bool,
    /// Write the schedule chart as a PNG.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Attention heads of the sparse layout (the JSON does not carry them).
    #[arg(long, default_value_t = DEFAULT_HEADS as u64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub heads: u64,
    /// Sequence length of the layout [default: the schedule's max_value, else 2048].
    #[arg(long, value_parser = parse_count)]
    pub layout_seq: Option<u64>,
    /// Largest text picture of the layout, in blocks per side (larger layouts show their top-left corner).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(4..=512))]
    pub layout_width: u64,
    /// Write the layout as a PNG (one picture per distinct head pattern).
    #[arg(long, value_name = "FILE")]
    pub layout_png: Option<PathBuf>,
    /// Print the config's JSON (the embedded default without a file) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Parses a count: digits with optional `_` separators, a decimal or scientific number, or a
/// number with a `k`, `M`, `G`/`B`, `T` suffix (powers of 1000).
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G' | 'b' | 'B') => (&t[..t.len() - 1], 1e9),
        Some('t' | 'T') => (&t[..t.len() - 1], 1e12),
        _ => (t.as_str(), 1.0),
    };
    if mult == 1.0
        && let Ok(v) = num.parse::<u64>()
    {
        return Ok(v);
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a count (examples: 2048, 200k, 1.5M, 3e11)"))?;
    let v = v * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 || v.fract() != 0.0 {
        return Err(format!(
            "{s:?} is not a whole non-negative count below 2^64"
        ));
    }
    Ok(v as u64)
}

/// [`parse_count`] for a count that must be at least 1.
pub fn parse_positive_count(s: &str) -> std::result::Result<u64, String> {
    match parse_count(s)? {
        0 => Err(format!("{s:?} is 0; expected at least 1")),
        n => Ok(n),
    }
}

/// The scheduler of `config`, with `global_batch` overriding its batch size.
fn scheduler_for(
    source: &DeepSpeedConfig,
    config: &RandomLtdConfig,
    global_batch: Option<u64>,
) -> Result<(RandomLtdConfig, RandomLtdScheduler)> {
    let mut config = config.clone();
    if let Some(g) = global_batch {
        config = config.with_global_batch_size(g)?;
    }
    if config.global_batch_size.is_none() {
        let auto = source.auto_keys()?;
        let message = match auto.iter().find(|k| k.ends_with("batch_size")) {
            Some(key) => format!(
                "{key}: \"auto\" needs a value here; pass --global-batch (sequences per optimizer step)"
            ),
            None => format!(
                "{}.global_batch_size: missing; set train_batch_size in the config or pass --global-batch",
                ltd_scheduler::RANDOM_LTD_KEY_PATH
            ),
        };
        return Err(CliError::Config {
            source_name: source.source_name.clone(),
            message,
        });
    }
    let scheduler = RandomLtdScheduler::new(&config).map_err(|e| CliError::Config {
        source_name: source.source_name.clone(),
        message: e.to_string(),
    })?;
    Ok((config, scheduler))
}

/// Runs `ltd plan`.
pub fn run(args: &PlanArgs, out: &mut impl Write) -> Result<()> {
    let source = DeepSpeedConfig::load(args.config.as_deref())?;
    if args.print_config {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&source.value).unwrap_or_default()
        )?;
        return Ok(());
    }
    let random_ltd = source.random_ltd()?;
    let heads = args.heads as usize;
    let sparse = source.sparse_attention(heads)?;
    source.print_warnings(heads);
    if random_ltd.is_none() && sparse.is_none() {
        return Err(CliError::Config {
            source_name: source.source_name.clone(),
            message: format!(
                "nothing to plan: {}.enabled is not true and there is no sparse_attention section",
                ltd_scheduler::RANDOM_LTD_KEY_PATH
            ),
        });
    }
    if random_ltd.is_none()
        && (args.png.is_some() || args.steps.is_some() || args.train_tokens.is_some())
    {
        return Err(CliError::usage(
            "--png, --steps and --train-tokens need a random-LTD section (data_efficiency.data_routing.random_ltd with enabled: true)",
        ));
    }
    if sparse.is_none() && args.layout_png.is_some() {
        return Err(CliError::usage(
            "--layout-png needs a sparse_attention section in the config",
        ));
    }
    let what = if source.is_embedded() {
        "embedded default (the DeepSpeed docs' GPT-3 1.3B random-LTD example + a Fixed sparse layout)"
            .to_owned()
    } else {
        source.source_name.clone()
    };
    writeln!(out, "config: {what}")?;

    let mut layout_seq = args.layout_seq.map(|s| s as usize);
    let mut lengths = Vec::new();
    match &random_ltd {
        Some(cfg) => {
            let (cfg, scheduler) = scheduler_for(&source, cfg, args.global_batch)?;
            layout_seq.get_or_insert(cfg.schedule.max_value as usize);
            lengths = plan_random_ltd(args, &cfg, &scheduler, out)?;
        }
        None => writeln!(
            out,
            "\nRandom-LTD: not enabled ({}.enabled is false or absent)",
            ltd_scheduler::RANDOM_LTD_KEY_PATH
        )?,
    }
    match &sparse {
        Some(sparse) => {
            plan_sparse(
                args,
                &source,
                sparse,
                layout_seq.unwrap_or(2048),
                &lengths,
                out,
            )?;
        }
        None => writeln!(out, "\nSparse attention: no sparse_attention section")?,
    }
    Ok(())
}

fn ids_label(ids: &[usize]) -> String {
    if ids.len() > 1 && ids.windows(2).all(|w| w[1] == w[0] + 1) {
        format!("{}-{}", ids[0], ids[ids.len() - 1])
    } else {
        ids.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Prints the schedule part; returns a few reserved lengths along the schedule (for the layout
/// densities at those lengths).
fn plan_random_ltd(
    args: &PlanArgs,
    cfg: &RandomLtdConfig,
    scheduler: &RandomLtdScheduler,
    out: &mut impl Write,
) -> Result<Vec<u64>> {
    let sched = cfg.schedule;
    let tokens_per_step = u128::from(scheduler.global_batch_size()) * u128::from(sched.max_value);
    let plan = SchedulePlan {
        cfg,
        scheduler,
        steps: plan_steps(args, cfg, tokens_per_step)?,
        tokens_per_step,
    };
    plan.write_summary(args.train_tokens, out)?;
    plan.write_table(args.rows, out)?;
    plan.write_chart(args.width as usize, args.ascii, out)?;
    plan.write_budget(out)?;
    if let Some(path) = &args.png {
        plan.write_png(path, out)?;
    }
    Ok(plan.sampled_lengths())
}

/// The steps a plan covers: `--steps`, else `--train-tokens` over the tokens of one step, else
/// the schedule's `require_steps`; at least 1.
fn plan_steps(args: &PlanArgs, cfg: &RandomLtdConfig, tokens_per_step: u128) -> Result<u64> {
    let steps = match (args.steps, args.train_tokens) {
        (Some(s), _) => s,
        (None, Some(t)) => u64::try_from(u128::from(t).div_ceil(tokens_per_step))
            .map_err(|_| CliError::usage("--train-tokens gives more than 2^64 steps"))?,
        (None, None) => cfg.schedule.require_steps,
    };
    if steps == 0 {
        return Err(CliError::usage(
            "the number of steps must be at least 1 (--steps or --train-tokens)",
        ));
    }
    Ok(steps)
}

/// A random-LTD config and its scheduler over the steps `ltd plan` covers.
struct SchedulePlan<'a> {
    cfg: &'a RandomLtdConfig,
    scheduler: &'a RandomLtdScheduler,
    steps: u64,
    /// Global batch x `max_value`.
    tokens_per_step: u128,
}

impl SchedulePlan<'_> {
    /// The model, schedule and batch lines.
    fn write_summary(&self, train_tokens: Option<u64>, out: &mut impl Write) -> Result<()> {
        let (cfg, scheduler) = (self.cfg, self.scheduler);
        let sched = cfg.schedule;
        let g = scheduler.global_batch_size();
        let (l_tot, l_ltd) = (cfg.total_layer_num, cfg.random_ltd_layer_num);
        let at_max = scheduler.schedule().first_step_at_max();
        writeln!(out, "\nRandom-LTD ({})", ltd_scheduler::RANDOM_LTD_KEY_PATH)?;
        let mask = cfg
            .model_mask_name
            .as_deref()
            .map_or("no mask".to_owned(), |m| format!("mask argument `{m}`"));
        writeln!(
            out,
            "  model         {l_tot} layers, token dropping in {l_ltd} (ids {}), {}, {}, {mask}",
            ids_label(&cfg.sorted_layer_ids()),
            cfg.model_type.name(),
            cfg.hidden_state_order.name(),
        )?;
        let reach = match at_max {
            Some(s) => format!("r = {} from step {}", sched.max_value, grouped(s)),
            None => "never reaches max_value".to_owned(),
        };
        writeln!(
            out,
            "  schedule      {}: r from {} to {} in steps of {} over {} steps ({reach})",
            sched.schedule_type.name(),
            sched.min_value,
            sched.max_value,
            sched.seq_per_step,
            grouped(sched.require_steps),
        )?;
        writeln!(
            out,
            "  global batch  {g} sequences x {} tokens = {} tokens per step",
            sched.max_value,
            grouped(self.tokens_per_step)
        )?;
        if let Some(t) = train_tokens {
            writeln!(
                out,
                "  train tokens  {} = {} steps",
                grouped(t),
                grouped(self.steps)
            )?;
        }
        Ok(())
    }

    /// The table of `r`, the kept share, layer-tokens per step (and the learning rate where the
    /// config enables `layer_token_lr_schedule`) at `rows` evenly spaced steps.
    fn write_table(&self, rows: u64, out: &mut impl Write) -> Result<()> {
        let (cfg, scheduler, steps) = (self.cfg, self.scheduler, self.steps);
        let sched = cfg.schedule;
        let (l_tot, l_ltd) = (cfg.total_layer_num, cfg.random_ltd_layer_num);
        let lr = scheduler.lr_schedule();
        let full_per_step = (sched.max_value * l_tot as u64) as f64;
        writeln!(out)?;
        let mut header = format!(
            "  {:>12}  {:>6}  {:>6}  {:>18}",
            "step", "r", "kept", "layer-tokens/step"
        );
        if lr.is_some() {
            header.push_str(&format!("  {:>10}", "lr"));
        }
        writeln!(out, "{header}")?;
        let mut table_steps: Vec<u64> = (0..rows)
            .map(|i| (((steps as u128 * i as u128) / (rows - 1) as u128) as u64).min(steps))
            .collect();
        table_steps.dedup();
        for step in table_steps {
            let r = scheduler.reserved_length_at(step);
            let per_step = (r * l_ltd as u64 + sched.max_value * (l_tot - l_ltd) as u64) as f64
                / full_per_step;
            let mut line = format!(
                "  {:>12}  {:>6}  {:>5.1}%  {:>17.1}%",
                grouped(step),
                r,
                100.0 * r as f64 / sched.max_value as f64,
                100.0 * per_step
            );
            if let Some(lr) = lr {
                let consumed = scheduler.total_layer_tokens(step.saturating_add(1))?;
                line.push_str(&format!("  {:>10.3e}", lr.lr_at(consumed)));
            }
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "  (kept = r / max_value in the {l_ltd} token-dropping layers; layer-tokens/step relative to no dropping)"
        )?;
        Ok(())
    }

    /// The terminal chart of `r` over the steps, `width` columns wide.
    fn write_chart(&self, width: usize, ascii: bool, out: &mut impl Write) -> Result<()> {
        writeln!(out, "\n  reserved length r by training step")?;
        let chart = plot::terminal_chart(
            |x| self.scheduler.reserved_length_at(x.round() as u64) as f64,
            self.steps as f64,
            self.cfg.schedule.max_value as f64,
            width,
            12,
            "training step",
            ascii,
        );
        for line in chart.lines() {
            writeln!(out, "  {line}")?;
        }
        Ok(())
    }

    /// The layer-tokens over the steps with and without random-LTD, and the saving.
    fn write_budget(&self, out: &mut impl Write) -> Result<()> {
        let (scheduler, steps) = (self.scheduler, self.steps);
        let l_ltd = self.cfg.random_ltd_layer_num;
        let total = scheduler.total_layer_tokens(steps)?;
        let baseline = scheduler.baseline_layer_tokens(steps)?;
        let saving = scheduler.layer_token_saving(steps)?;
        let saved = baseline - total;
        let ltd_baseline = self.tokens_per_step * l_ltd as u128 * u128::from(steps);
        writeln!(
            out,
            "\n  layer-tokens over {} steps ({} training tokens):",
            grouped(steps),
            short((self.tokens_per_step * u128::from(steps)) as f64)
        )?;
        writeln!(
            out,
            "    with random-LTD   {:>26}  ({})",
            grouped(total),
            short(total as f64)
        )?;
        writeln!(
            out,
            "    without           {:>26}  ({})",
            grouped(baseline),
            short(baseline as f64)
        )?;
        writeln!(
            out,
            "    saved             {:>26}  ({}, {:.2}%)",
            grouped(saved),
            short(saved as f64),
            100.0 * saving
        )?;
        if ltd_baseline > 0 {
            writeln!(
                out,
                "  the {l_ltd} token-dropping layers alone process {:.2}% fewer tokens",
                100.0 * saved as f64 / ltd_baseline as f64
            )?;
        }
        Ok(())
    }

    /// The schedule chart as a PNG at `path`.
    fn write_png(&self, path: &Path, out: &mut impl Write) -> Result<()> {
        let (scheduler, sched, steps) = (self.scheduler, self.cfg.schedule, self.steps);
        let samples = 600u64;
        let points = (0..=samples)
            .map(|i| {
                let x = steps as f64 * i as f64 / samples as f64;
                (x, scheduler.reserved_length_at(x.round() as u64) as f64)
            })
            .collect();
        let title = format!(
            "Random-LTD reserved length ({}, {} -> {})",
            sched.schedule_type.name(),
            sched.min_value,
            sched.max_value
        );
        let chart = plot::LineChart {
            title: &title,
            x_label: "training step",
            y_label: "r (tokens kept)",
            x_max: steps as f64,
            y_max: sched.max_value as f64,
            points,
            reference: Some((
                sched.max_value as f64,
                format!("max_value {}", sched.max_value),
            )),
            legend: "r(step)",
        };
        write_file(path, &plot::line_chart_png(&chart)?)?;
        writeln!(out, "\n  wrote the schedule chart to {}", path.display())?;
        Ok(())
    }

    /// The reserved lengths at the first, middle and last step, without repeats.
    fn sampled_lengths(&self) -> Vec<u64> {
        let (scheduler, steps) = (self.scheduler, self.steps);
        let mut lengths = vec![scheduler.reserved_length_at(0)];
        lengths.push(scheduler.reserved_length_at(steps / 2));
        lengths.push(scheduler.reserved_length_at(steps));
        lengths.dedup();
        lengths
    }
}

fn plan_sparse(
    args: &PlanArgs,
    source: &DeepSpeedConfig,
    sparse: &SparsityConfig,
    seq: usize,
    lengths: &[u64],
    out: &mut impl Write,
) -> Result<()> {
    if seq == 0 {
        return Err(CliError::usage("--layout-seq must be at least 1"));
    }
    let layout = sparse
        .make_layout(seq)
        .map_err(|e| source.layout_error(e, seq))?;
    let nb = layout.num_blocks();
    writeln!(out, "\nSparse attention (sparse_attention)")?;
    writeln!(
        out,
        "  {} layout, block {}, {} heads, at sequence length {seq}: {nb} x {nb} blocks, density {:.2}% ({} of {} tiles)",
        sparse.mode_name(),
        sparse.block(),
        layout.num_heads(),
        100.0 * layout.density(),
        grouped(layout.nnz() as u64),
        grouped((layout.num_heads() * nb * nb) as u64),
    )?;
    writeln!(out, "  {}", crate::layout::describe_params(sparse))?;
    writeln!(
        out,
        "\n  {:>6}  {:>12}  {:>8}",
        "head", "active tiles", "density"
    )?;
    for h in 0..layout.num_heads() {
        let active = layout.mask()[h * nb * nb..(h + 1) * nb * nb]
            .iter()
            .filter(|&&v| v != 0)
            .count();
        writeln!(
            out,
            "  {h:>6}  {active:>12}  {:>7.2}%",
            100.0 * active as f64 / (nb * nb) as f64
        )?;
    }
    if !lengths.is_empty() {
        let parts: Vec<String> = lengths
            .iter()
            .filter(|&&r| r > 0)
            .map(|&r| {
                sparse
                    .make_layout(r as usize)
                    .map(|l| format!("r = {r}: {:.2}%", 100.0 * l.density()))
                    .map_err(|e| source.layout_error(e, r as usize))
            })
            .collect::<std::result::Result<_, _>>()?;
        writeln!(
            out,
            "  token-dropping layers attend over r tokens; layout density at {}",
            parts.join(", ")
        )?;
    }
    writeln!(out)?;
    let pictures = plot::layout_pictures(&layout, args.layout_width as usize, 100, plot::Fit::Crop);
    for line in pictures.lines() {
        writeln!(out, "  {line}")?;
    }
    if let Some(path) = &args.layout_png {
        let title = format!(
            "{} layout, block {}, seq {seq} ({nb} x {nb} blocks)",
            sparse.mode_name(),
            sparse.block()
        );
        write_file(path, &plot::layout_png(&layout, &title)?)?;
        writeln!(out, "\n  wrote the layout picture to {}", path.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("200000"), Ok(200_000));
        assert_eq!(parse_count("200_000"), Ok(200_000));
        assert_eq!(parse_count("200k"), Ok(200_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("300B"), Ok(300_000_000_000));
        assert_eq!(parse_count("3e11"), Ok(300_000_000_000));
        assert_eq!(parse_count("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_count("-5").is_err());
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("lots").is_err());
    }

    #[test]
    fn embedded_plan_prints_the_worked_example() {
        let args = PlanArgs {
            config: None,
            steps: None,
            train_tokens: None,
            global_batch: None,
            rows: 5,
            width: 32,
            ascii: true,
            png: None,
            heads: 4,
            layout_seq: Some(256),
            layout_width: 32,
            layout_png: None,
            print_config: false,
        };
        let mut buf = Vec::new();
        run(&args, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        // 0, 50k, 100k, 150k, 200k → 128, 608, 1088, 1568, 2048 (upstream-semantics.md §1.9).
        for (step, r) in [("50,000", "608"), ("100,000", "1088"), ("200,000", "2048")] {
            assert!(
                text.lines().any(|l| l.contains(step) && l.contains(r)),
                "{step} {r}\n{text}"
            );
        }
        assert!(text.contains("43.33%"), "{text}");
    }
}
