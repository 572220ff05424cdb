//! Checkpoint state round trip, non-mutating budget helpers, effective length and the LayerToken
//! learning-rate schedule.

use ltd_scheduler::{
    DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, RandomLtdConfig, RandomLtdScheduler,
    RandomLtdState, WarmupType, megatron_effective_seq_len,
};

fn gpt3() -> RandomLtdScheduler {
    RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).unwrap()
}

#[test]
fn state_round_trip_through_json_resumes_identically() {
    let mut original = gpt3();
    for step in 0..1_000 {
        original.update_seq(step * 97).unwrap();
    }
    let saved = original.state_dict();
    let json = saved.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "consumed_layer_tokens",
            "current_steps",
            "current_value",
            "max_value",
            "min_value"
        ]
    );
    let restored_state = RandomLtdState::from_json(&json).unwrap();
    assert_eq!(restored_state, saved);

    let mut resumed = gpt3();
    resumed.load_state_dict(restored_state).unwrap();
    assert_eq!(resumed, original);
    for step in 97_000..97_100 {
        assert_eq!(
            resumed.update_seq(step).unwrap(),
            original.update_seq(step).unwrap()
        );
    }
    assert_eq!(resumed.state_dict(), original.state_dict());
}

#[test]
fn fresh_state_round_trip() {
    let fresh = gpt3();
    let state = RandomLtdState::from_json(&fresh.state_dict().to_json()).unwrap();
    assert_eq!(state.current_steps, -1);
    let mut other = gpt3();
    other.update_seq(5).unwrap();
    other.load_state_dict(state).unwrap();
    assert_eq!(other, fresh);
}

#[test]
fn upstream_state_dict_json_loads() {
    // What json.dumps(scheduler.state_dict()) gives upstream after update_seq(0) on the config of
    // upstream-semantics.md §3.2.
    let text = r#"{"consumed_layer_tokens": 320, "current_steps": 0, "current_value": 16, "min_value": 8, "max_value": 64}"#;
    let state = RandomLtdState::from_json(text).unwrap();
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.total_layer_num = 4;
    config.random_ltd_layer_num = 2;
    config.random_ltd_layer_id = vec![1, 2];
    config.global_batch_size = Some(2);
    config.schedule.min_value = 8;
    config.schedule.max_value = 64;
    config.schedule.require_steps = 100;
    let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
    scheduler.load_state_dict(state).unwrap();
    scheduler.update_seq(1).unwrap();
    assert_eq!(scheduler.consumed_layer_tokens(), 2 * 2 * (2 * 16 + 2 * 64));
}

#[test]
fn load_error_leaves_state_unchanged() {
    let mut scheduler = gpt3();
    scheduler.update_seq(3).unwrap();
    let before = scheduler.clone();
    let mut bad = scheduler.state_dict();
    bad.max_value = 4096;
    assert!(scheduler.load_state_dict(bad).is_err());
    assert_eq!(scheduler, before);
}

fn brute_force_total(config: &RandomLtdConfig, steps: u64) -> u64 {
    let mut scheduler = RandomLtdScheduler::new(config).unwrap();
    for step in 0..steps {
        scheduler.update_seq(step).unwrap();
    }
    scheduler.consumed_layer_tokens()
}

#[test]
fn total_layer_tokens_matches_upstream_get_total_layer_tokens() {
    let config = RandomLtdConfig::gpt3_1_3b_example();
    let scheduler = gpt3();
    for steps in [0, 1, 2, 1_000, 1_563, 123_457, 200_000, 200_001, 250_000] {
        assert_eq!(
            scheduler.total_layer_tokens(steps).unwrap(),
            brute_force_total(&config, steps),
            "steps {steps}"
        );
    }
    assert_eq!(scheduler, gpt3(), "the helpers must not mutate");
}

#[test]
fn budget_helpers_for_long_runs_are_cheap() {
    // A run far longer than require_steps: one run of max, so this is instant.
    let scheduler = gpt3();
    let steps = 10_000_000_000;
    let total = scheduler.total_layer_tokens(steps).unwrap();
    let tail = (steps - 200_000) * 512 * 2048 * 24;
    assert_eq!(total, scheduler.total_layer_tokens(200_000).unwrap() + tail);
}

#[test]
fn baseline_and_saving() {
    let scheduler = gpt3();
    let baseline = scheduler.baseline_layer_tokens(200_000).unwrap();
    assert_eq!(baseline, 200_000 * 512 * 2048 * 24);
    let total = scheduler.total_layer_tokens(200_000).unwrap();
    let saving = scheduler.layer_token_saving(200_000).unwrap();
    assert!((saving - (1.0 - total as f64 / baseline as f64)).abs() < 1e-15);
    // Long after the schedule ends the saving tends to 0.
    assert!(scheduler.layer_token_saving(100_000_000).unwrap() < 0.001);
}

#[test]
fn effective_seq_len_formula() {
    let mut scheduler = gpt3();
    scheduler.update_seq(100_000).unwrap(); // r = 1088
    assert_eq!(
        scheduler.effective_seq_len(2048).unwrap(),
        (2048 * 2 + 1088 * 22) / 24
    );
    assert_eq!(scheduler.effective_seq_len(1000).unwrap(), 1000); // r >= S
    assert_eq!(megatron_effective_seq_len(10, 3, 3, 3).unwrap(), 3);
    assert_eq!(megatron_effective_seq_len(10, 3, 3, 0).unwrap(), 10);
    assert_eq!(
        megatron_effective_seq_len(7, 2, 4, 2).unwrap(),
        (7 * 2 + 2 * 2) / 4
    );
}

#[test]
fn reset_returns_to_initial_state() {
    let mut scheduler = gpt3();
    scheduler.update_seq(100).unwrap();
    scheduler.reset();
    assert_eq!(scheduler, gpt3());
    assert_eq!(scheduler.update_seq(0).unwrap(), 128);
}

fn lr(warmup_type: WarmupType, decay_type: DecayType) -> LayerTokenLrSchedule {
    LayerTokenLrSchedule::new(LayerTokenLrConfig {
        total_layer_tokens: 10_000,
        warmup_layer_tokens: 1_000,
        warmup_type,
        decay_type,
        peak_lr: 1e-3,
        min_lr: 1e-4,
    })
    .unwrap()
}

#[test]
fn lr_linear_warmup_then_cosine_decay() {
    let schedule = lr(WarmupType::Linear, DecayType::Cosine);
    assert_eq!(schedule.lr_at(0), 0.0);
    assert!((schedule.lr_at(250) - 2.5e-4).abs() < 1e-18);
    assert_eq!(schedule.lr_at(1_000), 1e-3);
    // Half way through the decay: (peak + min) / 2.
    assert!((schedule.lr_at(5_500) - 5.5e-4).abs() < 1e-15);
    assert_eq!(schedule.lr_at(10_000), 1e-4);
    assert_eq!(schedule.lr_at(u64::MAX), 1e-4);
}

#[test]
fn lr_log_warmup_and_linear_decay() {
    let schedule = lr(WarmupType::Log, DecayType::Linear);
    assert_eq!(schedule.lr_at(0), 0.0);
    let expected = 1e-3 * (101f64).ln() / (1001f64).ln();
    assert!((schedule.lr_at(100) - expected).abs() < 1e-18);
    // Log warmup rises faster than linear early on.
    assert!(schedule.lr_at(100) > lr(WarmupType::Linear, DecayType::Linear).lr_at(100));
    assert!((schedule.lr_at(999) - 1e-3).abs() < 1e-6);
    assert!((schedule.lr_at(5_500) - 5.5e-4).abs() < 1e-15);
}

#[test]
fn lr_is_continuous_and_monotone_piecewise() {
    for warmup_type in [WarmupType::Linear, WarmupType::Log] {
        for decay_type in [DecayType::Linear, DecayType::Cosine] {
            let schedule = lr(warmup_type, decay_type);
            let mut previous = schedule.lr_at(0);
            for x in 1..=1_000 {
                let value = schedule.lr_at(x);
                assert!(value >= previous, "warmup must rise at {x}");
                assert!((value - previous).abs() < 2e-4, "jump at {x}");
                previous = value;
            }
            for x in 1_001..=12_000 {
                let value = schedule.lr_at(x);
                assert!(value <= previous, "decay must fall at {x}");
                assert!(value >= 1e-4);
                previous = value;
            }
        }
    }
}

#[test]
fn lr_without_warmup_and_with_warmup_equal_to_total() {
    let no_warmup = LayerTokenLrSchedule::new(LayerTokenLrConfig {
        total_layer_tokens: 100,
        warmup_layer_tokens: 0,
        warmup_type: WarmupType::Log,
        decay_type: DecayType::Linear,
        peak_lr: 1.0,
        min_lr: 0.0,
    })
    .unwrap();
    assert_eq!(no_warmup.lr_at(0), 1.0);
    assert_eq!(no_warmup.lr_at(50), 0.5);
    let all_warmup = LayerTokenLrSchedule::new(LayerTokenLrConfig {
        total_layer_tokens: 100,
        warmup_layer_tokens: 100,
        warmup_type: WarmupType::Linear,
        decay_type: DecayType::Cosine,
        peak_lr: 1.0,
        min_lr: 0.25,
    })
    .unwrap();
    assert_eq!(all_warmup.lr_at(99), 0.99);
    assert_eq!(all_warmup.lr_at(100), 0.25);
}

#[test]
fn scheduler_drives_the_lr_by_consumed_layer_tokens() {
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    let total = gpt3().total_layer_tokens(1_000).unwrap();
    config.layer_token_lr_schedule = Some(LayerTokenLrConfig {
        total_layer_tokens: total,
        warmup_layer_tokens: total / 10,
        warmup_type: WarmupType::Linear,
        decay_type: DecayType::Cosine,
        peak_lr: 1e-3,
        min_lr: 0.0,
    });
    let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
    let lr_schedule = *scheduler.lr_schedule().unwrap();
    for step in 0..1_000 {
        scheduler.update_seq(step).unwrap();
        assert_eq!(
            scheduler.current_lr(),
            Some(lr_schedule.lr_at(scheduler.consumed_layer_tokens()))
        );
    }
    assert_eq!(
        scheduler.current_lr(),
        Some(0.0),
        "decayed to min_lr at total_layer_tokens"
    );
}
