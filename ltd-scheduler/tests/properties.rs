//! Property tests of the schedule and the scheduler's token accounting.

use ltd_scheduler::{
    HiddenStateOrder, ModelType, RandomLtdConfig, RandomLtdScheduler, ReservedLengthSchedule,
    ReservedLengthScheduleConfig, ScheduleType,
};
use proptest::prelude::*;

fn schedule_config() -> impl Strategy<Value = ReservedLengthScheduleConfig> {
    (
        1u64..=4096,
        0u64..=8192,
        1u64..=128,
        1u64..=50_000,
        prop_oneof![
            Just(ScheduleType::FixedLinear),
            (0.25f64..8.0).prop_map(|root_degree| ScheduleType::FixedRoot { root_degree }),
            Just(ScheduleType::FixedRoot { root_degree: 1.0 }),
        ],
    )
        .prop_map(
            |(min_value, extra, seq_per_step, require_steps, schedule_type)| {
                ReservedLengthScheduleConfig {
                    min_value,
                    max_value: min_value + extra,
                    schedule_type,
                    require_steps,
                    seq_per_step,
                }
            },
        )
}

fn scheduler_config() -> impl Strategy<Value = RandomLtdConfig> {
    (schedule_config(), 1usize..=48, 1u64..=4096).prop_flat_map(|(schedule, total, batch)| {
        (1usize..=total).prop_map(move |ltd| RandomLtdConfig {
            total_layer_num: total,
            random_ltd_layer_num: ltd,
            random_ltd_layer_id: (0..ltd).collect(),
            model_mask_name: None,
            model_type: ModelType::Decoder,
            hidden_state_order: HiddenStateOrder::BatchSeqDim,
            micro_batch_size: None,
            global_batch_size: Some(batch),
            schedule,
            layer_token_lr_schedule: None,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn values_are_in_range_aligned_and_monotone(
        config in schedule_config(),
        steps in proptest::collection::vec(0u64..=120_000, 1..64),
    ) {
        let schedule = ReservedLengthSchedule::new(config).unwrap();
        let k = config.seq_per_step;
        let floor = config.min_value.div_ceil(k) * k;
        prop_assert_eq!(schedule.aligned_min(), floor);
        let mut steps = steps;
        steps.sort_unstable();
        let mut previous = 0;
        for &step in &steps {
            let value = schedule.value_at(step);
            prop_assert!(value >= config.min_value, "value {} below min at step {}", value, step);
            prop_assert!(value >= floor.min(config.max_value));
            prop_assert!(value <= config.max_value);
            // Multiples of k, except max itself when max is not a multiple.
            prop_assert!(value.is_multiple_of(k) || value == config.max_value, "value {} at step {}", value, step);
            prop_assert!(value >= previous, "not monotone at step {}", step);
            previous = value;
        }
    }

    #[test]
    fn reaches_max_at_require_steps_when_max_is_a_multiple(config in schedule_config()) {
        let schedule = ReservedLengthSchedule::new(config).unwrap();
        if config.max_value.is_multiple_of(config.seq_per_step) {
            prop_assert_eq!(schedule.value_at(config.require_steps), config.max_value);
            let first = schedule.first_step_at_max().unwrap();
            prop_assert!(first <= config.require_steps);
            prop_assert_eq!(schedule.value_at(first), config.max_value);
            if first > 0 {
                prop_assert!(schedule.value_at(first - 1) < config.max_value);
            }
        }
        prop_assert_eq!(schedule.value_at(u64::MAX), config.max_value);
    }

    #[test]
    fn first_step_at_max_is_exact(config in schedule_config()) {
        let schedule = ReservedLengthSchedule::new(config).unwrap();
        let first = schedule.first_step_at_max().unwrap();
        prop_assert_eq!(schedule.value_at(first), config.max_value);
        if first > 0 {
            prop_assert!(schedule.value_at(first - 1) < config.max_value);
        }
    }

    #[test]
    fn degree_one_root_equals_linear(config in schedule_config(), step in 0u64..200_000) {
        let linear = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
            schedule_type: ScheduleType::FixedLinear, ..config
        }).unwrap();
        let root = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
            schedule_type: ScheduleType::FixedRoot { root_degree: 1.0 }, ..config
        }).unwrap();
        prop_assert_eq!(linear.value_at(step), root.value_at(step));
    }

    #[test]
    fn consumed_tokens_are_the_sum_of_per_step_terms_without_double_counting(
        config in scheduler_config(),
        gaps in proptest::collection::vec((0u64..=3_000, 1usize..=4), 1..48),
    ) {
        let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
        let schedule = ReservedLengthSchedule::new(config.schedule).unwrap();
        let g = config.global_batch_size.unwrap();
        let l_tot = config.total_layer_num as u64;
        let l_ltd = config.random_ltd_layer_num as u64;
        let max = config.schedule.max_value;
        let mut expected: u64 = 0;
        let mut step = 0;
        for (index, &(gap, micro_batches)) in gaps.iter().enumerate() {
            if index > 0 {
                step += gap.max(1);
            }
            let r = schedule.value_at(step);
            expected += g * (r * l_ltd + max * (l_tot - l_ltd));
            for _ in 0..micro_batches {
                prop_assert_eq!(scheduler.update_seq(step).unwrap(), r);
            }
            prop_assert_eq!(scheduler.consumed_layer_tokens(), expected);
            prop_assert_eq!(scheduler.current_steps(), step as i64);
        }
    }

    #[test]
    fn total_layer_tokens_equals_stepping_every_step(
        config in scheduler_config(),
        steps in 0u64..3_000,
    ) {
        // Short require_steps too, so that runs hit max inside the window.
        let mut config = config;
        config.schedule.require_steps = config.schedule.require_steps % 2_000 + 1;
        let scheduler = RandomLtdScheduler::new(&config).unwrap();
        let mut stepped = scheduler.clone();
        for step in 0..steps {
            stepped.update_seq(step).unwrap();
        }
        prop_assert_eq!(scheduler.total_layer_tokens(steps).unwrap(), stepped.consumed_layer_tokens());
        let baseline = scheduler.baseline_layer_tokens(steps).unwrap();
        prop_assert!(stepped.consumed_layer_tokens() <= baseline);
        if steps > 0 {
            let saving = scheduler.layer_token_saving(steps).unwrap();
            prop_assert!((0.0..1.0).contains(&saving));
        }
    }

    #[test]
    fn state_round_trips_through_json(config in scheduler_config(), last in 0u64..100_000) {
        let mut scheduler = RandomLtdScheduler::new(&config).unwrap();
        scheduler.update_seq(last / 2).unwrap();
        scheduler.update_seq(last).unwrap();
        let state = scheduler.state_dict();
        let parsed = ltd_scheduler::RandomLtdState::from_json(&state.to_json()).unwrap();
        prop_assert_eq!(parsed, state);
        let mut fresh = RandomLtdScheduler::new(&config).unwrap();
        fresh.load_state_dict(parsed).unwrap();
        prop_assert_eq!(fresh, scheduler);
    }
}
