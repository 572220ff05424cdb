//! `ltd layout`: build one block-sparse attention layout and show it (text, PNG) or export it
//! (JSON for the GPU peer scripts).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ltd_sparse_attn::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig, Layout,
    LocalSlidingWindowConfig, PngOptions, SparseAttnError, SparsityConfig, VariableConfig,
    write_png,
};
use serde_json::{Value, json};

use crate::config::DeepSpeedConfig;
use crate::error::{CliError, Result, write_file};
use crate::plot;

/// The layout families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Sparse Transformers "fixed": local windows plus global blocks.
    Fixed,
    /// Random blocks, variable local windows, global blocks.
    Variable,
    /// BigBird: random blocks, sliding window, global blocks.
    Bigbird,
    /// Longformer-style sliding window plus global blocks.
    Bslongformer,
    /// A plain sliding window (not reachable from DeepSpeed JSON).
    #[value(alias = "local_sliding_window", alias = "local-sliding-window")]
    Local,
    /// Every tile active.
    Dense,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Fixed => "fixed",
            Mode::Variable => "variable",
            Mode::Bigbird => "bigbird",
            Mode::Bslongformer => "bslongformer",
            Mode::Local => "local",
            Mode::Dense => "dense",
        }
    }
}

/// `--attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Attention {
    /// Causal at block level (a query block sees key blocks at or before it).
    #[value(alias = "unidirectional")]
    Uni,
    /// Every block may see every block.
    #[value(alias = "bidirectional")]
    Bi,
}

impl From<Attention> for Direction {
    fn from(a: Attention) -> Self {
        match a {
            Attention::Uni => Direction::Unidirectional,
            Attention::Bi => Direction::Bidirectional,
        }
    }
}

/// Arguments of `ltd layout`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ltd layout --mode fixed --seq 512                      DeepSpeed's default Fixed layout, as text
  ltd layout --mode fixed --seq 2048 --heads 4 --different-layout-per-head \\
             --num-different-global-patterns 4 --attention uni --png fixed.png
  ltd layout --mode bigbird --seq 1024 --num-random-blocks 2 --seed 7 --json > bigbird.json
  ltd layout --mode variable --seq 1024 --local-window-blocks 2,4 --global-block-indices 0,8
  ltd layout --mode local --seq 256 --num-sliding-window-blocks 5 --attention bi
  ltd layout --config ds_config.json --seq 2048          the sparse_attention section of a config

Parameters that a mode does not use are refused. Defaults are upstream DeepSpeed's.
--json prints {mode, block, heads, nb, seq, density, density_per_head, nnz, params, layout}
with layout as nested 0/1 lists [heads][nb][nb] (rows are query blocks).")]
pub struct LayoutArgs {
    /// The layout family.
    #[arg(
        long,
        value_enum,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub mode: Option<Mode>,
    /// Read the `sparse_attention` section of a DeepSpeed JSON config instead of --mode and its parameters.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sequence length in tokens (the layout has ceil(seq / block) blocks per side).
    #[arg(long)]
    pub seq: usize,
    /// Block size in tokens: 16, 32, 64 or 128 [default: 16].
    #[arg(long)]
    pub block: Option<usize>,
    /// Attention heads.
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// Fixed: local window size in blocks [default: 4].
    #[arg(long)]
    pub num_local_blocks: Option<usize>,
    /// Fixed, BigBird: global blocks [default: 1].
    #[arg(long)]
    pub num_global_blocks: Option<usize>,
    /// Variable, BigBird: random blocks per row [defaults: 0, 1].
    #[arg(long)]
    pub num_random_blocks: Option<usize>,
    /// BigBird, BSLongformer, local: sliding window size in blocks [default: 3].
    #[arg(long, alias = "sliding-window")]
    pub num_sliding_window_blocks: Option<usize>,
    /// Variable: local window sizes in blocks, comma separated [default: 4].
    #[arg(long, value_delimiter = ',')]
    pub local_window_blocks: Option<Vec<usize>>,
    /// Variable, BSLongformer: global block indices (or span starts), comma separated [default: 0].
    #[arg(long, value_delimiter = ',')]
    pub global_block_indices: Option<Vec<usize>>,
    /// Variable, BSLongformer: exclusive global span ends, one per start.
    #[arg(long, value_delimiter = ',')]
    pub global_block_end_indices: Option<Vec<usize>>,
    /// Fixed, variable, BigBird, BSLongformer, local: uni or bi [default: bi; local: uni].
    #[arg(long, value_enum)]
    pub attention: Option<Attention>,
    /// Fixed, variable: global blocks also attend to every block (bidirectional only).
    #[arg(long)]
    pub horizontal_global_attention: bool,
    /// Fixed: distinct global patterns cycled over heads (needs --different-layout-per-head) [default: 1].
    #[arg(long)]
    pub num_different_global_patterns: Option<usize>,
    /// Give each head its own layout (all modes but local).
    #[arg(long)]
    pub different_layout_per_head: bool,
    /// Variable, BigBird: seed of the random blocks [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the layout as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the layout as a PNG (one titled picture per distinct head pattern).
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Write the raw PNG instead: every head side by side, this many pixels per block, no labels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cell_pixels: Option<u32>,
    /// Largest text picture, in characters per side (larger layouts show their top-left corner).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(4..=1024))]
    pub width: u64,
    /// Show all of a large layout, several blocks per character, instead of its top-left corner.
    #[arg(long)]
    pub downsample: bool,
}

/// Which modes use each parameter (for refusing the others).
fn check_applicable(args: &LayoutArgs, mode: Mode) -> Result<()> {
    use Mode::*;
    let given: [(&str, bool, &[Mode]); 12] = [
        (
            "--num-local-blocks",
            args.num_local_blocks.is_some(),
            &[Fixed],
        ),
        (
            "--num-global-blocks",
            args.num_global_blocks.is_some(),
            &[Fixed, Bigbird],
        ),
        (
            "--num-random-blocks",
            args.num_random_blocks.is_some(),
            &[Variable, Bigbird],
        ),
        (
            "--num-sliding-window-blocks",
            args.num_sliding_window_blocks.is_some(),
            &[Bigbird, Bslongformer, Local],
        ),
        (
            "--local-window-blocks",
            args.local_window_blocks.is_some(),
            &[Variable],
        ),
        (
            "--global-block-indices",
            args.global_block_indices.is_some(),
            &[Variable, Bslongformer],
        ),
        (
            "--global-block-end-indices",
            args.global_block_end_indices.is_some(),
            &[Variable, Bslongformer],
        ),
        (
            "--attention",
            args.attention.is_some(),
            &[Fixed, Variable, Bigbird, Bslongformer, Local],
        ),
        (
            "--horizontal-global-attention",
            args.horizontal_global_attention,
            &[Fixed, Variable],
        ),
        (
            "--num-different-global-patterns",
            args.num_different_global_patterns.is_some(),
            &[Fixed],
        ),
        (
            "--different-layout-per-head",
            args.different_layout_per_head,
            &[Fixed, Variable, Bigbird, Bslongformer, Dense],
        ),
        ("--seed", args.seed.is_some(), &[Variable, Bigbird]),
    ];
    for (flag, present, modes) in given {
        if present && !modes.contains(&mode) {
            let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
            return Err(CliError::usage(format!(
                "{flag} does not apply to --mode {}; it is used by {}",
                mode.name(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// The layout config the arguments describe (upstream defaults for what is not given).
pub fn config_from_args(args: &LayoutArgs, mode: Mode) -> Result<SparsityConfig> {
    check_applicable(args, mode)?;
    let heads = args.heads;
    let block = args.block.unwrap_or(16);
    let config: SparsityConfig = match mode {
        Mode::Dense => DenseConfig {
            block,
            different_layout_per_head: args.different_layout_per_head,
            ..DenseConfig::new(heads)
        }
        .into(),
        Mode::Fixed => {
            let d = FixedConfig::new(heads);
            FixedConfig {
                block,
                different_layout_per_head: args.different_layout_per_head,
                num_local_blocks: args.num_local_blocks.unwrap_or(d.num_local_blocks),
                num_global_blocks: args.num_global_blocks.unwrap_or(d.num_global_blocks),
                attention: args.attention.map_or(d.attention, Into::into),
                horizontal_global_attention: args.horizontal_global_attention,
                num_different_global_patterns: args
                    .num_different_global_patterns
                    .unwrap_or(d.num_different_global_patterns),
                ..d
            }
            .into()
        }
        Mode::Variable => {
            let d = VariableConfig::new(heads);
            VariableConfig {
                block,
                different_layout_per_head: args.different_layout_per_head,
                num_random_blocks: args.num_random_blocks.unwrap_or(d.num_random_blocks),
                local_window_blocks: args
                    .local_window_blocks
                    .clone()
                    .unwrap_or(d.local_window_blocks.clone()),
                global_block_indices: args
                    .global_block_indices
                    .clone()
                    .unwrap_or(d.global_block_indices.clone()),
                global_block_end_indices: args.global_block_end_indices.clone(),
                attention: args.attention.map_or(d.attention, Into::into),
                horizontal_global_attention: args.horizontal_global_attention,
                seed: args.seed.unwrap_or(d.seed),
                ..d
            }
            .into()
        }
        Mode::Bigbird => {
            let d = BigBirdConfig::new(heads);
            BigBirdConfig {
                block,
                different_layout_per_head: args.different_layout_per_head,
                num_random_blocks: args.num_random_blocks.unwrap_or(d.num_random_blocks),
                num_sliding_window_blocks: args
                    .num_sliding_window_blocks
                    .unwrap_or(d.num_sliding_window_blocks),
                num_global_blocks: args.num_global_blocks.unwrap_or(d.num_global_blocks),
                attention: args.attention.map_or(d.attention, Into::into),
                seed: args.seed.unwrap_or(d.seed),
                ..d
            }
            .into()
        }
        Mode::Bslongformer => {
            let d = BSLongformerConfig::new(heads);
            BSLongformerConfig {
                block,
                different_layout_per_head: args.different_layout_per_head,
                num_sliding_window_blocks: args
                    .num_sliding_window_blocks
                    .unwrap_or(d.num_sliding_window_blocks),
                global_block_indices: args
                    .global_block_indices
                    .clone()
                    .unwrap_or(d.global_block_indices.clone()),
                global_block_end_indices: args.global_block_end_indices.clone(),
                attention: args.attention.map_or(d.attention, Into::into),
                ..d
            }
            .into()
        }
        Mode::Local => {
            let d = LocalSlidingWindowConfig::new(heads);
            LocalSlidingWindowConfig {
                block,
                num_sliding_window_blocks: args
                    .num_sliding_window_blocks
                    .unwrap_or(d.num_sliding_window_blocks),
                attention: args.attention.map_or(d.attention, Into::into),
                ..d
            }
            .into()
        }
    };
    config.validate().map_err(flag_error)?;
    Ok(config)
}

/// A config error from values given on the command line: name the flag, not the JSON key.
fn flag_error(e: SparseAttnError) -> CliError {
    match e {
        SparseAttnError::InvalidConfig { key, message } => {
            let base = key.split('[').next().unwrap_or(&key).replace('_', "-");
            let base = if base == "num-heads" {
                "heads".to_owned()
            } else {
                base
            };
            CliError::usage(format!("--{base}: {message}"))
        }
        other => other.into(),
    }
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One line naming the parameters of `config`.
pub fn describe_params(config: &SparsityConfig) -> String {
    let per_head = |b: bool| if b { ", a layout per head" } else { "" };
    match config {
        SparsityConfig::Dense(c) => format!("dense{}", per_head(c.different_layout_per_head)),
        SparsityConfig::Fixed(c) => format!(
            "num_local_blocks {}, num_global_blocks {}, {}{}, {} global pattern(s){}",
            c.num_local_blocks,
            c.num_global_blocks,
            c.attention.as_str(),
            if c.horizontal_global_attention {
                ", horizontal global attention"
            } else {
                ""
            },
            c.num_different_global_patterns,
            per_head(c.different_layout_per_head)
        ),
        SparsityConfig::Variable(c) => format!(
            "num_random_blocks {}, local_window_blocks [{}], global_block_indices [{}]{}, {}{}, seed {}{}",
            c.num_random_blocks,
            list(&c.local_window_blocks),
            list(&c.global_block_indices),
            c.global_block_end_indices
                .as_ref()
                .map_or(String::new(), |e| format!(
                    ", global_block_end_indices [{}]",
                    list(e)
                )),
            c.attention.as_str(),
            if c.horizontal_global_attention {
                ", horizontal global attention"
            } else {
                ""
            },
            c.seed,
            per_head(c.different_layout_per_head)
        ),
        SparsityConfig::BigBird(c) => format!(
            "num_random_blocks {}, num_sliding_window_blocks {}, num_global_blocks {}, {}, seed {}{}",
            c.num_random_blocks,
            c.num_sliding_window_blocks,
            c.num_global_blocks,
            c.attention.as_str(),
            c.seed,
            per_head(c.different_layout_per_head)
        ),
        SparsityConfig::BSLongformer(c) => format!(
            "num_sliding_window_blocks {}, global_block_indices [{}]{}, {}{}",
            c.num_sliding_window_blocks,
            list(&c.global_block_indices),
            c.global_block_end_indices
                .as_ref()
                .map_or(String::new(), |e| format!(
                    ", global_block_end_indices [{}]",
                    list(e)
                )),
            c.attention.as_str(),
            per_head(c.different_layout_per_head)
        ),
        SparsityConfig::LocalSlidingWindow(c) => format!(
            "num_sliding_window_blocks {}, {}",
            c.num_sliding_window_blocks,
            c.attention.as_str()
        ),
    }
}

/// The parameters of `config` as a JSON object (DeepSpeed key names).
pub fn params_json(config: &SparsityConfig) -> Value {
    match config {
        SparsityConfig::Dense(c) => json!({
            "different_layout_per_head": c.different_layout_per_head,
        }),
        SparsityConfig::Fixed(c) => json!({
            "different_layout_per_head": c.different_layout_per_head,
            "num_local_blocks": c.num_local_blocks,
            "num_global_blocks": c.num_global_blocks,
            "attention": c.attention.as_str(),
            "horizontal_global_attention": c.horizontal_global_attention,
            "num_different_global_patterns": c.num_different_global_patterns,
        }),
        SparsityConfig::Variable(c) => json!({
            "different_layout_per_head": c.different_layout_per_head,
            "num_random_blocks": c.num_random_blocks,
            "local_window_blocks": c.local_window_blocks,
            "global_block_indices": c.global_block_indices,
            "global_block_end_indices": c.global_block_end_indices,
            "attention": c.attention.as_str(),
            "horizontal_global_attention": c.horizontal_global_attention,
            "seed": c.seed,
        }),
        SparsityConfig::BigBird(c) => json!({
            "different_layout_per_head": c.different_layout_per_head,
            "num_random_blocks": c.num_random_blocks,
            "num_sliding_window_blocks": c.num_sliding_window_blocks,
            "num_global_blocks": c.num_global_blocks,
            "attention": c.attention.as_str(),
            "seed": c.seed,
        }),
        SparsityConfig::BSLongformer(c) => json!({
            "different_layout_per_head": c.different_layout_per_head,
            "num_sliding_window_blocks": c.num_sliding_window_blocks,
            "global_block_indices": c.global_block_indices,
            "global_block_end_indices": c.global_block_end_indices,
            "attention": c.attention.as_str(),
        }),
        SparsityConfig::LocalSlidingWindow(c) => json!({
            "num_sliding_window_blocks": c.num_sliding_window_blocks,
            "attention": c.attention.as_str(),
        }),
    }
}

fn head_density(layout: &Layout, h: usize) -> (usize, f64) {
    let nb = layout.num_blocks();
    let active = layout.mask()[h * nb * nb..(h + 1) * nb * nb]
        .iter()
        .filter(|&&v| v != 0)
        .count();
    (active, active as f64 / (nb * nb).max(1) as f64)
}

/// The JSON export: metadata, then `layout` with one line per block row.
pub fn layout_json(config: &SparsityConfig, layout: &Layout, seq: usize) -> String {
    let nb = layout.num_blocks();
    let heads = layout.num_heads();
    let mode = match config {
        SparsityConfig::LocalSlidingWindow(_) => "local",
        other => other.mode_name(),
    };
    let per_head: Vec<f64> = (0..heads).map(|h| head_density(layout, h).1).collect();
    let meta = [
        ("mode", json!(mode)),
        ("block", json!(layout.block())),
        ("heads", json!(heads)),
        ("nb", json!(nb)),
        ("seq", json!(seq)),
        ("density", json!(layout.density())),
        ("density_per_head", json!(per_head)),
        ("nnz", json!(layout.nnz())),
        ("params", params_json(config)),
    ];
    let mut s = String::from("{\n");
    for (k, v) in meta {
        s.push_str(&format!("  {}: {},\n", json!(k), v));
    }
    s.push_str("  \"layout\": [\n");
    for h in 0..heads {
        s.push_str("    [\n");
        for r in 0..nb {
            let row: Vec<&str> = (0..nb)
                .map(|c| if layout.is_active(h, r, c) { "1" } else { "0" })
                .collect();
            s.push_str(&format!(
                "      [{}]{}\n",
                row.join(","),
                if r + 1 < nb { "," } else { "" }
            ));
        }
        s.push_str(&format!("    ]{}\n", if h + 1 < heads { "," } else { "" }));
    }
    s.push_str("  ]\n}\n");
    s
}

/// Runs `ltd layout`.
pub fn run(args: &LayoutArgs, out: &mut impl Write) -> Result<()> {
    if args.seq == 0 {
        return Err(CliError::usage("--seq: 0; expected at least 1 token"));
    }
    if args.heads == 0 {
        return Err(CliError::usage("--heads: 0; expected at least 1 head"));
    }
    let mut source = None;
    let config = match (&args.config, args.mode) {
        (Some(path), _) => {
            let source = source.insert(DeepSpeedConfig::from_file(path)?);
            source.print_warnings(args.heads);
            let mut config =
                source
                    .sparse_attention(args.heads)?
                    .ok_or_else(|| CliError::Config {
                        source_name: source.source_name.clone(),
                        message: "sparse_attention: missing section".to_owned(),
                    })?;
            if let Some(b) = args.block {
                set_block(&mut config, b);
                config.validate().map_err(flag_error)?;
            }
            config
        }
        (None, Some(mode)) => config_from_args(args, mode)?,
        (None, None) => return Err(CliError::usage("give --mode or --config")),
    };
    // Values from a file are blamed on its keys (and the length); values from flags on the flags.
    let layout = config.make_layout(args.seq).map_err(|e| match &source {
        Some(source) if args.block.is_none() => source.layout_error(e, args.seq),
        _ => flag_error(e),
    })?;
    if let Some(path) = &args.png {
        match args.cell_pixels {
            // Raw: heads side by side, `cell_pixels` per block (ltd-sparse-attn's renderer).
            Some(cell) => write_png(
                &layout,
                path,
                &PngOptions {
                    cell_pixels: cell,
                    gap_cells: (layout.num_blocks() / 16).max(1) as u32,
                },
            )
            .map_err(|e| match e {
                SparseAttnError::Io { source, .. } => CliError::write(path, source),
                other => other.into(),
            })?,
            None => {
                let nb = layout.num_blocks();
                let title = format!(
                    "{} layout, block {}, seq {} ({nb} x {nb} blocks)",
                    config.mode_name(),
                    layout.block(),
                    args.seq
                );
                write_file(path, &plot::layout_png(&layout, &title)?)?;
            }
        }
    }
    if args.json {
        out.write_all(layout_json(&config, &layout, args.seq).as_bytes())?;
        return Ok(());
    }
    let nb = layout.num_blocks();
    writeln!(
        out,
        "{} layout: seq {}, block {} -> {nb} x {nb} blocks, {} head(s), density {:.2}% ({} of {} tiles)",
        config.mode_name(),
        args.seq,
        layout.block(),
        layout.num_heads(),
        100.0 * layout.density(),
        layout.nnz(),
        layout.num_heads() * nb * nb
    )?;
    writeln!(out, "{}", describe_params(&config))?;
    if layout.num_heads() > 1 {
        writeln!(
            out,
            "\n{:>6}  {:>12}  {:>8}",
            "head", "active tiles", "density"
        )?;
        for h in 0..layout.num_heads() {
            let (active, d) = head_density(&layout, h);
            writeln!(out, "{h:>6}  {active:>12}  {:>7.2}%", 100.0 * d)?;
        }
    }
    writeln!(out)?;
    out.write_all(
        plot::layout_pictures(
            &layout,
            args.width as usize,
            120,
            if args.downsample {
                plot::Fit::Downsample
            } else {
                plot::Fit::Crop
            },
        )
        .as_bytes(),
    )?;
    if let Some(path) = &args.png {
        writeln!(out, "\nwrote {}", path.display())?;
    }
    Ok(())
}

fn set_block(config: &mut SparsityConfig, block: usize) {
    match config {
        SparsityConfig::Dense(c) => c.block = block,
        SparsityConfig::Fixed(c) => c.block = block,
        SparsityConfig::Variable(c) => c.block = block,
        SparsityConfig::BigBird(c) => c.block = block,
        SparsityConfig::BSLongformer(c) => c.block = block,
        SparsityConfig::LocalSlidingWindow(c) => c.block = block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_export_parses_and_matches_the_layout() {
        let config: SparsityConfig = FixedConfig::new(2).into();
        let layout = config.make_layout(128).unwrap();
        let text = layout_json(&config, &layout, 128);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mode"], "fixed");
        assert_eq!(v["nb"], 8);
        assert_eq!(v["heads"], 2);
        assert_eq!(v["seq"], 128);
        let rows = v["layout"][1].as_array().unwrap();
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[0], json!([1, 1, 1, 1, 0, 0, 0, 1]));
        assert!((v["density"].as_f64().unwrap() - layout.density()).abs() < 1e-12);
    }
}
