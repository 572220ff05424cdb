//! `ltd bench`: the kernel benchmarks behind the performance targets of `docs/design.md`, on
//! whatever device is present, printed as ratio tables against a ceiling measured in the same run.
//!
//! - CPU: gather / scatter / route against `memcpy` of the same bytes (target: gather and scatter
//!   within 1.25x of memcpy), the token sampler, and the fused block-sparse attention at several
//!   densities against the same op on a dense layout.
//! - GPU (`--features cuda` and a device): gather / scatter / route against a device-to-device
//!   copy of the same bytes, and the sampler (the method of `benches/benches/gpu_random_ltd.rs`).

use std::hint::black_box;
use std::io::Write;

use clap::Args;
use half::bf16;
use indicatif::{ProgressBar, ProgressStyle};
use ltd_core::{
    HiddenOrder, HiddenTensor, IndexView, TokenSampler, gather, route, scatter_in_place,
};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, Layout, attention_backward,
    attention_forward,
};

use crate::block::SplitMix;
use crate::demo::DeviceChoice;
use crate::error::{CliError, Result};
use crate::timing::{Budget, interleaved_medians_us, median_us};

/// Arguments of `ltd bench`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ltd bench --quick          small sizes, a few seconds
  ltd bench                  the full tables (about a minute on 2 cores)
  ltd bench --device cpu     the CPU tables even on a GPU machine (cuda builds)

Times are medians. Ratios compare with a ceiling measured in the same run: memcpy of the same
bytes on the CPU, a device-to-device copy on the GPU, the fused op on a dense layout for attention.
For criterion statistics use `cargo bench -p ltd-benches --bench core` (and scheduler, sparse_attn).")]
pub struct BenchArgs {
    /// Small sizes and short measurements: a few seconds in total.
    #[arg(long)]
    pub quick: bool,
    /// Which device to benchmark.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Tiny sizes and single measurements, to test the command itself (not a benchmark).
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// Sizes of a CPU run.
struct CpuSizes {
    rows: (usize, usize, usize, usize),
    samplers: Vec<(usize, usize, usize, usize)>,
    attn: AttentionShape,
    attn_block: usize,
    per_row: Vec<usize>,
    budget: Budget,
}

impl CpuSizes {
    fn new(quick: bool, smoke: bool) -> Self {
        if smoke {
            CpuSizes {
                rows: (2, 64, 32, 16),
                samplers: vec![(2, 2, 64, 16)],
                attn: AttentionShape {
                    batch: 1,
                    heads: 1,
                    seq_len: 64,
                    head_dim: 16,
                },
                attn_block: 16,
                per_row: vec![1, 2],
                budget: Budget {
                    warmup: 0,
                    min_iters: 1,
                    max_iters: 1,
                    time: std::time::Duration::ZERO,
                },
            }
        } else if quick {
            CpuSizes {
                rows: (2, 1024, 1024, 512),
                samplers: vec![(22, 8, 2048, 1024)],
                attn: AttentionShape {
                    batch: 1,
                    heads: 2,
                    seq_len: 512,
                    head_dim: 64,
                },
                attn_block: 64,
                per_row: vec![1, 2, 4, 8],
                budget: Budget::QUICK,
            }
        } else {
            CpuSizes {
                rows: (4, 2048, 1024, 1024),
                samplers: vec![(22, 8, 2048, 1024), (46, 16, 2048, 512)],
                attn: AttentionShape {
                    batch: 1,
                    heads: 4,
                    seq_len: 2048,
                    head_dim: 64,
                },
                attn_block: 64,
                per_row: vec![1, 2, 4, 8, 16, 32],
                budget: Budget::FULL,
            }
        }
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    (0..n).map(|_| rng.uniform() as f32).collect()
}

/// A layout with exactly `per_row` active blocks in every block row (the diagonal first, then a
/// rotating set), so its density is `per_row / nb`.
fn layout_with(heads: usize, nb: usize, block: usize, per_row: usize) -> Result<Layout> {
    let mut mask = vec![0u8; heads * nb * nb];
    for h in 0..heads {
        for r in 0..nb {
            let mut placed = 0;
            let mut k = 0;
            while placed < per_row.min(nb) {
                let c = (r + k * 3) % nb;
                let slot = &mut mask[(h * nb + r) * nb + c];
                if *slot == 0 {
                    *slot = 1;
                    placed += 1;
                }
                k += 1;
            }
        }
    }
    Ok(Layout::from_mask(heads, nb, block, mask)?)
}

fn progress(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:32}] {pos}/{len} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Runs `ltd bench`.
pub fn run(args: &BenchArgs, out: &mut impl Write) -> Result<()> {
    match args.device {
        DeviceChoice::Cpu => run_cpu(args.quick, args.smoke, out),
        choice => {
            if run_gpu(args.quick || args.smoke, choice == DeviceChoice::Cuda, out)? {
                Ok(())
            } else {
                run_cpu(args.quick, args.smoke, out)
            }
        }
    }
}

fn run_cpu(quick: bool, smoke: bool, out: &mut impl Write) -> Result<()> {
    let sizes = CpuSizes::new(quick, smoke);
    let threads = rayon_threads();
    writeln!(
        out,
        "ltd bench{} on the CPU ({threads} threads); medians of repeated runs\n",
        if quick { " --quick" } else { "" }
    )?;
    let cases = 6 + sizes.samplers.len() + sizes.per_row.len() + 1;
    let pb = progress(cases as u64);
    let rows = bench_row_ops(&sizes, &pb)?;
    let samplers = bench_samplers(&sizes, &pb)?;
    let attn = bench_attention(&sizes, &pb)?;
    pb.finish_and_clear();

    write_row_table(out, sizes.rows, threads, &rows)?;
    write_sampler_table(out, &samplers)?;
    write_attention_table(out, sizes.attn, sizes.attn_block, &attn)
}

/// One Random-LTD row op timed against its `memcpy` ceiling.
struct RowResult {
    op: &'static str,
    order: &'static str,
    ours_us: f64,
    copy_us: f64,
    bytes: usize,
}

/// One token-sampler case `(L, B, S, r)` and its median time.
struct SamplerResult {
    case: (usize, usize, usize, usize),
    us: f64,
}

/// The fused attention at one density, forward alone and forward + backward.
struct AttnResult {
    density: f64,
    tiles: usize,
    fwd_us: f64,
    both_us: f64,
}

/// The `memcpy` sources and destinations of the row-op ceilings: the kept part (gather,
/// scatter) and the full tensor (route), with a destination for each of the two copies (one
/// thread, all rayon threads) as both closures of a round borrow theirs at once.
struct CopyBuffers {
    src_part: Vec<bf16>,
    dst_part: Vec<bf16>,
    dst_part2: Vec<bf16>,
    src_full: Vec<bf16>,
    dst_full: Vec<bf16>,
    dst_full2: Vec<bf16>,
}

impl CopyBuffers {
    fn new(part_elems: usize, full_elems: usize) -> Self {
        let src_part = vec![bf16::ONE; part_elems];
        let dst_part = vec![bf16::ZERO; part_elems];
        let src_full = vec![bf16::ONE; full_elems];
        let dst_full = vec![bf16::ZERO; full_elems];
        let (dst_part2, dst_full2) = (dst_part.clone(), dst_full.clone());
        CopyBuffers {
            src_part,
            dst_part,
            dst_part2,
            src_full,
            dst_full,
            dst_full2,
        }
    }
}

/// Gather, scatter and route in both hidden orders, each against `memcpy` of the same bytes.
fn bench_row_ops(sizes: &CpuSizes, pb: &ProgressBar) -> Result<Vec<RowResult>> {
    let (b, s, c, r) = sizes.rows;
    let idx = TokenSampler::new(1).sample(0, 1, b, s, r)?.into_vec();
    let iv = IndexView::new(&idx, b, r)?;
    let mut bufs = CopyBuffers::new(b * r * c, b * s * c);
    let mut results = Vec::new();
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        bench_row_ops_in(order, sizes, &iv, &mut bufs, pb, &mut results)?;
    }
    Ok(results)
}

/// The three row ops in one hidden order, appended to `results`.
fn bench_row_ops_in(
    order: HiddenOrder,
    sizes: &CpuSizes,
    iv: &IndexView<'_>,
    bufs: &mut CopyBuffers,
    pb: &ProgressBar,
    results: &mut Vec<RowResult>,
) -> Result<()> {
    let (b, s, c, r) = sizes.rows;
    let elem = std::mem::size_of::<bf16>();
    let part_elems = b * r * c;
    let full_elems = b * s * c;
    let data: Vec<bf16> = (0..full_elems)
        .map(|i| bf16::from_f32((i % 251) as f32))
        .collect();
    let h = HiddenTensor::from_vec(data, order, b, s, c)?;
    let part = HiddenTensor::from_vec(
        (0..part_elems)
            .map(|i| bf16::from_f32((i % 13) as f32))
            .collect(),
        order,
        b,
        r,
        c,
    )?;
    let mut kept = HiddenTensor::<bf16>::zeros(order, b, r, c)?;
    let mut y = HiddenTensor::<bf16>::zeros(order, b, s, c)?;
    let name = match order {
        HiddenOrder::BatchSeq => "[B,S,C]",
        HiddenOrder::SeqBatch => "[S,B,C]",
    };
    let CopyBuffers {
        src_part,
        dst_part,
        dst_part2,
        src_full,
        dst_full,
        dst_full2,
    } = bufs;
    let mut push = |op, t: Vec<f64>, bytes| {
        results.push(RowResult {
            op,
            order: name,
            ours_us: t[0],
            copy_us: t[1].min(t[2]),
            bytes,
        });
        pb.inc(1);
    };
    // Each op is measured in turn with the two memcpy ceilings of the same bytes (one thread,
    // and split over the rayon threads, as the ops run on the rayon pool); the ceiling is the
    // faster copy.
    pb.set_message(format!("gather {order:?}"));
    let t = interleaved_medians_us::<CliError>(
        sizes.budget,
        &mut [
            &mut || Ok(gather(black_box(&h.view()), iv, &mut kept.view_mut())?),
            &mut || copy(src_part, dst_part),
            &mut || par_copy(src_part, dst_part2),
        ],
    )?;
    push("gather", t, 2 * part_elems * elem);
    pb.set_message(format!("scatter {order:?}"));
    let t = interleaved_medians_us::<CliError>(
        sizes.budget,
        &mut [
            &mut || {
                Ok(scatter_in_place(
                    &mut y.view_mut(),
                    black_box(&part.view()),
                    iv,
                )?)
            },
            &mut || copy(src_part, dst_part),
            &mut || par_copy(src_part, dst_part2),
        ],
    )?;
    push("scatter", t, 2 * part_elems * elem);
    pb.set_message(format!("route {order:?}"));
    let t = interleaved_medians_us::<CliError>(
        sizes.budget,
        &mut [
            &mut || {
                Ok(route(
                    black_box(&h.view()),
                    &part.view(),
                    iv,
                    &mut y.view_mut(),
                )?)
            },
            &mut || copy(src_full, dst_full),
            &mut || par_copy(src_full, dst_full2),
        ],
    )?;
    push("route", t, 2 * full_elems * elem);
    Ok(())
}

/// The token sampler at each size of `sizes.samplers`, all layers in one call.
fn bench_samplers(sizes: &CpuSizes, pb: &ProgressBar) -> Result<Vec<SamplerResult>> {
    let mut results = Vec::new();
    for &(l, bb, ss, rr) in &sizes.samplers {
        pb.set_message(format!("sampler {l}x{bb}x{ss}"));
        let sampler = TokenSampler::new(1);
        let mut buf = vec![0i32; l * bb * rr];
        let mut step = 0u64;
        let t = median_us::<CliError>(sizes.budget, || {
            step += 1;
            sampler.sample_into(step, l, bb, ss, rr, &mut buf)?;
            Ok(())
        })?;
        results.push(SamplerResult {
            case: (l, bb, ss, rr),
            us: t,
        });
        pb.inc(1);
    }
    Ok(results)
}

/// The fused attention at each density of `sizes.per_row`, then dense (the last result).
fn bench_attention(sizes: &CpuSizes, pb: &ProgressBar) -> Result<Vec<AttnResult>> {
    let shape = sizes.attn;
    let blk = sizes.attn_block;
    let nb = shape.seq_len.div_ceil(blk);
    let n = shape.qkv_len();
    let (q, k, v, dout) = (values(n, 1), values(n, 2), values(n, 3), values(n, 4));
    let inputs = AttentionInputs {
        q: &q,
        k: &k,
        v: &v,
    };
    let opts = AttentionOptions::<f32>::new();
    let attn_budget = Budget {
        min_iters: sizes.budget.min_iters.min(3),
        ..sizes.budget
    };
    let mut results = Vec::new();
    let mut per_rows = sizes.per_row.clone();
    if !per_rows.contains(&nb) {
        per_rows.push(nb);
    }
    for &per_row in &per_rows {
        pb.set_message(format!("attention {per_row}/{nb} blocks per row"));
        let layout = layout_with(shape.heads, nb, blk, per_row)?;
        results.push(bench_attention_layout(
            &layout,
            shape,
            &inputs,
            &opts,
            &dout,
            attn_budget,
        )?);
        pb.inc(1);
    }
    Ok(results)
}

/// Forward, and forward + backward, of the fused attention on one layout.
fn bench_attention_layout(
    layout: &Layout,
    shape: AttentionShape,
    inputs: &AttentionInputs<'_, f32>,
    opts: &AttentionOptions<'_, f32>,
    dout: &[f32],
    budget: Budget,
) -> Result<AttnResult> {
    let n = shape.qkv_len();
    let mut o = vec![0.0f32; n];
    let mut lse = vec![0.0f32; shape.lse_len()];
    let fwd = median_us::<CliError>(budget, || {
        attention_forward(layout, shape, inputs, opts, &mut o, &mut lse)?;
        Ok(())
    })?;
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let both = median_us::<CliError>(budget, || {
        attention_forward(layout, shape, inputs, opts, &mut o, &mut lse)?;
        attention_backward(
            layout,
            shape,
            inputs,
            opts,
            &o,
            dout,
            &lse,
            AttentionGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
                dbias: None,
            },
        )?;
        Ok(())
    })?;
    Ok(AttnResult {
        density: layout.density(),
        tiles: layout.nnz(),
        fwd_us: fwd,
        both_us: both,
    })
}

/// The row-op table.
fn write_row_table(
    out: &mut impl Write,
    (b, s, c, r): (usize, usize, usize, usize),
    threads: usize,
    rows: &[RowResult],
) -> Result<()> {
    writeln!(
        out,
        "Random-LTD row ops, B {b} x S {s} x C {c} bf16, r {r} (design target: gather and scatter <= 1.25x memcpy)"
    )?;
    writeln!(
        out,
        "  {:<8} {:<8} {:>10} {:>10} {:>12} {:>8}",
        "op", "order", "ours us", "memcpy us", "ours/memcpy", "GB/s"
    )?;
    for row in rows {
        let (op, order, ours, copy) = (row.op, row.order, row.ours_us, row.copy_us);
        writeln!(
            out,
            "  {op:<8} {order:<8} {ours:>10.1} {copy:>10.1} {:>11.2}x {:>8.1}",
            ours / copy,
            row.bytes as f64 / ours / 1e3
        )?;
    }
    writeln!(
        out,
        "  (memcpy of the same bytes, the faster of 1 thread and {threads} threads: the kept part for gather\n   and scatter, the full tensor for route)"
    )?;
    Ok(())
}

/// The token-sampler table.
fn write_sampler_table(out: &mut impl Write, samplers: &[SamplerResult]) -> Result<()> {
    writeln!(
        out,
        "\nToken sampler (keyed ChaCha8, sorted output, all layers in one call)"
    )?;
    writeln!(
        out,
        "  {:<24} {:>10} {:>12}",
        "L x B x S -> r", "time us", "us per row"
    )?;
    for SamplerResult {
        case: (l, bb, ss, rr),
        us: t,
    } in samplers
    {
        writeln!(
            out,
            "  {:<24} {t:>10.1} {:>12.2}",
            format!("{l} x {bb} x {ss} -> {rr}"),
            t / (l * bb) as f64
        )?;
    }
    Ok(())
}

/// The fused-attention table; the last result is the dense layout the ratios compare with.
fn write_attention_table(
    out: &mut impl Write,
    shape: AttentionShape,
    blk: usize,
    attn: &[AttnResult],
) -> Result<()> {
    let nb = shape.seq_len.div_ceil(blk);
    let dense_fwd = attn.last().map_or(1.0, |x| x.fwd_us);
    let dense_both = attn.last().map_or(1.0, |x| x.both_us);
    writeln!(
        out,
        "\nFused block-sparse attention, f32, B {} H {} L {} D {} block {blk} ({nb} x {nb} blocks)",
        shape.batch, shape.heads, shape.seq_len, shape.head_dim
    )?;
    writeln!(
        out,
        "  {:>8} {:>7} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "density", "tiles", "fwd ms", "vs dense", "fwd+bwd ms", "vs dense", "GFLOP/s"
    )?;
    for row in attn {
        let (tiles, fwd, both) = (row.tiles, row.fwd_us, row.both_us);
        let flops = 4.0 * (shape.batch * tiles * blk * blk * shape.head_dim) as f64;
        writeln!(
            out,
            "  {:>7.1}% {tiles:>7} {:>10.3} {:>9.2}x {:>12.3} {:>9.2}x {:>10.2}",
            100.0 * row.density,
            fwd / 1e3,
            fwd / dense_fwd,
            both / 1e3,
            both / dense_both,
            flops / fwd / 1e3
        )?;
    }
    writeln!(
        out,
        "  (vs dense: time relative to the same op on a dense layout; GFLOP/s counts active tiles only,\n   4 * B * tiles * block^2 * D per forward)"
    )?;
    Ok(())
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// `memcpy` on one thread.
fn copy<T: Copy>(src: &[T], dst: &mut [T]) -> Result<()> {
    dst.copy_from_slice(black_box(src));
    Ok(())
}

/// `memcpy` split over the rayon threads.
fn par_copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) -> Result<()> {
    use rayon::prelude::*;
    let chunk = src.len().div_ceil(rayon_threads()).max(1 << 14);
    dst.par_chunks_mut(chunk)
        .zip(black_box(src).par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
    Ok(())
}

#[cfg(feature = "cuda")]
fn run_gpu(quick: bool, required: bool, out: &mut impl Write) -> Result<bool> {
    use crate::gpu;
    let dev = match ltd_core::CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) if required => return Err(CliError::usage(format!("--device cuda: {e}"))),
        Err(_) => return Ok(false),
    };
    writeln!(
        out,
        "ltd bench{} on {dev}; device-event timings, medians\n",
        if quick { " --quick" } else { "" }
    )?;
    let cases = gpu::gpu_cases(quick);
    let samplers = gpu::sampler_cases(quick);
    let pb = progress((cases.len() + samplers.len()) as u64);
    let mut rows = Vec::new();
    for (case, order) in cases {
        pb.set_message("row ops");
        rows.extend(gpu::bench_case(&dev, case, order, quick)?);
        pb.inc(1);
    }
    let mut sampler_rows = Vec::new();
    for case in samplers {
        pb.set_message("sampler");
        sampler_rows.push((case, gpu::bench_sampler(&dev, case, quick)?));
        pb.inc(1);
    }
    pb.finish_and_clear();
    writeln!(
        out,
        "Random-LTD row ops vs a device-to-device copy of the same bytes (targets: gather/scatter >= 0.92 of copy bandwidth, route <= 1.1x the full copy)"
    )?;
    writeln!(
        out,
        "  {:<28} {:<8} {:<8} {:>10} {:>10} {:>8} {:>12}",
        "shape", "order", "op", "ours us", "copy us", "TB/s", "vs copy"
    )?;
    for row in &rows {
        let vs = if row.op == "route" {
            format!("{:.3}x time", row.ours_us / row.copy_us)
        } else {
            format!("{:.3} bw", row.copy_us / row.ours_us)
        };
        writeln!(
            out,
            "  {:<28} {:<8} {:<8} {:>10.1} {:>10.1} {:>8.3} {:>12}",
            row.shape,
            row.order,
            row.op,
            row.ours_us,
            row.copy_us,
            row.bytes / row.ours_us / 1e6,
            vs
        )?;
    }
    writeln!(
        out,
        "\nToken sampler on the GPU (one launch, buffer reused)"
    )?;
    writeln!(out, "  {:<24} {:>10}", "L x B x S -> r", "time us")?;
    for ((l, b, s, r), t) in sampler_rows {
        writeln!(out, "  {:<24} {t:>10.1}", format!("{l} x {b} x {s} -> {r}"))?;
    }
    writeln!(
        out,
        "\n(CPU tables: `ltd bench --device cpu`; the GPU fused attention against FlexAttention and dense SDPA:\n `cargo bench -p ltd-benches --features cuda --bench gpu_sparse_attn`)"
    )?;
    Ok(true)
}

#[cfg(not(feature = "cuda"))]
fn run_gpu(_quick: bool, required: bool, _out: &mut impl Write) -> Result<bool> {
    if required {
        return Err(CliError::usage(
            "--device cuda: this ltd was built without CUDA support; rebuild with --features cuda",
        ));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_layouts_have_the_asked_density() {
        for per_row in [1, 3, 8] {
            let l = layout_with(2, 8, 16, per_row).unwrap();
            assert_eq!(l.nnz(), 2 * 8 * per_row);
            for r in 0..8 {
                assert!(l.is_active(1, r, r));
            }
        }
    }
}
