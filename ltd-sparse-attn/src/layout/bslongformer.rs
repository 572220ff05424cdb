//! `BSLongformerSparsityConfig`: sliding window plus global blocks or spans.

use super::{
    Direction, HeadGrid, Layout, build_layout, check_common, check_global_spans, too_large,
};
use crate::error::Result;

/// Block-sparse Longformer (upstream `BSLongformerSparsityConfig`): a symmetric sliding window
/// of half-width `num_sliding_window_blocks / 2`, and each global index or span as full rows and
/// columns; unidirectional takes the lower triangle.
///
/// Upstream never validates the attention string (anything but "unidirectional" is
/// bidirectional) and its JSON path never passes it, so from JSON this family is always
/// bidirectional; here it is a typed [`Direction`].
///
/// ```
/// use ltd_sparse_attn::{BSLongformerConfig, render_head_text};
/// let l = BSLongformerConfig::new(1).make_layout_blocks(6).unwrap();
/// assert_eq!(render_head_text(&l, 0), "######\n###...\n####..\n#.###.\n#..###\n#...##\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BSLongformerConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (default 16).
    pub block: usize,
    /// Give each head its own layout (default false; all heads are equal anyway).
    pub different_layout_per_head: bool,
    /// Sliding window size `n`; half-width `n / 2` (default 3).
    pub num_sliding_window_blocks: usize,
    /// Global block indices, or span starts when end indices are given (default `[0]`).
    pub global_block_indices: Vec<usize>,
    /// Exclusive span ends, one per start (default none).
    pub global_block_end_indices: Option<Vec<usize>>,
    /// Unidirectional or bidirectional (default bidirectional).
    pub attention: Direction,
}

impl BSLongformerConfig {
    /// Upstream defaults: block 16, window 3, global `[0]`, bidirectional.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::BSLongformerConfig::new(1).num_sliding_window_blocks, 3);
    /// ```
    pub fn new(num_heads: usize) -> Self {
        BSLongformerConfig {
            num_heads,
            block: 16,
            different_layout_per_head: false,
            num_sliding_window_blocks: 3,
            global_block_indices: vec![0],
            global_block_end_indices: None,
            attention: Direction::Bidirectional,
        }
    }

    /// Upstream's start/end checks.
    ///
    /// ```
    /// let mut c = ltd_sparse_attn::BSLongformerConfig::new(1);
    /// c.global_block_end_indices = Some(vec![1, 2]);
    /// assert!(c.validate().is_err()); // 1 start, 2 ends
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)?;
        check_global_spans(
            &self.global_block_indices,
            self.global_block_end_indices.as_deref(),
        )
    }

    /// The layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::BSLongformerConfig::new(1).make_layout_blocks(2).is_err());
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
        build_layout(
            self.num_heads,
            self.block,
            num_blocks,
            self.different_layout_per_head,
            |_, g| {
                self.fill_head(g);
                Ok(())
            },
        )
    }

    fn fill_head(&self, g: &mut HeadGrid<'_>) {
        let nb = g.nb;
        g.sliding_window(self.num_sliding_window_blocks / 2);
        let spans: Vec<(usize, usize)> = match &self.global_block_end_indices {
            None => self
                .global_block_indices
                .iter()
                .map(|&i| (i, i.saturating_add(1)))
                .collect(),
            Some(ends) => self
                .global_block_indices
                .iter()
                .copied()
                .zip(ends.iter().copied())
                .collect(),
        };
        for (s, e) in spans {
            if s >= nb {
                continue;
            }
            let e = e.min(nb);
            g.fill(s..e, 0..nb);
            g.fill(0..nb, s..e);
        }
        if self.attention == Direction::Unidirectional {
            g.tril();
        }
    }
}
