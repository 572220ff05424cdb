//! The CUDA side of the command (feature `cuda`): the demo's Random-LTD steps on the GPU and the
//! GPU kernel benchmarks (the method of `benches/benches/gpu_random_ltd.rs`: device events,
//! median over repetitions, a device-to-device copy of the same bytes measured in the same run).

use std::time::Duration;

use cudarc::driver::{CudaSlice, DeviceRepr};
use half::{bf16, f16};
use ltd_core::cuda::{
    CudaHidden, CudaHiddenMut, gather_cuda, route_cuda, sample_tokens_cuda, scatter_cuda,
};
use ltd_core::{
    CoreError, CudaDevice, Element, HiddenLayout, HiddenOrder, HiddenView, TokenSampler,
};

use ltd_sparse_attn::cuda::{
    CudaAttentionGrads, CudaAttentionLayout, CudaAttentionOptions, attention_backward_cuda,
    attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, Layout};

use crate::block::AttentionBackend;
use crate::demo::{Ctx, StepResult, from_rows, to_rows};
use crate::error::{CliError, Result};
use crate::timing::timed;

/// Runs `f` and waits for the device, timing both.
fn on_device<T>(dev: &CudaDevice, f: impl FnOnce() -> Result<T>) -> (Result<T>, Duration) {
    timed(|| {
        let v = f()?;
        dev.synchronize()?;
        Ok(v)
    })
}

/// The demo's step with sampling, gather and route (forward and backward) on the GPU; the
/// block runs on the CPU.
pub fn explicit_gpu(ctx: &Ctx, dev: &CudaDevice) -> Result<StepResult> {
    let (b, s, c, r) = (ctx.batch, ctx.seq, ctx.channels, ctx.reserved);
    let full = HiddenLayout::contiguous(ctx.order, b, s, c)?;
    let kept = HiddenLayout::contiguous(ctx.order, b, r, c)?;
    let stream = dev.stream().clone();
    let mut times = Vec::new();

    let (hg, t) = on_device(dev, || Ok((dev.upload(&ctx.h)?, dev.upload(&ctx.gy)?)));
    let (h_d, gy_d) = hg?;
    times.push(("upload h, dL/dy (host to GPU)", t));

    let (idx_d, t) = on_device(dev, || {
        Ok(sample_tokens_cuda(
            dev, ctx.seed, ctx.step, ctx.layers, b, s, r,
        )?)
    });
    let idx_d = idx_d?;
    times.push(("sample on the GPU (incl. kernel load)", t));
    let idx_all = idx_d.download(dev)?.into_vec();
    let cpu = TokenSampler::new(ctx.seed).sample(ctx.step, ctx.layers, b, s, r)?;
    if cpu.as_slice() != idx_all.as_slice() {
        return Err(CliError::CheckFailed(
            "the GPU sampler's indices differ from the CPU sampler's (they must be bit-identical)"
                .to_owned(),
        ));
    }

    let mut part_d = stream.alloc_zeros::<f32>(b * r * c)?;
    let (res, t) = on_device(dev, || {
        Ok(gather_cuda(
            dev,
            CudaHidden::new(&h_d, full)?,
            &idx_d,
            ctx.ltd_id,
            CudaHiddenMut::new(&mut part_d, kept)?,
        )?)
    });
    res?;
    times.push(("gather kept tokens (GPU)", t));
    let (part, t) = timed(|| dev.download(&part_d));
    let part = part?;
    times.push(("download kept tokens", t));

    let part_view = HiddenView::new(&part, ctx.order, b, r, c)?;
    let (fwd, t) = timed(|| ctx.block_forward(&to_rows(&part_view), r));
    let (out_rows, acts, mut backend, t_attn) = fwd?;
    times.push(("block forward (CPU)", t));
    times.push(("  of which sparse attention", t_attn));
    let out = from_rows(&out_rows, ctx.order, b, r, c)?;

    let (out_d, t) = timed(|| dev.upload(out.as_slice()));
    let out_d = out_d?;
    times.push(("upload block output", t));
    let mut y_d = stream.alloc_zeros::<f32>(b * s * c)?;
    let (res, t) = on_device(dev, || {
        Ok(route_cuda(
            dev,
            CudaHidden::new(&h_d, full)?,
            CudaHidden::new(&out_d, kept)?,
            &idx_d,
            ctx.ltd_id,
            CudaHiddenMut::new(&mut y_d, full)?,
        )?)
    });
    res?;
    times.push(("route (fused scatter, GPU)", t));

    let mut grad_out_d = stream.alloc_zeros::<f32>(b * r * c)?;
    let (res, t) = on_device(dev, || {
        Ok(gather_cuda(
            dev,
            CudaHidden::new(&gy_d, full)?,
            &idx_d,
            ctx.ltd_id,
            CudaHiddenMut::new(&mut grad_out_d, kept)?,
        )?)
    });
    res?;
    times.push(("route backward to layer (GPU)", t));
    let grad_out = dev.download(&grad_out_d)?;
    let grad_view = HiddenView::new(&grad_out, ctx.order, b, r, c)?;

    let (bwd, t) = timed(|| ctx.block_backward(&acts, &mut backend, &to_rows(&grad_view), r));
    let (grads, t_attn) = bwd?;
    times.push(("block backward (CPU)", t));
    times.push(("  of which sparse attention", t_attn));
    let grad_in = from_rows(&grads.dx, ctx.order, b, r, c)?;

    let grad_in_d = dev.upload(grad_in.as_slice())?;
    let mut grad_h_d = stream.alloc_zeros::<f32>(b * s * c)?;
    let (res, t) = on_device(dev, || {
        Ok(route_cuda(
            dev,
            CudaHidden::new(&gy_d, full)?,
            CudaHidden::new(&grad_in_d, kept)?,
            &idx_d,
            ctx.ltd_id,
            CudaHiddenMut::new(&mut grad_h_d, full)?,
        )?)
    });
    res?;
    times.push(("route backward to hidden (GPU)", t));

    let (yg, t) = timed(|| -> Result<_> { Ok((dev.download(&y_d)?, dev.download(&grad_h_d)?)) });
    let (y, grad_h) = yg?;
    times.push(("download y, dL/dh", t));

    Ok(StepResult {
        idx_all,
        y,
        grad_h,
        grad_w: grads.weights,
        times,
    })
}

/// The block's attention on the GPU in bf16: inputs are rounded to bf16 and uploaded, the fused
/// kernels of `ltd_sparse_attn::cuda` run, results come back as f32. Keeps the device buffers of
/// the forward for the backward.
pub struct GpuAttention {
    dev: CudaDevice,
    layout: CudaAttentionLayout,
    shape: AttentionShape,
    causal: bool,
    saved: Option<Saved>,
}

struct Saved {
    q: CudaSlice<bf16>,
    k: CudaSlice<bf16>,
    v: CudaSlice<bf16>,
    out: CudaSlice<bf16>,
    lse: CudaSlice<f32>,
}

fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

fn to_f32(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

impl GpuAttention {
    /// Uploads the kernel tables of `layout` (built for `shape.seq_len`).
    pub fn new(
        dev: &CudaDevice,
        layout: &Layout,
        shape: AttentionShape,
        causal: bool,
    ) -> Result<Self> {
        Ok(GpuAttention {
            dev: dev.clone(),
            layout: CudaAttentionLayout::new(dev, layout)?,
            shape,
            causal,
            saved: None,
        })
    }

    fn options(&self) -> CudaAttentionOptions<'static, bf16> {
        CudaAttentionOptions {
            causal: self.causal,
            ..Default::default()
        }
    }
}

impl AttentionBackend<f32> for GpuAttention {
    fn forward(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        let dev = &self.dev;
        let stream = dev.stream().clone();
        let (q, k, v) = (
            dev.upload(&to_bf16(q))?,
            dev.upload(&to_bf16(k))?,
            dev.upload(&to_bf16(v))?,
        );
        let mut out = stream.alloc_zeros::<bf16>(self.shape.qkv_len())?;
        let mut lse = stream.alloc_zeros::<f32>(self.shape.lse_len())?;
        attention_forward_cuda(
            dev,
            &self.layout,
            self.shape,
            (&q, &k, &v),
            &self.options(),
            &mut out,
            &mut lse,
        )?;
        let host = to_f32(&dev.download(&out)?);
        self.saved = Some(Saved { q, k, v, out, lse });
        Ok(host)
    }

    fn backward(
        &mut self,
        _q: &[f32],
        _k: &[f32],
        _v: &[f32],
        _out: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let Some(saved) = &self.saved else {
            return Err(CliError::CheckFailed(
                "the GPU attention's backward ran before its forward".to_owned(),
            ));
        };
        let dev = &self.dev;
        let stream = dev.stream().clone();
        let dout = dev.upload(&to_bf16(dout))?;
        let n = self.shape.qkv_len();
        let (mut dq, mut dk, mut dv) = (
            stream.alloc_zeros::<bf16>(n)?,
            stream.alloc_zeros::<bf16>(n)?,
            stream.alloc_zeros::<bf16>(n)?,
        );
        attention_backward_cuda(
            dev,
            &self.layout,
            self.shape,
            (&saved.q, &saved.k, &saved.v),
            (&saved.out, &saved.lse),
            &dout,
            &self.options(),
            CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv),
        )?;
        Ok((
            to_f32(&dev.download(&dq)?),
            to_f32(&dev.download(&dk)?),
            to_f32(&dev.download(&dv)?),
        ))
    }
}

/// Median time per call in microseconds ([`CudaDevice::median_time_us`]); `quick` uses fewer
/// calls.
fn time_us(
    dev: &CudaDevice,
    quick: bool,
    f: impl FnMut() -> std::result::Result<(), CoreError>,
) -> Result<f64> {
    let (warmup, iters, reps) = if quick { (2, 5, 5) } else { (3, 10, 7) };
    Ok(dev.median_time_us(warmup, iters, reps, f)?)
}

fn random_tensor<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    n: usize,
    salt: u64,
) -> Result<CudaSlice<T>> {
    let host: Vec<T> = (0..n as u64)
        .map(|i| {
            let x = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            T::from_f32_lossy(x as f32 / 16_777_216.0 - 0.5)
        })
        .collect();
    Ok(dev.upload(&host)?)
}

/// One row of the GPU row-op table.
pub struct GpuRow {
    /// `B8 S2048 C4096 r1024 bf16`.
    pub shape: String,
    /// `[B,S,C]` or `[S,B,C]`.
    pub order: &'static str,
    /// gather, scatter or route.
    pub op: &'static str,
    /// Our kernel, microseconds.
    pub ours_us: f64,
    /// The device-to-device copy of the same bytes, microseconds.
    pub copy_us: f64,
    /// Bytes read + written.
    pub bytes: f64,
}

/// A GPU row-op case: `(B, S, C, r)` and the element type.
#[derive(Clone, Copy)]
pub enum GpuCase {
    /// bf16 elements.
    Bf16(usize, usize, usize, usize),
    /// f16 elements.
    F16(usize, usize, usize, usize),
}

/// The GPU cases of a run.
pub fn gpu_cases(quick: bool) -> Vec<(GpuCase, HiddenOrder)> {
    let shapes: &[GpuCase] = if quick {
        &[GpuCase::Bf16(8, 2048, 4096, 1024)]
    } else {
        &[
            GpuCase::Bf16(8, 2048, 4096, 1024),
            GpuCase::F16(16, 2048, 2048, 1536),
            GpuCase::Bf16(4, 8192, 4096, 2048),
        ]
    };
    [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch]
        .into_iter()
        .flat_map(|o| shapes.iter().map(move |&s| (s, o)))
        .collect()
}

/// Measures gather, scatter and route of one case against the copy of the same bytes.
pub fn bench_case(
    dev: &CudaDevice,
    case: GpuCase,
    order: HiddenOrder,
    quick: bool,
) -> Result<Vec<GpuRow>> {
    match case {
        GpuCase::Bf16(b, s, c, r) => bench_shape::<bf16>(dev, (b, s, c, r), order, quick),
        GpuCase::F16(b, s, c, r) => bench_shape::<f16>(dev, (b, s, c, r), order, quick),
    }
}

fn bench_shape<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    (b, s, c, r): (usize, usize, usize, usize),
    order: HiddenOrder,
    quick: bool,
) -> Result<Vec<GpuRow>> {
    let e = T::DTYPE.size_in_bytes();
    let h = random_tensor::<T>(dev, b * s * c, 1)?;
    let part_src = random_tensor::<T>(dev, b * r * c, 2)?;
    let mut part = random_tensor::<T>(dev, b * r * c, 3)?;
    let mut y = random_tensor::<T>(dev, b * s * c, 4)?;
    let full = HiddenLayout::contiguous(order, b, s, c)?;
    let kept = HiddenLayout::contiguous(order, b, r, c)?;
    let idx = sample_tokens_cuda(dev, 1, 1, 1, b, s, r)?;
    let stream = dev.stream().clone();
    let memcpy_err = |source| CoreError::Cuda {
        during: "memcpy",
        source,
    };
    let copy_part = time_us(dev, quick, || {
        stream
            .memcpy_dtod(&h.slice(..b * r * c), &mut part.slice_mut(..))
            .map_err(memcpy_err)
    })?;
    let copy_full = time_us(dev, quick, || {
        stream.memcpy_dtod(&h, &mut y).map_err(memcpy_err)
    })?;
    let gather = time_us(dev, quick, || {
        gather_cuda(
            dev,
            CudaHidden::new(&h, full)?,
            &idx,
            0,
            CudaHiddenMut::new(&mut part, kept)?,
        )
    })?;
    let scatter = time_us(dev, quick, || {
        scatter_cuda(
            dev,
            CudaHidden::new(&part_src, kept)?,
            &idx,
            0,
            CudaHiddenMut::new(&mut y, full)?,
        )
    })?;
    let route = time_us(dev, quick, || {
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
    Ok([
        ("gather", gather, copy_part, part_bytes),
        ("scatter", scatter, copy_part, part_bytes),
        ("route", route, copy_full, full_bytes),
    ]
    .into_iter()
    .map(|(op, ours_us, copy_us, bytes)| GpuRow {
        shape: shape.clone(),
        order: order_name,
        op,
        ours_us,
        copy_us,
        bytes,
    })
    .collect())
}

/// The sampler cases `(L, B, S, r)`.
pub fn sampler_cases(quick: bool) -> Vec<(usize, usize, usize, usize)> {
    if quick {
        vec![(22, 8, 2048, 1024)]
    } else {
        vec![
            (22, 8, 2048, 1024),
            (46, 16, 2048, 512),
            (24, 4, 8192, 4096),
        ]
    }
}

/// The GPU sampler's time for one case, microseconds (buffer reused, as in training).
pub fn bench_sampler(
    dev: &CudaDevice,
    (l, b, s, r): (usize, usize, usize, usize),
    quick: bool,
) -> Result<f64> {
    let mut idx = sample_tokens_cuda(dev, 1, 0, l, b, s, r)?;
    let mut step = 0;
    time_us(dev, quick, || {
        step += 1;
        idx.resample(dev, 1, step)
    })
}
