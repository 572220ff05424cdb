//! ltd-scheduler: `update_seq` runs on every micro-batch, so it must cost nanoseconds; the budget
//! helpers must be fast enough for a CLI (N = 200,000 steps).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler};

fn gpt3_scheduler() -> RandomLtdScheduler {
    RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example()).expect("valid example config")
}

fn update_seq(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler/update_seq");

    // A micro-batch of a step already counted: recompute r, no counting.
    let mut scheduler = gpt3_scheduler();
    scheduler.update_seq(100_000).expect("valid step");
    group.bench_function("same_step", |b| {
        b.iter(|| scheduler.update_seq(black_box(100_000)))
    });

    // The first micro-batch of each step: recompute r and count the step's layer-tokens.
    let mut scheduler = gpt3_scheduler();
    let mut step = 0u64;
    group.bench_function("new_step", |b| {
        b.iter(|| {
            step += 1;
            if step > 200_000 {
                scheduler.reset();
                step = 0;
            }
            scheduler.update_seq(black_box(step))
        })
    });

    // After the schedule ends r is frozen at max: counting only.
    let mut scheduler = gpt3_scheduler();
    let mut step = 300_000u64;
    group.bench_function("new_step_at_max", |b| {
        b.iter(|| {
            step += 1;
            scheduler.update_seq(black_box(step))
        })
    });
    group.finish();
}

fn budget(c: &mut Criterion) {
    let scheduler = gpt3_scheduler();
    let mut group = c.benchmark_group("scheduler/budget");
    group.bench_function("value_at", |b| {
        b.iter(|| scheduler.reserved_length_at(black_box(123_457)))
    });
    group.bench_function("total_layer_tokens_200k", |b| {
        b.iter(|| scheduler.total_layer_tokens(black_box(200_000)))
    });
    group.finish();
}

criterion_group!(benches, update_seq, budget);
criterion_main!(benches);
