//! The kept positions: one layer's `[B, r]` ([`IndexView`]) and all LTD layers' `[L, B, r]`
//! ([`LayerIndicesView`], the owned [`SampledIndices`]).

use crate::{CoreError, Result};

/// One layer's kept positions: an `i32` tensor `[B, r]` (row `b` lists the positions kept in
/// batch entry `b`). Rows may be padded (`row_stride >= r`); positions within a row are contiguous.
///
/// The view remembers which layer of an `[L, B, r]` tensor it came from, for error messages.
///
/// ```
/// use ltd_core::IndexView;
/// let idx = [0, 2, 1, 3];
/// let v = IndexView::new(&idx, 2, 2)?;
/// assert_eq!(v.row(1), Some(&[1, 3][..]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct IndexView<'a> {
    data: &'a [i32],
    batch: usize,
    reserved: usize,
    row_stride: usize,
    layer: usize,
}

impl<'a> IndexView<'a> {
    /// A contiguous `[batch, reserved]` view.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall), [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow).
    ///
    /// ```
    /// # use ltd_core::IndexView;
    /// assert!(IndexView::new(&[0, 1, 2], 1, 3).is_ok());
    /// assert!(IndexView::new(&[0, 1, 2], 2, 3).is_err());
    /// ```
    pub fn new(data: &'a [i32], batch: usize, reserved: usize) -> Result<Self> {
        IndexView::with_row_stride(data, batch, reserved, reserved)
    }

    /// A `[batch, reserved]` view whose rows start `row_stride` elements apart.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`](crate::CoreError::InvalidArgument) when `row_stride < reserved` and `batch > 1` (rows would
    /// overlap); [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall); [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow).
    ///
    /// ```
    /// # use ltd_core::IndexView;
    /// // Keep positions 0 and 2 of every row of a [B=2, 3]-padded buffer.
    /// let v = IndexView::with_row_stride(&[0, 2, -1, 0, 2], 2, 2, 3)?;
    /// assert_eq!(v.row(1), Some(&[0, 2][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn with_row_stride(
        data: &'a [i32],
        batch: usize,
        reserved: usize,
        row_stride: usize,
    ) -> Result<Self> {
        if batch > 1 && row_stride < reserved {
            return Err(CoreError::InvalidArgument {
                what: "index row stride",
                got: row_stride.to_string(),
                expected: format!("at least r = {reserved}"),
            });
        }
        let needed = if batch == 0 || reserved == 0 {
            0
        } else {
            (batch - 1)
                .checked_mul(row_stride)
                .and_then(|x| x.checked_add(reserved))
                .ok_or(CoreError::SizeOverflow {
                    what: "index tensor",
                })?
        };
        if data.len() < needed {
            return Err(CoreError::BufferTooSmall {
                what: "index",
                got: data.len(),
                needed,
            });
        }
        Ok(IndexView {
            data,
            batch,
            reserved,
            row_stride,
            layer: 0,
        })
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[0, 1], 2, 1)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[0, 1], 1, 2)?.reserved(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The layer of the `[L, B, r]` tensor this view came from (0 for a view made directly).
    ///
    /// ```
    /// let all = ltd_core::LayerIndicesView::new(&[0, 1, 1, 2], 2, 1, 2)?;
    /// assert_eq!(all.layer(1)?.layer_index(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer_index(&self) -> usize {
        self.layer
    }

    /// Row `b` (its `r` positions), or `None` when `b >= B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::IndexView::new(&[4, 5], 1, 2)?.row(0), Some(&[4, 5][..]));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn row(&self, b: usize) -> Option<&'a [i32]> {
        (b < self.batch).then(|| self.row_unchecked(b))
    }

    #[inline]
    pub(crate) fn row_unchecked(&self, b: usize) -> &'a [i32] {
        &self.data[b * self.row_stride..b * self.row_stride + self.reserved]
    }
}

/// All LTD layers' kept positions: a contiguous `i32` tensor `[L, B, r]`.
///
/// ```
/// use ltd_core::LayerIndicesView;
/// let idx = [0, 1, 0, 2, 1, 2, 0, 1]; // L = 2, B = 2, r = 2
/// let all = LayerIndicesView::new(&idx, 2, 2, 2)?;
/// assert_eq!(all.layer(1)?.row(0), Some(&[1, 2][..]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LayerIndicesView<'a> {
    data: &'a [i32],
    layers: usize,
    batch: usize,
    reserved: usize,
}

impl<'a> LayerIndicesView<'a> {
    /// A contiguous `[layers, batch, reserved]` view.
    ///
    /// # Errors
    /// [`CoreError::BufferTooSmall`](crate::CoreError::BufferTooSmall), [`CoreError::SizeOverflow`](crate::CoreError::SizeOverflow).
    ///
    /// ```
    /// assert!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 2, 2).is_ok());
    /// assert!(ltd_core::LayerIndicesView::new(&[0; 7], 2, 2, 2).is_err());
    /// ```
    pub fn new(data: &'a [i32], layers: usize, batch: usize, reserved: usize) -> Result<Self> {
        let needed = layers
            .checked_mul(batch)
            .and_then(|x| x.checked_mul(reserved))
            .ok_or(CoreError::SizeOverflow {
                what: "index tensor",
            })?;
        if data.len() < needed {
            return Err(CoreError::BufferTooSmall {
                what: "index",
                got: data.len(),
                needed,
            });
        }
        Ok(LayerIndicesView {
            data,
            layers,
            batch,
            reserved,
        })
    }

    /// Number of layers `L`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 2, 2)?.layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 2, 4, 1)?.batch(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[0; 8], 1, 2, 4)?.reserved(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Layer `l`'s `[B, r]` indices.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`](crate::CoreError::InvalidSize) when `l >= L`.
    ///
    /// ```
    /// let all = ltd_core::LayerIndicesView::new(&[0, 1, 2, 3], 2, 1, 2)?;
    /// assert_eq!(all.layer(1)?.row(0), Some(&[2, 3][..]));
    /// assert!(all.layer(2).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer(&self, l: usize) -> Result<IndexView<'a>> {
        if l >= self.layers {
            return Err(CoreError::InvalidSize {
                what: "layer",
                got: l,
                expected: format!("below the number of sampled layers L = {}", self.layers),
            });
        }
        let per_layer = self.batch * self.reserved;
        let data = &self.data[l * per_layer..(l + 1) * per_layer];
        Ok(IndexView {
            data,
            batch: self.batch,
            reserved: self.reserved,
            row_stride: self.reserved,
            layer: l,
        })
    }

    /// The elements, `[L, B, r]` row-major.
    ///
    /// ```
    /// assert_eq!(ltd_core::LayerIndicesView::new(&[3, 4], 1, 1, 2)?.as_slice(), &[3, 4]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &'a [i32] {
        &self.data[..self.layers * self.batch * self.reserved]
    }
}

/// Owned sampled indices `[L, B, r]` (what the samplers return): each row sorted ascending,
/// distinct, in `[0, S)`.
///
/// ```
/// use ltd_core::TokenSampler;
/// let idx = TokenSampler::new(7).sample(0, 2, 4, 16, 8)?;
/// assert_eq!((idx.layers(), idx.batch(), idx.reserved(), idx.seq()), (2, 4, 8, 16));
/// let row = idx.layer(1)?.row(3).unwrap();
/// assert!(row.windows(2).all(|w| w[0] < w[1]));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledIndices {
    pub(crate) data: Vec<i32>,
    pub(crate) layers: usize,
    pub(crate) batch: usize,
    pub(crate) reserved: usize,
    pub(crate) seq: usize,
}

impl SampledIndices {
    /// Number of layers `L`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.layers(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Batch size `B`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.batch(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept positions per row, `r`.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.reserved(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The full sequence length `S` the positions index.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?.seq(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// A view of all layers.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?;
    /// assert_eq!(idx.view().layers(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn view(&self) -> LayerIndicesView<'_> {
        LayerIndicesView {
            data: &self.data,
            layers: self.layers,
            batch: self.batch,
            reserved: self.reserved,
        }
    }

    /// Layer `l`'s `[B, r]` indices.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`](crate::CoreError::InvalidSize) when `l >= L`.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 3, 1, 4, 2)?;
    /// assert_eq!(idx.layer(2)?.reserved(), 2);
    /// assert!(idx.layer(3).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layer(&self, l: usize) -> Result<IndexView<'_>> {
        self.view().layer(l)
    }

    /// The elements, `[L, B, r]` row-major.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 1, 1, 3, 3)?;
    /// assert_eq!(idx.as_slice(), &[0, 1, 2]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_slice(&self) -> &[i32] {
        &self.data
    }

    /// The elements as a vector.
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(0).sample(0, 1, 1, 3, 3)?;
    /// assert_eq!(idx.into_vec(), vec![0, 1, 2]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn into_vec(self) -> Vec<i32> {
        self.data
    }
}
