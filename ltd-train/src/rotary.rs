//! Rotary position embeddings (RoPE, rotate-half form) evaluated at given positions, so that the
//! tokens a Random-LTD layer keeps are rotated by their true positions in the sequence, not by
//! their rank among the kept tokens.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{Result, TrainError};

/// The cos/sin tables of RoPE for positions `0..max_len` and head dimension `head_dim`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_train::Rotary;
///
/// let rotary = Rotary::new(16, 8, 10_000.0, &Device::Cpu)?;
/// let x = Tensor::ones((1, 1, 3, 8), candle_core::DType::F32, &Device::Cpu)?;
/// let at_kept = rotary.apply(&x, &rotary.at_positions(&Tensor::new(&[[2u32, 5, 11]], &Device::Cpu)?)?)?;
/// assert_eq!(at_kept.dims(), [1, 1, 3, 8]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    max_len: usize,
}

/// cos and sin of one batch's positions, `[B or 1, 1, T, head_dim / 2]`.
///
/// ```
/// let rotary = ltd_train::Rotary::new(8, 4, 1e4, &candle_core::Device::Cpu)?;
/// let _at: ltd_train::RotaryAt = rotary.at_range(8)?;
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RotaryAt {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// Tables for positions `0..max_len`: angle `p · base^(-2i / head_dim)` for `i < head_dim/2`.
    ///
    /// # Errors
    /// [`TrainError::Config`] for an odd or zero `head_dim` or `max_len == 0`.
    ///
    /// ```
    /// assert!(ltd_train::Rotary::new(8, 7, 10_000.0, &candle_core::Device::Cpu).is_err());
    /// ```
    pub fn new(max_len: usize, head_dim: usize, base: f64, device: &Device) -> Result<Self> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || max_len == 0 {
            return Err(TrainError::Config {
                source_name: "model".to_owned(),
                message: format!(
                    "rotary embedding: head dimension {head_dim} and length {max_len}; expected an even head dimension (width / heads) and a positive length"
                ),
            });
        }
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_len * half);
        let mut sin = Vec::with_capacity(max_len * half);
        for p in 0..max_len {
            for i in 0..half {
                let angle = p as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (max_len, half), device)?,
            sin: Tensor::from_vec(sin, (max_len, half), device)?,
            max_len,
        })
    }

    /// The longest sequence the tables cover.
    ///
    /// ```
    /// assert_eq!(ltd_train::Rotary::new(32, 8, 1e4, &candle_core::Device::Cpu)?.max_len(), 32);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// cos/sin for positions `0..len`, shared by every batch row.
    ///
    /// # Errors
    /// When `len` exceeds [`max_len`](Self::max_len).
    ///
    /// ```
    /// let rotary = ltd_train::Rotary::new(32, 8, 1e4, &candle_core::Device::Cpu)?;
    /// assert!(rotary.at_range(33).is_err());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn at_range(&self, len: usize) -> Result<RotaryAt> {
        if len > self.max_len {
            return Err(self.too_long(len));
        }
        let half = self.cos.dim(1)?;
        Ok(RotaryAt {
            cos: self.cos.narrow(0, 0, len)?.reshape((1, 1, len, half))?,
            sin: self.sin.narrow(0, 0, len)?.reshape((1, 1, len, half))?,
        })
    }

    /// cos/sin at `positions` (`[B, T]`, u32): row `b`, column `t` gets position
    /// `positions[b, t]`.
    ///
    /// # Errors
    /// When `positions` is not 2-D u32 (candle reports an index past the table as an error).
    ///
    /// ```
    /// let rotary = ltd_train::Rotary::new(32, 8, 1e4, &candle_core::Device::Cpu)?;
    /// let p = candle_core::Tensor::new(&[[0u32, 7], [3, 31]], &candle_core::Device::Cpu)?;
    /// assert!(rotary.at_positions(&p).is_ok());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn at_positions(&self, positions: &Tensor) -> Result<RotaryAt> {
        let (b, t) = positions.dims2()?;
        if positions.dtype() != DType::U32 {
            return Err(TrainError::Candle(candle_core::Error::Msg(format!(
                "rotary positions have dtype {:?}; expected u32",
                positions.dtype()
            ))));
        }
        let half = self.cos.dim(1)?;
        let flat = positions.flatten_all()?;
        Ok(RotaryAt {
            cos: self.cos.index_select(&flat, 0)?.reshape((b, 1, t, half))?,
            sin: self.sin.index_select(&flat, 0)?.reshape((b, 1, t, half))?,
        })
    }

    /// Rotates `x` (`[B, H, T, head_dim]`) by the angles of `at`: with `x = [x1, x2]` split in
    /// halves, `[x1·cos − x2·sin, x1·sin + x2·cos]`. Differentiable in `x`.
    ///
    /// # Errors
    /// When the shapes do not broadcast.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let rotary = ltd_train::Rotary::new(4, 2, 1e4, &Device::Cpu)?;
    /// let x = Tensor::new(&[[[[1f32, 0.0]]]], &Device::Cpu)?;
    /// let y = rotary.apply(&x, &rotary.at_positions(&Tensor::new(&[[1u32]], &Device::Cpu)?)?)?;
    /// let v = y.flatten_all()?.to_vec1::<f32>()?;
    /// assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 1f32.sin()).abs() < 1e-6);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn apply(&self, x: &Tensor, at: &RotaryAt) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let first = (x1.broadcast_mul(&at.cos)? - x2.broadcast_mul(&at.sin)?)?;
        let second = (x1.broadcast_mul(&at.sin)? + x2.broadcast_mul(&at.cos)?)?;
        Ok(Tensor::cat(&[first, second], D::Minus1)?)
    }

    fn too_long(&self, len: usize) -> TrainError {
        TrainError::Config {
            source_name: "model".to_owned(),
            message: format!(
                "sequence length {len} exceeds the rotary table's {}",
                self.max_len
            ),
        }
    }
}
