//! Parsing of valid DeepSpeed configs: the docs' example, the section alone, defaults, gating.

use ltd_scheduler::{
    DataEfficiencyConfig, DecayType, GPT3_1_3B_EXAMPLE, HiddenStateOrder, LayerTokenLrConfig,
    ModelType, RandomLtdConfig, RandomLtdScheduler, ScheduleType, WarmupType,
};
use serde_json::{Value, json};

const SECTION: &str = "/data_efficiency/data_routing/random_ltd";

#[test]
fn gpt3_example_parses_to_the_documented_values() {
    let parsed = DataEfficiencyConfig::from_deepspeed_json(GPT3_1_3B_EXAMPLE).unwrap();
    assert!(parsed.data_efficiency_enabled);
    assert!(parsed.data_routing_enabled);
    let config = parsed.random_ltd.unwrap();
    assert_eq!(config, RandomLtdConfig::gpt3_1_3b_example());
    assert_eq!(config.total_layer_num, 24);
    assert_eq!(config.random_ltd_layer_num, 22);
    assert_eq!(config.random_ltd_layer_id, (1..=22).collect::<Vec<_>>());
    assert_eq!(config.model_mask_name.as_deref(), Some("attention_mask"));
    assert_eq!(config.model_type, ModelType::Decoder);
    assert_eq!(config.hidden_state_order, HiddenStateOrder::SeqBatchDim);
    assert_eq!(config.schedule.min_value, 128);
    assert_eq!(config.schedule.max_value, 2048);
    assert_eq!(config.schedule.schedule_type, ScheduleType::FixedLinear);
    assert_eq!(config.schedule.require_steps, 200_000);
    assert_eq!(config.schedule.seq_per_step, 16);
    assert_eq!(config.global_batch_size, Some(512));
    assert_eq!(config.micro_batch_size, None);
    assert_eq!(config.layer_token_lr_schedule, None);
}

#[test]
fn the_docs_section_parses_alone() {
    let whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    let section = whole.pointer(SECTION).unwrap();
    let config = RandomLtdConfig::from_section_value(section)
        .unwrap()
        .unwrap();
    assert_eq!(config.global_batch_size, None);
    let config = config.with_global_batch_size(512).unwrap();
    assert_eq!(config, RandomLtdConfig::gpt3_1_3b_example());
    let text = serde_json::to_string(section).unwrap();
    assert_eq!(
        RandomLtdConfig::from_section_json(&text)
            .unwrap()
            .unwrap()
            .total_layer_num,
        24
    );
}

#[test]
fn section_alone_may_carry_batch_sizes() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    let section = whole.pointer_mut(SECTION).unwrap();
    section["global_batch_size"] = json!(64);
    section["micro_batch_size"] = json!(2);
    let config = RandomLtdConfig::from_section_value(section)
        .unwrap()
        .unwrap();
    assert_eq!(config.global_batch_size, Some(64));
    assert_eq!(config.micro_batch_size, Some(2));
}

#[test]
fn whole_config_injects_batch_sizes() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    whole["train_batch_size"] = json!(1024);
    whole["train_micro_batch_size_per_gpu"] = json!(4);
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    assert_eq!(config.global_batch_size, Some(1024));
    assert_eq!(config.micro_batch_size, Some(4));
    // Without train_batch_size the section's own value is used.
    whole.as_object_mut().unwrap().remove("train_batch_size");
    whole.pointer_mut(SECTION).unwrap()["global_batch_size"] = json!(32);
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    assert_eq!(config.global_batch_size, Some(32));
}

#[test]
fn other_sections_of_a_deepspeed_config_are_ignored() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    whole["optimizer"] = json!({"type": "Adam", "params": {"lr": 1e-4, "whatever": [1, 2]}});
    whole["sparse_attention"] = json!({"mode": "fixed"});
    whole["zero_optimization"] = json!({"stage": 3});
    whole["data_efficiency"]["data_sampling"] =
        json!({"enabled": true, "curriculum_learning": {"enabled": false}});
    whole["data_efficiency"]["data_routing"]["some_future_technique"] = json!({"enabled": true});
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&whole).unwrap();
    assert_eq!(
        parsed.random_ltd.unwrap(),
        RandomLtdConfig::gpt3_1_3b_example()
    );
}

#[test]
fn only_random_ltd_enabled_gates() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    whole["data_efficiency"]["enabled"] = json!(false);
    whole["data_efficiency"]["data_routing"]["enabled"] = json!(false);
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&whole).unwrap();
    assert!(!parsed.data_efficiency_enabled);
    assert!(!parsed.data_routing_enabled);
    assert!(
        parsed.random_ltd.is_some(),
        "like upstream, the parent flags do not gate"
    );

    whole.pointer_mut(SECTION).unwrap()["enabled"] = json!(false);
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&whole).unwrap();
    assert!(parsed.random_ltd.is_none());

    whole
        .pointer_mut(SECTION)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("enabled");
    let parsed = DataEfficiencyConfig::from_deepspeed_value(&whole).unwrap();
    assert!(parsed.random_ltd.is_none(), "enabled defaults to false");
}

#[test]
fn disabled_section_values_are_not_checked() {
    // Like upstream, a disabled section's values are not read (only its key names are checked).
    let section = json!({"enabled": false, "total_layer_num": "many", "random_ltd_schedule": 3});
    assert_eq!(RandomLtdConfig::from_section_value(&section).unwrap(), None);
}

#[test]
fn missing_sections_mean_disabled() {
    for text in [
        "{}",
        r#"{"data_efficiency": {}}"#,
        r#"{"data_efficiency": {"data_routing": {}}}"#,
        r#"{"data_efficiency": {"data_routing": {"random_ltd": null}}}"#,
    ] {
        let parsed = DataEfficiencyConfig::from_deepspeed_json(text).unwrap();
        assert!(parsed.random_ltd.is_none(), "{text}");
        assert!(!parsed.data_efficiency_enabled);
    }
}

#[test]
fn fixed_root_parses() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    let schedule = whole
        .pointer_mut(&format!("{SECTION}/random_ltd_schedule"))
        .unwrap();
    schedule["schedule_type"] = json!("fixed_root");
    schedule["schedule_config"]["root_degree"] = json!(2);
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    assert_eq!(
        config.schedule.schedule_type,
        ScheduleType::FixedRoot { root_degree: 2.0 }
    );
}

#[test]
fn layer_token_lr_section_parses_with_defaults() {
    let mut whole: Value = serde_json::from_str(GPT3_1_3B_EXAMPLE).unwrap();
    whole.pointer_mut(SECTION).unwrap()["layer_token_lr_schedule"] =
        json!({"enabled": true, "total_layer_tokens": 1_000_000, "peak_lr": 2e-4});
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    assert_eq!(
        config.layer_token_lr_schedule,
        Some(LayerTokenLrConfig {
            total_layer_tokens: 1_000_000,
            warmup_layer_tokens: 0,
            warmup_type: WarmupType::Linear,
            decay_type: DecayType::Cosine,
            peak_lr: 2e-4,
            min_lr: 0.0,
        })
    );

    whole.pointer_mut(SECTION).unwrap()["layer_token_lr_schedule"] = json!({
        "enabled": true, "total_layer_tokens": 1000, "warmup_layer_tokens": 100,
        "warmup_type": "log", "decay_type": "linear", "peak_lr": 1, "min_lr": 0.5
    });
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    let lr = config.layer_token_lr_schedule.unwrap();
    assert_eq!(lr.warmup_type, WarmupType::Log);
    assert_eq!(lr.decay_type, DecayType::Linear);
    assert_eq!((lr.peak_lr, lr.min_lr), (1.0, 0.5));
    let scheduler = RandomLtdScheduler::new(&config).unwrap();
    assert_eq!(scheduler.current_lr(), Some(0.0));

    // Upstream's default: the key present with enabled false only.
    whole.pointer_mut(SECTION).unwrap()["layer_token_lr_schedule"] = json!({"enabled": false});
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    assert_eq!(config.layer_token_lr_schedule, None);
}

#[test]
fn upstream_test_config_parses() {
    // The configuration of upstream's later-revision training-loop test (upstream-semantics.md
    // §3.2), as a dict.
    let whole = json!({
        "train_batch_size": 2,
        "data_efficiency": {"enabled": true, "data_routing": {"enabled": true, "random_ltd": {
            "enabled": true, "total_layer_num": 4, "random_ltd_layer_num": 2,
            "random_ltd_layer_id": [1, 2], "model_mask_name": null, "micro_batch_size": 2,
            "hidden_state_order": "batch_seq_dim", "model_type": "decoder",
            "random_ltd_schedule": {"min_value": 8, "max_value": 64, "schedule_type": "fixed_linear",
                "schedule_config": {"require_steps": 100, "seq_per_step": 16}},
            "layer_token_lr_schedule": {"enabled": false}
        }}}
    });
    let config = DataEfficiencyConfig::from_deepspeed_value(&whole)
        .unwrap()
        .random_ltd
        .unwrap();
    let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
    assert_eq!(scheduler.update_seq(0).unwrap(), 16);
}
