//! CPU benchmarks of ltd-core: gather, scatter / route and the samplers, each gather/scatter group
//! with a `memcpy` of the same bytes in the same group (the performance targets of
//! `docs/design.md`: CPU gather/scatter within 1.25x of memcpy). Sizes are chosen to run quickly on
//! 2 cores: B 4 x S 2048 x C 1024 bf16, r 1024.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use half::bf16;
use ltd_core::{
    HiddenOrder, HiddenTensor, HiddenView, IndexView, TokenSampler, gather, route, scatter_in_place,
};

const B: usize = 4;
const S: usize = 2048;
const C: usize = 1024;
const R: usize = 1024;

fn hidden(order: HiddenOrder, seq: usize) -> HiddenTensor<bf16> {
    let data: Vec<bf16> = (0..B * seq * C)
        .map(|i| bf16::from_f32((i % 251) as f32))
        .collect();
    HiddenTensor::from_vec(data, order, B, seq, C).unwrap()
}

fn indices() -> Vec<i32> {
    TokenSampler::new(1)
        .sample(0, 1, B, S, R)
        .unwrap()
        .into_vec()
}

fn bench_gather(c: &mut Criterion) {
    let idx = indices();
    let iv = IndexView::new(&idx, B, R).unwrap();
    let part_elems = B * R * C;
    let mut g = c.benchmark_group("gather_B4_S2048_C1024_bf16_r1024");
    g.sample_size(10);
    // Bytes read + written.
    g.throughput(Throughput::Bytes((2 * part_elems * 2) as u64));
    let src = vec![bf16::ONE; part_elems];
    let mut dst = vec![bf16::ZERO; part_elems];
    g.bench_function("memcpy_same_bytes", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let h = hidden(order, S);
        let mut out = HiddenTensor::<bf16>::zeros(order, B, R, C).unwrap();
        g.bench_function(format!("gather_{order:?}"), |b| {
            b.iter(|| gather(black_box(&h.view()), &iv, &mut out.view_mut()).unwrap())
        });
    }
    g.finish();
}

fn bench_scatter(c: &mut Criterion) {
    let idx = indices();
    let iv = IndexView::new(&idx, B, R).unwrap();
    let full_elems = B * S * C;
    let mut g = c.benchmark_group("route_B4_S2048_C1024_bf16_r1024");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((2 * full_elems * 2) as u64));
    let src = vec![bf16::ONE; full_elems];
    let mut dst = vec![bf16::ZERO; full_elems];
    g.bench_function("memcpy_full_tensor", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let h = hidden(order, S);
        let part = hidden(order, R);
        let mut y = HiddenTensor::<bf16>::zeros(order, B, S, C).unwrap();
        g.bench_function(format!("route_{order:?}"), |b| {
            b.iter(|| route(black_box(&h.view()), &part.view(), &iv, &mut y.view_mut()).unwrap())
        });
    }
    g.finish();

    let part_elems = B * R * C;
    let mut g = c.benchmark_group("scatter_in_place_B4_S2048_C1024_bf16_r1024");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((2 * part_elems * 2) as u64));
    let src = vec![bf16::ONE; part_elems];
    let mut dst = vec![bf16::ZERO; part_elems];
    g.bench_function("memcpy_same_bytes", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let mut h = hidden(order, S);
        let part = hidden(order, R);
        let pv: HiddenView<'_, bf16> = part.view();
        g.bench_function(format!("scatter_in_place_{order:?}"), |b| {
            b.iter(|| scatter_in_place(&mut h.view_mut(), black_box(&pv), &iv).unwrap())
        });
    }
    g.finish();
}

fn bench_samplers(c: &mut Criterion) {
    let mut g = c.benchmark_group("sampler");
    g.sample_size(10);
    let sampler = TokenSampler::new(7);
    for (layers, batch, seq, r) in [(22, 8, 2048, 1024), (46, 16, 2048, 512)] {
        let mut out = vec![0i32; layers * batch * r];
        g.bench_function(format!("L{layers}_B{batch}_S{seq}_r{r}"), |b| {
            b.iter(|| {
                sampler
                    .sample_into(black_box(3), layers, batch, seq, r, &mut out)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_gather, bench_scatter, bench_samplers);
criterion_main!(benches);
