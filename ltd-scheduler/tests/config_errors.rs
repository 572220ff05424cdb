//! One test per error message: each builds the smallest bad input and checks the exact text.

use ltd_scheduler::{
    DataEfficiencyConfig, DecayType, GPT3_1_3B_EXAMPLE, LayerTokenLrConfig, LayerTokenLrSchedule,
    RandomLtdConfig, RandomLtdScheduler, RandomLtdState, ReservedLengthSchedule,
    ReservedLengthScheduleConfig, ScheduleType, SchedulerError, WarmupType,
    megatron_effective_seq_len,
};
use serde_json::{Value, json};

const SECTION: &str = "/data_efficiency/data_routing/random_ltd";

fn example() -> Value {
    serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap()
}

/// Parses the example with the value at `pointer` (relative to the random_ltd section) replaced,
/// or removed when `value` is `None`, and returns the error.
fn error_with(pointer: &str, value: Option<Value>) -> SchedulerError {
    let mut config = example();
    let full = format!("{SECTION}{pointer}");
    match value {
        Some(value) => {
            if let Some(slot) = config.pointer_mut(&full) {
                *slot = value;
            } else {
                let (parent, key) = full.rsplit_once('/').unwrap();
                config
                    .pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(key.to_owned(), value);
            }
        }
        None => {
            let (parent, key) = full.rsplit_once('/').unwrap();
            config
                .pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
        }
    }
    DataEfficiencyConfig::from_deepspeed_value(&config).unwrap_err()
}

fn lr_config() -> LayerTokenLrConfig {
    LayerTokenLrConfig {
        total_layer_tokens: 1000,
        warmup_layer_tokens: 100,
        warmup_type: WarmupType::Linear,
        decay_type: DecayType::Cosine,
        peak_lr: 1e-3,
        min_lr: 1e-5,
    }
}

#[test]
fn invalid_json() {
    let err = DataEfficiencyConfig::from_deepspeed_json("{\"data_efficiency\": ").unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidJson { .. }));
    assert!(
        err.to_string()
            .starts_with("invalid JSON: EOF while parsing"),
        "{err}"
    );
    assert!(matches!(
        RandomLtdConfig::from_section_json("[1,").unwrap_err(),
        SchedulerError::InvalidJson { .. }
    ));
}

#[test]
fn missing_key() {
    let err = error_with("/random_ltd_schedule/min_value", None);
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.min_value: missing required key"
    );
    let err = error_with("/model_mask_name", None);
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.model_mask_name: missing required key"
    );
}

#[test]
fn missing_root_degree_for_fixed_root() {
    let err = error_with(
        "/random_ltd_schedule/schedule_type",
        Some(json!("fixed_root")),
    );
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.schedule_config.root_degree: missing required key"
    );
}

#[test]
fn unknown_keys() {
    let err = error_with(
        "/random_ltd_schedule/schedule_config/seq_per_stp",
        Some(json!(16)),
    );
    assert!(matches!(err, SchedulerError::UnknownKeys { .. }));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.schedule_config: unknown key(s) [\"seq_per_stp\"]; \
         expected only [\"require_steps\", \"seq_per_step\", \"root_degree\"]"
    );
    let err = error_with(
        "/layer_token_lr_schedule",
        Some(json!({"enabled": false, "warmup_steps": 3})),
    );
    assert!(err.to_string().starts_with(
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule: unknown key(s) [\"warmup_steps\"]"
    ), "{err}");
}

#[test]
fn unknown_keys_are_reported_even_when_disabled() {
    let err =
        RandomLtdConfig::from_section_json(r#"{"enabled": false, "min_value": 3}"#).unwrap_err();
    assert!(
        matches!(err, SchedulerError::UnknownKeys { ref unknown, .. } if unknown == &["min_value"])
    );
}

#[test]
fn wrong_type() {
    let err = error_with("/total_layer_num", Some(json!("24")));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.total_layer_num: expected a non-negative integer, found \"24\""
    );
    let err = error_with("/random_ltd_layer_id/3", Some(json!(-4)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_id[3]: expected a non-negative integer, found -4"
    );
    let err = error_with("/random_ltd_schedule/min_value", Some(json!(128.5)));
    assert!(
        err.to_string()
            .ends_with("min_value: expected a non-negative integer, found 128.5")
    );
    let err = error_with("/model_mask_name", Some(json!(3)));
    assert!(
        err.to_string()
            .ends_with("model_mask_name: expected a string or null, found 3")
    );
    let err = error_with("/random_ltd_schedule", Some(json!([1, 2])));
    assert!(
        err.to_string()
            .ends_with("random_ltd_schedule: expected an object, found [1,2]")
    );
    let err = error_with("/random_ltd_layer_id", Some(json!({"a": 1})));
    assert!(err.to_string().ends_with(
        "random_ltd_layer_id: expected a list of non-negative integers, found {\"a\":1}"
    ));
    let err =
        DataEfficiencyConfig::from_deepspeed_json(r#"{"train_batch_size": "big"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "train_batch_size: expected a non-negative integer, found \"big\""
    );
    let err = DataEfficiencyConfig::from_deepspeed_json(r#"{"data_efficiency": {"enabled": 1}}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "data_efficiency.enabled: expected true or false, found 1"
    );
    let err = DataEfficiencyConfig::from_deepspeed_json("[]").unwrap_err();
    assert_eq!(err.to_string(), "(top level): expected an object, found []");
}

#[test]
fn empty_mask_name() {
    let err = error_with("/model_mask_name", Some(json!("")));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.model_mask_name: expected a non-empty string or null, found \"\""
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let err = error_with("/model_type", Some(json!(vec![123_456_789u64; 40])));
    let text = err.to_string();
    assert!(text.ends_with("..."), "{text}");
    assert!(text.len() < 200, "{text}");
}

#[test]
fn unknown_variant() {
    let err = error_with("/model_type", Some(json!("encoder-decoder")));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.model_type: unknown value \"encoder-decoder\"; expected one of [\"encoder\", \"decoder\"]"
    );
    let err = error_with("/hidden_state_order", Some(json!("seq_first")));
    assert!(err.to_string().ends_with(
        "hidden_state_order: unknown value \"seq_first\"; expected one of [\"batch_seq_dim\", \"seq_batch_dim\"]"
    ));
    let err = error_with(
        "/random_ltd_schedule/schedule_type",
        Some(json!("fixed_discrete")),
    );
    assert!(err.to_string().ends_with(
        "random_ltd_schedule.schedule_type: unknown value \"fixed_discrete\"; expected one of [\"fixed_linear\", \"fixed_root\"]"
    ));
    let lr =
        json!({"enabled": true, "total_layer_tokens": 10, "peak_lr": 1.0, "warmup_type": "exp"});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert!(err.to_string().ends_with(
        "layer_token_lr_schedule.warmup_type: unknown value \"exp\"; expected one of [\"linear\", \"log\"]"
    ));
    let lr =
        json!({"enabled": true, "total_layer_tokens": 10, "peak_lr": 1.0, "decay_type": "step"});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert!(err.to_string().ends_with(
        "layer_token_lr_schedule.decay_type: unknown value \"step\"; expected one of [\"linear\", \"cosine\"]"
    ));
}

#[test]
fn min_greater_than_max() {
    let err = error_with("/random_ltd_schedule/min_value", Some(json!(4096)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.min_value: 4096 is greater than max_value 2048"
    );
}

#[test]
fn not_positive() {
    for (pointer, path) in [
        (
            "/random_ltd_schedule/min_value",
            "random_ltd_schedule.min_value",
        ),
        (
            "/random_ltd_schedule/schedule_config/require_steps",
            "random_ltd_schedule.schedule_config.require_steps",
        ),
        (
            "/random_ltd_schedule/schedule_config/seq_per_step",
            "random_ltd_schedule.schedule_config.seq_per_step",
        ),
        ("/total_layer_num", "total_layer_num"),
        ("/global_batch_size", "global_batch_size"),
        ("/micro_batch_size", "micro_batch_size"),
    ] {
        let mut config = example();
        config
            .pointer_mut("")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("train_batch_size");
        let full = format!("{SECTION}{pointer}");
        let (parent, key) = full.rsplit_once('/').unwrap();
        config
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.into(), json!(0));
        let err = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("data_efficiency.data_routing.random_ltd.{path}: 0 must be greater than 0"),
        );
    }
    let err = error_with("/random_ltd_layer_id", Some(json!([])));
    assert!(matches!(err, SchedulerError::LayerCountMismatch { .. }));
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.random_ltd_layer_num = 0;
    config.random_ltd_layer_id.clear();
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_num: 0 must be greater than 0"
    );
    let err = DataEfficiencyConfig::from_deepspeed_json(r#"{"train_batch_size": 0}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "train_batch_size: 0 must be greater than 0"
    );
    let err = DataEfficiencyConfig::from_deepspeed_json(r#"{"train_micro_batch_size_per_gpu": 0}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "train_micro_batch_size_per_gpu: 0 must be greater than 0"
    );
}

#[test]
fn root_degree_not_positive() {
    for degree in [json!(0), json!(-2.0)] {
        let mut config = example();
        let schedule = config
            .pointer_mut(&format!("{SECTION}/random_ltd_schedule"))
            .unwrap();
        schedule["schedule_type"] = json!("fixed_root");
        schedule["schedule_config"]["root_degree"] = degree.clone();
        let err = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "data_efficiency.data_routing.random_ltd.random_ltd_schedule.schedule_config.root_degree: {} must be greater than 0",
                degree.as_f64().unwrap()
            )
        );
    }
    let bad = ReservedLengthScheduleConfig {
        min_value: 1,
        max_value: 2,
        schedule_type: ScheduleType::FixedRoot {
            root_degree: f64::NAN,
        },
        require_steps: 1,
        seq_per_step: 1,
    };
    assert!(matches!(
        ReservedLengthSchedule::new(bad),
        Err(SchedulerError::NotPositive { .. })
    ));
}

#[test]
fn layer_id_out_of_range() {
    let err = error_with("/random_ltd_layer_id/21", Some(json!(24)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_id[21]: layer id 24 is out of range; expected less than total_layer_num 24"
    );
}

#[test]
fn duplicate_layer_id() {
    let err = error_with("/random_ltd_layer_id/5", Some(json!(1)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_id[5]: layer id 1 is listed more than once; expected distinct ids"
    );
}

#[test]
fn layer_count_mismatch() {
    let err = error_with("/random_ltd_layer_num", Some(json!(23)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_layer_num: 23 does not equal the number of ids in random_ltd_layer_id (22)"
    );
}

#[test]
fn encoder_needs_mask() {
    let mut config = example();
    let section = config.pointer_mut(SECTION).unwrap();
    section["model_type"] = json!("encoder");
    section["model_mask_name"] = Value::Null;
    let err = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.model_mask_name: null, but model_type \"encoder\" needs the name of the attention-mask argument"
    );
    // A decoder may go without a mask.
    let mut config = example();
    config.pointer_mut(SECTION).unwrap()["model_mask_name"] = Value::Null;
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap();
    assert_eq!(parsed.random_ltd.unwrap().model_mask_name, None);
}

#[test]
fn root_degree_not_applicable() {
    let err = error_with(
        "/random_ltd_schedule/schedule_config/root_degree",
        Some(json!(2)),
    );
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.random_ltd_schedule.schedule_config.root_degree: only read by schedule_type \"fixed_root\", but schedule_type is \"fixed_linear\""
    );
}

#[test]
fn conflicting_batch_size() {
    let err = error_with("/global_batch_size", Some(json!(256)));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.global_batch_size: 256 conflicts with train_batch_size 512 (DeepSpeed overwrites the section's value with it); remove one or make them equal"
    );
    // Equal values are fine.
    let mut config = example();
    config.pointer_mut(SECTION).unwrap()["global_batch_size"] = json!(512);
    assert!(DataEfficiencyConfig::from_deepspeed_value(&config).is_ok());
    // micro_batch_size against train_micro_batch_size_per_gpu.
    let mut config = example();
    config["train_micro_batch_size_per_gpu"] = json!(4);
    config.pointer_mut(SECTION).unwrap()["micro_batch_size"] = json!(8);
    let err = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap_err();
    assert!(err.to_string().ends_with(
        "micro_batch_size: 8 conflicts with train_micro_batch_size_per_gpu 4 (DeepSpeed overwrites the section's value with it); remove one or make them equal"
    ));
}

#[test]
fn missing_global_batch_size() {
    let mut config = example();
    config.as_object_mut().unwrap().remove("train_batch_size");
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&config).unwrap();
    let section = parsed.random_ltd.unwrap();
    assert_eq!(section.global_batch_size, None);
    let err = RandomLtdScheduler::new(&section).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.global_batch_size: not set; expected train_batch_size in the DeepSpeed config, global_batch_size in the random_ltd section, or RandomLtdConfig::with_global_batch_size"
    );
}

#[test]
fn warmup_exceeds_total() {
    let lr = json!({"enabled": true, "total_layer_tokens": 10, "warmup_layer_tokens": 11, "peak_lr": 1.0});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.warmup_layer_tokens: 11 is greater than total_layer_tokens 10"
    );
}

#[test]
fn lr_total_not_positive() {
    let lr = json!({"enabled": true, "total_layer_tokens": 0, "peak_lr": 1.0});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.total_layer_tokens: 0 must be greater than 0"
    );
}

#[test]
fn invalid_learning_rate() {
    let lr = json!({"enabled": true, "total_layer_tokens": 10, "peak_lr": -1.0});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.peak_lr: -1 is not a finite number >= 0"
    );
    let bad = LayerTokenLrConfig {
        min_lr: f64::INFINITY,
        ..lr_config()
    };
    assert_eq!(
        LayerTokenLrSchedule::new(bad).unwrap_err().to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.min_lr: inf is not a finite number >= 0"
    );
}

#[test]
fn min_lr_above_peak() {
    let lr = json!({"enabled": true, "total_layer_tokens": 10, "peak_lr": 1e-4, "min_lr": 1e-3});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.min_lr: 0.001 is greater than peak_lr 0.0001"
    );
}

#[test]
fn lr_section_missing_required_key() {
    let lr = json!({"enabled": true, "total_layer_tokens": 10});
    let err = error_with("/layer_token_lr_schedule", Some(lr));
    assert_eq!(
        err.to_string(),
        "data_efficiency.data_routing.random_ltd.layer_token_lr_schedule.peak_lr: missing required key"
    );
}

fn scheduler() -> RandomLtdScheduler {
    RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).unwrap()
}

fn state() -> RandomLtdState {
    RandomLtdState {
        consumed_layer_tokens: 0,
        current_steps: -1,
        current_value: 128,
        min_value: 128,
        max_value: 2048,
    }
}

#[test]
fn state_mismatch() {
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            min_value: 64,
            ..state()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state min_value: 64 does not match the configuration's 128"
    );
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            max_value: 1024,
            ..state()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state max_value: 1024 does not match the configuration's 2048"
    );
}

#[test]
fn state_value_out_of_range() {
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            current_value: 4096,
            ..state()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state current_value: 4096 is outside [min_value 128, max_value 2048]"
    );
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            current_value: 0,
            ..state()
        })
        .unwrap_err();
    assert!(matches!(
        err,
        SchedulerError::StateValueOutOfRange { found: 0, .. }
    ));
}

#[test]
fn state_steps_below_minus_one() {
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            current_steps: -2,
            ..state()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state current_steps: -2 is less than -1 (the value before the first step)"
    );
}

#[test]
fn state_tokens_before_first_step() {
    let err = scheduler()
        .load_state_dict(RandomLtdState {
            consumed_layer_tokens: 5,
            ..state()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state consumed_layer_tokens: 5 with current_steps -1 (no step taken); expected 0"
    );
}

#[test]
fn invalid_state() {
    let err = RandomLtdState::from_json(
        r#"{"consumed_layer_tokens":0,"current_steps":-1,"current_value":128,"min_value":128,"max_value":2048,"sample_idx":[]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("state: unknown field `sample_idx`"),
        "{err}"
    );
    let err = RandomLtdState::from_json(r#"{"consumed_layer_tokens":-5}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("state: invalid value: integer `-5`"),
        "{err}"
    );
}

#[test]
fn step_went_backwards() {
    let mut scheduler = scheduler();
    scheduler.update_seq(10).unwrap();
    let before = scheduler.clone();
    let err = scheduler.update_seq(9).unwrap_err();
    assert_eq!(
        err.to_string(),
        "update_seq: step 9 is before the last step 10; expected steps that never decrease (call reset to start over)"
    );
    assert_eq!(scheduler, before, "state must be unchanged on error");
}

#[test]
fn invalid_argument() {
    let err = scheduler().layer_token_saving(0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "steps: 0; expected at least 1 step (the saving of an empty run is undefined)"
    );
    let err = megatron_effective_seq_len(2048, 128, 0, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "total_layer_num: 0; expected a positive layer count"
    );
    let err = megatron_effective_seq_len(2048, 128, 4, 5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "random_ltd_layer_num: 5 (total_layer_num 4); expected at most total_layer_num"
    );
    let mut scheduler = scheduler();
    let err = scheduler.update_seq(u64::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "step: {}; expected at most i64::MAX (the state stores steps as a signed integer)",
            u64::MAX
        )
    );
    assert_eq!(scheduler.current_steps(), -1);
}

#[test]
fn overflow() {
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.global_batch_size = Some(u64::MAX / 2);
    let err = RandomLtdScheduler::new(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "layer-tokens per step (global_batch_size * max_value * total_layer_num) overflows u64 (maximum {})",
            u64::MAX
        )
    );

    // A per-step count that fits, accumulated until it does not.
    config.global_batch_size = Some(u64::MAX / (2048 * 24) / 3);
    let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
    scheduler.update_seq(300_000).unwrap();
    scheduler.update_seq(300_001).unwrap();
    scheduler.update_seq(300_002).unwrap();
    let before = scheduler.clone();
    let err = scheduler.update_seq(300_003).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("consumed_layer_tokens overflows u64 (maximum {})", u64::MAX)
    );
    assert_eq!(scheduler, before);

    let scheduler = RandomLtdScheduler::new(&config).unwrap();
    let err = scheduler.total_layer_tokens(1_000_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("total layer-tokens overflows u64 (maximum {})", u64::MAX)
    );
    let err = scheduler.baseline_layer_tokens(1_000_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("baseline layer-tokens overflows u64 (maximum {})", u64::MAX)
    );
    // The saving fraction is computed in u128 and does not overflow.
    assert!(scheduler.layer_token_saving(1_000_000).unwrap() > 0.0);
}
