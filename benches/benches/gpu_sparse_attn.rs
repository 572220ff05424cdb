//! GPU fused block-sparse attention forward (feature `cuda`): time and effective TFLOP/s
//! (`4 · B · active_blocks · block² · D / t`, active blocks summed over heads) for the layouts
//! of design.md §5. With `LTD_BENCH_DIR=dir` it also writes each layout (`layout_<name>.u8`, the
//! `[H, nb, nb]` 0/1 bytes) and `ours.json` there, which `benches/peers/sparse_attn_peer.py`
//! reads to time FlexAttention on the same layouts and dense SDPA, and print our/peer ratios.
//! `LTD_BENCH_FILTER` keeps only the cells whose `{layout}_s{S}_d{D}` contains it.
//! `LTD_BENCH_BIAS=1` gives every call an additive bias `[B, H, L, L]` (no dbias), to time the
//! bias kernels, `LTD_BENCH_BIAS=2` also asks for dbias (`ours.json` then describes calls the
//! peer script does not make with a bias).
//! Besides `Auto` (forward and forward + backward) each cell times the `mma.sync` kernels and
//! forward + backward with each Hopper choice forced (`Wgmma`: single-chunk backward;
//! `WgmmaPairs`: pair backward), and says whether `Auto`'s backward ran the pair kernel, so
//! kernel variants compare within one run.

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("gpu_sparse_attn: built without `--features cuda`; nothing to measure");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = gpu::run() {
        println!("gpu_sparse_attn: {e}");
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use half::bf16;
    use ltd_core::CudaDevice;
    use ltd_sparse_attn::cuda::{
        CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions,
        attention_backward_cuda, attention_forward_cuda,
    };
    use ltd_sparse_attn::{AttentionShape, BSLongformerConfig, BigBirdConfig, FixedConfig, Layout};

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    fn layouts(seq: usize) -> Res<Vec<(String, Layout)>> {
        let heads = 16;
        let mut out = Vec::new();
        let mut f16b = FixedConfig::new(heads);
        f16b.block = 16;
        f16b.num_local_blocks = 16;
        out.push(("fixed_b16".to_string(), f16b.make_layout(seq)?));
        let mut f64b = FixedConfig::new(heads);
        f64b.block = 64;
        f64b.num_local_blocks = 4;
        out.push(("fixed_b64".to_string(), f64b.make_layout(seq)?));
        for block in [64, 128] {
            let mut bb = BigBirdConfig::new(heads);
            bb.block = block;
            bb.num_random_blocks = 1;
            bb.seed = 1;
            out.push((format!("bigbird_b{block}"), bb.make_layout(seq)?));
        }
        let mut bsl = BSLongformerConfig::new(heads);
        bsl.block = 64;
        out.push(("bslongformer_b64".to_string(), bsl.make_layout(seq)?));
        Ok(out)
    }

    pub fn run() -> Res<()> {
        let dev = CudaDevice::new(0)?;
        println!("gpu_sparse_attn on {dev}");
        let dir = std::env::var("LTD_BENCH_DIR").ok();
        // LTD_BENCH_FILTER=bigbird_b64_s16384_d64 (a substring of `{layout}_s{S}_d{D}`) runs
        // only the matching cells, e.g. to profile one with ncu.
        let filter = std::env::var("LTD_BENCH_FILTER").ok();
        let mut json = format!("{{\"device\": {:?}, \"runs\": [\n", dev.to_string());
        let mut first = true;
        println!(
            "\n{:<18} {:>6} {:>4} {:>4} {:>8} {:>10} {:>10} {:>12} {:>12} {:>16} {:>14} {:>10} {:>12} {:>14} {:>14} {:>9}",
            "layout",
            "S",
            "B",
            "D",
            "density",
            "fwd us",
            "TFLOP/s",
            "fwd+bwd us",
            "mma.sync us",
            "mma.sync f+b us",
            "kernel tiles",
            "host fwd us",
            "host f+b us",
            "Wgmma f+b us",
            "pairs f+b us",
            "bwd pair"
        );
        for seq in [4096usize, 16384] {
            let batch = 16384 / seq;
            for (name, layout) in layouts(seq)? {
                if let Some(dir) = &dir {
                    let path = format!("{dir}/layout_{name}_s{seq}.u8");
                    ltd_core::write_file_atomic(std::path::Path::new(&path), layout.mask())?;
                }
                let gl = CudaAttentionLayout::new(&dev, &layout)?;
                for d in [64usize, 128] {
                    if let Some(f) = &filter
                        && !format!("{name}_s{seq}_d{d}").contains(f.as_str())
                    {
                        continue;
                    }
                    let shape = AttentionShape {
                        batch,
                        heads: 16,
                        seq_len: seq,
                        head_dim: d,
                    };
                    let n = shape.qkv_len();
                    let host: Vec<bf16> = (0..n)
                        .map(|i| bf16::from_f32(((i * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0))
                        .collect();
                    let q = dev.upload(&host)?;
                    let mut out = dev.upload(&vec![bf16::ZERO; n])?;
                    let mut lse = dev.upload(&vec![0.0f32; shape.lse_len()])?;
                    // LTD_BENCH_BIAS=1: every call with an additive bias [B, H, L, L]; =2 also
                    // with its gradient.
                    let bias_mode = std::env::var("LTD_BENCH_BIAS").unwrap_or_default();
                    let bias = if bias_mode == "1" || bias_mode == "2" {
                        Some(dev.upload(&vec![bf16::from_f32(0.25); n / d * seq])?)
                    } else {
                        None
                    };
                    let mut dbias = if bias_mode == "2" {
                        Some(dev.upload(&vec![bf16::ZERO; n / d * seq])?)
                    } else {
                        None
                    };
                    let base = CudaAttentionOptions {
                        bias: bias.as_ref().map(Into::into),
                        ..Default::default()
                    };
                    let auto = base.clone();
                    let sm80 = CudaAttentionOptions {
                        kernel: CudaAttentionKernel::MmaSync,
                        ..base.clone()
                    };
                    let (mut gq, mut gk, mut gv) =
                        (dev.upload(&host)?, dev.upload(&host)?, dev.upload(&host)?);
                    // One forward, or forward + backward, enqueued (not waited for).
                    let mut call =
                        |with_backward: bool, opts: &CudaAttentionOptions<'_, bf16>| -> Res<()> {
                            attention_forward_cuda(
                                &dev,
                                &gl,
                                shape,
                                (&q, &q, &q),
                                opts,
                                &mut out,
                                &mut lse,
                            )?;
                            if with_backward {
                                let grads = CudaAttentionGrads {
                                    dbias: dbias.as_mut().map(Into::into),
                                    ..CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv)
                                };
                                attention_backward_cuda(
                                    &dev,
                                    &gl,
                                    shape,
                                    (&q, &q, &q),
                                    (&out, &lse),
                                    &q,
                                    opts,
                                    grads,
                                )?;
                            }
                            Ok(())
                        };
                    let mut time =
                        |with_backward: bool, opts: &CudaAttentionOptions<'_, bf16>| -> Res<f64> {
                            dev.median_time_us(3, 5, 7, || call(with_backward, opts))
                        };
                    let us = time(false, &auto)?;
                    let fb_us = time(true, &auto)?;
                    let sm80_us = time(false, &sm80)?;
                    let sm80_fb_us = time(true, &sm80)?;
                    let cc = dev.compute_capability();
                    // On Hopper, forward + backward with each Hopper choice forced (the
                    // backward of `Wgmma` runs one warpgroup per key chunk, that of
                    // `WgmmaPairs` two per pair of chunks; `Auto` picks per layout).
                    let mut hopper_fb = |kernel: CudaAttentionKernel| -> Res<f64> {
                        if kernel.runs_on(cc) {
                            time(
                                true,
                                &CudaAttentionOptions {
                                    kernel,
                                    ..base.clone()
                                },
                            )
                        } else {
                            Ok(f64::NAN)
                        }
                    };
                    let single_fb_us = hopper_fb(CudaAttentionKernel::Wgmma)?;
                    let pairs_fb_us = hopper_fb(CudaAttentionKernel::WgmmaPairs)?;
                    // Host time to enqueue one forward / forward+backward (the GPU is not waited
                    // for; the queue absorbs the calls): a call is launch-bound when this
                    // approaches its GPU time.
                    // The median of 11 calls, each timed alone: one host stall (an allocator
                    // growing its pool, a page fault) would dominate a mean of so few.
                    let mut enqueue = |with_backward: bool| -> Res<f64> {
                        dev.synchronize()?;
                        let mut times = Vec::with_capacity(11);
                        for _ in 0..11 {
                            let start = std::time::Instant::now();
                            call(with_backward, &auto)?;
                            times.push(start.elapsed().as_secs_f64() * 1e6);
                        }
                        dev.synchronize()?;
                        times.sort_by(f64::total_cmp);
                        Ok(times[5])
                    };
                    let (host_us, host_fb_us) = (enqueue(false)?, enqueue(true)?);
                    let bwd_pairs = auto.kernel.backward_pairs(cc, &gl, d, false);
                    let block = layout.block() as f64;
                    let flops = 4.0 * batch as f64 * layout.nnz() as f64 * block * block * d as f64;
                    let tflops = flops / us / 1e6;
                    println!(
                        "{:<18} {:>6} {:>4} {:>4} {:>8.3} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>16.1} {:>14} {:>10.1} {:>12.1} {:>14.1} {:>14.1} {:>9}",
                        name,
                        seq,
                        batch,
                        d,
                        layout.density(),
                        us,
                        tflops,
                        fb_us,
                        sm80_us,
                        sm80_fb_us,
                        gl.active_kernel_tiles(),
                        host_us,
                        host_fb_us,
                        single_fb_us,
                        pairs_fb_us,
                        bwd_pairs
                    );
                    json.push_str(&format!(
                        "{}  {{\"layout\": {name:?}, \"seq\": {seq}, \"batch\": {batch}, \"heads\": 16, \"head_dim\": {d}, \"block\": {}, \"nb\": {}, \"nnz\": {}, \"density\": {:.5}, \"fwd_us\": {us:.3}, \"fwd_tflops\": {tflops:.3}, \"fwdbwd_us\": {fb_us:.3}, \"fwd_mma_sync_us\": {sm80_us:.3}, \"fwdbwd_mma_sync_us\": {sm80_fb_us:.3}, \"fwd_kernel\": \"{:?}\", \"kernel_tiles\": {}, \"host_fwd_us\": {host_us:.3}, \"host_fwdbwd_us\": {host_fb_us:.3}, \"fwdbwd_wgmma_us\": {single_fb_us:.3}, \"fwdbwd_wgmma_pairs_us\": {pairs_fb_us:.3}, \"bwd_pairs\": {bwd_pairs}}}",
                        if first { "" } else { ",\n" },
                        layout.block(),
                        layout.num_blocks(),
                        layout.nnz(),
                        layout.density(),
                        auto.kernel.resolve(cc),
                        gl.active_kernel_tiles()
                    ));
                    first = false;
                }
            }
        }
        json.push_str("\n]}\n");
        if let Some(dir) = &dir {
            let path = format!("{dir}/ours.json");
            ltd_core::write_file_atomic(std::path::Path::new(&path), json.as_bytes())?;
            println!("\nwrote {dir}/ours.json and the layouts");
        }
        Ok(())
    }
}
