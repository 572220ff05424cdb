//! `BigBirdSparsityConfig`: random blocks, sliding window and global blocks.

use super::{
    Direction, HeadGrid, Layout, build_layout, check_common, head_rng, sample_distinct, too_large,
};
use crate::error::{Result, SparseAttnError};

/// BigBird (upstream `BigBirdSparsityConfig`): per row `num_random_blocks` random key blocks
/// (from `[0, nb)`, or `[0, row]` when unidirectional), a symmetric sliding window of half-width
/// `num_sliding_window_blocks / 2`, and the first `num_global_blocks` rows and columns; a
/// unidirectional layout is then cut to its lower triangle.
///
/// Random blocks come from the seeded generator described in [`crate::layout`]. A unidirectional
/// config whose `num_random_blocks` exceeds `row + 1` at some row is an error, as upstream's
/// sampler raises there.
///
/// ```
/// use ltd_sparse_attn::{BigBirdConfig, render_head_text};
/// let mut c = BigBirdConfig::new(1);
/// c.num_random_blocks = 0;
/// let l = c.make_layout_blocks(6).unwrap();
/// assert!(render_head_text(&l, 0).starts_with("######\n###...\n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BigBirdConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (default 16).
    pub block: usize,
    /// Give each head its own layout (default false).
    pub different_layout_per_head: bool,
    /// Random key blocks per row (constructor default 1; the JSON default is 0).
    pub num_random_blocks: usize,
    /// Sliding window size `n`; the half-width is `n / 2`, so an even `n` acts as `n + 1`
    /// (default 3).
    pub num_sliding_window_blocks: usize,
    /// Global rows and columns at the start (default 1).
    pub num_global_blocks: usize,
    /// Unidirectional or bidirectional (default bidirectional).
    pub attention: Direction,
    /// Seed of the random blocks (default 0).
    pub seed: u64,
}

impl BigBirdConfig {
    /// Upstream constructor defaults: block 16, 1 random block, window 3, 1 global block,
    /// bidirectional.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::BigBirdConfig::new(2).num_random_blocks, 1);
    /// ```
    pub fn new(num_heads: usize) -> Self {
        BigBirdConfig {
            num_heads,
            block: 16,
            different_layout_per_head: false,
            num_random_blocks: 1,
            num_sliding_window_blocks: 3,
            num_global_blocks: 1,
            attention: Direction::Bidirectional,
            seed: 0,
        }
    }

    /// Checks `num_heads` and the block size (upstream checks the rest at layout time).
    ///
    /// ```
    /// assert!(ltd_sparse_attn::BigBirdConfig::new(1).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)
    }

    /// The layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// use ltd_sparse_attn::{BigBirdConfig, Direction};
    /// let mut c = BigBirdConfig::new(1);
    /// c.attention = Direction::Unidirectional;
    /// c.num_random_blocks = 2;
    /// assert!(c.make_layout_blocks(4).is_err()); // row 0 has 1 candidate
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        self.validate()?;
        let nb = num_blocks;
        if nb < self.num_random_blocks {
            return Err(too_large("num_random_blocks", self.num_random_blocks, nb));
        }
        if nb < self.num_sliding_window_blocks {
            return Err(too_large(
                "num_sliding_window_blocks",
                self.num_sliding_window_blocks,
                nb,
            ));
        }
        if nb < self.num_global_blocks {
            return Err(too_large("num_global_blocks", self.num_global_blocks, nb));
        }
        if self.attention == Direction::Unidirectional && self.num_random_blocks > 1 && nb > 0 {
            return Err(SparseAttnError::config(
                "num_random_blocks",
                format!(
                    "{} random blocks cannot be drawn causally at row 0 (1 candidate block); expected at most 1 with unidirectional attention",
                    self.num_random_blocks
                ),
            ));
        }
        build_layout(
            self.num_heads,
            self.block,
            nb,
            self.different_layout_per_head,
            |h, g| {
                self.fill_head(h, g);
                Ok(())
            },
        )
    }

    fn fill_head(&self, h: usize, g: &mut HeadGrid<'_>) {
        let nb = g.nb;
        let uni = self.attention == Direction::Unidirectional;
        if self.num_random_blocks > 0 {
            let mut rng = head_rng(self.seed, nb, h);
            for r in 0..nb {
                let n = if uni { r + 1 } else { nb };
                for c in sample_distinct(&mut rng, n, self.num_random_blocks) {
                    g.set(r, c);
                }
            }
        }
        g.sliding_window(self.num_sliding_window_blocks / 2);
        let ng = self.num_global_blocks;
        g.fill(0..ng, 0..nb);
        g.fill(0..nb, 0..ng);
        if uni {
            g.tril();
        }
    }
}
