//! GPU fused block-sparse attention forward (feature `cuda`): time and effective TFLOP/s
//! (`4 · B · active_blocks · block² · D / t`, active blocks summed over heads) for the layouts
//! of the performance targets in `docs/design.md`. With `LTD_BENCH_DIR=dir` it also writes each
//! layout (`layout_<name>.u8`, the `[H, nb, nb]` 0/1 bytes) and `ours.json` there, which
//! `benches/peers/sparse_attn_peer.py` reads to time its peers (dense SDPA per backend,
//! FlexAttention, FlashAttention-4) on the same layouts, and `benches/peers/readme_table.py` to
//! print our/peer ratios (`benches/peers/run-all.sh` runs them all in one device call).
//! `LTD_BENCH_FILTER` keeps only the cells whose `{layout}_s{S}_d{D}` contains it.
//! `LTD_BENCH_BIAS=1` gives every call an additive bias `[B, H, L, L]` (no dbias), to time the
//! bias kernels, `LTD_BENCH_BIAS=2` also asks for dbias (`ours.json` then describes calls the
//! peer script does not make with a bias). `LTD_BENCH_PROFILE=1` makes one untimed `Auto`
//! forward + backward per cell instead, for ncu (`benches/profile/profile-cells.sh`).
//! Besides `Auto` (forward and forward + backward) each cell times the `mma.sync` kernels and
//! forward + backward with each Hopper choice forced (`Wgmma`: single-tile forward, single-chunk
//! backward; `WgmmaPairs`: pair forward, pair backward; `WgmmaWarpSpecialized`: `Auto`'s
//! kernels with every backward but the gathered-set one warp-specialised), the plain Hopper
//! forward (`Wgmma`, never the gathered one) and the pair forward (`WgmmaPairs`) with the
//! layout's row pair sharing, and says whether `Auto`'s backward ran the pair kernel, the
//! gathered-set one or the warp-specialised one and its forward the gathered one (`ours.json`
//! also whether it ran the pair forward), so kernel variants compare within one run (`Wgmma`
//! never runs a gathered, pair or warp-specialised kernel).

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
    use cudarc::driver::CudaSlice;
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
        // LTD_BENCH_BIAS=1: every call with an additive bias [B, H, L, L]; =2 also with its
        // gradient.
        let bias_mode = std::env::var("LTD_BENCH_BIAS").unwrap_or_default();
        // LTD_BENCH_PROFILE=1: one `Auto` forward + backward per cell, untimed, for a profiler
        // (ncu) to capture each kernel of one call once.
        let profile = std::env::var("LTD_BENCH_PROFILE").is_ok_and(|v| v == "1");
        let mut json = format!("{{\"device\": {:?}, \"runs\": [\n", dev.to_string());
        let mut first = true;
        print_header();
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
                    let cell = Cell {
                        name: &name,
                        layout: &layout,
                        gl: &gl,
                        shape: AttentionShape {
                            batch,
                            heads: 16,
                            seq_len: seq,
                            head_dim: d,
                        },
                    };
                    if profile {
                        profile_cell(&dev, &cell, &bias_mode)?;
                        println!("profiled {name}_s{seq}_d{d}");
                        continue;
                    }
                    let times = time_cell(&dev, &cell, &bias_mode)?;
                    print_row(&cell, &times);
                    json.push_str(if first { "" } else { ",\n" });
                    json.push_str(&json_row(&cell, &times));
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

    /// One cell of the table: a layout at one shape.
    struct Cell<'a> {
        name: &'a str,
        layout: &'a Layout,
        gl: &'a CudaAttentionLayout,
        shape: AttentionShape,
    }

    /// What one cell measured, in microseconds (NaN where the forced kernel does not run on the
    /// device).
    struct CellTimes {
        /// `Auto` forward.
        fwd: f64,
        /// `Auto` forward + backward.
        fwd_bwd: f64,
        /// `MmaSync` forward.
        mma_sync_fwd: f64,
        /// `MmaSync` forward + backward.
        mma_sync_fwd_bwd: f64,
        /// `Wgmma` (single-chunk backward) forward + backward.
        wgmma_fwd_bwd: f64,
        /// `WgmmaPairs` (pair forward and pair backward) forward + backward.
        pairs_fwd_bwd: f64,
        /// `Wgmma` forward: the plain Hopper forward (no gathered chunks).
        wgmma_fwd: f64,
        /// `WgmmaPairs` forward: the pair forward (two query tiles per CTA).
        pairs_fwd: f64,
        /// `WgmmaWarpSpecialized` forward + backward: `Auto`'s kernels with the backward
        /// warp-specialised (single-chunk or pair) where it is not the gathered-set one.
        ws_fwd_bwd: f64,
        /// Host time to enqueue an `Auto` forward.
        host_fwd: f64,
        /// Host time to enqueue an `Auto` forward + backward.
        host_fwd_bwd: f64,
        /// Whether `Auto`'s backward runs the pair kernel.
        bwd_pairs: bool,
        /// Whether `Auto`'s forward runs the gathered kernel.
        fwd_gathered: bool,
        /// Whether `Auto`'s forward runs the pair forward.
        fwd_pairs: bool,
        /// Whether `Auto`'s backward runs the gathered-set kernel.
        bwd_gathered: bool,
        /// Whether `Auto`'s backward runs the warp-specialised kernel.
        bwd_ws: bool,
        /// The kernel family `Auto` resolves to on the device.
        fwd_kernel: CudaAttentionKernel,
    }

    /// The device buffers of one cell's calls (one tensor serves as Q, K, V and dO).
    struct CellBuffers {
        q: CudaSlice<bf16>,
        out: CudaSlice<bf16>,
        lse: CudaSlice<f32>,
        gq: CudaSlice<bf16>,
        gk: CudaSlice<bf16>,
        gv: CudaSlice<bf16>,
        dbias: Option<CudaSlice<bf16>>,
    }

    impl CellBuffers {
        /// One forward, or forward + backward, enqueued (not waited for).
        fn call(
            &mut self,
            dev: &CudaDevice,
            cell: &Cell<'_>,
            with_backward: bool,
            opts: &CudaAttentionOptions<'_, bf16>,
        ) -> Res<()> {
            let q = &self.q;
            attention_forward_cuda(
                dev,
                cell.gl,
                cell.shape,
                (q, q, q),
                opts,
                &mut self.out,
                &mut self.lse,
            )?;
            if with_backward {
                let grads = CudaAttentionGrads {
                    dbias: self.dbias.as_mut().map(Into::into),
                    ..CudaAttentionGrads::new(&mut self.gq, &mut self.gk, &mut self.gv)
                };
                attention_backward_cuda(
                    dev,
                    cell.gl,
                    cell.shape,
                    (q, q, q),
                    (&self.out, &self.lse),
                    q,
                    opts,
                    grads,
                )?;
            }
            Ok(())
        }
    }

    /// The buffers of one cell and its bias (`LTD_BENCH_BIAS` = `bias_mode`: "1" a bias, "2" a
    /// bias and its gradient).
    fn cell_buffers(
        dev: &CudaDevice,
        cell: &Cell<'_>,
        bias_mode: &str,
    ) -> Res<(CellBuffers, Option<CudaSlice<bf16>>)> {
        let shape = cell.shape;
        let (seq, d) = (shape.seq_len, shape.head_dim);
        let n = shape.qkv_len();
        let host: Vec<bf16> = (0..n)
            .map(|i| bf16::from_f32(((i * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0))
            .collect();
        let q = dev.upload(&host)?;
        let out = dev.upload(&vec![bf16::ZERO; n])?;
        let lse = dev.upload(&vec![0.0f32; shape.lse_len()])?;
        let bias = if bias_mode == "1" || bias_mode == "2" {
            Some(dev.upload(&vec![bf16::from_f32(0.25); n / d * seq])?)
        } else {
            None
        };
        let dbias = if bias_mode == "2" {
            Some(dev.upload(&vec![bf16::ZERO; n / d * seq])?)
        } else {
            None
        };
        let (gq, gk, gv) = (dev.upload(&host)?, dev.upload(&host)?, dev.upload(&host)?);
        let bufs = CellBuffers {
            q,
            out,
            lse,
            gq,
            gk,
            gv,
            dbias,
        };
        Ok((bufs, bias))
    }

    /// One `Auto` forward + backward of a cell, waited for (`LTD_BENCH_PROFILE=1`).
    fn profile_cell(dev: &CudaDevice, cell: &Cell<'_>, bias_mode: &str) -> Res<()> {
        let (mut bufs, bias) = cell_buffers(dev, cell, bias_mode)?;
        let auto = CudaAttentionOptions {
            bias: bias.as_ref().map(Into::into),
            ..Default::default()
        };
        bufs.call(dev, cell, true, &auto)?;
        dev.synchronize()?;
        Ok(())
    }

    /// Times every kernel choice of one cell; `bias_mode` is `LTD_BENCH_BIAS`.
    fn time_cell(dev: &CudaDevice, cell: &Cell<'_>, bias_mode: &str) -> Res<CellTimes> {
        let d = cell.shape.head_dim;
        let (mut bufs, bias) = cell_buffers(dev, cell, bias_mode)?;
        let base = CudaAttentionOptions {
            bias: bias.as_ref().map(Into::into),
            ..Default::default()
        };
        let auto = base.clone();
        let sm80 = CudaAttentionOptions {
            kernel: CudaAttentionKernel::MmaSync,
            ..base.clone()
        };
        let mut time = |with_backward: bool, opts: &CudaAttentionOptions<'_, bf16>| -> Res<f64> {
            dev.median_time_us(3, 5, 7, || bufs.call(dev, cell, with_backward, opts))
        };
        let fwd = time(false, &auto)?;
        let fwd_bwd = time(true, &auto)?;
        let mma_sync_fwd = time(false, &sm80)?;
        let mma_sync_fwd_bwd = time(true, &sm80)?;
        let cc = dev.compute_capability();
        // On Hopper, forward + backward with each Hopper choice forced (`Wgmma` runs one
        // warpgroup per query tile or key chunk, `WgmmaPairs` two per pair of them; `Auto` picks
        // per layout).
        let mut hopper = |with_backward: bool, kernel: CudaAttentionKernel| -> Res<f64> {
            if kernel.runs_on(cc) {
                time(
                    with_backward,
                    &CudaAttentionOptions {
                        kernel,
                        ..base.clone()
                    },
                )
            } else {
                Ok(f64::NAN)
            }
        };
        let wgmma_fwd_bwd = hopper(true, CudaAttentionKernel::Wgmma)?;
        let pairs_fwd_bwd = hopper(true, CudaAttentionKernel::WgmmaPairs)?;
        let wgmma_fwd = hopper(false, CudaAttentionKernel::Wgmma)?;
        let pairs_fwd = hopper(false, CudaAttentionKernel::WgmmaPairs)?;
        let ws_fwd_bwd = hopper(true, CudaAttentionKernel::WgmmaWarpSpecialized)?;
        let host_fwd = enqueue_median_us(dev, || bufs.call(dev, cell, false, &auto))?;
        let host_fwd_bwd = enqueue_median_us(dev, || bufs.call(dev, cell, true, &auto))?;
        Ok(CellTimes {
            fwd,
            fwd_bwd,
            mma_sync_fwd,
            mma_sync_fwd_bwd,
            wgmma_fwd_bwd,
            pairs_fwd_bwd,
            wgmma_fwd,
            pairs_fwd,
            ws_fwd_bwd,
            host_fwd,
            host_fwd_bwd,
            bwd_pairs: auto.kernel.backward_pairs(cc, cell.gl, d, false),
            fwd_gathered: auto
                .kernel
                .forward_gathered(cc, cell.gl, auto.bias.is_some()),
            fwd_pairs: auto
                .kernel
                .forward_pairs(cc, cell.gl, d, auto.bias.is_some()),
            bwd_gathered: auto
                .kernel
                .backward_gathered(cc, cell.gl, auto.bias.is_some()),
            bwd_ws: auto
                .kernel
                .backward_warp_specialized(cc, cell.gl, d, auto.bias.is_some()),
            fwd_kernel: auto.kernel.resolve(cc),
        })
    }

    /// Host time to enqueue one call (the GPU is not waited for; the queue absorbs the calls): a
    /// call is launch-bound when this approaches its GPU time. The median of 11 calls, each timed
    /// alone: one host stall (an allocator growing its pool, a page fault) would dominate a mean
    /// of so few.
    fn enqueue_median_us(dev: &CudaDevice, mut call: impl FnMut() -> Res<()>) -> Res<f64> {
        dev.synchronize()?;
        let mut times = Vec::with_capacity(11);
        for _ in 0..11 {
            let start = std::time::Instant::now();
            call()?;
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
        dev.synchronize()?;
        times.sort_by(f64::total_cmp);
        Ok(times[5])
    }

    /// Effective TFLOP/s of a forward: `4 · B · active_blocks · block² · D / t`.
    fn fwd_tflops(cell: &Cell<'_>, fwd_us: f64) -> f64 {
        let block = cell.layout.block() as f64;
        let flops = 4.0
            * cell.shape.batch as f64
            * cell.layout.nnz() as f64
            * block
            * block
            * cell.shape.head_dim as f64;
        flops / fwd_us / 1e6
    }

    /// The column headers of the table.
    fn print_header() {
        println!(
            "\n{:<18} {:>6} {:>4} {:>4} {:>8} {:>10} {:>10} {:>12} {:>12} {:>16} {:>14} {:>10} {:>12} {:>14} {:>14} {:>9} {:>12} {:>10} {:>10} {:>12} {:>10} {:>12} {:>8}",
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
            "bwd pair",
            "Wgmma fwd us",
            "fwd gather",
            "bwd gather",
            "pairs fwd us",
            "pair share",
            "WS f+b us",
            "bwd ws"
        );
    }

    /// One line of the table.
    fn print_row(cell: &Cell<'_>, t: &CellTimes) {
        println!(
            "{:<18} {:>6} {:>4} {:>4} {:>8.3} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>16.1} {:>14} {:>10.1} {:>12.1} {:>14.1} {:>14.1} {:>9} {:>12.1} {:>10} {:>10} {:>12.1} {:>10.3} {:>12.1} {:>8}",
            cell.name,
            cell.shape.seq_len,
            cell.shape.batch,
            cell.shape.head_dim,
            cell.layout.density(),
            t.fwd,
            fwd_tflops(cell, t.fwd),
            t.fwd_bwd,
            t.mma_sync_fwd,
            t.mma_sync_fwd_bwd,
            cell.gl.active_kernel_tiles(),
            t.host_fwd,
            t.host_fwd_bwd,
            t.wgmma_fwd_bwd,
            t.pairs_fwd_bwd,
            t.bwd_pairs,
            t.wgmma_fwd,
            t.fwd_gathered,
            t.bwd_gathered,
            t.pairs_fwd,
            cell.gl.row_pair_sharing(),
            t.ws_fwd_bwd,
            t.bwd_ws
        );
    }

    /// One entry of `ours.json` (the fields `benches/peers/sparse_attn_peer.py` reads).
    fn json_row(cell: &Cell<'_>, t: &CellTimes) -> String {
        let (name, layout, shape) = (cell.name, cell.layout, cell.shape);
        let (seq, batch, d) = (shape.seq_len, shape.batch, shape.head_dim);
        let tflops = fwd_tflops(cell, t.fwd);
        format!(
            "  {{\"layout\": {name:?}, \"seq\": {seq}, \"batch\": {batch}, \"heads\": 16, \"head_dim\": {d}, \"block\": {}, \"nb\": {}, \"nnz\": {}, \"density\": {:.5}, \"fwd_us\": {:.3}, \"fwd_tflops\": {tflops:.3}, \"fwdbwd_us\": {:.3}, \"fwd_mma_sync_us\": {:.3}, \"fwdbwd_mma_sync_us\": {:.3}, \"fwd_kernel\": \"{:?}\", \"kernel_tiles\": {}, \"host_fwd_us\": {:.3}, \"host_fwdbwd_us\": {:.3}, \"fwdbwd_wgmma_us\": {:.3}, \"fwdbwd_wgmma_pairs_us\": {:.3}, \"bwd_pairs\": {}, \"fwd_wgmma_us\": {:.3}, \"fwd_gathered\": {}, \"bwd_gathered\": {}, \"fwd_wgmma_pairs_us\": {:.3}, \"row_pair_sharing\": {:.4}, \"fwd_pairs\": {}, \"fwdbwd_wgmma_ws_us\": {:.3}, \"bwd_ws\": {}}}",
            layout.block(),
            layout.num_blocks(),
            layout.nnz(),
            layout.density(),
            t.fwd,
            t.fwd_bwd,
            t.mma_sync_fwd,
            t.mma_sync_fwd_bwd,
            t.fwd_kernel,
            cell.gl.active_kernel_tiles(),
            t.host_fwd,
            t.host_fwd_bwd,
            t.wgmma_fwd_bwd,
            t.pairs_fwd_bwd,
            t.bwd_pairs,
            t.wgmma_fwd,
            t.fwd_gathered,
            t.bwd_gathered,
            t.pairs_fwd,
            cell.gl.row_pair_sharing(),
            t.fwd_pairs,
            t.ws_fwd_bwd,
            t.bwd_ws
        )
    }
}
