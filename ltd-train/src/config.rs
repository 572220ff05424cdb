//! The run configuration: a DeepSpeed JSON (the user's file, or the embedded default
//! `configs/default.json`) plus what DeepSpeed leaves to the training script (model shape,
//! steps), with command-line overrides.
//!
//! DeepSpeed keys read: `train_batch_size`, `gradient_clipping`, `optimizer` (`AdamW`, or `Adam`
//! with `adam_w_mode` true), `scheduler` (`WarmupLR`, `WarmupDecayLR`, `WarmupCosineLR`),
//! `data_efficiency.seed`, `data_efficiency.data_routing.random_ltd` (through `ltd-scheduler`)
//! and `sparse_attention` (through `ltd-sparse-attn`).

use ltd_scheduler::{DataEfficiencyConfig, ModelType, RandomLtdConfig};
use ltd_sparse_attn::{SparsityConfig, sparse_attention_from_value};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::ds_sections::{optimizer_from, scheduler_from};
use crate::error::{Result, TrainError};
use crate::lr::LrSchedule;
use crate::model::GptConfig;
use crate::optim::AdamWParams;

/// The embedded default DeepSpeed config (`ltd-train/configs/default.json`).
///
/// ```
/// assert!(ltd_train::DEFAULT_DEEPSPEED_CONFIG.contains("random_ltd"));
/// ```
pub const DEFAULT_DEEPSPEED_CONFIG: &str = include_str!("../configs/default.json");

/// The model shape of the embedded default (DeepSpeed's JSON has no model shape).
///
/// ```
/// assert_eq!(ltd_train::DEFAULT_MODEL.layers, 6);
/// ```
pub const DEFAULT_MODEL: GptConfig = GptConfig {
    layers: 6,
    width: 96,
    heads: 4,
    seq_len: 128,
    mlp_ratio: 4,
    rope_base: 10_000.0,
};

/// Settings the command line may override; `None` keeps the config's (or the default's) value.
///
/// ```
/// let o = ltd_train::Overrides { steps: Some(10), ..Default::default() };
/// assert_eq!(o.layers, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--layers`.
    pub layers: Option<usize>,
    /// `--width`.
    pub width: Option<usize>,
    /// `--heads`.
    pub heads: Option<usize>,
    /// `--seq-len`.
    pub seq_len: Option<usize>,
    /// `--steps`.
    pub steps: Option<u64>,
    /// `--batch` (must agree with `train_batch_size` of a user's config).
    pub batch: Option<usize>,
    /// `--seed` (default `data_efficiency.seed`, else 1234).
    pub seed: Option<u64>,
    /// `--lr` (the optimizer's peak rate).
    pub lr: Option<f64>,
    /// `--eval-every` (steps between validation evaluations; 0: only at the end).
    pub eval_every: Option<u64>,
    /// `--eval-windows` (validation windows per periodic evaluation; 0: all).
    pub eval_windows: Option<usize>,
    /// `--val-fraction`.
    pub val_fraction: Option<f64>,
    /// `--layer-token-lr`: under Random-LTD, index the learning rate by consumed layer-tokens.
    pub layer_token_lr: bool,
}

/// Everything that determines a training run (except which variant runs, see
/// [`Variant`](crate::Variant)).
///
/// ```
/// let cfg = ltd_train::TrainConfig::embedded(&Default::default())?;
/// assert_eq!(cfg.model.layers, 6);
/// assert!(cfg.random_ltd.is_some());
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Where the DeepSpeed JSON came from (a file name or `embedded default`).
    pub source_name: String,
    /// The model shape.
    pub model: GptConfig,
    /// Sequences per step (`train_batch_size`).
    pub batch: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Seed of the initialisation, the data split and order, and the token sampler.
    pub seed: u64,
    /// Fraction of the windows held out for validation.
    pub val_fraction: f64,
    /// Steps between validation evaluations (0: only at the end).
    pub eval_every: u64,
    /// Validation windows per periodic evaluation (0: all); the final evaluation uses all.
    pub eval_windows: usize,
    /// AdamW hyper-parameters.
    pub optimizer: AdamWParams,
    /// Step-indexed learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// `gradient_clipping`: the global gradient-norm limit.
    pub gradient_clipping: Option<f64>,
    /// The random-LTD section when enabled (with `global_batch_size` set).
    pub random_ltd: Option<RandomLtdConfig>,
    /// The `sparse_attention` section for the model's head count, when present.
    pub sparse: Option<SparsityConfig>,
    /// Whether Random-LTD runs index the learning rate by consumed layer-tokens.
    pub layer_token_lr: bool,
    /// The sections as read, for checkpoint fingerprints.
    raw: Value,
}

const DEFAULT_SEED: u64 = 1234;
const DEFAULT_STEPS: u64 = 300;
const DEFAULT_BATCH: usize = 8;

impl TrainConfig {
    /// The embedded default, adapted to the overrides: with `--layers`, Random-LTD covers every
    /// layer but the first and the last; with `--seq-len`, the schedule's `max_value` is the new
    /// length and `min_value`/`seq_per_step` keep their ratio to it; with `--steps`, the
    /// schedule's `require_steps` and the warmup keep their fraction of the run.
    ///
    /// # Errors
    /// As [`from_value`](Self::from_value).
    ///
    /// ```
    /// let cfg = ltd_train::TrainConfig::embedded(&ltd_train::Overrides { layers: Some(4), ..Default::default() })?;
    /// assert_eq!(cfg.random_ltd.unwrap().random_ltd_layer_id, [1, 2]);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn embedded(overrides: &Overrides) -> Result<Self> {
        let mut value: Value =
            serde_json::from_str(DEFAULT_DEEPSPEED_CONFIG).map_err(|e| TrainError::Config {
                source_name: "embedded default".to_owned(),
                message: format!("invalid JSON: {e}"),
            })?;
        adapt_embedded(&mut value, overrides);
        Self::from_value(value, "embedded default", overrides)
    }

    /// Reads a DeepSpeed config file.
    ///
    /// # Errors
    /// [`TrainError::Io`] when unreadable, [`TrainError::Config`] when not JSON or invalid (the
    /// message starts with the key path or flag).
    ///
    /// ```
    /// let err = ltd_train::TrainConfig::from_file(std::path::Path::new("no-such.json"), &Default::default());
    /// assert!(err.unwrap_err().to_string().starts_with("no-such.json"));
    /// ```
    pub fn from_file(path: &std::path::Path, overrides: &Overrides) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let source_name = path.display().to_string();
        let value = serde_json::from_str(&text).map_err(|e| TrainError::Config {
            source_name: source_name.clone(),
            message: format!("invalid JSON: {e}"),
        })?;
        Self::from_value(value, &source_name, overrides)
    }

    /// Builds the run configuration from a parsed DeepSpeed config.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the key path or flag: a bad section, `--batch` different
    /// from `train_batch_size`, `total_layer_num` different from the layer count, a
    /// `max_value` above the sequence length, an encoder model type.
    ///
    /// ```
    /// use serde_json::json;
    /// let cfg = ltd_train::TrainConfig::from_value(json!({"train_batch_size": 4}), "x.json", &Default::default())?;
    /// assert_eq!(cfg.batch, 4);
    /// assert!(cfg.random_ltd.is_none());
    /// let err = ltd_train::TrainConfig::from_value(
    ///     json!({"train_batch_size": 4}), "x.json",
    ///     &ltd_train::Overrides { batch: Some(8), ..Default::default() },
    /// ).unwrap_err();
    /// assert!(err.to_string().contains("--batch 8"));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn from_value(value: Value, source_name: &str, overrides: &Overrides) -> Result<Self> {
        let err = |message: String| TrainError::Config {
            source_name: source_name.to_owned(),
            message,
        };
        let root = value
            .as_object()
            .ok_or_else(|| err("(top level): expected a JSON object".to_owned()))?;
        let model = GptConfig {
            layers: overrides.layers.unwrap_or(DEFAULT_MODEL.layers),
            width: overrides.width.unwrap_or(DEFAULT_MODEL.width),
            heads: overrides.heads.unwrap_or(DEFAULT_MODEL.heads),
            seq_len: overrides.seq_len.unwrap_or(DEFAULT_MODEL.seq_len),
            ..DEFAULT_MODEL
        };
        model.validate()?;
        let batch = resolve_batch(root, overrides.batch).map_err(err)?;
        let optimizer = optimizer_from(root.get("optimizer"), overrides.lr).map_err(err)?;
        let (lr_schedule, schedule_steps) =
            scheduler_from(root.get("scheduler"), &optimizer).map_err(err)?;
        let steps = overrides.steps.or(schedule_steps).unwrap_or(DEFAULT_STEPS);
        if steps == 0 {
            return Err(err("--steps: 0; expected at least one step".to_owned()));
        }
        let gradient_clipping = match root.get("gradient_clipping") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(c) if c.is_finite() && c >= 0.0 => (c > 0.0).then_some(c),
                _ => {
                    return Err(err(format!(
                        "gradient_clipping: {v}; expected a non-negative number"
                    )));
                }
            },
        };
        let seed = match overrides.seed {
            Some(s) => s,
            None => data_seed(root).map_err(err)?,
        };
        let random_ltd = resolve_random_ltd(&value, &model, batch).map_err(err)?;
        let sparse = if root.contains_key("sparse_attention") {
            Some(sparse_attention_from_value(&value, model.heads).map_err(|e| err(e.to_string()))?)
        } else {
            None
        };
        let val_fraction = overrides.val_fraction.unwrap_or(0.1);
        let raw = json!({
            "random_ltd": value.pointer("/data_efficiency/data_routing/random_ltd"),
            "sparse_attention": root.get("sparse_attention"),
        });
        Ok(TrainConfig {
            source_name: source_name.to_owned(),
            model,
            batch,
            steps,
            seed,
            val_fraction,
            eval_every: overrides.eval_every.unwrap_or((steps / 10).max(1)),
            eval_windows: overrides.eval_windows.unwrap_or(64),
            optimizer,
            lr_schedule,
            gradient_clipping,
            random_ltd,
            sparse,
            layer_token_lr: overrides.layer_token_lr,
            raw,
        })
    }

    /// Everything that changes the trajectory of a run, as JSON: a checkpoint stores it and a
    /// resume must present the same (evaluation settings are left out: they change no loss).
    ///
    /// ```
    /// let cfg = ltd_train::TrainConfig::embedded(&Default::default())?;
    /// assert_eq!(cfg.fingerprint()["model"]["layers"], 6);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn fingerprint(&self) -> Value {
        #[derive(Serialize)]
        struct Fp<'a> {
            model: &'a GptConfig,
            batch: usize,
            steps: u64,
            seed: u64,
            val_fraction: f64,
            optimizer: &'a AdamWParams,
            lr_schedule: &'a LrSchedule,
            gradient_clipping: Option<f64>,
            layer_token_lr: bool,
            sections: &'a Value,
        }
        serde_json::to_value(Fp {
            model: &self.model,
            batch: self.batch,
            steps: self.steps,
            seed: self.seed,
            val_fraction: self.val_fraction,
            optimizer: &self.optimizer,
            lr_schedule: &self.lr_schedule,
            gradient_clipping: self.gradient_clipping,
            layer_token_lr: self.layer_token_lr,
            sections: &self.raw,
        })
        .unwrap_or(Value::Null)
    }
}

fn resolve_batch(root: &Map<String, Value>, flag: Option<usize>) -> Result<usize, String> {
    let from_json = match root.get("train_batch_size") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(b) if b > 0 => Some(b as usize),
            _ => {
                return Err(format!(
                    "train_batch_size: {v}; expected a positive integer"
                ));
            }
        },
    };
    match (from_json, flag) {
        (Some(j), Some(f)) if j != f => Err(format!(
            "--batch {f} contradicts train_batch_size {j}; drop one of them"
        )),
        (_, Some(0)) => Err("--batch: 0; expected a positive batch".to_owned()),
        (j, f) => Ok(f.or(j).unwrap_or(DEFAULT_BATCH)),
    }
}

fn data_seed(root: &Map<String, Value>) -> Result<u64, String> {
    match root.get("data_efficiency").and_then(|d| d.get("seed")) {
        None | Some(Value::Null) => Ok(DEFAULT_SEED),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("data_efficiency.seed: {v}; expected a non-negative integer")),
    }
}

fn resolve_random_ltd(
    value: &Value,
    model: &GptConfig,
    batch: usize,
) -> Result<Option<RandomLtdConfig>, String> {
    let parsed = DataEfficiencyConfig::from_deepspeed_value(value).map_err(|e| e.to_string())?;
    let Some(mut ltd) = parsed.random_ltd else {
        return Ok(None);
    };
    let path = ltd_scheduler::RANDOM_LTD_KEY_PATH;
    if ltd.model_type != ModelType::Decoder {
        return Err(format!(
            "{path}.model_type: \"encoder\"; expected \"decoder\" (ltd train trains a GPT)"
        ));
    }
    if ltd.total_layer_num != model.layers {
        return Err(format!(
            "{path}.total_layer_num: {}; expected the model's --layers {}",
            ltd.total_layer_num, model.layers
        ));
    }
    if ltd.schedule.max_value > model.seq_len as u64 {
        return Err(format!(
            "{path}.random_ltd_schedule.max_value: {}; expected at most --seq-len {}",
            ltd.schedule.max_value, model.seq_len
        ));
    }
    if ltd.global_batch_size.is_none() {
        ltd = ltd
            .with_global_batch_size(batch as u64)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(ltd))
}

/// Rewrites the embedded default's size-dependent values for the overridden sizes.
fn adapt_embedded(value: &mut Value, o: &Overrides) {
    let layers = o.layers.unwrap_or(DEFAULT_MODEL.layers);
    let seq = o.seq_len.unwrap_or(DEFAULT_MODEL.seq_len) as u64;
    let base_steps = value
        .pointer("/scheduler/params/total_num_steps")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_STEPS);
    let steps = o.steps.unwrap_or(base_steps).max(1);
    if let Some(b) = o.batch {
        value["train_batch_size"] = json!(b);
    }
    let scale_steps =
        |v: u64| -> u64 { ((v as f64 * steps as f64 / base_steps as f64).round() as u64).max(1) };
    if let Some(p) = value.pointer_mut("/scheduler/params") {
        let warmup = p["warmup_num_steps"].as_u64().unwrap_or(0);
        p["warmup_num_steps"] = json!(scale_steps(warmup));
        p["total_num_steps"] = json!(steps);
    }
    let Some(ltd) = value.pointer_mut("/data_efficiency/data_routing/random_ltd") else {
        return;
    };
    if layers >= 3 {
        let ids: Vec<usize> = (1..layers - 1).collect();
        ltd["total_layer_num"] = json!(layers);
        ltd["random_ltd_layer_num"] = json!(ids.len());
        ltd["random_ltd_layer_id"] = json!(ids);
    } else {
        // Fewer than 3 layers leave no middle layer to drop tokens in.
        ltd["enabled"] = json!(false);
    }
    let schedule = &mut ltd["random_ltd_schedule"];
    let max0 = schedule["max_value"].as_u64().unwrap_or(seq).max(1);
    let min0 = schedule["min_value"].as_u64().unwrap_or(1);
    let k0 = schedule["schedule_config"]["seq_per_step"]
        .as_u64()
        .unwrap_or(1);
    let scale_len = |v: u64| ((v as f64 * seq as f64 / max0 as f64).round() as u64).max(1);
    let k = scale_len(k0);
    schedule["max_value"] = json!(seq);
    schedule["min_value"] = json!(scale_len(min0).div_ceil(k) * k);
    schedule["schedule_config"]["seq_per_step"] = json!(k);
    let require = schedule["schedule_config"]["require_steps"]
        .as_u64()
        .unwrap_or(steps);
    schedule["schedule_config"]["require_steps"] = json!(scale_steps(require));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_with_every_section() {
        let cfg = TrainConfig::embedded(&Overrides::default()).unwrap();
        assert_eq!(cfg.batch, 8);
        assert_eq!(cfg.steps, 300);
        assert_eq!(cfg.seed, 1234);
        let ltd = cfg.random_ltd.unwrap();
        assert_eq!(ltd.random_ltd_layer_id, [1, 2, 3, 4]);
        assert_eq!(ltd.global_batch_size, Some(8));
        assert_eq!(cfg.sparse.unwrap().mode_name(), "fixed");
        assert_eq!(cfg.lr_schedule.name(), "WarmupCosineLR");
    }

    #[test]
    fn embedded_default_adapts_to_overrides() {
        let o = Overrides {
            layers: Some(8),
            seq_len: Some(512),
            steps: Some(600),
            ..Default::default()
        };
        let cfg = TrainConfig::embedded(&o).unwrap();
        let ltd = cfg.random_ltd.unwrap();
        assert_eq!(ltd.random_ltd_layer_id, (1..7).collect::<Vec<_>>());
        assert_eq!(ltd.schedule.max_value, 512);
        assert_eq!(ltd.schedule.seq_per_step, 32);
        assert_eq!(ltd.schedule.min_value, 64);
        assert_eq!(ltd.schedule.require_steps, 540);
        assert_eq!(cfg.steps, 600);
    }

    #[test]
    fn user_config_must_match_the_model() {
        let mut v: Value = serde_json::from_str(DEFAULT_DEEPSPEED_CONFIG).unwrap();
        v["data_efficiency"]["data_routing"]["random_ltd"]["total_layer_num"] = json!(24);
        let err = TrainConfig::from_value(v, "ds.json", &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("total_layer_num: 24"), "{err}");
    }
}
