//! The step under test: on the CPU, through `TokenDropRouter`, or with its sampling, gather and
//! route on the GPU.

use ltd_core::{
    HiddenTensor, HiddenView, Layer, LayerInput, LayerOutput, ModelKind, ModelMask, RouterConfig,
    TokenDropRouter, TokenSampler, gather_tensor, route_backward_to_hidden,
    route_backward_to_layer, route_tensor,
};

use super::{Ctx, StepResult, from_rows, to_rows};
#[cfg(feature = "cuda")]
use super::{DemoArgs, DeviceChoice};
use crate::block;
use crate::error::{CliError, Result};
use crate::timing::timed;

/// The explicit CPU path: every step called by hand and timed.
pub(super) fn explicit_cpu(ctx: &Ctx) -> Result<StepResult> {
    let (b, s, c, r) = (ctx.batch, ctx.seq, ctx.channels, ctx.reserved);
    let mut times = Vec::new();
    let (idx_all, t) = timed(|| TokenSampler::new(ctx.seed).sample(ctx.step, ctx.layers, b, s, r));
    let idx_all = idx_all?;
    times.push(("sample (all token-dropping layers)", t));
    let idx = idx_all.layer(ctx.ltd_id)?;
    let h = ctx.full_view(&ctx.h)?;

    let (part, t) = timed(|| gather_tensor(&h, &idx));
    let part = part?;
    times.push(("gather kept tokens", t));

    let (fwd, t) = timed(|| ctx.block_forward(&to_rows(&part.view()), r));
    let (out_rows, acts, mut backend, t_attn) = fwd?;
    times.push(("block forward", t));
    times.push(("  of which sparse attention", t_attn));
    let out = from_rows(&out_rows, ctx.order, b, r, c)?;

    let (y, t) = timed(|| route_tensor(&h, &out.view(), &idx));
    let y = y?;
    times.push(("route (fused scatter)", t));

    let gy = ctx.full_view(&ctx.gy)?;
    let mut grad_out = HiddenTensor::zeros(ctx.order, b, r, c)?;
    let (res, t) = timed(|| route_backward_to_layer(&gy, &idx, &mut grad_out.view_mut()));
    res?;
    times.push(("route backward (to layer)", t));

    let (bwd, t) = timed(|| ctx.block_backward(&acts, &mut backend, &to_rows(&grad_out.view()), r));
    let (grads, t_attn) = bwd?;
    times.push(("block backward", t));
    times.push(("  of which sparse attention", t_attn));
    let grad_in = from_rows(&grads.dx, ctx.order, b, r, c)?;

    let mut grad_h = HiddenTensor::zeros(ctx.order, b, s, c)?;
    let (res, t) =
        timed(|| route_backward_to_hidden(&gy, &grad_in.view(), &idx, &mut grad_h.view_mut()));
    res?;
    times.push(("route backward (to hidden)", t));

    Ok(StepResult {
        idx_all: idx_all.into_vec(),
        y: y.into_vec(),
        grad_h: grad_h.into_vec(),
        grad_w: grads.weights,
        times,
    })
}

/// The same step through `TokenDropRouter` with the block as a `Layer`.
pub(super) fn via_router(
    ctx: &Ctx,
    kind: ModelKind,
    ltd_layers: Vec<usize>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut router = TokenDropRouter::<bool>::new(RouterConfig {
        seed: ctx.seed,
        ltd_layers,
        order: ctx.order,
        kind,
    })?;
    let mask = if ctx.causal {
        ModelMask::Causal
    } else {
        ModelMask::None
    };
    let h = ctx.full_view(&ctx.h)?;
    let gy = ctx.full_view(&ctx.gy)?;
    let mut layer = DemoLayer { ctx };
    let y = router.forward(ctx.layer_index, ctx.step, ctx.reserved, &mut layer, h, mask)?;
    let gh = router.backward(
        ctx.layer_index,
        ctx.step,
        ctx.reserved,
        &mut layer,
        h,
        mask,
        gy,
    )?;
    Ok((y.hidden.into_vec(), gh.into_vec()))
}

#[cfg(feature = "cuda")]
pub(super) fn gpu_step(ctx: &Ctx, required: bool) -> Result<Option<(StepResult, String)>> {
    match ltd_core::CudaDevice::new(0) {
        Ok(dev) => {
            let res = crate::gpu::explicit_gpu(ctx, &dev)?;
            let block = if ctx.gpu_attention.is_some() {
                "the block's attention on the GPU too (bf16), its projections and MLP on the CPU"
            } else {
                "the block (attention, MLP) on the CPU in f32 (--gpu-attention runs the attention on the GPU in bf16 for head dims 64 and 128)"
            };
            Ok(Some((
                res,
                format!("{dev}: sampling, gather and route on the GPU; {block}"),
            )))
        }
        Err(e) if required => Err(CliError::usage(format!("--device cuda: {e}"))),
        Err(_) => Ok(None),
    }
}

/// The device for `--gpu-attention`, checked against the other arguments.
#[cfg(feature = "cuda")]
pub(super) fn gpu_attention_device(
    args: &DemoArgs,
    head_dim: usize,
) -> Result<Option<ltd_core::CudaDevice>> {
    if !args.gpu_attention {
        return Ok(None);
    }
    if args.device == DeviceChoice::Cpu {
        return Err(CliError::usage(
            "--gpu-attention cannot be used with --device cpu",
        ));
    }
    if head_dim != 64 && head_dim != 128 {
        return Err(CliError::usage(format!(
            "--gpu-attention needs a head dimension (--hidden / --heads) of 64 or 128; this run has {head_dim} (try --hidden 256 --heads 4)"
        )));
    }
    ltd_core::CudaDevice::new(0)
        .map(Some)
        .map_err(|e| CliError::usage(format!("--gpu-attention: {e}")))
}

#[cfg(not(feature = "cuda"))]
pub(super) fn gpu_step(_ctx: &Ctx, required: bool) -> Result<Option<(StepResult, String)>> {
    if required {
        return Err(CliError::usage(
            "--device cuda: this ltd was built without CUDA support; rebuild with --features cuda",
        ));
    }
    Ok(None)
}

/// The block as a `Layer` for `TokenDropRouter` (backward recomputes the forward).
struct DemoLayer<'a> {
    ctx: &'a Ctx,
}

impl Layer<f32> for DemoLayer<'_> {
    type Extra = ();
    type Error = CliError;

    fn forward(&mut self, input: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, ()>> {
        let l = *input.hidden.layout();
        let n = l.seq();
        let mut backend = self.ctx.backend(n)?;
        let (y, _, _) = block::forward(
            &self.ctx.weights,
            self.ctx.dims_for(n),
            &to_rows(&input.hidden),
            &mut backend,
        )?;
        Ok(LayerOutput {
            hidden: from_rows(&y, l.order(), l.batch(), n, l.channels())?,
            extra: (),
        })
    }

    fn backward(
        &mut self,
        input: LayerInput<'_, f32, bool>,
        grad_output: HiddenView<'_, f32>,
    ) -> Result<HiddenTensor<f32>> {
        let l = *input.hidden.layout();
        let n = l.seq();
        let dims = self.ctx.dims_for(n);
        let mut backend = self.ctx.backend(n)?;
        let (_, acts, _) = block::forward(
            &self.ctx.weights,
            dims,
            &to_rows(&input.hidden),
            &mut backend,
        )?;
        let (g, _) = block::backward(
            &self.ctx.weights,
            dims,
            &acts,
            &to_rows(&grad_output),
            &mut backend,
        )?;
        from_rows(&g.dx, l.order(), l.batch(), n, l.channels())
    }
}
