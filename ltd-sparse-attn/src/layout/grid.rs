//! [`HeadGrid`]: one head's mask with upstream-style fill helpers.

use super::Direction;

/// A mutable view of one head's `nb x nb` mask with upstream-style fill helpers.
pub(crate) struct HeadGrid<'a> {
    pub(crate) nb: usize,
    pub(crate) cells: &'a mut [u8],
}

impl HeadGrid<'_> {
    /// Sets rows `rows` x columns `cols` to 1.
    pub(crate) fn fill(&mut self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        for r in rows {
            for c in cols.clone() {
                self.cells[r * self.nb + c] = 1;
            }
        }
    }

    /// Sets one cell.
    pub(crate) fn set(&mut self, r: usize, c: usize) {
        self.cells[r * self.nb + c] = 1;
    }

    /// Fixed/Variable local window `[start, end)`: causal triangle if unidirectional, else full.
    pub(crate) fn local_window(&mut self, start: usize, end: usize, dir: Direction) {
        for r in start..end {
            let col_end = match dir {
                Direction::Unidirectional => r + 1,
                Direction::Bidirectional => end,
            };
            self.fill(r..r + 1, start..col_end);
        }
    }

    /// Symmetric sliding window of half-width `w` on every row.
    pub(crate) fn sliding_window(&mut self, w: usize) {
        for r in 0..self.nb {
            let lo = r.saturating_sub(w);
            let hi = (r + w + 1).min(self.nb);
            self.fill(r..r + 1, lo..hi);
        }
    }

    /// Zeroes everything above the diagonal (`torch.tril`).
    pub(crate) fn tril(&mut self) {
        for r in 0..self.nb {
            for c in r + 1..self.nb {
                self.cells[r * self.nb + c] = 0;
            }
        }
    }
}
