//! Random-LTD token routing on candle tensors: which positions a layer keeps, gathering them and
//! writing the layer's output back, through `ltd-candle`'s ops (`[B, S, C]` order).
//!
//! Gradients follow upstream's net effect (upstream-semantics.md §1.4): a dropped position gets
//! the incoming gradient unchanged, a kept position only the gradient through the layer.

use candle_core::{DType, Device, Tensor};
use ltd_core::HiddenOrder;

use crate::error::{Result, TrainError};

/// The positions one Random-LTD layer keeps for one step: `[B, r]`, each row sorted ascending
/// and distinct, all `< S`.
///
/// ```
/// use candle_core::Device;
/// let kept = ltd_train::KeptTokens::new(&[0, 2, 1, 3], 2, 4, 2, &Device::Cpu)?;
/// assert_eq!(kept.positions().to_vec2::<u32>()?, [[0, 2], [1, 3]]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeptTokens {
    positions: Tensor,
    batch: usize,
    seq_len: usize,
    kept: usize,
}

impl KeptTokens {
    /// From sampled positions `[batch, kept]` row-major (as `ltd_core::TokenSampler` writes them).
    ///
    /// # Errors
    /// [`TrainError::Config`] when the length is not `batch · kept`, `kept > seq_len`, or a row
    /// is not strictly increasing within `[0, seq_len)`.
    ///
    /// ```
    /// use candle_core::Device;
    /// assert!(ltd_train::KeptTokens::new(&[2, 1], 1, 4, 2, &Device::Cpu).is_err()); // unsorted
    /// assert!(ltd_train::KeptTokens::new(&[0, 4], 1, 4, 2, &Device::Cpu).is_err()); // out of range
    /// ```
    pub fn new(
        positions: &[i32],
        batch: usize,
        seq_len: usize,
        kept: usize,
        device: &Device,
    ) -> Result<Self> {
        let bad = |message: String| TrainError::Config {
            source_name: "kept positions".to_owned(),
            message,
        };
        if positions.len() != batch * kept || kept > seq_len || kept == 0 {
            return Err(bad(format!(
                "{} positions for batch {batch}, kept {kept}, sequence {seq_len}; expected batch · kept positions with 0 < kept <= sequence",
                positions.len()
            )));
        }
        for (b, row) in positions.chunks(kept).enumerate() {
            for (i, &p) in row.iter().enumerate() {
                let ok = p >= 0 && (p as usize) < seq_len && (i == 0 || row[i - 1] < p);
                if !ok {
                    return Err(bad(format!(
                        "row {b}: position {p} at index {i}; expected strictly increasing positions in [0, {seq_len})"
                    )));
                }
            }
        }
        let pos: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        Ok(KeptTokens {
            positions: Tensor::from_vec(pos, (batch, kept), device)?,
            batch,
            seq_len,
            kept,
        })
    }

    /// One layer's rows of a sampler's output (`[B, r]` u32, sorted and distinct by the
    /// sampler's contract), for a sequence of `seq_len`.
    ///
    /// # Errors
    /// When `indices` is not 2-D u32 with `r <= seq_len`.
    ///
    /// ```
    /// use candle_core::Device;
    /// let all = ltd_candle::sample_token_indices(1, 0, 2, 3, 10, 4, &Device::Cpu)?;
    /// let kept = ltd_train::KeptTokens::from_sampled(all.get(1)?, 10)?;
    /// assert_eq!(kept.kept(), 4);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn from_sampled(indices: Tensor, seq_len: usize) -> Result<Self> {
        let (batch, kept) = indices.dims2()?;
        if indices.dtype() != DType::U32 || kept == 0 || kept > seq_len {
            return Err(TrainError::Config {
                source_name: "kept positions".to_owned(),
                message: format!(
                    "{:?} indices of shape [{batch}, {kept}]; expected u32 [B, r] with 0 < r <= {seq_len}",
                    indices.dtype()
                ),
            });
        }
        Ok(KeptTokens {
            positions: indices,
            batch,
            seq_len,
            kept,
        })
    }

    /// The kept positions, `[B, r]` u32 (what the layer's rotary embedding must see).
    ///
    /// ```
    /// let kept = ltd_train::KeptTokens::new(&[1, 3], 1, 5, 2, &candle_core::Device::Cpu)?;
    /// assert_eq!(kept.positions().dims(), [1, 2]);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn positions(&self) -> &Tensor {
        &self.positions
    }

    /// `r`, the kept length.
    ///
    /// ```
    /// assert_eq!(ltd_train::KeptTokens::new(&[1, 3], 1, 5, 2, &candle_core::Device::Cpu)?.kept(), 2);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn kept(&self) -> usize {
        self.kept
    }

    fn check_hidden(&self, h: &Tensor) -> Result<usize> {
        let (b, s, c) = h.dims3()?;
        if (b, s) != (self.batch, self.seq_len) {
            return Err(TrainError::Candle(candle_core::Error::Msg(format!(
                "hidden state [{b}, {s}, {c}]; expected [{}, {}, C] for these kept tokens",
                self.batch, self.seq_len
            ))));
        }
        Ok(c)
    }
}

/// `part[b, k] = h[b, kept[b, k]]`: `[B, S, C] -> [B, r, C]`, differentiable.
///
/// # Errors
/// When `h` is not `[B, S, C]` for these kept tokens.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let h = Tensor::arange(0f32, 8.0, &Device::Cpu)?.reshape((1, 4, 2))?;
/// let kept = ltd_train::KeptTokens::new(&[1, 3], 1, 4, 2, &Device::Cpu)?;
/// let part = ltd_train::gather_tokens(&h, &kept)?;
/// assert_eq!(part.to_vec3::<f32>()?, [[[2.0, 3.0], [6.0, 7.0]]]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub fn gather_tokens(h: &Tensor, kept: &KeptTokens) -> Result<Tensor> {
    kept.check_hidden(h)?;
    Ok(ltd_candle::gather_tokens(
        h,
        &kept.positions,
        HiddenOrder::BatchSeq,
    )?)
}

/// `y = h` with the kept rows replaced by `out` (`[B, r, C]`): exactly `out` at kept rows and
/// exactly `h` elsewhere. Differentiable in both (`dh` is the incoming gradient at dropped rows
/// and 0 at kept rows; `dout` is the incoming gradient at the kept rows).
///
/// # Errors
/// When the shapes do not match the kept tokens.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let h = Tensor::zeros((1, 3, 1), candle_core::DType::F32, &Device::Cpu)?;
/// let kept = ltd_train::KeptTokens::new(&[1], 1, 3, 1, &Device::Cpu)?;
/// let out = Tensor::new(&[[[5f32]]], &Device::Cpu)?;
/// let y = ltd_train::route(&h, &out, &kept)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [0.0, 5.0, 0.0]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub fn route(h: &Tensor, out: &Tensor, kept: &KeptTokens) -> Result<Tensor> {
    kept.check_hidden(h)?;
    Ok(ltd_candle::route(
        h,
        out,
        &kept.positions,
        HiddenOrder::BatchSeq,
    )?)
}
