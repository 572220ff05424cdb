//! DeepSpeed's `data_efficiency.data_routing.random_ltd` configuration: types, validation and a
//! strict parser (of JSON or DeepSpeed's hjson) whose errors name the key path.

use serde_json::{Map, Value};

use crate::error::{Result, SchedulerError};
use crate::json::{
    ConfigWarning, as_f64, as_object, as_str, as_u64, enum_key, merge_batch_size, non_null,
    optional_bool, optional_positive_u64_or_auto, optional_u64, parse_json, reject_unknown_keys,
    required, to_usize, wrong_type,
};
pub use crate::kinds::{HiddenStateOrder, ModelType};
use crate::lr::{DecayType, LayerTokenLrConfig, WarmupType};
use crate::schedule::{ReservedLengthScheduleConfig, ScheduleType};

/// The key path of the random-LTD section in a DeepSpeed config; every error about a section value
/// starts with it (also when the section was parsed alone).
///
/// ```
/// assert_eq!(ltd_scheduler::RANDOM_LTD_KEY_PATH, "data_efficiency.data_routing.random_ltd");
/// ```
pub const RANDOM_LTD_KEY_PATH: &str = "data_efficiency.data_routing.random_ltd";

pub(crate) mod paths {
    use super::RANDOM_LTD_KEY_PATH;

    pub(crate) fn random_ltd(key: &str) -> String {
        format!("{RANDOM_LTD_KEY_PATH}.{key}")
    }
    pub(crate) fn schedule(key: &str) -> String {
        format!("{RANDOM_LTD_KEY_PATH}.random_ltd_schedule.{key}")
    }
    pub(crate) fn schedule_config(key: &str) -> String {
        format!("{RANDOM_LTD_KEY_PATH}.random_ltd_schedule.schedule_config.{key}")
    }
    pub(crate) fn lr(key: &str) -> String {
        format!("{RANDOM_LTD_KEY_PATH}.layer_token_lr_schedule.{key}")
    }
}

/// A whole DeepSpeed config for GPT-3 1.3B with random-LTD: the random_ltd section is the
/// DeepSpeed docs' example (`docs/_pages/config-json.md`: 24 layers, LTD on layers 1..=22, mask
/// argument `attention_mask`, decoder, `seq_batch_dim`, `r` from 128 to 2048 in steps of 16 over
/// 200,000 steps). `train_batch_size: 512` is our addition (the GPT-3 paper's 1.3B batch of about
/// 1M tokens at 2048 tokens per sequence), so the example can count layer-tokens on its own.
///
/// ```
/// use ltd_scheduler::{DataEfficiencyConfig, GPT3_1_3B_EXAMPLE, RandomLtdScheduler};
///
/// let parsed = DataEfficiencyConfig::from_deepspeed_json(GPT3_1_3B_EXAMPLE)?;
/// let config = parsed.random_ltd.expect("the example enables random-LTD");
/// assert_eq!(config.random_ltd_layer_id, (1..=22).collect::<Vec<_>>());
///
/// // The schedule of the example: r grows by 16 every 1,666.7 steps (1920 / 16 = 120 increments).
/// let scheduler = RandomLtdScheduler::new(&config)?;
/// let r: Vec<u64> = [0, 1_000, 50_000, 100_000, 150_000, 199_999, 200_000]
///     .iter()
///     .map(|&step| scheduler.reserved_length_at(step))
///     .collect();
/// assert_eq!(r, [128, 128, 608, 1088, 1568, 2032, 2048]);
///
/// // Over the 200,000 scheduled steps the model processes about 43% fewer layer-tokens than at
/// // full length (the 22 LTD layers alone about 47% fewer).
/// let saving = scheduler.layer_token_saving(200_000)?;
/// assert!((saving - 0.4333).abs() < 1e-4, "{saving}");
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
pub const GPT3_1_3B_EXAMPLE: &str = r#"{
  "train_batch_size": 512,
  "data_efficiency": {
    "enabled": true,
    "seed": 1234,
    "data_routing": {
      "enabled": true,
      "random_ltd": {
        "enabled": true,
        "total_layer_num": 24,
        "random_ltd_layer_num": 22,
        "random_ltd_layer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22],
        "model_mask_name": "attention_mask",
        "model_type": "decoder",
        "hidden_state_order": "seq_batch_dim",
        "random_ltd_schedule": {
          "min_value": 128,
          "max_value": 2048,
          "schedule_type": "fixed_linear",
          "schedule_config": {
            "require_steps": 200000,
            "seq_per_step": 16
          }
        }
      }
    }
  }
}
"#;

/// An enabled `data_efficiency.data_routing.random_ltd` section.
///
/// | JSON key | field | rule (upstream checks none of these) |
/// |---|---|---|
/// | `total_layer_num` | `total_layer_num` | required, > 0 |
/// | `random_ltd_layer_num` | `random_ltd_layer_num` | required, > 0, equals the number of ids |
/// | `random_ltd_layer_id` | `random_ltd_layer_id` | required, distinct, each < `total_layer_num` |
/// | `model_mask_name` | `model_mask_name` | required key, non-empty string or null (null: decoder only) |
/// | `model_type` | `model_type` | required, `"encoder"` or `"decoder"` |
/// | `hidden_state_order` | `hidden_state_order` | required, `"batch_seq_dim"` or `"seq_batch_dim"` |
/// | `micro_batch_size` | `micro_batch_size` | optional, > 0 (unused, as upstream) |
/// | `global_batch_size` | `global_batch_size` | optional, > 0; needed by the scheduler |
/// | `random_ltd_schedule` | `schedule` | required, see [`ReservedLengthScheduleConfig`] |
/// | `layer_token_lr_schedule` | `layer_token_lr_schedule` | optional, see [`LayerTokenLrConfig`] |
///
/// Fields are public; [`validate`](Self::validate) checks them (the parsers and
/// [`RandomLtdScheduler::new`](crate::RandomLtdScheduler::new) call it).
///
/// ```
/// use ltd_scheduler::RandomLtdConfig;
///
/// let section = r#"{
///     "enabled": true,
///     "total_layer_num": 4, "random_ltd_layer_num": 2, "random_ltd_layer_id": [1, 2],
///     "model_mask_name": null, "model_type": "decoder", "hidden_state_order": "batch_seq_dim",
///     "random_ltd_schedule": {
///         "min_value": 8, "max_value": 64, "schedule_type": "fixed_linear",
///         "schedule_config": {"require_steps": 100, "seq_per_step": 16}
///     }
/// }"#;
/// let config = RandomLtdConfig::from_section_json(section)?
///     .expect("enabled")
///     .with_global_batch_size(2)?;
/// assert_eq!(config.global_batch_size, Some(2));
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RandomLtdConfig {
    /// `total_layer_num`: layers in the model (`L_tot`).
    pub total_layer_num: usize,
    /// `random_ltd_layer_num`: layers with token dropping (`L_ltd`).
    pub random_ltd_layer_num: usize,
    /// `random_ltd_layer_id`: model indices of the token-dropping layers, as written (DeepSpeed
    /// sorts them; see [`sorted_layer_ids`](Self::sorted_layer_ids)).
    pub random_ltd_layer_id: Vec<usize>,
    /// `model_mask_name`: keyword name of the attention-mask argument, or `None` for no mask.
    pub model_mask_name: Option<String>,
    /// `model_type`.
    pub model_type: ModelType,
    /// `hidden_state_order`.
    pub hidden_state_order: HiddenStateOrder,
    /// `micro_batch_size` (from `train_micro_batch_size_per_gpu` in a whole config). Unused.
    pub micro_batch_size: Option<u64>,
    /// `global_batch_size` (from `train_batch_size` in a whole config): `G` of the token counting.
    pub global_batch_size: Option<u64>,
    /// `random_ltd_schedule`.
    pub schedule: ReservedLengthScheduleConfig,
    /// `layer_token_lr_schedule` when its `enabled` is true, else `None`.
    pub layer_token_lr_schedule: Option<LayerTokenLrConfig>,
}

/// The parts of a whole DeepSpeed config that this crate reads.
///
/// `data_efficiency.enabled` and `data_efficiency.data_routing.enabled` are parsed (type-checked)
/// and reported, but, exactly as in DeepSpeed, **only `random_ltd.enabled` turns random-LTD on**:
/// `random_ltd` is `Some` whenever that flag is true, whatever the parent flags say.
///
/// ```
/// use ltd_scheduler::DataEfficiencyConfig;
///
/// let parsed = DataEfficiencyConfig::from_deepspeed_json(r#"{"train_batch_size": 8, "fp16": {"enabled": true}}"#)?;
/// assert!(!parsed.data_efficiency_enabled);
/// assert!(parsed.random_ltd.is_none());
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DataEfficiencyConfig {
    /// `data_efficiency.enabled` (default false). Not consulted for gating.
    pub data_efficiency_enabled: bool,
    /// `data_efficiency.data_routing.enabled` (default false). Not consulted for gating.
    pub data_routing_enabled: bool,
    /// The random-LTD section when `data_efficiency.data_routing.random_ltd.enabled` is true.
    pub random_ltd: Option<RandomLtdConfig>,
    /// Key paths whose value was `"auto"` (HF's DeepSpeed integration fills those in itself):
    /// read as unset, so a caller can supply them (for example `--global-batch`) and blame the
    /// `"auto"` when it does not.
    pub auto_keys: Vec<String>,
    /// Keys that have no effect (the parser prints nothing; show them as you like).
    pub warnings: Vec<ConfigWarning>,
}

impl DataEfficiencyConfig {
    /// Parses a whole DeepSpeed config file's text. See
    /// [`from_deepspeed_value`](Self::from_deepspeed_value).
    ///
    /// ```
    /// use ltd_scheduler::{DataEfficiencyConfig, GPT3_1_3B_EXAMPLE};
    ///
    /// let parsed = DataEfficiencyConfig::from_deepspeed_json(GPT3_1_3B_EXAMPLE)?;
    /// assert_eq!(parsed.random_ltd.unwrap().global_batch_size, Some(512));
    /// assert!(DataEfficiencyConfig::from_deepspeed_json("{not json").is_err());
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn from_deepspeed_json(text: &str) -> Result<Self> {
        Self::from_deepspeed_value(&parse_json(text)?)
    }

    /// Reads a whole DeepSpeed config.
    ///
    /// - Everything outside `data_efficiency.data_routing.random_ltd` that is not named below is
    ///   ignored (other sections belong to other parts of DeepSpeed).
    /// - `train_batch_size` and `train_micro_batch_size_per_gpu` (optional, > 0) become the
    ///   section's `global_batch_size` and `micro_batch_size`, as the DeepSpeed engine injects them.
    ///   Where the section also gives a value, the two must agree.
    /// - Inside the random_ltd section everything is checked: unknown keys, types, enums and
    ///   values ([`RandomLtdConfig::validate`]). A section with `enabled` false or absent is only
    ///   checked for unknown keys and the type of `enabled`.
    ///
    /// ```
    /// use ltd_scheduler::{DataEfficiencyConfig, SchedulerError};
    /// use serde_json::json;
    ///
    /// let typo = json!({"data_efficiency": {"data_routing": {"random_ltd": {"enable": true}}}});
    /// let err = DataEfficiencyConfig::from_deepspeed_value(&typo).unwrap_err();
    /// assert!(matches!(err, SchedulerError::UnknownKeys { .. }));
    /// assert!(err.to_string().starts_with("data_efficiency.data_routing.random_ltd: unknown key(s) [\"enable\"]"));
    /// ```
    pub fn from_deepspeed_value(value: &Value) -> Result<Self> {
        let root = as_object(value, "(top level)")?;
        let mut parsed = DataEfficiencyConfig {
            data_efficiency_enabled: false,
            data_routing_enabled: false,
            random_ltd: None,
            auto_keys: Vec::new(),
            warnings: Vec::new(),
        };
        let train_batch_size = optional_positive_u64_or_auto(
            root,
            "train_batch_size",
            "train_batch_size",
            &mut parsed.auto_keys,
        )?;
        let train_micro_batch_size = optional_positive_u64_or_auto(
            root,
            "train_micro_batch_size_per_gpu",
            "train_micro_batch_size_per_gpu",
            &mut parsed.auto_keys,
        )?;
        let Some(data_efficiency) = non_null(root.get("data_efficiency")) else {
            return Ok(parsed);
        };
        let data_efficiency = as_object(data_efficiency, "data_efficiency")?;
        parsed.data_efficiency_enabled =
            optional_bool(data_efficiency, "enabled", "data_efficiency.enabled")?.unwrap_or(false);
        let Some(data_routing) = non_null(data_efficiency.get("data_routing")) else {
            return Ok(parsed);
        };
        let data_routing = as_object(data_routing, "data_efficiency.data_routing")?;
        parsed.data_routing_enabled = optional_bool(
            data_routing,
            "enabled",
            "data_efficiency.data_routing.enabled",
        )?
        .unwrap_or(false);
        let Some(section) = non_null(data_routing.get("random_ltd")) else {
            return Ok(parsed);
        };
        let Some(mut config) = RandomLtdConfig::walk_section(section, &mut parsed)? else {
            return Ok(parsed);
        };
        for (enabled, key) in [
            (parsed.data_efficiency_enabled, "data_efficiency.enabled"),
            (
                parsed.data_routing_enabled,
                "data_efficiency.data_routing.enabled",
            ),
        ] {
            if !enabled {
                parsed.warnings.push(ConfigWarning {
                    path: key.to_owned(),
                    message: format!(
                        "is not true, which has no effect: as in DeepSpeed, {RANDOM_LTD_KEY_PATH}.enabled alone turns random-LTD on"
                    ),
                });
            }
        }
        config.global_batch_size = merge_batch_size(
            config.global_batch_size,
            train_batch_size,
            "global_batch_size",
            "train_batch_size",
        )?;
        config.micro_batch_size = merge_batch_size(
            config.micro_batch_size,
            train_micro_batch_size,
            "micro_batch_size",
            "train_micro_batch_size_per_gpu",
        )?;
        config.validate()?;
        parsed.random_ltd = Some(config);
        Ok(parsed)
    }
}

impl RandomLtdConfig {
    const SECTION_KEYS: &'static [&'static str] = &[
        "enabled",
        "total_layer_num",
        "random_ltd_layer_num",
        "random_ltd_layer_id",
        "model_mask_name",
        "model_type",
        "hidden_state_order",
        "micro_batch_size",
        "global_batch_size",
        "random_ltd_schedule",
        "layer_token_lr_schedule",
    ];
    const SCHEDULE_KEYS: &'static [&'static str] =
        &["min_value", "max_value", "schedule_type", "schedule_config"];
    const SCHEDULE_CONFIG_KEYS: &'static [&'static str] =
        &["require_steps", "seq_per_step", "root_degree"];
    const LR_KEYS: &'static [&'static str] = &[
        "enabled",
        "total_layer_tokens",
        "warmup_layer_tokens",
        "warmup_type",
        "decay_type",
        "peak_lr",
        "min_lr",
    ];

    /// The DeepSpeed docs' GPT-3 1.3B example (the random_ltd section of [`GPT3_1_3B_EXAMPLE`]),
    /// with `global_batch_size` 512 as there.
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// assert_eq!(config.total_layer_num, 24);
    /// assert_eq!(config.schedule.seq_per_step, 16);
    /// ```
    pub fn gpt3_1_3b_example() -> Self {
        RandomLtdConfig {
            total_layer_num: 24,
            random_ltd_layer_num: 22,
            random_ltd_layer_id: (1..=22).collect(),
            model_mask_name: Some("attention_mask".to_owned()),
            model_type: ModelType::Decoder,
            hidden_state_order: HiddenStateOrder::SeqBatchDim,
            micro_batch_size: None,
            global_batch_size: Some(512),
            schedule: ReservedLengthScheduleConfig {
                min_value: 128,
                max_value: 2048,
                schedule_type: ScheduleType::FixedLinear,
                require_steps: 200_000,
                seq_per_step: 16,
            },
            layer_token_lr_schedule: None,
        }
    }

    /// Parses the random_ltd section alone (the object under
    /// `data_efficiency.data_routing.random_ltd`). Returns `None` when its `enabled` is false or
    /// absent (then only unknown keys and the type of `enabled` are checked). `global_batch_size`
    /// and `micro_batch_size` may be given in the section or set afterwards with
    /// [`with_global_batch_size`](Self::with_global_batch_size) /
    /// [`with_micro_batch_size`](Self::with_micro_batch_size). Error paths are the full DeepSpeed
    /// paths ([`RANDOM_LTD_KEY_PATH`]).
    ///
    /// ```
    /// use ltd_scheduler::RandomLtdConfig;
    ///
    /// assert_eq!(RandomLtdConfig::from_section_json(r#"{"enabled": false}"#)?, None);
    /// let err = RandomLtdConfig::from_section_json(r#"{"enabled": "yes"}"#).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "data_efficiency.data_routing.random_ltd.enabled: expected true or false, found \"yes\""
    /// );
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn from_section_json(text: &str) -> Result<Option<Self>> {
        Self::from_section_value(&parse_json(text)?)
    }

    /// Like [`from_section_json`](Self::from_section_json), from a parsed JSON value.
    ///
    /// ```
    /// use ltd_scheduler::RandomLtdConfig;
    /// use serde_json::json;
    ///
    /// let section = json!({"enabled": true, "total_layer_num": 4});
    /// let err = RandomLtdConfig::from_section_value(&section).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "data_efficiency.data_routing.random_ltd.random_ltd_layer_num: missing required key"
    /// );
    /// ```
    pub fn from_section_value(value: &Value) -> Result<Option<Self>> {
        let mut notes = DataEfficiencyConfig {
            data_efficiency_enabled: false,
            data_routing_enabled: false,
            random_ltd: None,
            auto_keys: Vec::new(),
            warnings: Vec::new(),
        };
        let Some(config) = Self::walk_section(value, &mut notes)? else {
            return Ok(None);
        };
        config.validate()?;
        Ok(Some(config))
    }

    /// Sets `global_batch_size` (`G`, sequences per optimizer step over all ranks), as the
    /// DeepSpeed engine does from `train_batch_size`.
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().with_global_batch_size(256)?;
    /// assert_eq!(config.global_batch_size, Some(256));
    /// assert!(ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().with_global_batch_size(0).is_err());
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn with_global_batch_size(mut self, global_batch_size: u64) -> Result<Self> {
        if global_batch_size == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::random_ltd("global_batch_size"),
                found: "0".into(),
            });
        }
        self.global_batch_size = Some(global_batch_size);
        Ok(self)
    }

    /// Sets `micro_batch_size` (per GPU; stored, unused, as upstream).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().with_micro_batch_size(4)?;
    /// assert_eq!(config.micro_batch_size, Some(4));
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn with_micro_batch_size(mut self, micro_batch_size: u64) -> Result<Self> {
        if micro_batch_size == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::random_ltd("micro_batch_size"),
                found: "0".into(),
            });
        }
        self.micro_batch_size = Some(micro_batch_size);
        Ok(self)
    }

    /// The layer ids in ascending order: position `i` holds the model layer whose samples are row
    /// `i` of the sampled indices (DeepSpeed's compact layer id).
    ///
    /// ```
    /// let mut config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// config.random_ltd_layer_id = vec![5, 1, 3];
    /// assert_eq!(config.sorted_layer_ids(), [1, 3, 5]);
    /// ```
    pub fn sorted_layer_ids(&self) -> Vec<usize> {
        let mut ids = self.random_ltd_layer_id.clone();
        ids.sort_unstable();
        ids
    }

    /// Checks every value (see the table on the type); errors name the key path.
    ///
    /// ```
    /// let mut config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// config.random_ltd_layer_id[21] = 24;
    /// assert_eq!(
    ///     config.validate().unwrap_err().to_string(),
    ///     "data_efficiency.data_routing.random_ltd.random_ltd_layer_id[21]: \
    ///      layer id 24 is out of range; expected less than total_layer_num 24"
    /// );
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.total_layer_num == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::random_ltd("total_layer_num"),
                found: "0".into(),
            });
        }
        if self.random_ltd_layer_num == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::random_ltd("random_ltd_layer_num"),
                found: "0".into(),
            });
        }
        if self.random_ltd_layer_num != self.random_ltd_layer_id.len() {
            return Err(SchedulerError::LayerCountMismatch {
                path: paths::random_ltd("random_ltd_layer_num"),
                random_ltd_layer_num: self.random_ltd_layer_num,
                id_count: self.random_ltd_layer_id.len(),
            });
        }
        // Sized by the id list (which the caller already holds), never by total_layer_num: a
        // total of 2^40 layers must not allocate a table of that size.
        let path = |index: usize| paths::random_ltd(&format!("random_ltd_layer_id[{index}]"));
        for (index, &layer_id) in self.random_ltd_layer_id.iter().enumerate() {
            if layer_id >= self.total_layer_num {
                return Err(SchedulerError::LayerIdOutOfRange {
                    path: path(index),
                    layer_id,
                    total_layer_num: self.total_layer_num,
                });
            }
        }
        let mut by_id: Vec<(usize, usize)> = self
            .random_ltd_layer_id
            .iter()
            .enumerate()
            .map(|(index, &id)| (id, index))
            .collect();
        by_id.sort_unstable();
        // Report the first position that repeats an earlier id, as a left-to-right scan would.
        let repeat = by_id
            .windows(2)
            .filter(|pair| pair[0].0 == pair[1].0)
            .map(|pair| pair[1])
            .min_by_key(|&(_, index)| index);
        if let Some((layer_id, index)) = repeat {
            return Err(SchedulerError::DuplicateLayerId {
                path: path(index),
                layer_id,
            });
        }
        match &self.model_mask_name {
            Some(name) if name.is_empty() => {
                return Err(SchedulerError::WrongType {
                    path: paths::random_ltd("model_mask_name"),
                    expected: "a non-empty string or null",
                    found: "\"\"".into(),
                });
            }
            None if self.model_type == ModelType::Encoder => {
                return Err(SchedulerError::EncoderNeedsMask {
                    path: paths::random_ltd("model_mask_name"),
                });
            }
            _ => {}
        }
        for (key, size) in [
            ("micro_batch_size", self.micro_batch_size),
            ("global_batch_size", self.global_batch_size),
        ] {
            if size == Some(0) {
                return Err(SchedulerError::NotPositive {
                    path: paths::random_ltd(key),
                    found: "0".into(),
                });
            }
        }
        self.schedule.validate()?;
        if let Some(lr) = &self.layer_token_lr_schedule {
            lr.validate()?;
        }
        Ok(())
    }

    /// Walks the section: unknown keys, types and enums. Values are checked by `validate`.
    /// `"auto"` batch sizes and keys without effect are noted in `notes`.
    fn walk_section(value: &Value, notes: &mut DataEfficiencyConfig) -> Result<Option<Self>> {
        let section = as_object(value, RANDOM_LTD_KEY_PATH)?;
        reject_unknown_keys(section, RANDOM_LTD_KEY_PATH, Self::SECTION_KEYS)?;
        let enabled = optional_bool(section, "enabled", &paths::random_ltd("enabled"))?;
        if enabled != Some(true) {
            if section.keys().any(|key| key != "enabled") {
                notes.warnings.push(ConfigWarning {
                    path: paths::random_ltd("enabled"),
                    message:
                        "is not true: random-LTD is off and the section's other keys have no effect"
                            .into(),
                });
            }
            return Ok(None);
        }
        let usize_key = |key: &str| -> Result<usize> {
            let path = paths::random_ltd(key);
            to_usize(as_u64(required(section, key, &path)?, &path)?, &path)
        };
        let total_layer_num = usize_key("total_layer_num")?;
        let random_ltd_layer_num = usize_key("random_ltd_layer_num")?;

        let ids_path = paths::random_ltd("random_ltd_layer_id");
        let ids = required(section, "random_ltd_layer_id", &ids_path)?;
        let Value::Array(ids) = ids else {
            return Err(wrong_type(
                &ids_path,
                "a list of non-negative integers",
                ids,
            ));
        };
        let random_ltd_layer_id = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let path = format!("{ids_path}[{index}]");
                to_usize(as_u64(id, &path)?, &path)
            })
            .collect::<Result<Vec<_>>>()?;

        let mask_path = paths::random_ltd("model_mask_name");
        let model_mask_name = match required(section, "model_mask_name", &mask_path)? {
            Value::Null => None,
            Value::String(name) => Some(name.clone()),
            other => return Err(wrong_type(&mask_path, "a string or null", other)),
        };
        let model_type = enum_key(
            section,
            "model_type",
            &paths::random_ltd("model_type"),
            ModelType::NAMES,
            &[ModelType::Encoder, ModelType::Decoder],
        )?;
        let hidden_state_order = enum_key(
            section,
            "hidden_state_order",
            &paths::random_ltd("hidden_state_order"),
            HiddenStateOrder::NAMES,
            &[HiddenStateOrder::BatchSeqDim, HiddenStateOrder::SeqBatchDim],
        )?;
        let micro_batch_size = optional_positive_u64_or_auto(
            section,
            "micro_batch_size",
            &paths::random_ltd("micro_batch_size"),
            &mut notes.auto_keys,
        )?;
        if micro_batch_size.is_some() {
            notes.warnings.push(ConfigWarning {
                path: paths::random_ltd("micro_batch_size"),
                message: "has no effect (upstream stores it and never reads it)".into(),
            });
        }
        let global_batch_size = optional_positive_u64_or_auto(
            section,
            "global_batch_size",
            &paths::random_ltd("global_batch_size"),
            &mut notes.auto_keys,
        )?;
        let schedule = Self::walk_schedule(section)?;
        let layer_token_lr_schedule = Self::walk_lr(section)?;
        Ok(Some(RandomLtdConfig {
            total_layer_num,
            random_ltd_layer_num,
            random_ltd_layer_id,
            model_mask_name,
            model_type,
            hidden_state_order,
            micro_batch_size,
            global_batch_size,
            schedule,
            layer_token_lr_schedule,
        }))
    }

    fn walk_schedule(section: &Map<String, Value>) -> Result<ReservedLengthScheduleConfig> {
        let schedule_path = paths::random_ltd("random_ltd_schedule");
        let schedule = as_object(
            required(section, "random_ltd_schedule", &schedule_path)?,
            &schedule_path,
        )?;
        reject_unknown_keys(schedule, &schedule_path, Self::SCHEDULE_KEYS)?;
        let min_value = as_u64(
            required(schedule, "min_value", &paths::schedule("min_value"))?,
            &paths::schedule("min_value"),
        )?;
        let max_value = as_u64(
            required(schedule, "max_value", &paths::schedule("max_value"))?,
            &paths::schedule("max_value"),
        )?;
        let type_path = paths::schedule("schedule_type");
        let type_name = as_str(required(schedule, "schedule_type", &type_path)?, &type_path)?;
        if !ScheduleType::NAMES.contains(&type_name) {
            return Err(SchedulerError::UnknownVariant {
                path: type_path,
                found: type_name.to_owned(),
                expected: ScheduleType::NAMES,
            });
        }

        let config_path = paths::schedule("schedule_config");
        let schedule_config = as_object(
            required(schedule, "schedule_config", &config_path)?,
            &config_path,
        )?;
        reject_unknown_keys(schedule_config, &config_path, Self::SCHEDULE_CONFIG_KEYS)?;
        let require_steps = as_u64(
            required(
                schedule_config,
                "require_steps",
                &paths::schedule_config("require_steps"),
            )?,
            &paths::schedule_config("require_steps"),
        )?;
        let seq_per_step = as_u64(
            required(
                schedule_config,
                "seq_per_step",
                &paths::schedule_config("seq_per_step"),
            )?,
            &paths::schedule_config("seq_per_step"),
        )?;
        let degree_path = paths::schedule_config("root_degree");
        let root_degree = non_null(schedule_config.get("root_degree"));
        let schedule_type = if type_name == "fixed_linear" {
            if root_degree.is_some() {
                return Err(SchedulerError::RootDegreeNotApplicable {
                    path: degree_path,
                    schedule_type: "fixed_linear",
                });
            }
            ScheduleType::FixedLinear
        } else {
            let Some(root_degree) = root_degree else {
                return Err(SchedulerError::MissingKey { path: degree_path });
            };
            ScheduleType::FixedRoot {
                root_degree: as_f64(root_degree, &degree_path)?,
            }
        };
        Ok(ReservedLengthScheduleConfig {
            min_value,
            max_value,
            schedule_type,
            require_steps,
            seq_per_step,
        })
    }

    fn walk_lr(section: &Map<String, Value>) -> Result<Option<LayerTokenLrConfig>> {
        let lr_path = paths::random_ltd("layer_token_lr_schedule");
        let Some(lr) = non_null(section.get("layer_token_lr_schedule")) else {
            return Ok(None);
        };
        let lr = as_object(lr, &lr_path)?;
        reject_unknown_keys(lr, &lr_path, Self::LR_KEYS)?;
        if optional_bool(lr, "enabled", &paths::lr("enabled"))? != Some(true) {
            return Ok(None);
        }
        let total_layer_tokens = as_u64(
            required(lr, "total_layer_tokens", &paths::lr("total_layer_tokens"))?,
            &paths::lr("total_layer_tokens"),
        )?;
        let warmup_layer_tokens =
            optional_u64(lr, "warmup_layer_tokens", &paths::lr("warmup_layer_tokens"))?
                .unwrap_or(0);
        let warmup_type = match non_null(lr.get("warmup_type")) {
            None => WarmupType::Linear,
            Some(_) => enum_key(
                lr,
                "warmup_type",
                &paths::lr("warmup_type"),
                WarmupType::NAMES,
                &[WarmupType::Linear, WarmupType::Log],
            )?,
        };
        let decay_type = match non_null(lr.get("decay_type")) {
            None => DecayType::Cosine,
            Some(_) => enum_key(
                lr,
                "decay_type",
                &paths::lr("decay_type"),
                DecayType::NAMES,
                &[DecayType::Linear, DecayType::Cosine],
            )?,
        };
        let peak_lr = as_f64(
            required(lr, "peak_lr", &paths::lr("peak_lr"))?,
            &paths::lr("peak_lr"),
        )?;
        let min_lr = match non_null(lr.get("min_lr")) {
            None => 0.0,
            Some(value) => as_f64(value, &paths::lr("min_lr"))?,
        };
        Ok(Some(LayerTokenLrConfig {
            total_layer_tokens,
            warmup_layer_tokens,
            warmup_type,
            decay_type,
            peak_lr,
            min_lr,
        }))
    }
}
