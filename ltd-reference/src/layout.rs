//! [`Layout`]: a block-sparsity layout `[H, block_rows, block_cols]` of 0/1 bytes plus its block
//! size, and the tile order of the block-sparse format.

use crate::error::{RefError, Result, check_len, nonzero};

/// A block-sparsity layout: `values` is `[heads, block_rows, block_cols]` row-major, 1 where the
/// (query-block, key-block) tile is active, 0 elsewhere; `block` is the tile edge `b`.
///
/// Sparse tensors store the active tiles in lexicographic `(head, block_row, block_col)` order
/// over **all** heads (upstream-semantics.md §2.1), which is the order of [`Layout::tiles`]. Convert a `bool`
/// layout with `values.iter().map(|&v| v as u8)`.
///
/// ```
/// use ltd_reference::Layout;
/// // 1 head, 2x2 blocks of size 4, lower triangle.
/// let values = [1u8, 0, 1, 1];
/// let layout = Layout::square(&values, 1, 2, 4);
/// layout.validate()?;
/// assert_eq!(layout.nnz(), 3);
/// assert_eq!(layout.tiles(), vec![(0, 0, 0), (0, 1, 0), (0, 1, 1)]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout<'a> {
    /// `[heads, block_rows, block_cols]`, each 0 or 1.
    pub values: &'a [u8],
    /// Number of heads `H`.
    pub heads: usize,
    /// Number of block rows (query blocks).
    pub block_rows: usize,
    /// Number of block columns (key blocks).
    pub block_cols: usize,
    /// Block size `b` (any positive size).
    pub block: usize,
}

impl<'a> Layout<'a> {
    /// A layout of `heads` heads with `block_rows x block_cols` tiles of size `block`.
    ///
    /// ```
    /// use ltd_reference::Layout;
    /// let layout = Layout::new(&[1, 1], 1, 1, 2, 16);
    /// assert_eq!((layout.block_rows, layout.block_cols), (1, 2));
    /// ```
    pub fn new(
        values: &'a [u8],
        heads: usize,
        block_rows: usize,
        block_cols: usize,
        block: usize,
    ) -> Self {
        Layout {
            values,
            heads,
            block_rows,
            block_cols,
            block,
        }
    }

    /// A square layout `[heads, blocks, blocks]` (the attention case).
    ///
    /// ```
    /// use ltd_reference::Layout;
    /// let layout = Layout::square(&[1; 8], 2, 2, 16);
    /// assert_eq!(layout.block_cols, 2);
    /// ```
    pub fn square(values: &'a [u8], heads: usize, blocks: usize, block: usize) -> Self {
        Layout::new(values, heads, blocks, blocks, block)
    }

    /// Checks every size is positive, `values` has `heads * block_rows * block_cols` entries and
    /// each is 0 or 1.
    ///
    /// ```
    /// use ltd_reference::{Layout, RefError};
    /// let err = Layout::square(&[1, 2, 0, 1], 1, 2, 16).validate().unwrap_err();
    /// assert_eq!(err, RefError::BadLayoutValue { head: 0, row: 0, col: 1, value: 2 });
    /// ```
    pub fn validate(&self) -> Result<()> {
        nonzero("layout heads", self.heads)?;
        nonzero("layout block rows", self.block_rows)?;
        nonzero("layout block cols", self.block_cols)?;
        nonzero("block", self.block)?;
        check_len(
            "layout",
            self.values,
            &[self.heads, self.block_rows, self.block_cols],
        )?;
        for h in 0..self.heads {
            for i in 0..self.block_rows {
                for j in 0..self.block_cols {
                    let value = self.values[self.flat(h, i, j)];
                    if value > 1 {
                        return Err(RefError::BadLayoutValue {
                            head: h,
                            row: i,
                            col: j,
                            value,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn flat(&self, h: usize, i: usize, j: usize) -> usize {
        (h * self.block_rows + i) * self.block_cols + j
    }

    /// Whether tile `(h, i, j)` is active. Call [`Layout::validate`] first; out-of-range
    /// coordinates read as inactive.
    ///
    /// ```
    /// use ltd_reference::Layout;
    /// let layout = Layout::square(&[1, 0, 1, 1], 1, 2, 4);
    /// assert!(layout.is_active(0, 1, 0));
    /// assert!(!layout.is_active(0, 0, 1));
    /// ```
    pub fn is_active(&self, h: usize, i: usize, j: usize) -> bool {
        h < self.heads
            && i < self.block_rows
            && j < self.block_cols
            && self.values.get(self.flat(h, i, j)) == Some(&1)
    }

    /// Number of active tiles over all heads (`nnz`).
    ///
    /// ```
    /// use ltd_reference::Layout;
    /// assert_eq!(Layout::square(&[1, 0, 1, 1, 0, 0, 0, 1], 2, 2, 4).nnz(), 4);
    /// ```
    pub fn nnz(&self) -> usize {
        self.values.iter().filter(|&&v| v == 1).count()
    }

    /// The active tiles `(head, block_row, block_col)` in storage order (lexicographic). Tile `k`
    /// of a sparse tensor `[Z, nnz, b, b]` is the `k`-th entry.
    ///
    /// ```
    /// use ltd_reference::Layout;
    /// let layout = Layout::square(&[0, 1, 1, 0, 1, 0, 0, 0], 2, 2, 4);
    /// assert_eq!(layout.tiles(), vec![(0, 0, 1), (0, 1, 0), (1, 0, 0)]);
    /// ```
    pub fn tiles(&self) -> Vec<(usize, usize, usize)> {
        let mut tiles = Vec::new();
        for h in 0..self.heads {
            for i in 0..self.block_rows {
                for j in 0..self.block_cols {
                    if self.is_active(h, i, j) {
                        tiles.push((h, i, j));
                    }
                }
            }
        }
        tiles
    }
}
