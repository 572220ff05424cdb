//! Causal self-attention on `[B, H, T, D]` tensors, dense or restricted to a DeepSpeed
//! block-sparse layout. This is the one place the model calls attention, so the backend can be
//! switched (to `ltd-candle`'s fused sparse attention) without touching the model.
//!
//! The current backend is candle's own masked-softmax attention: the layout and the token-level
//! causal mask become an additive `0 / -inf` bias, cached per length.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use ltd_sparse_attn::SparsityConfig;

use crate::error::{Result, TrainError};

/// Which tiles of the score matrix attention computes.
///
/// ```
/// use ltd_train::AttentionKind;
/// assert_eq!(AttentionKind::Dense.name(), "dense");
/// ```
#[derive(Debug, Clone)]
pub enum AttentionKind {
    /// Every key at or before the query.
    Dense,
    /// The layout's active blocks, and within them keys at or before the query. The layout for
    /// a length `T` is built for `T` itself (under Random-LTD, for the kept length).
    Sparse(SparsityConfig),
}

impl AttentionKind {
    /// `dense`, or the layout's mode name (`fixed`, `bigbird`, ...).
    ///
    /// ```
    /// let cfg = ltd_sparse_attn::parse_sparse_attention(r#"{"mode": "bigbird"}"#, 2)?;
    /// assert_eq!(ltd_train::AttentionKind::Sparse(cfg).name(), "bigbird");
    /// # Ok::<(), ltd_sparse_attn::SparseAttnError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            AttentionKind::Dense => "dense",
            AttentionKind::Sparse(c) => c.mode_name(),
        }
    }
}

/// Causal attention with a per-length cache of its mask.
///
/// ```
/// use candle_core::{Device, Tensor, DType};
/// use ltd_train::{AttentionKind, CausalAttention};
///
/// let attn = CausalAttention::new(AttentionKind::Dense, 2, &Device::Cpu);
/// let q = Tensor::ones((1, 2, 5, 4), DType::F32, &Device::Cpu)?;
/// let out = attn.forward(&q, &q, &q)?;
/// assert_eq!(out.dims(), [1, 2, 5, 4]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CausalAttention {
    kind: AttentionKind,
    heads: usize,
    device: Device,
    bias: Arc<Mutex<HashMap<usize, Tensor>>>,
}

impl CausalAttention {
    /// Attention of `kind` for `heads` heads on `device`.
    ///
    /// ```
    /// let a = ltd_train::CausalAttention::new(ltd_train::AttentionKind::Dense, 4, &candle_core::Device::Cpu);
    /// assert_eq!(a.kind().name(), "dense");
    /// ```
    pub fn new(kind: AttentionKind, heads: usize, device: &Device) -> Self {
        CausalAttention {
            kind,
            heads,
            device: device.clone(),
            bias: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The attention pattern.
    ///
    /// ```
    /// let a = ltd_train::CausalAttention::new(ltd_train::AttentionKind::Dense, 4, &candle_core::Device::Cpu);
    /// assert!(matches!(a.kind(), ltd_train::AttentionKind::Dense));
    /// ```
    pub fn kind(&self) -> &AttentionKind {
        &self.kind
    }

    /// `softmax(q kᵀ / sqrt(D) + mask) v` for `q, k, v` of shape `[B, H, T, D]`.
    ///
    /// # Errors
    /// Shape errors, or a layout whose head count differs from `H`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor, DType};
    /// use ltd_train::{AttentionKind, CausalAttention};
    /// let layout = ltd_sparse_attn::parse_sparse_attention(r#"{"mode": "fixed", "block": 16, "attention": "unidirectional"}"#, 2)?;
    /// let attn = CausalAttention::new(AttentionKind::Sparse(layout), 2, &Device::Cpu);
    /// let q = Tensor::ones((1, 2, 40, 8), DType::F32, &Device::Cpu)?;
    /// assert_eq!(attn.forward(&q, &q, &q)?.dims(), [1, 2, 40, 8]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (_, h, t, d) = q.dims4()?;
        if h != self.heads {
            return Err(TrainError::Candle(candle_core::Error::Msg(format!(
                "attention got {h} heads; expected {}",
                self.heads
            ))));
        }
        let bias = self.bias_for(t)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
        Ok(probs.matmul(v)?)
    }

    /// The additive mask for length `t`: `[1, 1, t, t]` dense, `[1, H, t, t]` sparse.
    fn bias_for(&self, t: usize) -> Result<Tensor> {
        let mut cache = self.bias.lock().map_err(|_| {
            TrainError::Candle(candle_core::Error::Msg("poisoned mask cache".into()))
        })?;
        if let Some(b) = cache.get(&t) {
            return Ok(b.clone());
        }
        let (heads, allowed) = match &self.kind {
            AttentionKind::Dense => (1, None),
            AttentionKind::Sparse(cfg) => {
                let layout = cfg.make_layout(t)?;
                if layout.num_heads() != self.heads {
                    return Err(TrainError::Config {
                        source_name: "sparse_attention".to_owned(),
                        message: format!(
                            "layout has {} heads; the model has {}",
                            layout.num_heads(),
                            self.heads
                        ),
                    });
                }
                (self.heads, Some(layout))
            }
        };
        let mut values = vec![f32::NEG_INFINITY; heads * t * t];
        for head in 0..heads {
            for i in 0..t {
                for j in 0..=i {
                    let ok = allowed
                        .as_ref()
                        .is_none_or(|l| l.is_active(head, i / l.block(), j / l.block()));
                    if ok {
                        values[(head * t + i) * t + j] = 0.0;
                    }
                }
            }
        }
        let bias = Tensor::from_vec(values, (1, heads, t, t), &self.device)?;
        cache.insert(t, bias.clone());
        Ok(bias)
    }
}
