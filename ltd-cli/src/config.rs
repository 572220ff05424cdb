//! The DeepSpeed configuration the subcommands read: a user's JSON file or the embedded default
//! (the GPT-3 1.3B random-LTD example of the DeepSpeed docs plus a Fixed sparse-attention
//! section).

use std::path::Path;

use ltd_scheduler::{DataEfficiencyConfig, GPT3_1_3B_EXAMPLE, RandomLtdConfig};
use ltd_sparse_attn::{
    SparsityConfig, sparse_attention_from_value, sparse_attention_with_warnings,
};
use serde_json::Value;

use crate::error::{CliError, Result};

/// The `sparse_attention` section of the embedded default: DeepSpeed's Fixed layout with the
/// docs' parameters (block 16, 4 local blocks, 1 global block, 4 global patterns over heads),
/// unidirectional because the example model is a decoder.
pub const DEFAULT_SPARSE_ATTENTION: &str = r#"{
  "mode": "fixed",
  "block": 16,
  "different_layout_per_head": true,
  "num_local_blocks": 4,
  "num_global_blocks": 1,
  "attention": "unidirectional",
  "horizontal_global_attention": false,
  "num_different_global_patterns": 4
}"#;

/// Attention heads assumed for the embedded default's layout (Megatron-DeepSpeed's GPT-3 1.3B
/// runs 16 heads of 128); the JSON itself does not carry a head count.
pub const DEFAULT_HEADS: usize = 16;

/// A DeepSpeed config and where it came from.
#[derive(Debug, Clone)]
pub struct DeepSpeedConfig {
    /// A file name, or `embedded default` (used to prefix error messages).
    pub source_name: String,
    /// The whole parsed JSON.
    pub value: Value,
}

impl DeepSpeedConfig {
    /// The embedded default: [`GPT3_1_3B_EXAMPLE`] with [`DEFAULT_SPARSE_ATTENTION`] added.
    pub fn embedded() -> Self {
        let mut value: Value =
            serde_json::from_str(GPT3_1_3B_EXAMPLE).expect("the embedded example is valid JSON");
        let sparse: Value = serde_json::from_str(DEFAULT_SPARSE_ATTENTION)
            .expect("the embedded sparse section is valid JSON");
        if let Value::Object(map) = &mut value {
            map.insert("sparse_attention".to_owned(), sparse);
        }
        DeepSpeedConfig {
            source_name: "embedded default".to_owned(),
            value,
        }
    }

    /// Reads a DeepSpeed config file (JSON or hjson, as DeepSpeed reads it).
    ///
    /// # Errors
    /// [`CliError::Read`] when the file cannot be read, [`CliError::Config`] when it is neither
    /// JSON nor hjson.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, e))?;
        let source_name = path.display().to_string();
        // DeepSpeed's grammar: JSON or hjson (comments, trailing commas, quoteless strings).
        let value = ltd_scheduler::parse_deepspeed_text(&text).map_err(|e| CliError::Config {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        // hjson reads any text as some value (a quoteless string at least): a config is an object.
        if !value.is_object() {
            let kind = match &value {
                Value::Array(_) => "a list",
                Value::String(_) => "a string (hjson reads unquoted text as one)",
                Value::Null => "null",
                _ => "a number or boolean",
            };
            return Err(CliError::Config {
                source_name,
                message: format!("invalid JSON: the top level is {kind}; expected an object"),
            });
        }
        Ok(DeepSpeedConfig { source_name, value })
    }

    /// The file at `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Self::embedded()),
        }
    }

    /// Whether this is the embedded default.
    pub fn is_embedded(&self) -> bool {
        self.source_name == "embedded default"
    }

    fn config_error(&self, e: impl std::fmt::Display) -> CliError {
        CliError::Config {
            source_name: self.source_name.clone(),
            message: e.to_string(),
        }
    }

    /// The random-LTD section, `None` when `data_efficiency.data_routing.random_ltd.enabled` is
    /// not true.
    ///
    /// # Errors
    /// [`CliError::Config`] with the key path of the bad value.
    pub fn random_ltd(&self) -> Result<Option<RandomLtdConfig>> {
        DataEfficiencyConfig::from_deepspeed_value(&self.value)
            .map(|c| c.random_ltd)
            .map_err(|e| self.config_error(e))
    }

    /// The key paths whose value is `"auto"` (read as unset; a flag must supply them).
    ///
    /// # Errors
    /// [`CliError::Config`] with the key path of a bad value.
    pub fn auto_keys(&self) -> Result<Vec<String>> {
        DataEfficiencyConfig::from_deepspeed_value(&self.value)
            .map(|c| c.auto_keys)
            .map_err(|e| self.config_error(e))
    }

    /// The keys of this config that have no effect (random-LTD and sparse-attention sections, the
    /// layout for `heads` heads), as `path: why` lines. Sections that fail to parse give none here
    /// (their error is reported where the section is read).
    pub fn warnings(&self, heads: usize) -> Vec<String> {
        let mut lines: Vec<String> = DataEfficiencyConfig::from_deepspeed_value(&self.value)
            .map(|c| c.warnings.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        if self.has_sparse_section()
            && let Ok((_, warnings)) = sparse_attention_with_warnings(&self.value, heads.max(1))
        {
            lines.extend(warnings.iter().map(ToString::to_string));
        }
        lines
    }

    /// Prints [`warnings`](Self::warnings) to stderr, each as `warning: SOURCE: path: why`.
    pub fn print_warnings(&self, heads: usize) {
        for line in self.warnings(heads) {
            eprintln!("warning: {}: {line}", self.source_name);
        }
    }

    /// A layout that could not be built from this config's `sparse_attention` section at
    /// sequence length `seq`: the key path under `sparse_attention` and the length.
    pub fn layout_error(&self, e: ltd_sparse_attn::SparseAttnError, seq: usize) -> CliError {
        match e {
            e @ ltd_sparse_attn::SparseAttnError::InvalidConfig { .. } => CliError::Config {
                source_name: self.source_name.clone(),
                message: format!(
                    "{} (building the layout for sequence length {seq})",
                    e.with_key_prefix("sparse_attention")
                ),
            },
            other => other.into(),
        }
    }

    fn has_sparse_section(&self) -> bool {
        self.value
            .as_object()
            .is_some_and(|m| m.contains_key("sparse_attention"))
    }

    /// The random-LTD section; an error naming the key when it is absent or disabled.
    pub fn require_random_ltd(&self) -> Result<RandomLtdConfig> {
        self.random_ltd()?.ok_or_else(|| CliError::Config {
            source_name: self.source_name.clone(),
            message: format!(
                "{}.enabled: random-LTD is not enabled in this config",
                ltd_scheduler::RANDOM_LTD_KEY_PATH
            ),
        })
    }

    /// The `sparse_attention` section for `heads` heads, `None` when the config has none.
    ///
    /// # Errors
    /// [`CliError::Config`] with the key path of the bad value.
    pub fn sparse_attention(&self, heads: usize) -> Result<Option<SparsityConfig>> {
        if !self.has_sparse_section() {
            return Ok(None);
        }
        sparse_attention_from_value(&self.value, heads)
            .map(Some)
            .map_err(|e| self.config_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_has_both_sections() {
        let c = DeepSpeedConfig::embedded();
        let ltd = c.require_random_ltd().unwrap();
        assert_eq!(ltd.total_layer_num, 24);
        assert_eq!(ltd.global_batch_size, Some(512));
        let sparse = c.sparse_attention(4).unwrap().unwrap();
        assert_eq!((sparse.mode_name(), sparse.block()), ("fixed", 16));
    }

    #[test]
    fn bad_values_name_the_key_path() {
        let mut c = DeepSpeedConfig::embedded();
        c.value["data_efficiency"]["data_routing"]["random_ltd"]["random_ltd_schedule"]["min_value"] =
            Value::from(-3);
        let err = c.random_ltd().unwrap_err().to_string();
        assert!(
            err.contains("random_ltd.random_ltd_schedule.min_value"),
            "{err}"
        );
        let mut c = DeepSpeedConfig::embedded();
        c.value["sparse_attention"]["num_global_blocks"] = Value::from(3);
        let err = c.sparse_attention(4).unwrap_err().to_string();
        assert!(err.contains("sparse_attention."), "{err}");
    }
}
