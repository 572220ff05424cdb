//! The demo's step context ([`Ctx`]), what a step produces ([`StepResult`]) and the block's
//! attention backends.

use std::sync::Arc;
use std::time::Duration;

use ltd_core::{HiddenOrder, HiddenTensor, HiddenView};
use ltd_sparse_attn::{
    AttentionGrads, AttentionInputs, AttentionOptions, AttentionShape, Layout, SparseSelfAttention,
    attention_backward, attention_forward,
};

use crate::block::{self, AttentionBackend, Dims, Weights};
use crate::error::Result;

/// Everything one demo step needs.
pub(crate) struct Ctx {
    /// Hidden-state order (from the config's `hidden_state_order`).
    pub order: HiddenOrder,
    /// Batch `B`.
    pub batch: usize,
    /// Sequence length `S`.
    pub seq: usize,
    /// Hidden size `C`.
    pub channels: usize,
    /// Kept tokens per sequence `r`.
    pub reserved: usize,
    /// Token-dropping layers (all are sampled in one call).
    pub layers: usize,
    /// Compact id of the demo's layer among the token-dropping layers.
    pub ltd_id: usize,
    /// Model index of the demo's layer.
    pub layer_index: usize,
    /// Sampler seed.
    pub seed: u64,
    /// Training step (keys the sampler).
    pub step: u64,
    /// Token-level causal attention (decoders).
    pub causal: bool,
    /// Block sizes (with `tokens = r`).
    pub dims: Dims,
    /// Block parameters.
    pub weights: Weights<f32>,
    /// The sparse attention module (layouts cached per length).
    pub attn: SparseSelfAttention,
    /// Hidden states, in `order`.
    pub h: Vec<f32>,
    /// Gradient of the loss with respect to the routed output, in `order`.
    pub gy: Vec<f32>,
    /// Run the block's attention on this GPU (bf16) instead of the CPU.
    #[cfg(feature = "cuda")]
    pub gpu_attention: Option<ltd_core::CudaDevice>,
}

/// What the path under test produced.
pub(crate) struct StepResult {
    /// Kept positions of every token-dropping layer, `[L, B, r]`.
    pub idx_all: Vec<i32>,
    /// Routed output.
    pub y: Vec<f32>,
    /// Gradient with respect to the hidden states.
    pub grad_h: Vec<f32>,
    /// Gradients of the block's parameters.
    pub grad_w: Weights<f32>,
    /// Time of every step, in order.
    pub times: Vec<(&'static str, Duration)>,
}

/// The fused block-sparse attention of `ltd-sparse-attn` as the block's attention.
pub(crate) struct SparseBackend {
    layout: Arc<Layout>,
    shape: AttentionShape,
    causal: bool,
    lse: Vec<f32>,
}

impl SparseBackend {
    pub(super) fn options(&self) -> AttentionOptions<'static, f32> {
        AttentionOptions {
            causal: self.causal,
            ..AttentionOptions::new()
        }
    }
}

impl AttentionBackend<f32> for SparseBackend {
    fn forward(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; q.len()];
        self.lse = vec![0.0f32; self.shape.lse_len()];
        attention_forward(
            &self.layout,
            self.shape,
            &AttentionInputs { q, k, v },
            &self.options(),
            &mut out,
            &mut self.lse,
        )?;
        Ok(out)
    }

    fn backward(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let n = q.len();
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        attention_backward(
            &self.layout,
            self.shape,
            &AttentionInputs { q, k, v },
            &self.options(),
            out,
            dout,
            &self.lse,
            AttentionGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
                dbias: None,
            },
        )?;
        Ok((dq, dk, dv))
    }
}

/// The attention the block runs: the CPU fused op, or (opt-in, `--gpu-attention`) the GPU fused
/// op in bf16.
pub(crate) enum Backend {
    /// `ltd_sparse_attn::attention_forward` / `attention_backward` in f32.
    Cpu(SparseBackend),
    /// `ltd_sparse_attn::cuda::attention_{forward,backward}_cuda` in bf16.
    #[cfg(feature = "cuda")]
    Gpu(Box<crate::gpu::GpuAttention>),
}

impl AttentionBackend<f32> for Backend {
    fn forward(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        match self {
            Backend::Cpu(b) => b.forward(q, k, v),
            #[cfg(feature = "cuda")]
            Backend::Gpu(b) => b.forward(q, k, v),
        }
    }

    fn backward(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &[f32],
        dout: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        match self {
            Backend::Cpu(b) => b.backward(q, k, v, out, dout),
            #[cfg(feature = "cuda")]
            Backend::Gpu(b) => b.backward(q, k, v, out, dout),
        }
    }
}

/// The oracle's attention: `ltd_reference::attention_{forward,backward}` (f64 inside) on the
/// same layout, restricted to its active tiles.
pub(super) struct ReferenceBackend {
    pub(super) layout: Arc<Layout>,
    pub(super) dims: ltd_reference::AttnDims,
    pub(super) causal: bool,
}

impl ReferenceBackend {
    pub(super) fn narrow(x: &[f64]) -> Vec<f32> {
        x.iter().map(|&v| v as f32).collect()
    }
    pub(super) fn widen(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| f64::from(v)).collect()
    }
    pub(super) fn options(&self) -> ltd_reference::AttentionOptions<'_, f32> {
        ltd_reference::AttentionOptions {
            causal: self.causal,
            layout: Some(ltd_reference::Layout::square(
                self.layout.mask(),
                self.layout.num_heads(),
                self.layout.num_blocks(),
                self.layout.block(),
            )),
            ..ltd_reference::AttentionOptions::new(1.0 / (self.dims.head_dim as f64).sqrt())
        }
    }
}

impl AttentionBackend<f64> for ReferenceBackend {
    fn forward(&mut self, q: &[f64], k: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        let (q, k, v) = (Self::narrow(q), Self::narrow(k), Self::narrow(v));
        let res = ltd_reference::attention_forward(&q, &k, &v, self.dims, &self.options())?;
        Ok(Self::widen(&res.out))
    }

    fn backward(
        &mut self,
        q: &[f64],
        k: &[f64],
        v: &[f64],
        _out: &[f64],
        dout: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let (q, k, v, dout) = (
            Self::narrow(q),
            Self::narrow(k),
            Self::narrow(v),
            Self::narrow(dout),
        );
        let g = ltd_reference::attention_backward(&q, &k, &v, &dout, self.dims, &self.options())?;
        Ok((Self::widen(&g.dq), Self::widen(&g.dk), Self::widen(&g.dv)))
    }
}

/// A view's tokens as `[B * n, C]` rows, batch-major.
pub(crate) fn to_rows(v: &HiddenView<'_, f32>) -> Vec<f32> {
    let l = v.layout();
    let mut rows = Vec::with_capacity(l.batch() * l.seq() * l.channels());
    for b in 0..l.batch() {
        for s in 0..l.seq() {
            rows.extend_from_slice(v.row(b, s).expect("in range"));
        }
    }
    rows
}

/// `[B * n, C]` rows back to a tensor in `order`.
pub(crate) fn from_rows(
    rows: &[f32],
    order: HiddenOrder,
    batch: usize,
    n: usize,
    c: usize,
) -> Result<HiddenTensor<f32>> {
    let mut t = HiddenTensor::zeros(order, batch, n, c)?;
    let layout = *t.layout();
    let data = t.as_mut_slice();
    for b in 0..batch {
        for s in 0..n {
            let o = layout.offset(b, s);
            data[o..o + c].copy_from_slice(&rows[(b * n + s) * c..(b * n + s + 1) * c]);
        }
    }
    Ok(t)
}

pub(super) fn ref_dims(ctx: &Ctx) -> ltd_reference::Hidden {
    ltd_reference::Hidden {
        batch: ctx.batch,
        seq: ctx.seq,
        channels: ctx.channels,
        order: match ctx.order {
            HiddenOrder::BatchSeq => ltd_reference::HiddenOrder::BatchSeq,
            HiddenOrder::SeqBatch => ltd_reference::HiddenOrder::SeqBatch,
        },
    }
}

impl Ctx {
    /// The block's sizes for `n` tokens per sequence.
    pub(super) fn dims_for(&self, n: usize) -> Dims {
        Dims {
            tokens: n,
            ..self.dims
        }
    }

    /// The block's attention for `n` tokens per sequence (the layout is built for length `n`).
    pub(crate) fn backend(&self, n: usize) -> Result<Backend> {
        let layout = self.attn.layout(n)?;
        let shape = AttentionShape {
            batch: self.batch,
            heads: self.dims.heads,
            seq_len: n,
            head_dim: self.dims.head_dim(),
        };
        #[cfg(feature = "cuda")]
        if let Some(dev) = &self.gpu_attention {
            return Ok(Backend::Gpu(Box::new(crate::gpu::GpuAttention::new(
                dev,
                &layout,
                shape,
                self.causal,
            )?)));
        }
        Ok(Backend::Cpu(SparseBackend {
            layout,
            shape,
            causal: self.causal,
            lse: Vec::new(),
        }))
    }

    /// The block's forward on `[B * n, C]` rows: output rows, activations, the attention state
    /// and the time spent in attention.
    pub(crate) fn block_forward(
        &self,
        x_rows: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, block::Activations<f32>, Backend, Duration)> {
        let mut backend = self.backend(n)?;
        let (y, acts, t) = block::forward(&self.weights, self.dims_for(n), x_rows, &mut backend)?;
        Ok((y, acts, backend, t.0))
    }

    /// The block's backward for `dy_rows` after [`Ctx::block_forward`].
    pub(crate) fn block_backward(
        &self,
        acts: &block::Activations<f32>,
        backend: &mut Backend,
        dy_rows: &[f32],
        n: usize,
    ) -> Result<(block::Grads<f32>, Duration)> {
        let (g, t) = block::backward(&self.weights, self.dims_for(n), acts, dy_rows, backend)?;
        Ok((g, t.0))
    }

    pub(super) fn full_view<'a>(&self, data: &'a [f32]) -> Result<HiddenView<'a, f32>> {
        Ok(HiddenView::new(
            data,
            self.order,
            self.batch,
            self.seq,
            self.channels,
        )?)
    }
}
