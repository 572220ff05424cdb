//! GPU Random-LTD bandwidth table (feature `cuda`): gather, scatter and route against a
//! device-to-device copy of the same bytes measured in the same run, and sampler times.
//!
//! Run on a GPU machine: `cargo bench -p ltd-benches --features cuda --bench gpu_random_ltd`
//! (or the bundled binary with `--bench`). Set `LTD_BENCH_JSON=path` to also write the numbers
//! as JSON for `benches/peers/random_ltd_peer.py`, which prints our/PyTorch ratios.

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("gpu_random_ltd: built without `--features cuda`; nothing to measure");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = gpu::run() {
        println!("gpu_random_ltd: {e}");
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use cudarc::driver::{CudaSlice, DeviceRepr};
    use half::{bf16, f16};
    use ltd_core::cuda::{
        CudaHidden, CudaHiddenMut, gather_cuda, route_cuda, sample_tokens_cuda, scatter_cuda,
    };
    use ltd_core::{CoreError, CudaDevice, Element, HiddenLayout, HiddenOrder};

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    /// Median of 7 batches of 10 calls after 3 warm-up calls, in microseconds.
    fn time_us(dev: &CudaDevice, f: impl FnMut() -> Result<(), CoreError>) -> Res<f64> {
        Ok(dev.median_time_us(3, 10, 7, f)?)
    }

    fn random_tensor<T: Element + DeviceRepr>(
        dev: &CudaDevice,
        n: usize,
        salt: u64,
    ) -> Res<CudaSlice<T>> {
        // Not zeros (zeros can hide bugs and run faster): a cheap hash of the index.
        let host: Vec<T> = (0..n as u64)
            .map(|i| {
                let x = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                T::from_f32_lossy(x as f32 / 16_777_216.0 - 0.5)
            })
            .collect();
        Ok(dev.upload(&host)?)
    }

    struct Row {
        shape: String,
        order: &'static str,
        op: &'static str,
        ours_us: f64,
        copy_us: f64,
        bytes: f64,
    }

    fn bench_shape<T: Element + DeviceRepr>(
        dev: &CudaDevice,
        (b, s, c, r): (usize, usize, usize, usize),
        order: HiddenOrder,
        rows: &mut Vec<Row>,
    ) -> Res<()> {
        let e = T::DTYPE.size_in_bytes();
        let h = random_tensor::<T>(dev, b * s * c, 1)?;
        let part_src = random_tensor::<T>(dev, b * r * c, 2)?;
        let mut part = random_tensor::<T>(dev, b * r * c, 3)?;
        let mut y = random_tensor::<T>(dev, b * s * c, 4)?;
        let full = HiddenLayout::contiguous(order, b, s, c)?;
        let kept = HiddenLayout::contiguous(order, b, r, c)?;
        let idx = sample_tokens_cuda(dev, 1, 1, 1, b, s, r)?;
        let stream = dev.stream().clone();
        // Ceilings: device-to-device copies of the same bytes, measured now.
        let copy_part = time_us(dev, || {
            stream
                .memcpy_dtod(&h.slice(..b * r * c), &mut part.slice_mut(..))
                .map_err(|source| CoreError::Cuda {
                    during: "memcpy",
                    source,
                })
        })?;
        let copy_full = time_us(dev, || {
            stream
                .memcpy_dtod(&h, &mut y)
                .map_err(|source| CoreError::Cuda {
                    during: "memcpy",
                    source,
                })
        })?;
        let gather = time_us(dev, || {
            gather_cuda(
                dev,
                CudaHidden::new(&h, full)?,
                &idx,
                0,
                CudaHiddenMut::new(&mut part, kept)?,
            )
        })?;
        let scatter = time_us(dev, || {
            scatter_cuda(
                dev,
                CudaHidden::new(&part_src, kept)?,
                &idx,
                0,
                CudaHiddenMut::new(&mut y, full)?,
            )
        })?;
        let route = time_us(dev, || {
            route_cuda(
                dev,
                CudaHidden::new(&h, full)?,
                CudaHidden::new(&part_src, kept)?,
                &idx,
                0,
                CudaHiddenMut::new(&mut y, full)?,
            )
        })?;
        let shape = format!("B{b} S{s} C{c} r{r} {}", T::DTYPE);
        let order_name = match order {
            HiddenOrder::BatchSeq => "[B,S,C]",
            HiddenOrder::SeqBatch => "[S,B,C]",
        };
        let part_bytes = (2 * b * r * c * e) as f64;
        let full_bytes = (2 * b * s * c * e) as f64;
        for (op, ours, copy, bytes) in [
            ("gather", gather, copy_part, part_bytes),
            ("scatter", scatter, copy_part, part_bytes),
            ("route", route, copy_full, full_bytes),
        ] {
            rows.push(Row {
                shape: shape.clone(),
                order: order_name,
                op,
                ours_us: ours,
                copy_us: copy,
                bytes,
            });
        }
        Ok(())
    }

    pub fn run() -> Res<()> {
        let dev = CudaDevice::new(0)?;
        println!("gpu_random_ltd on {dev}");
        let mut rows = Vec::new();
        for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
            bench_shape::<bf16>(&dev, (8, 2048, 4096, 1024), order, &mut rows)?;
            bench_shape::<f16>(&dev, (16, 2048, 2048, 1536), order, &mut rows)?;
            bench_shape::<bf16>(&dev, (4, 8192, 4096, 2048), order, &mut rows)?;
        }
        println!(
            "\n{:<28} {:<8} {:<8} {:>10} {:>10} {:>9} {:>10}",
            "shape", "order", "op", "ours us", "copy us", "TB/s", "vs copy"
        );
        let mut json = String::from("{\n  \"device\": ");
        json.push_str(&format!("{:?},\n  \"ops\": [\n", dev.to_string()));
        for (i, row) in rows.iter().enumerate() {
            // gather/scatter: fraction of copy bandwidth (same bytes); route: time / full copy.
            let vs_copy = if row.op == "route" {
                format!("{:.3}x time", row.ours_us / row.copy_us)
            } else {
                format!("{:.3} bw", row.copy_us / row.ours_us)
            };
            println!(
                "{:<28} {:<8} {:<8} {:>10.1} {:>10.1} {:>9.3} {:>10}",
                row.shape,
                row.order,
                row.op,
                row.ours_us,
                row.copy_us,
                row.bytes / row.ours_us / 1e6,
                vs_copy
            );
            json.push_str(&format!(
                "    {{\"shape\": {:?}, \"order\": {:?}, \"op\": {:?}, \"ours_us\": {:.3}, \"copy_us\": {:.3}}}{}\n",
                row.shape,
                row.order,
                row.op,
                row.ours_us,
                row.copy_us,
                if i + 1 < rows.len() { "," } else { "" }
            ));
        }
        json.push_str("  ],\n  \"sampler\": [\n");
        println!("\n{:<28} {:>10}", "sampler (L x B x S -> r)", "ours us");
        let cases = [
            (22, 8, 2048, 1024),
            (46, 16, 2048, 512),
            (24, 4, 8192, 4096),
        ];
        for (i, &(l, b, s, r)) in cases.iter().enumerate() {
            let mut idx = sample_tokens_cuda(&dev, 1, 0, l, b, s, r)?;
            let mut step = 0;
            let t = time_us(&dev, || {
                step += 1;
                idx.resample(&dev, 1, step)
            })?;
            println!("{:<28} {:>10.1}", format!("{l} x {b} x {s} -> {r}"), t);
            json.push_str(&format!(
                "    {{\"layers\": {l}, \"batch\": {b}, \"seq\": {s}, \"reserved\": {r}, \"ours_us\": {t:.3}}}{}\n",
                if i + 1 < cases.len() { "," } else { "" }
            ));
        }
        json.push_str("  ]\n}\n");
        if let Ok(path) = std::env::var("LTD_BENCH_JSON") {
            ltd_core::write_file_atomic(std::path::Path::new(&path), json.as_bytes())?;
            println!("\nwrote {path}");
        }
        Ok(())
    }
}
