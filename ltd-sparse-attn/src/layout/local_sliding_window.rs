//! `LocalSlidingWindowSparsityConfig`: a plain sliding window.

use super::{Direction, Layout, build_layout, check_common, too_large};
use crate::error::Result;

/// A sliding window (upstream `LocalSlidingWindowSparsityConfig`): half-width
/// `w = num_sliding_window_blocks / 2`; bidirectional rows see `[row-w, row+w]`, unidirectional
/// rows `[row-w, row]` (so `n / 2 + 1` blocks). Never per-head. Default attention is
/// **unidirectional**, as upstream.
///
/// ```
/// use ltd_sparse_attn::{LocalSlidingWindowConfig, render_head_text};
/// let l = LocalSlidingWindowConfig::new(1).make_layout_blocks(4).unwrap();
/// assert_eq!(render_head_text(&l, 0), "#...\n##..\n.##.\n..##\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSlidingWindowConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (default 16).
    pub block: usize,
    /// Sliding window size `n` (default 3).
    pub num_sliding_window_blocks: usize,
    /// Unidirectional (default) or bidirectional.
    pub attention: Direction,
}

impl LocalSlidingWindowConfig {
    /// Upstream defaults: block 16, window 3, unidirectional.
    ///
    /// ```
    /// use ltd_sparse_attn::{Direction, LocalSlidingWindowConfig};
    /// assert_eq!(LocalSlidingWindowConfig::new(1).attention, Direction::Unidirectional);
    /// ```
    pub fn new(num_heads: usize) -> Self {
        LocalSlidingWindowConfig {
            num_heads,
            block: 16,
            num_sliding_window_blocks: 3,
            attention: Direction::Unidirectional,
        }
    }

    /// Checks `num_heads` and the block size.
    ///
    /// ```
    /// let mut c = ltd_sparse_attn::LocalSlidingWindowConfig::new(1);
    /// c.block = 8;
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)
    }

    /// The layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::LocalSlidingWindowConfig::new(1).make_layout_blocks(2).is_err());
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        self.validate()?;
        if num_blocks < self.num_sliding_window_blocks {
            return Err(too_large(
                "num_sliding_window_blocks",
                self.num_sliding_window_blocks,
                num_blocks,
            ));
        }
        let w = self.num_sliding_window_blocks / 2;
        let bidirectional = self.attention == Direction::Bidirectional;
        build_layout(self.num_heads, self.block, num_blocks, false, |_, g| {
            for r in 0..g.nb {
                let lo = r.saturating_sub(w);
                let hi = if bidirectional {
                    (r + w + 1).min(g.nb)
                } else {
                    r + 1
                };
                g.fill(r..r + 1, lo..hi);
            }
            Ok(())
        })
    }
}
