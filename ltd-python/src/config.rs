//! DeepSpeed's sparsity configs from the Python classes' parameters (a JSON object with
//! upstream's names), as `ltd_sparse_attn::SparsityConfig`.

use ltd_sparse_attn::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig,
    LocalSlidingWindowConfig, SparsityConfig, VariableConfig,
};
use serde_json::Value;

use crate::error::{BindingError, Result};

/// Reads the parameters of one config.
struct Params<'a>(&'a serde_json::Map<String, Value>);

fn bad(key: &str, expected: &str, got: &Value) -> BindingError {
    BindingError::Attn(ltd_sparse_attn::SparseAttnError::InvalidConfig {
        key: key.to_string(),
        message: format!("expected {expected}, found {got}"),
    })
}

impl Params<'_> {
    fn get(&self, key: &str) -> &Value {
        self.0.get(key).unwrap_or(&Value::Null)
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key);
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| bad(key, "a non-negative integer", v))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        let v = self.get(key);
        v.as_bool().ok_or_else(|| bad(key, "True or False", v))
    }

    fn list(&self, key: &str) -> Result<Vec<usize>> {
        let v = self.get(key);
        let items = v
            .as_array()
            .ok_or_else(|| bad(key, "a list of integers", v))?;
        items
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .ok_or_else(|| bad(key, "a list of non-negative integers", v))
            })
            .collect()
    }

    fn opt_list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        match self.get(key) {
            Value::Null => Ok(None),
            _ => self.list(key).map(Some),
        }
    }

    fn direction(&self, key: &str) -> Result<Direction> {
        let v = self.get(key);
        let s = v.as_str().ok_or_else(|| bad(key, "a string", v))?;
        Ok(Direction::parse(s, key)?)
    }
}

/// The config of `mode` (`dense`, `fixed`, `variable`, `bigbird`, `bslongformer`,
/// `local_sliding_window`) with the parameters in `params` (JSON, upstream's argument names,
/// every one present: the Python classes fill in upstream's defaults), validated.
///
/// # Errors
/// A [`BindingError::Attn`] naming the bad parameter, or an unknown mode.
///
/// ```text
/// sparsity_config("fixed", r#"{"num_heads": 4, "block": 16, ...}"#)?
/// ```
pub fn sparsity_config(mode: &str, params: &str) -> Result<SparsityConfig> {
    let value: Value = serde_json::from_str(params)
        .map_err(|e| ltd_sparse_attn::SparseAttnError::Json(e.to_string()))?;
    let map = value
        .as_object()
        .ok_or_else(|| bad("sparsity config", "an object", &value))?;
    let p = Params(map);
    let heads = p.usize("num_heads")?;
    let config: SparsityConfig = match mode {
        "dense" => DenseConfig {
            block: p.usize("block")?,
            different_layout_per_head: p.bool("different_layout_per_head")?,
            ..DenseConfig::new(heads)
        }
        .into(),
        "fixed" => FixedConfig {
            block: p.usize("block")?,
            different_layout_per_head: p.bool("different_layout_per_head")?,
            num_local_blocks: p.usize("num_local_blocks")?,
            num_global_blocks: p.usize("num_global_blocks")?,
            attention: p.direction("attention")?,
            horizontal_global_attention: p.bool("horizontal_global_attention")?,
            num_different_global_patterns: p.usize("num_different_global_patterns")?,
            ..FixedConfig::new(heads)
        }
        .into(),
        "variable" => VariableConfig {
            block: p.usize("block")?,
            different_layout_per_head: p.bool("different_layout_per_head")?,
            num_random_blocks: p.usize("num_random_blocks")?,
            local_window_blocks: p.list("local_window_blocks")?,
            global_block_indices: p.list("global_block_indices")?,
            global_block_end_indices: p.opt_list("global_block_end_indices")?,
            attention: p.direction("attention")?,
            horizontal_global_attention: p.bool("horizontal_global_attention")?,
            seed: p.get("seed").as_u64().unwrap_or(0),
            ..VariableConfig::new(heads)
        }
        .into(),
        "bigbird" => BigBirdConfig {
            block: p.usize("block")?,
            different_layout_per_head: p.bool("different_layout_per_head")?,
            num_random_blocks: p.usize("num_random_blocks")?,
            num_sliding_window_blocks: p.usize("num_sliding_window_blocks")?,
            num_global_blocks: p.usize("num_global_blocks")?,
            attention: p.direction("attention")?,
            seed: p.get("seed").as_u64().unwrap_or(0),
            ..BigBirdConfig::new(heads)
        }
        .into(),
        "bslongformer" => BSLongformerConfig {
            block: p.usize("block")?,
            different_layout_per_head: p.bool("different_layout_per_head")?,
            num_sliding_window_blocks: p.usize("num_sliding_window_blocks")?,
            global_block_indices: p.list("global_block_indices")?,
            global_block_end_indices: p.opt_list("global_block_end_indices")?,
            attention: p.direction("attention")?,
            ..BSLongformerConfig::new(heads)
        }
        .into(),
        "local_sliding_window" => LocalSlidingWindowConfig {
            block: p.usize("block")?,
            num_sliding_window_blocks: p.usize("num_sliding_window_blocks")?,
            attention: p.direction("attention")?,
            ..LocalSlidingWindowConfig::new(heads)
        }
        .into(),
        other => {
            return Err(bad(
                "mode",
                "dense, fixed, variable, bigbird, bslongformer or local_sliding_window",
                &Value::String(other.into()),
            ));
        }
    };
    config.validate()?;
    Ok(config)
}
