//! `DenseSparsityConfig`: every tile active.

use super::{Layout, build_layout, check_common};
use crate::error::Result;

/// All tiles active (upstream `DenseSparsityConfig(num_heads, block=16,
/// different_layout_per_head=False)`).
///
/// ```
/// use ltd_sparse_attn::DenseConfig;
/// let l = DenseConfig::new(2).make_layout_blocks(3).unwrap();
/// assert_eq!(l.nnz(), 2 * 9);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenseConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (16, 32, 64 or 128; upstream default 16).
    pub block: usize,
    /// Accepted for parity with upstream; it changes nothing for a dense layout.
    pub different_layout_per_head: bool,
}

impl DenseConfig {
    /// Upstream defaults: block 16, shared layout.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::DenseConfig::new(4).block, 16);
    /// ```
    pub fn new(num_heads: usize) -> Self {
        DenseConfig {
            num_heads,
            block: 16,
            different_layout_per_head: false,
        }
    }

    /// Checks `num_heads >= 1` and the block size.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::DenseConfig::new(0).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)
    }

    /// The all-ones layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// let l = ltd_sparse_attn::DenseConfig::new(1).make_layout_blocks(2).unwrap();
    /// assert_eq!(l.mask(), &[1, 1, 1, 1]);
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        self.validate()?;
        build_layout(
            self.num_heads,
            self.block,
            num_blocks,
            self.different_layout_per_head,
            |_, g| {
                g.fill(0..g.nb, 0..g.nb);
                Ok(())
            },
        )
    }
}
