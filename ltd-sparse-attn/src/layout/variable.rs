//! `VariableSparsityConfig`: random blocks, variable local windows and global blocks.

use super::{
    Direction, HeadGrid, Layout, build_layout, check_common, check_global_spans, head_rng,
    sample_distinct, too_large,
};
use crate::error::{Result, SparseAttnError};

/// Random blocks, a list of local window sizes, and global blocks or spans (upstream
/// `VariableSparsityConfig`).
///
/// **Fix of an upstream bug:** upstream samples the random blocks of every row from all of
/// `[0, nb)` even when unidirectional, leaking the future. Here a unidirectional layout samples
/// row `r`'s random blocks from `[0, r]` only, `min(num_random_blocks, r + 1)` of them.
/// Random blocks come from the seeded generator described in [`crate::layout`].
///
/// Also unlike upstream (which crashes with a Python error), an empty `local_window_blocks` or a
/// zero window size is an [`SparseAttnError::InvalidConfig`].
///
/// ```
/// use ltd_sparse_attn::{VariableConfig, render_head_text};
/// let mut c = VariableConfig::new(1);
/// c.local_window_blocks = vec![2, 3];
/// let l = c.make_layout_blocks(8).unwrap();
/// assert!(render_head_text(&l, 0).starts_with("##......\n##......\n#.###...\n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (default 16).
    pub block: usize,
    /// Give each head its own layout (default false).
    pub different_layout_per_head: bool,
    /// Random key blocks per row (default 0).
    pub num_random_blocks: usize,
    /// Local window sizes in blocks, applied in order; the last one tiles the rest
    /// (default `[4]`).
    pub local_window_blocks: Vec<usize>,
    /// Global block indices, or span starts when end indices are given (default `[0]`).
    pub global_block_indices: Vec<usize>,
    /// Exclusive span ends, one per start (default none).
    pub global_block_end_indices: Option<Vec<usize>>,
    /// Unidirectional or bidirectional (default bidirectional).
    pub attention: Direction,
    /// Global blocks also attend to every block (bidirectional only; default false).
    pub horizontal_global_attention: bool,
    /// Seed of the random blocks (default 0).
    pub seed: u64,
}

impl VariableConfig {
    /// Upstream defaults: block 16, no random blocks, windows `[4]`, global `[0]`, bidirectional.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::VariableConfig::new(2).local_window_blocks, vec![4]);
    /// ```
    pub fn new(num_heads: usize) -> Self {
        VariableConfig {
            num_heads,
            block: 16,
            different_layout_per_head: false,
            num_random_blocks: 0,
            local_window_blocks: vec![4],
            global_block_indices: vec![0],
            global_block_end_indices: None,
            attention: Direction::Bidirectional,
            horizontal_global_attention: false,
            seed: 0,
        }
    }

    /// Upstream's constructor checks plus the window checks upstream lacks.
    ///
    /// ```
    /// let mut c = ltd_sparse_attn::VariableConfig::new(1);
    /// c.global_block_end_indices = Some(vec![0]);
    /// assert!(c.validate().is_err()); // start 0 >= end 0
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)?;
        check_global_spans(
            &self.global_block_indices,
            self.global_block_end_indices.as_deref(),
        )?;
        if self.horizontal_global_attention && self.attention != Direction::Bidirectional {
            return Err(SparseAttnError::config(
                "horizontal_global_attention",
                "true with unidirectional attention; expected false (horizontal global attention needs bidirectional attention)",
            ));
        }
        if self.local_window_blocks.is_empty() {
            return Err(SparseAttnError::config(
                "local_window_blocks",
                "is empty; expected at least one window size",
            ));
        }
        if let Some(i) = self.local_window_blocks.iter().position(|&w| w == 0) {
            return Err(SparseAttnError::config(
                format!("local_window_blocks[{i}]"),
                "0; expected a window of at least 1 block",
            ));
        }
        Ok(())
    }

    /// The layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// let mut c = ltd_sparse_attn::VariableConfig::new(1);
    /// c.num_random_blocks = 9;
    /// assert!(c.make_layout_blocks(8).is_err()); // more random blocks than blocks
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        self.validate()?;
        if num_blocks < self.num_random_blocks {
            return Err(too_large(
                "num_random_blocks",
                self.num_random_blocks,
                num_blocks,
            ));
        }
        build_layout(
            self.num_heads,
            self.block,
            num_blocks,
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
        // 1. Random blocks (causal when unidirectional: a fix of upstream).
        if self.num_random_blocks > 0 {
            let mut rng = head_rng(self.seed, nb, h);
            for r in 0..nb {
                let n = if uni { r + 1 } else { nb };
                let k = self.num_random_blocks.min(n);
                for c in sample_distinct(&mut rng, n, k) {
                    g.set(r, c);
                }
            }
        }
        // 2. Local windows from the list, then the last size tiles the rest.
        let mut start: usize = 0;
        for &w in &self.local_window_blocks {
            let end = start.saturating_add(w).min(nb);
            g.local_window(start, end, self.attention);
            start = start.saturating_add(w);
        }
        let last = self.local_window_blocks.last().copied().unwrap_or(1);
        while start < nb {
            let end = start.saturating_add(last).min(nb);
            g.local_window(start, end, self.attention);
            start = start.saturating_add(last);
        }
        // 3. Global blocks or spans.
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
            if self.horizontal_global_attention {
                g.fill(s..e, 0..nb);
            }
            let r0 = if uni { s } else { 0 };
            g.fill(r0..nb, s..e);
        }
    }
}
