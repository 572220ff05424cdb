//! `FixedSparsityConfig`: the Sparse Transformers "fixed" pattern.

use super::{Direction, HeadGrid, Layout, build_layout, check_common, py_slice};
use crate::error::{Result, SparseAttnError};

/// The Sparse Transformers "fixed" pattern (upstream `FixedSparsityConfig`): local windows of
/// `num_local_blocks` blocks, and in each window the last `num_global_blocks` blocks (shifted left
/// by `num_global_blocks` per head pattern) are global columns (and rows, with horizontal global
/// attention).
///
/// Edge behaviour reproduced from upstream: with `num_global_blocks > 1` a unidirectional layout
/// lets row `c` see columns `c+1 .. c+ng-1`; with fewer blocks than `num_global_blocks` the last
/// window's start is negative and wraps around like a Python slice. `num_global_blocks = 0` is
/// an error (upstream divides by zero).
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, render_head_text};
/// let l = FixedConfig::new(1).make_layout_blocks(8).unwrap();
/// assert_eq!(render_head_text(&l, 0), "####...#\n####...#\n####...#\n####...#\n...#####\n...#####\n...#####\n...#####\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedConfig {
    /// Number of attention heads.
    pub num_heads: usize,
    /// Block size in tokens (default 16).
    pub block: usize,
    /// Give each head its own layout (default false: head 0 is copied to all heads).
    pub different_layout_per_head: bool,
    /// Local window size in blocks, `nl` (default 4).
    pub num_local_blocks: usize,
    /// Global blocks per window, `ng` (default 1); `nl` must be a multiple of it.
    pub num_global_blocks: usize,
    /// Unidirectional or bidirectional (default bidirectional).
    pub attention: Direction,
    /// Global blocks also attend to every block (bidirectional only; default false).
    pub horizontal_global_attention: bool,
    /// Number of distinct global patterns cycled over heads (default 1; needs per-head layouts
    /// when above 1, and at most `nl / ng`).
    pub num_different_global_patterns: usize,
}

impl FixedConfig {
    /// Upstream defaults: block 16, nl 4, ng 1, bidirectional, no horizontal, 1 pattern.
    ///
    /// ```
    /// let c = ltd_sparse_attn::FixedConfig::new(4);
    /// assert_eq!((c.num_local_blocks, c.num_global_blocks), (4, 1));
    /// ```
    pub fn new(num_heads: usize) -> Self {
        FixedConfig {
            num_heads,
            block: 16,
            different_layout_per_head: false,
            num_local_blocks: 4,
            num_global_blocks: 1,
            attention: Direction::Bidirectional,
            horizontal_global_attention: false,
            num_different_global_patterns: 1,
        }
    }

    /// Upstream's constructor checks, in order, plus `num_global_blocks >= 1` and
    /// `num_different_global_patterns >= 1`.
    ///
    /// ```
    /// let mut c = ltd_sparse_attn::FixedConfig::new(4);
    /// c.num_local_blocks = 5;
    /// c.num_global_blocks = 2;
    /// assert_eq!(c.validate().unwrap_err().to_string(),
    ///            "num_local_blocks: 5 is not a multiple of num_global_blocks 2");
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_common(self.num_heads, self.block)?;
        let (nl, ng) = (self.num_local_blocks, self.num_global_blocks);
        if nl == 0 {
            return Err(SparseAttnError::config(
                "num_local_blocks",
                "0; expected at least 1 (and a multiple of num_global_blocks)",
            ));
        }
        if ng == 0 {
            return Err(SparseAttnError::config(
                "num_global_blocks",
                "0; expected at least 1",
            ));
        }
        if nl % ng != 0 {
            return Err(SparseAttnError::config(
                "num_local_blocks",
                format!("{nl} is not a multiple of num_global_blocks {ng}"),
            ));
        }
        if self.horizontal_global_attention && self.attention != Direction::Bidirectional {
            return Err(SparseAttnError::config(
                "horizontal_global_attention",
                "true with unidirectional attention; expected false (horizontal global attention needs bidirectional attention)",
            ));
        }
        let ndgp = self.num_different_global_patterns;
        if ndgp == 0 {
            return Err(SparseAttnError::config(
                "num_different_global_patterns",
                "0; expected at least 1",
            ));
        }
        if ndgp > 1 && !self.different_layout_per_head {
            return Err(SparseAttnError::config(
                "num_different_global_patterns",
                format!(
                    "{ndgp} needs different_layout_per_head = true; expected 1 with a shared layout"
                ),
            ));
        }
        if ndgp > nl / ng {
            return Err(SparseAttnError::config(
                "num_different_global_patterns",
                format!(
                    "{ndgp} is larger than num_local_blocks / num_global_blocks = {nl} / {ng} = {}",
                    nl / ng
                ),
            ));
        }
        Ok(())
    }

    /// The layout with `num_blocks` blocks per side.
    ///
    /// ```
    /// use ltd_sparse_attn::{Direction, FixedConfig, render_head_text};
    /// let mut c = FixedConfig::new(1);
    /// c.attention = Direction::Unidirectional;
    /// let l = c.make_layout_blocks(4).unwrap();
    /// assert_eq!(render_head_text(&l, 0), "#...\n##..\n###.\n####\n");
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        self.validate()?;
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
        let (nl, ng) = (self.num_local_blocks, self.num_global_blocks);
        let uni = self.attention == Direction::Unidirectional;
        // 1. Local windows.
        let mut ws: usize = 0;
        while ws < nb {
            let we = ws.saturating_add(nl).min(nb);
            g.local_window(ws, we, self.attention);
            ws = ws.saturating_add(nl);
        }
        // 2. First global column of each window for this head's pattern.
        let g0 = nl - (1 + h % self.num_different_global_patterns) * ng;
        // 3. Full windows: global columns `c..c+ng` for `c = g0, g0+nl, ...` below `full_end`,
        // seen from row `c` on (unidirectional) or every row. Written row by row so the mask is
        // walked in memory order (column by column is a cache miss per cell at large `nb`).
        let full_end = nb - nb % nl;
        let starts = || (g0..full_end).step_by(nl);
        for r in 0..nb {
            for c in starts() {
                if uni && c > r {
                    break;
                }
                g.fill(r..r + 1, c..c.saturating_add(ng).min(nb));
            }
        }
        if self.horizontal_global_attention {
            for c in starts() {
                g.fill(c..c.saturating_add(ng).min(nb), 0..nb);
            }
        }
        // 4. Partial last window (Python slicing: a negative start wraps).
        if full_end < nb {
            let (nb_i, ng_i) = (nb as i128, ng as i128);
            let s = (full_end as i128 + g0 as i128).min(nb_i - ng_i);
            let cols = py_slice(s, s + ng_i, nb);
            let rows = py_slice(if uni { s } else { 0 }, nb_i, nb);
            g.fill(rows, cols);
            if self.horizontal_global_attention {
                g.fill(py_slice(s, s + ng_i, nb), 0..nb);
            }
        }
    }
}
