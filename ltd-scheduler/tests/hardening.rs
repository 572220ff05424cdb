//! Regression tests for hostile input (issue 24): huge layer counts and schedules are answered at
//! once (no table sized by `total_layer_num`, bounded sums, overflow seen early), and DeepSpeed's
//! own grammar (hjson, `"auto"`, keys without effect) is read.

use std::time::{Duration, Instant};

use ltd_scheduler::*;

fn within_a_second<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        start.elapsed()
    );
    value
}

#[test]
fn huge_total_layer_num_allocates_nothing() {
    for total in [1usize << 40, 1 << 63, usize::MAX] {
        let mut config = RandomLtdConfig::gpt3_1_3b_example();
        config.total_layer_num = total;
        within_a_second("validate", || config.validate()).unwrap();
        // G * max * L overflows u64 for 2^63 and 2^64 - 1; 2^40 fits, and its sums overflow.
        match within_a_second("new", || RandomLtdScheduler::new(&config)) {
            Ok(scheduler) => {
                let err = within_a_second("total", || scheduler.total_layer_tokens(200_000));
                assert!(
                    matches!(err, Err(SchedulerError::Overflow { .. })),
                    "{err:?}"
                );
            }
            Err(err) => assert!(matches!(err, SchedulerError::Overflow { .. }), "{err}"),
        }
        let json = GPT3_1_3B_EXAMPLE.replace(
            "\"total_layer_num\": 24",
            &format!("\"total_layer_num\": {total}"),
        );
        within_a_second("parse", || DataEfficiencyConfig::from_deepspeed_json(&json)).unwrap();
    }
    // A duplicate is still reported at the first position that repeats an earlier id.
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.random_ltd_layer_id = vec![5, 3, 7, 3, 5, 1];
    config.random_ltd_layer_num = 6;
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("random_ltd_layer_id[3]") && err.contains("layer id 3"),
        "{err}"
    );
}

fn one_token_per_step(min: u64, max: u64, steps: u64, k: u64) -> RandomLtdScheduler {
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.total_layer_num = 1;
    config.random_ltd_layer_num = 1;
    config.random_ltd_layer_id = vec![0];
    config.global_batch_size = Some(1);
    config.schedule = ReservedLengthScheduleConfig {
        min_value: min,
        max_value: max,
        schedule_type: ScheduleType::FixedLinear,
        require_steps: steps,
        seq_per_step: k,
    };
    RandomLtdScheduler::new(&config).unwrap()
}

#[test]
fn schedules_with_2_pow_40_values_are_bounded() {
    // 2^40 distinct reserved lengths: summing them one at a time would run for hours.
    let scheduler = one_token_per_step(1, 1 << 40, 1 << 41, 1);
    let err = within_a_second("total", || scheduler.total_layer_tokens(1 << 41)).unwrap_err();
    assert!(
        matches!(err, SchedulerError::ScheduleTooLong { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("distinct reserved lengths"),
        "{err}"
    );
    // The same schedule over a million steps has at most a million values: summed exactly.
    let steps = 1_000_000;
    let total = within_a_second("short total", || scheduler.total_layer_tokens(steps)).unwrap();
    let stepped: u64 = (0..steps).map(|t| scheduler.reserved_length_at(t)).sum();
    assert_eq!(total, stepped);
}

#[test]
fn overflow_is_seen_early_not_at_the_end() {
    // Every step holds 2^62 layer-tokens: the fourth overflows, long before the 2^40-th.
    let mut config = RandomLtdConfig::gpt3_1_3b_example();
    config.global_batch_size = Some(1 << 40);
    config.schedule.max_value = 1 << 17;
    config.total_layer_num = 24;
    let scheduler = RandomLtdScheduler::new(&config).unwrap();
    let err = within_a_second("total", || scheduler.total_layer_tokens(1 << 40)).unwrap_err();
    assert!(matches!(err, SchedulerError::Overflow { .. }), "{err}");
    // The saving is a ratio, computed in u128: still answered.
    within_a_second("saving", || scheduler.layer_token_saving(1 << 20)).unwrap();
}

#[test]
fn deepspeed_hjson_with_auto_and_warnings() {
    let text = r#"{
      // HF's integration writes "auto"; DeepSpeed reads comments and trailing commas.
      train_batch_size: "auto",
      data_efficiency: {
        data_routing: {
          random_ltd: {
            enabled: true,
            total_layer_num: 4,
            random_ltd_layer_num: 2,
            random_ltd_layer_id: [1, 2,],
            model_mask_name: attention_mask
            model_type: decoder
            hidden_state_order: batch_seq_dim
            micro_batch_size: 2,
            random_ltd_schedule: {
              min_value: 8, max_value: 64, schedule_type: "fixed_linear",
              schedule_config: {require_steps: 100, seq_per_step: 8},
            },
          },
        },
      },
    }"#;
    let parsed = DataEfficiencyConfig::from_deepspeed_json(text).unwrap();
    let config = parsed.random_ltd.unwrap();
    assert_eq!(config.model_mask_name.as_deref(), Some("attention_mask"));
    assert_eq!(config.global_batch_size, None);
    assert_eq!(parsed.auto_keys, ["train_batch_size"]);
    let warned: Vec<&str> = parsed.warnings.iter().map(|w| w.path.as_str()).collect();
    assert!(warned.contains(&"data_efficiency.enabled"), "{warned:?}");
    assert!(warned.contains(&"data_efficiency.data_routing.random_ltd.micro_batch_size"));
    // A flag fills in the "auto" value.
    let scheduler = RandomLtdScheduler::new(&config.with_global_batch_size(4).unwrap()).unwrap();
    assert_eq!(scheduler.global_batch_size(), 4);
    // "auto" is only accepted where HF writes it.
    let bad = text.replace("total_layer_num: 4", "total_layer_num: \"auto\"");
    assert!(DataEfficiencyConfig::from_deepspeed_json(&bad).is_err());
}

#[test]
fn hostile_text_is_an_error_not_a_panic() {
    // Deep nesting, and non-ASCII text that deser-hjson 2.2.6 would slice inside a multi-byte
    // character (it panics on a quote followed by one, and building some error messages).
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(parse_deepspeed_text(&deep).is_err());
    for text in [
        "{\"a\"\u{fffd} 1}",
        "{a: é",
        "{\u{1f600}:",
        "é",
        "'\u{fffd}\u{fffd}'",
    ] {
        let err = parse_deepspeed_text(text).unwrap_err().to_string();
        assert!(err.contains("ASCII"), "{err}");
    }
    // An unterminated multiline string made deser-hjson index past the end of the text.
    let err = parse_deepspeed_text("''''").unwrap_err().to_string();
    assert!(err.contains("multiline"), "{err}");
    // Non-ASCII JSON is still read (by the JSON reader).
    assert_eq!(parse_deepspeed_text("{\"é\": 1}").unwrap()["é"], 1);
    let err = parse_deepspeed_text("{\"data_routing\"\u{fffd} {").unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidJson { .. }));
}
