//! Entry points of the fuzz targets (`fuzz/`, run with cargo-fuzz) and of the corpus replay
//! tests (`tests/fuzz_replay.rs`, run by `cargo test` on stable): one function per target, so
//! the fuzzer and CI exercise exactly the same code. Each takes arbitrary bytes and must return
//! without panicking, aborting or hanging, whatever they hold.

use clap::Parser;
use ltd_scheduler::{DataEfficiencyConfig, RandomLtdConfig, RandomLtdScheduler};
use ltd_sparse_attn::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig,
    LocalSlidingWindowConfig, SparsityConfig, VariableConfig, parse_sparse_attention,
};

use crate::Cli;
use crate::config::DeepSpeedConfig;

/// The names of the fuzz targets, which are also the corpus directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 3] = ["deepspeed_config", "layout", "cli_args"];

/// Runs target `name` on `data` (for the replay test). Unknown names do nothing.
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "deepspeed_config" => deepspeed_config(data),
        "layout" => layout(data),
        "cli_args" => cli_args(data),
        _ => {}
    }
}

/// The DeepSpeed config parsers (JSON and hjson): the whole-config and section parsers of both
/// sections, the CLI's reader with its warnings, then, for a config that parses, the scheduler
/// and its layer-token sums, and the sparse layout at a few short lengths.
pub fn deepspeed_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = RandomLtdConfig::from_section_json(&text);
    let _ = parse_sparse_attention(&text, 4);
    let Ok(value) = ltd_scheduler::parse_deepspeed_text(&text) else {
        return;
    };
    let source = DeepSpeedConfig {
        source_name: "fuzz".to_owned(),
        value,
    };
    let _ = source.warnings(4);
    let _ = source.auto_keys();
    if let Ok(Some(sparse)) = source.sparse_attention(3) {
        for seq in [1, 100, 1000] {
            let _ = sparse.make_layout(seq);
        }
    }
    let Ok(parsed) = DataEfficiencyConfig::from_deepspeed_json(&text) else {
        return;
    };
    let Some(config) = parsed.random_ltd else {
        return;
    };
    let config = match config.global_batch_size {
        Some(_) => config,
        None => match config.with_global_batch_size(8) {
            Ok(config) => config,
            Err(_) => return,
        },
    };
    let Ok(mut scheduler) = RandomLtdScheduler::new(&config) else {
        return;
    };
    let steps = config.schedule.require_steps;
    let _ = scheduler.total_layer_tokens(steps);
    let _ = scheduler.layer_token_saving(steps.max(1));
    let _ = scheduler.schedule().first_step_at_max();
    for step in [0, steps / 2, steps, u64::MAX] {
        let _ = scheduler.update_seq(step);
    }
}

/// Reads bytes as a little stream of parameters.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    /// Mostly small values (so layouts get built), sometimes 0 or an extreme one (so the
    /// validation and size checks are hit).
    fn size(&mut self) -> usize {
        match self.byte() {
            250 => usize::MAX,
            251 => 1 << 40,
            252 => i32::MAX as usize,
            253 => u32::MAX as usize,
            n => usize::from(n % 40),
        }
    }

    fn list(&mut self) -> Vec<usize> {
        let len = usize::from(self.byte() % 5);
        (0..len).map(|_| self.size()).collect()
    }
}

/// Layout construction from an arbitrary config of any family and an arbitrary length. A length
/// is short (up to 4095 tokens) or far too long to build; every result is either a layout of
/// `ceil(seq / block)` blocks per side or an error.
pub fn layout(data: &[u8]) {
    let mut b = Bytes(data);
    let mode = b.byte() % 6;
    let heads = usize::from(b.byte() % 5);
    let block = [16, 32, 64, 128, 0, 24][usize::from(b.byte() % 6)];
    let per_head = b.byte() % 2 == 1;
    let direction = if b.byte() % 2 == 1 {
        Direction::Unidirectional
    } else {
        Direction::Bidirectional
    };
    let seq = match b.byte() {
        255 => usize::MAX,
        254 => 1 << 40,
        hi => usize::from(hi % 16) << 8 | usize::from(b.byte()),
    };
    let config: SparsityConfig = match mode {
        0 => DenseConfig {
            block,
            ..DenseConfig::new(heads)
        }
        .into(),
        1 => FixedConfig {
            block,
            different_layout_per_head: per_head,
            num_local_blocks: b.size(),
            num_global_blocks: b.size(),
            attention: direction,
            horizontal_global_attention: b.byte() % 2 == 1,
            num_different_global_patterns: b.size(),
            ..FixedConfig::new(heads)
        }
        .into(),
        2 => VariableConfig {
            block,
            different_layout_per_head: per_head,
            num_random_blocks: b.size(),
            local_window_blocks: b.list(),
            global_block_indices: b.list(),
            global_block_end_indices: if b.byte() % 2 == 1 {
                Some(b.list())
            } else {
                None
            },
            attention: direction,
            horizontal_global_attention: b.byte() % 2 == 1,
            ..VariableConfig::new(heads)
        }
        .into(),
        3 => BigBirdConfig {
            block,
            different_layout_per_head: per_head,
            num_random_blocks: b.size(),
            num_sliding_window_blocks: b.size(),
            num_global_blocks: b.size(),
            attention: direction,
            ..BigBirdConfig::new(heads)
        }
        .into(),
        4 => BSLongformerConfig {
            block,
            different_layout_per_head: per_head,
            num_sliding_window_blocks: b.size(),
            global_block_indices: b.list(),
            global_block_end_indices: if b.byte() % 2 == 1 {
                Some(b.list())
            } else {
                None
            },
            attention: direction,
            ..BSLongformerConfig::new(heads)
        }
        .into(),
        _ => LocalSlidingWindowConfig {
            block,
            num_sliding_window_blocks: b.size(),
            attention: direction,
            ..LocalSlidingWindowConfig::new(heads)
        }
        .into(),
    };
    if let Ok(layout) = config.make_layout(seq) {
        assert_eq!(layout.num_blocks(), seq.div_ceil(config.block()));
        assert_eq!(layout.num_heads(), heads);
        let rows = heads * layout.num_blocks();
        assert_eq!(layout.row_offsets().len(), rows + 1);
        assert_eq!(layout.row_offsets()[rows] as usize, layout.nnz());
        assert_eq!(layout.column_offsets()[rows] as usize, layout.nnz());
    }
}

/// The command-line parser: the bytes split at NUL into arguments after `ltd`. Parsing only (a
/// parsed command is not run: it could write files named by the fuzzer).
pub fn cli_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let args = std::iter::once("ltd").chain(text.split('\0'));
    let _ = Cli::try_parse_from(args);
}
