//! Causal self-attention on `[B, H, T, D]` tensors, dense or restricted to a DeepSpeed
//! block-sparse layout, through `ltd-candle`'s fused attention (forward and backward on the
//! CPU, and on candle's CUDA stream with feature `cuda`). This is the one place the model calls
//! attention.
//!
//! Dense attention is the fused op with a dense layout (every tile active) and token-level
//! causality, so the baseline and the sparse runs share one kernel. On CUDA the fused kernels
//! take bf16 (or f16), so `q`, `k`, `v` are cast to bf16 for the op and the output back to the
//! model's dtype (both casts are differentiable); on the CPU the op computes in f32 directly.

use candle_core::{DType, Device, Tensor};
use ltd_candle::{SparseAttentionOptions, sparse_attention};
use ltd_sparse_attn::{DenseConfig, SparseSelfAttention, SparsityConfig};

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

/// Causal attention; the layout of each length is built once and cached.
///
/// ```
/// use candle_core::{Device, Tensor, DType};
/// use ltd_train::{AttentionKind, CausalAttention};
///
/// let attn = CausalAttention::new(AttentionKind::Dense, 2, &Device::Cpu)?;
/// let q = Tensor::ones((1, 2, 5, 4), DType::F32, &Device::Cpu)?;
/// let out = attn.forward(&q, &q, &q)?;
/// assert_eq!(out.dims(), [1, 2, 5, 4]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CausalAttention {
    kind: AttentionKind,
    layouts: std::sync::Arc<SparseSelfAttention>,
    compute_dtype: DType,
}

/// The tile size of the dense layout: large tiles keep the fused kernel's per-tile overhead low.
const DENSE_BLOCK: usize = 64;

impl CausalAttention {
    /// Attention of `kind` for `heads` heads on `device` (which picks the op's dtype: f32 on the
    /// CPU, bf16 on CUDA).
    ///
    /// # Errors
    /// [`TrainError::Sparse`] for a layout that cannot serve `heads` heads.
    ///
    /// ```
    /// let a = ltd_train::CausalAttention::new(ltd_train::AttentionKind::Dense, 4, &candle_core::Device::Cpu)?;
    /// assert_eq!(a.kind().name(), "dense");
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn new(kind: AttentionKind, heads: usize, device: &Device) -> Result<Self> {
        let compute_dtype = if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        };
        let config = match &kind {
            AttentionKind::Dense => {
                let mut dense = DenseConfig::new(heads);
                dense.block = DENSE_BLOCK;
                SparsityConfig::from(dense)
            }
            AttentionKind::Sparse(c) => {
                if c.num_heads() != heads {
                    return Err(TrainError::Config {
                        source_name: "sparse_attention".to_owned(),
                        message: format!(
                            "the layout has {} heads; expected --heads {heads}",
                            c.num_heads()
                        ),
                    });
                }
                c.clone()
            }
        };
        Ok(CausalAttention {
            kind,
            layouts: std::sync::Arc::new(SparseSelfAttention::new(config)?),
            compute_dtype,
        })
    }

    /// The attention pattern.
    ///
    /// ```
    /// let a = ltd_train::CausalAttention::new(ltd_train::AttentionKind::Dense, 4, &candle_core::Device::Cpu)?;
    /// assert!(matches!(a.kind(), ltd_train::AttentionKind::Dense));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn kind(&self) -> &AttentionKind {
        &self.kind
    }

    /// `softmax(q kᵀ / sqrt(D) + mask) v` over the layout's tiles and keys at or before each
    /// query, for `q, k, v` of shape `[B, H, T, D]`; differentiable in all three.
    ///
    /// # Errors
    /// Shape, dtype or device errors, or a head count other than the layout's.
    ///
    /// ```
    /// use candle_core::{Device, Tensor, DType};
    /// use ltd_train::{AttentionKind, CausalAttention};
    /// let layout = ltd_sparse_attn::parse_sparse_attention(r#"{"mode": "fixed", "block": 16, "attention": "unidirectional"}"#, 2)?;
    /// let attn = CausalAttention::new(AttentionKind::Sparse(layout), 2, &Device::Cpu)?;
    /// let q = Tensor::ones((1, 2, 40, 8), DType::F32, &Device::Cpu)?;
    /// assert_eq!(attn.forward(&q, &q, &q)?.dims(), [1, 2, 40, 8]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let opts = SparseAttentionOptions {
            causal: true,
            ..Default::default()
        };
        let dtype = q.dtype();
        if dtype == self.compute_dtype {
            return Ok(sparse_attention(q, k, v, self.layouts.as_ref(), &opts)?);
        }
        let cast = |t: &Tensor| t.to_dtype(self.compute_dtype);
        let out = sparse_attention(
            &cast(q)?,
            &cast(k)?,
            &cast(v)?,
            self.layouts.as_ref(),
            &opts,
        )?;
        Ok(out.to_dtype(dtype)?)
    }
}
