//! The worked example of upstream-semantics.md §1.9, the floor-fix cases of §3.2 and the update_seq semantics.

use ltd_scheduler::{
    RandomLtdConfig, RandomLtdScheduler, ReservedLengthSchedule, ReservedLengthScheduleConfig,
    ScheduleType,
};

fn linear(
    min_value: u64,
    max_value: u64,
    require_steps: u64,
    seq_per_step: u64,
) -> ReservedLengthSchedule {
    ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
        min_value,
        max_value,
        schedule_type: ScheduleType::FixedLinear,
        require_steps,
        seq_per_step,
    })
    .expect("valid schedule")
}

/// The upstream-semantics.md §3.2 test configuration: L_tot 4, L_ltd 2 (ids 1, 2), G 2, max 64, T 100.
fn floor_fix_scheduler(min_value: u64, seq_per_step: u64) -> RandomLtdScheduler {
    let config = RandomLtdConfig {
        total_layer_num: 4,
        random_ltd_layer_num: 2,
        random_ltd_layer_id: vec![1, 2],
        model_mask_name: None,
        model_type: ltd_scheduler::ModelType::Decoder,
        hidden_state_order: ltd_scheduler::HiddenStateOrder::BatchSeqDim,
        micro_batch_size: Some(2),
        global_batch_size: Some(2),
        schedule: ReservedLengthScheduleConfig {
            min_value,
            max_value: 64,
            schedule_type: ScheduleType::FixedLinear,
            require_steps: 100,
            seq_per_step,
        },
        layer_token_lr_schedule: None,
    };
    RandomLtdScheduler::new(&config).expect("valid config")
}

#[test]
fn worked_example_table_of_spec_1_9() {
    let schedule = linear(128, 2048, 200_000, 16);
    let table = [
        (0, 128),
        (1000, 128),
        (50_000, 608),
        (100_000, 1088),
        (150_000, 1568),
        (199_999, 2032),
        (200_000, 2048),
        (200_001, 2048),
        (1_000_000, 2048),
        (u64::MAX, 2048),
    ];
    for (step, expected) in table {
        assert_eq!(schedule.value_at(step), expected, "step {step}");
    }
}

#[test]
fn worked_example_through_update_seq() {
    let mut scheduler = RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).unwrap();
    for (step, expected) in [
        (0, 128),
        (1000, 128),
        (50_000, 608),
        (100_000, 1088),
        (150_000, 1568),
        (199_999, 2032),
        (200_000, 2048),
        (300_000, 2048),
    ] {
        assert_eq!(scheduler.update_seq(step).unwrap(), expected, "step {step}");
        assert_eq!(scheduler.current_value(), expected);
    }
}

#[test]
fn floor_fix_cases_of_spec_3_2() {
    for (min_value, seq_per_step, expected) in [(8, 16, 16), (10, 8, 16), (16, 8, 16)] {
        let mut scheduler = floor_fix_scheduler(min_value, seq_per_step);
        assert_eq!(
            scheduler.update_seq(0).unwrap(),
            expected,
            "min {min_value} k {seq_per_step}"
        );
        assert_eq!(scheduler.current_value(), expected);
        assert_eq!(
            scheduler.consumed_layer_tokens(),
            2 * (2 * expected + 2 * 64)
        );

        let mut values = Vec::new();
        for step in 0..=100 {
            values.push(scheduler.update_seq(step).unwrap());
        }
        assert!(values.iter().all(|&v| v >= min_value), "{values:?}");
        assert!(
            values.iter().all(|&v| v.is_multiple_of(seq_per_step)),
            "{values:?}"
        );
        assert_eq!(*values.last().unwrap(), 64);
    }
}

#[test]
fn master_would_go_below_min_but_we_do_not() {
    // Upstream master: min 8, k 16 gives 0 for steps 0..=28; min 10, k 8 gives 8.
    let schedule = linear(8, 64, 100, 16);
    for step in 0..=28 {
        assert_eq!(schedule.value_at(step), 16, "step {step}");
    }
    assert_eq!(linear(10, 64, 100, 8).value_at(0), 16);
    assert_eq!(linear(8, 64, 100, 16).aligned_min(), 16);
}

#[test]
fn training_loop_of_spec_3_2() {
    // min 8, max 64, k 16, T 100, G 2: three steps at r = 16, counted once each.
    let mut scheduler = floor_fix_scheduler(8, 16);
    for step in 0..3 {
        for _micro_batch in 0..2 {
            assert_eq!(scheduler.update_seq(step).unwrap(), 16);
        }
    }
    assert_eq!(scheduler.consumed_layer_tokens(), 3 * 2 * (2 * 16 + 2 * 64));
    assert_eq!(scheduler.current_steps(), 2);
}

#[test]
fn micro_batches_of_one_step_count_once() {
    let mut scheduler = RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).unwrap();
    scheduler.update_seq(0).unwrap();
    let after_first = scheduler.consumed_layer_tokens();
    for _ in 0..16 {
        scheduler.update_seq(0).unwrap();
    }
    assert_eq!(scheduler.consumed_layer_tokens(), after_first);
    scheduler.update_seq(1).unwrap();
    assert_eq!(scheduler.consumed_layer_tokens(), 2 * after_first);
}

#[test]
fn skipped_steps_count_once_per_call() {
    // Upstream counts one step's worth per distinct step passed, not per elapsed step.
    let mut scheduler = RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).unwrap();
    scheduler.update_seq(0).unwrap();
    scheduler.update_seq(100_000).unwrap();
    assert_eq!(
        scheduler.consumed_layer_tokens(),
        512 * (128 * 22 + 2048 * 2) + 512 * (1088 * 22 + 2048 * 2)
    );
}

#[test]
fn frozen_at_max() {
    let mut scheduler = floor_fix_scheduler(8, 16);
    scheduler.update_seq(100).unwrap();
    assert_eq!(scheduler.current_value(), 64);
    scheduler.update_seq(1_000).unwrap();
    assert_eq!(scheduler.current_value(), 64);
}

#[test]
fn root_degree_one_is_fixed_linear_bit_for_bit() {
    let config = ReservedLengthScheduleConfig {
        min_value: 100,
        max_value: 3000,
        schedule_type: ScheduleType::FixedLinear,
        require_steps: 77_777,
        seq_per_step: 8,
    };
    let linear = ReservedLengthSchedule::new(config).unwrap();
    let root = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
        schedule_type: ScheduleType::FixedRoot { root_degree: 1.0 },
        ..config
    })
    .unwrap();
    for step in 0..=80_000 {
        assert_eq!(linear.value_at(step), root.value_at(step), "step {step}");
    }
}

#[test]
fn fixed_root_formula() {
    // floor(sqrt(t/T) * (max - min) + min), rounded down to k: t = T/4 gives half way.
    let root = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
        min_value: 128,
        max_value: 2048,
        schedule_type: ScheduleType::FixedRoot { root_degree: 2.0 },
        require_steps: 200_000,
        seq_per_step: 16,
    })
    .unwrap();
    assert_eq!(root.value_at(50_000), 1088);
    assert_eq!(root.value_at(0), 128);
    assert_eq!(root.value_at(200_000), 2048);
    // Grows faster than linear early on.
    assert!(root.value_at(10_000) > linear(128, 2048, 200_000, 16).value_at(10_000));
}

#[test]
fn f64_evaluation_order_matches_upstream() {
    // Ours must be floor((t / T) * span + min) evaluated in f64 in that order. Exact rational
    // arithmetic, floor(t * span / T) + min, differs on some of these configurations, so this
    // also shows that the evaluation order matters.
    let (min, span) = (1u64, 97u64);
    let mut differences = 0;
    for t_total in 1..200u64 {
        let schedule = linear(min, min + span, t_total, 1);
        for t in 0..=t_total {
            let f64_value = ((t as f64 / t_total as f64) * span as f64 + min as f64).floor() as u64;
            let exact_value = (t * span) / t_total + min;
            assert_eq!(schedule.value_at(t), f64_value, "t {t} T {t_total}");
            if f64_value != exact_value {
                differences += 1;
            }
        }
    }
    assert!(differences > 0, "expected some f64 vs exact differences");
}

#[test]
fn max_not_a_multiple_is_reached_late() {
    // max 2050, k 16: the rounded-down value stays at 2048 until floor(...) >= 2064.
    let schedule = linear(128, 2050, 200_000, 16);
    assert_eq!(schedule.value_at(200_000), 2048);
    let first = schedule.first_step_at_max().unwrap();
    assert!(first > 200_000);
    assert_eq!(schedule.value_at(first), 2050);
    assert_eq!(schedule.value_at(first - 1), 2048);
}

#[test]
fn min_equal_max_not_a_multiple_stays_at_max() {
    let schedule = linear(50, 50, 10, 16);
    for step in [0, 5, 10, 1000] {
        assert_eq!(schedule.value_at(step), 50);
    }
    assert_eq!(schedule.first_step_at_max(), Some(0));
}

#[test]
fn step_counts_reaching_max() {
    assert_eq!(
        linear(128, 2048, 200_000, 16).first_step_at_max(),
        Some(200_000)
    );
    assert_eq!(linear(8, 64, 100, 16).first_step_at_max(), Some(100));
}

/// Golden values from an independent Python restatement of upstream's `get_value` (Python floats,
/// `float(t) / T`, `** (1.0 / degree)`, `math.floor`, the later revision's floor fix): for steps
/// `0..2T+50`, the sum of the values and a rolling hash `h = (h·1000003 + v) mod 2^61`.
/// `(min_value, max_value, require_steps, seq_per_step, root_degree)`.
type GoldenConfig = (u64, u64, u64, u64, f64);

#[test]
fn matches_python_restatement_at_every_step() {
    let golden: [(GoldenConfig, u64, u64); 9] = [
        (
            (128, 2048, 200_000, 16, 1.0),
            625_701_760,
            797_468_818_413_054_080,
        ),
        ((8, 64, 100, 16, 1.0), 12_560, 668_639_504_406_089_104),
        ((10, 64, 100, 8, 1.0), 12_960, 2_185_932_625_304_962_928),
        (
            (100, 3000, 77_777, 8, 1.0),
            353_723_448,
            749_442_388_326_333_512,
        ),
        (
            (128, 2050, 200_000, 16, 1.0),
            626_300_098,
            2_152_496_880_547_886_274,
        ),
        ((1, 98, 3, 1, 1.0), 5_293, 800_063_058_717_218_953),
        (
            (128, 2048, 200_000, 16, 2.0),
            689_697_376,
            104_591_175_085_467_520,
        ),
        (
            (64, 4096, 123_457, 24, 3.0),
            885_626_128,
            1_264_710_913_185_159_008,
        ),
        ((33, 1000, 999, 7, 0.5), 1_400_275, 85_748_687_398_478_745),
    ];
    for ((min_value, max_value, require_steps, seq_per_step, degree), sum, hash) in golden {
        let schedule_type = if degree == 1.0 {
            ScheduleType::FixedLinear
        } else {
            ScheduleType::FixedRoot {
                root_degree: degree,
            }
        };
        let schedule = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
            min_value,
            max_value,
            schedule_type,
            require_steps,
            seq_per_step,
        })
        .unwrap();
        let (mut our_sum, mut our_hash) = (0u64, 0u128);
        for step in 0..2 * require_steps + 50 {
            let value = schedule.value_at(step);
            our_sum += value;
            our_hash = (our_hash * 1_000_003 + u128::from(value)) % (1u128 << 61);
        }
        let label = (min_value, max_value, require_steps, seq_per_step, degree);
        assert_eq!(our_sum, sum, "{label:?}");
        assert_eq!(our_hash, u128::from(hash), "{label:?}");
    }
}
