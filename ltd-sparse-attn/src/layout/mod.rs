//! Sparsity layouts: which (query block, key block) tiles attention computes.
//!
//! A [`Layout`] is a `[H, nb, nb]` 0/1 mask plus the lookup tables kernels use (CSR per block-row,
//! CSC per block-column, as plain `i32` vectors). The six families of DeepSpeed's
//! `sparsity_config.py` build layouts: [`DenseConfig`], [`FixedConfig`], [`VariableConfig`],
//! [`BigBirdConfig`], [`BSLongformerConfig`] and [`LocalSlidingWindowConfig`], gathered in the
//! [`SparsityConfig`] enum.
//!
//! Deterministic layouts are bit-identical to upstream. Random blocks (Variable, BigBird) come
//! from a seeded ChaCha8 generator (see "Random blocks" below).
//!
//! # Random blocks
//!
//! For a config with `seed` (a `u64`, default 0) and a layout of `nb` blocks, head `h` (of the
//! `num_layout_heads` heads that are filled) uses `rand_chacha::ChaCha8Rng::from_seed(key)` with
//! `key = seed.to_le_bytes() ++ (nb as u64).to_le_bytes() ++ [0; 16]`, then `set_stream(h)`.
//! Rows are processed in order `0..nb`; each row draws `k` distinct columns from its candidate
//! range `0..n` by a partial Fisher–Yates shuffle of `[0, 1, …, n-1]`: for `i in 0..k`, draw
//! `j = i + below(n - i)` and swap positions `i` and `j`; the first `k` entries are the columns.
//! `below(m)` is Lemire's multiply-and-reject on `next_u32()`: `x = next_u32() as u64 * m`; if
//! `(x as u32) < (2^32 - m) % m`, draw again; the result is `x >> 32`. Same seed, same layout, on
//! every machine.
//!
//! ```
//! use ltd_sparse_attn::layout::{BigBirdConfig, SparsityConfig};
//! let mut cfg = BigBirdConfig::new(2);
//! cfg.seed = 1234;
//! let a = SparsityConfig::from(cfg.clone()).make_layout(256).unwrap();
//! let b = SparsityConfig::from(cfg).make_layout(256).unwrap();
//! assert_eq!(a, b); // same seed, same layout
//! ```

mod bigbird;
mod bslongformer;
mod dense;
mod fixed;
mod grid;
mod local_sliding_window;
mod tables;
mod variable;

pub use bigbird::BigBirdConfig;
pub use bslongformer::BSLongformerConfig;
pub use dense::DenseConfig;
pub use fixed::FixedConfig;
pub use local_sliding_window::LocalSlidingWindowConfig;
pub use variable::VariableConfig;

pub(crate) use grid::HeadGrid;
use tables::{csc_tables, csr_tables};

use crate::error::{Result, SparseAttnError};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Block sizes the ops support.
///
/// ```
/// assert!(ltd_sparse_attn::SUPPORTED_BLOCKS.contains(&64));
/// ```
pub const SUPPORTED_BLOCKS: [usize; 4] = [16, 32, 64, 128];

/// Unidirectional (causal at block level) or bidirectional attention.
///
/// ```
/// use ltd_sparse_attn::Direction;
/// assert_eq!(Direction::parse("unidirectional", "attention").unwrap(), Direction::Unidirectional);
/// assert!(Direction::parse("causal", "attention").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// A query block sees key blocks at or before it (plus upstream's exceptions).
    Unidirectional,
    /// Every block may see every other block.
    #[default]
    Bidirectional,
}

impl Direction {
    /// Parses upstream's strings `"unidirectional"` and `"bidirectional"`; anything else is an
    /// [`SparseAttnError::InvalidConfig`] for `key` (upstream raises `NotImplementedError`).
    ///
    /// ```
    /// use ltd_sparse_attn::Direction;
    /// let e = Direction::parse("sideways", "attention").unwrap_err();
    /// assert!(e.to_string().contains("sideways"));
    /// ```
    pub fn parse(s: &str, key: &str) -> Result<Self> {
        match s {
            "unidirectional" => Ok(Direction::Unidirectional),
            "bidirectional" => Ok(Direction::Bidirectional),
            other => Err(SparseAttnError::config(
                key,
                format!(
                    "{other:?} is not a supported attention type; expected \"unidirectional\" or \"bidirectional\""
                ),
            )),
        }
    }

    /// Upstream's string for this direction.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::Direction::Bidirectional.as_str(), "bidirectional");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Unidirectional => "unidirectional",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

/// A block-sparse attention layout: a `[num_heads, num_blocks, num_blocks]` 0/1 mask (row = query
/// block, column = key block) for blocks of `block` tokens, with CSR and CSC lookup tables.
///
/// Tiles are numbered in `(head, block_row, block_col)` order over all heads, which is the order
/// of the block-sparse tensor format `[Z, nnz, b, b]`. The CSR tables list, for every
/// `(head, block_row)`, the active key blocks in increasing order: entries
/// `row_offsets[h*nb + r] .. row_offsets[h*nb + r + 1]` of [`Layout::row_columns`], and the CSR
/// position *is* the tile index. The CSC tables list, for every `(head, block_col)`, the active
/// query blocks in increasing order ([`Layout::column_rows`]) and their tile indices
/// ([`Layout::column_tiles`]).
///
/// ```
/// use ltd_sparse_attn::Layout;
/// // One head, two blocks of 16: lower triangle.
/// let layout = Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
/// assert_eq!(layout.nnz(), 3);
/// assert_eq!(layout.row_offsets(), &[0, 1, 3]);
/// assert_eq!(layout.row_columns(), &[0, 0, 1]);
/// assert_eq!(layout.column_offsets(), &[0, 2, 3]);
/// assert_eq!(layout.column_rows(), &[0, 1, 1]);
/// assert_eq!(layout.column_tiles(), &[0, 1, 2]);
/// assert_eq!(layout.tile_index(0, 1, 1), Some(2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    num_heads: usize,
    num_blocks: usize,
    block: usize,
    mask: Vec<u8>,
    row_offsets: Vec<i32>,
    row_columns: Vec<i32>,
    column_offsets: Vec<i32>,
    column_rows: Vec<i32>,
    column_tiles: Vec<i32>,
}

impl Layout {
    /// Builds a layout from a `[num_heads, num_blocks, num_blocks]` mask of zeros and ones.
    ///
    /// Errors: `num_heads == 0`, a block size not in [`SUPPORTED_BLOCKS`], a mask of the wrong
    /// length, a value other than 0/1, or more tiles than an `i32` table can index.
    ///
    /// ```
    /// use ltd_sparse_attn::Layout;
    /// assert!(Layout::from_mask(1, 2, 16, vec![1, 1, 1, 1]).is_ok());
    /// assert!(Layout::from_mask(1, 2, 16, vec![1, 2, 1, 1]).is_err());
    /// assert!(Layout::from_mask(1, 2, 24, vec![1, 1, 1, 1]).is_err());
    /// ```
    pub fn from_mask(
        num_heads: usize,
        num_blocks: usize,
        block: usize,
        mask: Vec<u8>,
    ) -> Result<Self> {
        check_block(block).map_err(|e| e.with_key_prefix("layout"))?;
        if num_heads == 0 {
            return Err(SparseAttnError::InvalidLayout(
                "num_heads is 0; expected at least 1 head".into(),
            ));
        }
        let expected = num_heads
            .checked_mul(num_blocks)
            .and_then(|x| x.checked_mul(num_blocks))
            .ok_or_else(|| SparseAttnError::InvalidLayout("layout size overflows usize".into()))?;
        if mask.len() != expected {
            return Err(SparseAttnError::InvalidLayout(format!(
                "mask has {} elements; expected num_heads * num_blocks^2 = {num_heads} * {num_blocks}^2 = {expected}",
                mask.len()
            )));
        }
        if let Some(pos) = mask.iter().position(|&v| v > 1) {
            return Err(SparseAttnError::InvalidLayout(format!(
                "mask[{pos}] is {}; expected 0 or 1",
                mask[pos]
            )));
        }
        let nnz: usize = mask.iter().map(|&v| v as usize).sum();
        if nnz > i32::MAX as usize || num_heads * num_blocks + 1 > i32::MAX as usize {
            return Err(SparseAttnError::InvalidLayout(format!(
                "{nnz} active tiles do not fit i32 lookup tables; expected at most {}",
                i32::MAX
            )));
        }
        let nb = num_blocks;
        let rows = num_heads * nb;
        // The mask is already held; check the five lookup tables together before building them.
        let table_entries = 2 * (rows as u128 + 1) + 3 * nnz as u128;
        ltd_core::check_allocation("layout lookup tables", table_entries, size_of::<i32>())?;
        let (row_offsets, row_columns) = csr_tables(&mask, rows, nb, nnz)?;
        let (column_offsets, column_rows, column_tiles) =
            csc_tables(&row_offsets, &row_columns, num_heads, nb)?;
        Ok(Layout {
            num_heads,
            num_blocks,
            block,
            mask,
            row_offsets,
            row_columns,
            column_offsets,
            column_rows,
            column_tiles,
        })
    }

    /// Number of heads `H`.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(2, 1, 16, vec![1, 1]).unwrap();
    /// assert_eq!(l.num_heads(), 2);
    /// ```
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Number of blocks per side `nb`.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 3, 16, vec![1; 9]).unwrap();
    /// assert_eq!(l.num_blocks(), 3);
    /// ```
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Block size `b` in tokens.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 1, 32, vec![1]).unwrap();
    /// assert_eq!(l.block(), 32);
    /// ```
    pub fn block(&self) -> usize {
        self.block
    }

    /// Sequence length covered, `num_blocks * block`.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 3, 32, vec![1; 9]).unwrap();
    /// assert_eq!(l.padded_len(), 96);
    /// ```
    pub fn padded_len(&self) -> usize {
        self.num_blocks * self.block
    }

    /// The `[H, nb, nb]` mask, row-major, values 0 and 1.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
    /// assert_eq!(l.mask(), &[1, 0, 1, 1]);
    /// ```
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// Whether tile `(head, row, col)` is active; `false` out of range.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
    /// assert!(l.is_active(0, 1, 0));
    /// assert!(!l.is_active(0, 0, 1));
    /// assert!(!l.is_active(1, 0, 0));
    /// ```
    pub fn is_active(&self, head: usize, row: usize, col: usize) -> bool {
        head < self.num_heads
            && row < self.num_blocks
            && col < self.num_blocks
            && self.mask[(head * self.num_blocks + row) * self.num_blocks + col] == 1
    }

    /// Number of active tiles over all heads (`layout.sum()` upstream).
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(2, 1, 16, vec![1, 0]).unwrap();
    /// assert_eq!(l.nnz(), 1);
    /// ```
    pub fn nnz(&self) -> usize {
        self.row_columns.len()
    }

    /// Fraction of active tiles, `nnz / (H * nb^2)` (0 for an empty layout).
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
    /// assert_eq!(l.density(), 0.75);
    /// ```
    pub fn density(&self) -> f64 {
        if self.mask.is_empty() {
            0.0
        } else {
            self.nnz() as f64 / self.mask.len() as f64
        }
    }

    /// CSR row pointers, `H * nb + 1` entries: row `(h, r)` owns tiles
    /// `row_offsets[h*nb+r] .. row_offsets[h*nb+r+1]`.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.row_offsets(), &[0, 2, 3]);
    /// ```
    pub fn row_offsets(&self) -> &[i32] {
        &self.row_offsets
    }

    /// CSR column indices (the key block of every tile, in tile order).
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.row_columns(), &[0, 1, 1]);
    /// ```
    pub fn row_columns(&self) -> &[i32] {
        &self.row_columns
    }

    /// CSC column pointers, `H * nb + 1` entries: column `(h, c)` owns entries
    /// `column_offsets[h*nb+c] .. column_offsets[h*nb+c+1]` of [`Layout::column_rows`] and
    /// [`Layout::column_tiles`].
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.column_offsets(), &[0, 1, 3]);
    /// ```
    pub fn column_offsets(&self) -> &[i32] {
        &self.column_offsets
    }

    /// CSC row indices (the query block of each entry, increasing within a column).
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.column_rows(), &[0, 0, 1]);
    /// ```
    pub fn column_rows(&self) -> &[i32] {
        &self.column_rows
    }

    /// CSC tile indices: the tile (position in the `[Z, nnz, b, b]` format) of each CSC entry.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.column_tiles(), &[0, 1, 2]);
    /// ```
    pub fn column_tiles(&self) -> &[i32] {
        &self.column_tiles
    }

    /// The tile index of `(head, row, col)`, or `None` if it is inactive or out of range.
    ///
    /// ```
    /// let l = ltd_sparse_attn::Layout::from_mask(1, 2, 16, vec![1, 1, 0, 1]).unwrap();
    /// assert_eq!(l.tile_index(0, 1, 1), Some(2));
    /// assert_eq!(l.tile_index(0, 1, 0), None);
    /// ```
    pub fn tile_index(&self, head: usize, row: usize, col: usize) -> Option<usize> {
        if !self.is_active(head, row, col) {
            return None;
        }
        let (start, end) = self.row_range(head, row);
        let cols = &self.row_columns[start..end];
        cols.binary_search(&(col as i32)).ok().map(|p| start + p)
    }

    /// Tile range `start..end` of row `(head, row)` in CSR order (internal helper).
    pub(crate) fn row_range(&self, head: usize, row: usize) -> (usize, usize) {
        let i = head * self.num_blocks + row;
        (
            self.row_offsets[i] as usize,
            self.row_offsets[i + 1] as usize,
        )
    }

    /// Entry range of column `(head, col)` in the CSC tables (internal helper).
    pub(crate) fn column_range(&self, head: usize, col: usize) -> (usize, usize) {
        let i = head * self.num_blocks + col;
        (
            self.column_offsets[i] as usize,
            self.column_offsets[i + 1] as usize,
        )
    }
}

/// A layout configuration of one of the six families.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, SparsityConfig};
/// let cfg = SparsityConfig::Fixed(FixedConfig::new(2));
/// let layout = cfg.make_layout(128).unwrap(); // 8 blocks of 16
/// assert_eq!((layout.num_heads(), layout.num_blocks()), (2, 8));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SparsityConfig {
    /// All tiles active.
    Dense(DenseConfig),
    /// Sparse Transformers "fixed" pattern.
    Fixed(FixedConfig),
    /// Random + variable local windows + global blocks.
    Variable(VariableConfig),
    /// BigBird: random + sliding window + global.
    BigBird(BigBirdConfig),
    /// Longformer-style sliding window + global blocks.
    BSLongformer(BSLongformerConfig),
    /// A plain sliding window.
    LocalSlidingWindow(LocalSlidingWindowConfig),
}

impl SparsityConfig {
    /// Number of attention heads the layouts have.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparsityConfig};
    /// assert_eq!(SparsityConfig::Dense(DenseConfig::new(3)).num_heads(), 3);
    /// ```
    pub fn num_heads(&self) -> usize {
        match self {
            SparsityConfig::Dense(c) => c.num_heads,
            SparsityConfig::Fixed(c) => c.num_heads,
            SparsityConfig::Variable(c) => c.num_heads,
            SparsityConfig::BigBird(c) => c.num_heads,
            SparsityConfig::BSLongformer(c) => c.num_heads,
            SparsityConfig::LocalSlidingWindow(c) => c.num_heads,
        }
    }

    /// Block size in tokens.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparsityConfig};
    /// assert_eq!(SparsityConfig::Dense(DenseConfig::new(3)).block(), 16);
    /// ```
    pub fn block(&self) -> usize {
        match self {
            SparsityConfig::Dense(c) => c.block,
            SparsityConfig::Fixed(c) => c.block,
            SparsityConfig::Variable(c) => c.block,
            SparsityConfig::BigBird(c) => c.block,
            SparsityConfig::BSLongformer(c) => c.block,
            SparsityConfig::LocalSlidingWindow(c) => c.block,
        }
    }

    /// The family name as upstream's JSON `mode` spells it (`"local_sliding_window"` for the one
    /// family JSON cannot reach).
    ///
    /// ```
    /// use ltd_sparse_attn::{BigBirdConfig, SparsityConfig};
    /// assert_eq!(SparsityConfig::BigBird(BigBirdConfig::new(1)).mode_name(), "bigbird");
    /// ```
    pub fn mode_name(&self) -> &'static str {
        match self {
            SparsityConfig::Dense(_) => "dense",
            SparsityConfig::Fixed(_) => "fixed",
            SparsityConfig::Variable(_) => "variable",
            SparsityConfig::BigBird(_) => "bigbird",
            SparsityConfig::BSLongformer(_) => "bslongformer",
            SparsityConfig::LocalSlidingWindow(_) => "local_sliding_window",
        }
    }

    /// Checks the parameters as upstream's constructor does (plus the checks upstream lacks).
    ///
    /// ```
    /// use ltd_sparse_attn::{FixedConfig, SparsityConfig};
    /// let mut f = FixedConfig::new(1);
    /// f.num_global_blocks = 0;
    /// assert!(SparsityConfig::Fixed(f).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            SparsityConfig::Dense(c) => c.validate(),
            SparsityConfig::Fixed(c) => c.validate(),
            SparsityConfig::Variable(c) => c.validate(),
            SparsityConfig::BigBird(c) => c.validate(),
            SparsityConfig::BSLongformer(c) => c.validate(),
            SparsityConfig::LocalSlidingWindow(c) => c.validate(),
        }
    }

    /// The layout for `num_blocks` blocks per side.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparsityConfig};
    /// let l = SparsityConfig::Dense(DenseConfig::new(1)).make_layout_blocks(3).unwrap();
    /// assert_eq!(l.nnz(), 9);
    /// ```
    pub fn make_layout_blocks(&self, num_blocks: usize) -> Result<Layout> {
        match self {
            SparsityConfig::Dense(c) => c.make_layout_blocks(num_blocks),
            SparsityConfig::Fixed(c) => c.make_layout_blocks(num_blocks),
            SparsityConfig::Variable(c) => c.make_layout_blocks(num_blocks),
            SparsityConfig::BigBird(c) => c.make_layout_blocks(num_blocks),
            SparsityConfig::BSLongformer(c) => c.make_layout_blocks(num_blocks),
            SparsityConfig::LocalSlidingWindow(c) => c.make_layout_blocks(num_blocks),
        }
    }

    /// The layout for a sequence of `seq_len` tokens: `ceil(seq_len / block)` blocks per side.
    /// Unlike upstream (which raises for `seq_len % block != 0`), a partial last block is allowed;
    /// the ops pad it and mask the padding keys.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, SparsityConfig};
    /// let l = SparsityConfig::Dense(DenseConfig::new(1)).make_layout(33).unwrap();
    /// assert_eq!(l.num_blocks(), 3);
    /// ```
    pub fn make_layout(&self, seq_len: usize) -> Result<Layout> {
        // Validate before dividing: a block of 0 must be an error, not a division by zero.
        self.validate()?;
        self.make_layout_blocks(seq_len.div_ceil(self.block()))
    }
}

macro_rules! impl_from_family {
    ($($family:ident => $variant:ident),* $(,)?) => {
        $(impl From<$family> for SparsityConfig {
            fn from(c: $family) -> Self {
                SparsityConfig::$variant(c)
            }
        })*
    };
}
impl_from_family!(
    DenseConfig => Dense,
    FixedConfig => Fixed,
    VariableConfig => Variable,
    BigBirdConfig => BigBird,
    BSLongformerConfig => BSLongformer,
    LocalSlidingWindowConfig => LocalSlidingWindow,
);

/// Adds `make_layout(seq_len)` to every family.
macro_rules! impl_make_layout {
    ($($family:ident),* $(,)?) => {
        $(impl $family {
            /// The layout for a sequence of `seq_len` tokens: `ceil(seq_len / block)` blocks per
            /// side (upstream raises for `seq_len % block != 0`; the ops here pad instead).
            ///
            #[doc = concat!("```\nlet l = ltd_sparse_attn::", stringify!($family), "::new(1).make_layout(60).unwrap();\nassert_eq!(l.num_blocks(), 4);\n```")]
            pub fn make_layout(&self, seq_len: usize) -> Result<Layout> {
                // Validate before dividing: a block of 0 is an error, not a division by zero.
                self.validate()?;
                self.make_layout_blocks(seq_len.div_ceil(self.block))
            }
        })*
    };
}
impl_make_layout!(
    DenseConfig,
    FixedConfig,
    VariableConfig,
    BigBirdConfig,
    BSLongformerConfig,
    LocalSlidingWindowConfig,
);

/// Checks a block size against [`SUPPORTED_BLOCKS`] (error key `block`).
pub(crate) fn check_block(block: usize) -> Result<()> {
    if SUPPORTED_BLOCKS.contains(&block) {
        Ok(())
    } else {
        Err(SparseAttnError::config(
            "block",
            format!("{block} is not a supported block size; expected one of 16, 32, 64, 128"),
        ))
    }
}

/// Checks the parameters every family shares (error keys `num_heads`, `block`).
pub(crate) fn check_common(num_heads: usize, block: usize) -> Result<()> {
    if num_heads == 0 {
        return Err(SparseAttnError::config(
            "num_heads",
            "0 heads; expected at least 1",
        ));
    }
    check_block(block)
}

/// Checks global start/end index lists as Variable and BSLongformer do.
pub(crate) fn check_global_spans(starts: &[usize], ends: Option<&[usize]>) -> Result<()> {
    if let Some(ends) = ends {
        if starts.len() != ends.len() {
            return Err(SparseAttnError::config(
                "global_block_end_indices",
                format!(
                    "has {} entries; expected as many as global_block_indices ({})",
                    ends.len(),
                    starts.len()
                ),
            ));
        }
        for (i, (&s, &e)) in starts.iter().zip(ends).enumerate() {
            if s >= e {
                return Err(SparseAttnError::config(
                    format!("global_block_end_indices[{i}]"),
                    format!(
                        "{e} is not greater than global_block_indices[{i}] = {s}; expected start < end"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Error for a window/count parameter larger than the number of blocks.
pub(crate) fn too_large(key: &str, value: usize, num_blocks: usize) -> SparseAttnError {
    SparseAttnError::config(
        key,
        format!(
            "{value} is larger than the number of blocks {num_blocks}; expected at most {num_blocks}"
        ),
    )
}

/// Python slice `start:stop` normalised for a dimension of length `n` (negative indices wrap
/// once, then clamp), as numpy/torch slicing does.
pub(crate) fn py_slice(start: i128, stop: i128, n: usize) -> std::ops::Range<usize> {
    let n = n as i128;
    let norm = |i: i128| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let s = norm(start);
    let e = norm(stop).max(s);
    s as usize..e as usize
}

/// Builds a layout: allocates `[num_heads, nb, nb]`, fills heads `0..num_layout_heads` with
/// `fill_head`, copies head 0 into every other head when the layout is shared.
pub(crate) fn build_layout(
    num_heads: usize,
    block: usize,
    num_blocks: usize,
    per_head: bool,
    mut fill_head: impl FnMut(usize, &mut HeadGrid<'_>) -> Result<()>,
) -> Result<Layout> {
    let nb = num_blocks;
    let per = nb
        .checked_mul(nb)
        .ok_or_else(|| SparseAttnError::InvalidLayout(format!("{nb} blocks per side overflows")))?;
    let total = per
        .checked_mul(num_heads)
        .ok_or_else(|| SparseAttnError::InvalidLayout(format!("{num_heads} x {nb}^2 overflows")))?;
    if total > i32::MAX as usize {
        return Err(SparseAttnError::InvalidLayout(format!(
            "{num_heads} heads x {nb}^2 blocks = {total} tiles; expected at most {} (i32 lookup tables)",
            i32::MAX
        )));
    }
    let mut mask = ltd_core::try_vec("layout mask", total, 0u8)?;
    let layout_heads = if per_head {
        num_heads
    } else {
        1.min(num_heads)
    };
    for h in 0..layout_heads {
        let mut grid = HeadGrid {
            nb,
            cells: &mut mask[h * per..(h + 1) * per],
        };
        fill_head(h, &mut grid)?;
    }
    if !per_head && per > 0 {
        let (first, rest) = mask.split_at_mut(per);
        for chunk in rest.chunks_mut(per) {
            chunk.copy_from_slice(first);
        }
    }
    Layout::from_mask(num_heads, nb, block, mask)
}

/// The seeded generator of random blocks for head `head` of an `nb`-block layout (see the module
/// docs for the derivation).
pub(crate) fn head_rng(seed: u64, num_blocks: usize, head: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(num_blocks as u64).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(head as u64);
    rng
}

/// Uniform integer in `0..m` (`m >= 1`) by Lemire's multiply-and-reject on `next_u32`.
fn below(rng: &mut ChaCha8Rng, m: u32) -> u32 {
    let threshold = m.wrapping_neg() % m;
    loop {
        let x = u64::from(rng.next_u32()) * u64::from(m);
        if (x as u32) >= threshold {
            return (x >> 32) as u32;
        }
    }
}

/// `k` distinct values from `0..n` (partial Fisher–Yates), in draw order. Requires `k <= n`.
pub(crate) fn sample_distinct(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + below(rng, (n - i) as u32) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_slice_matches_python() {
        assert_eq!(py_slice(-1, 1, 1), 0..1);
        assert_eq!(py_slice(-1, 3, 3), 2..3);
        assert_eq!(py_slice(-5, -2, 3), 0..1);
        assert_eq!(py_slice(2, 10, 4), 2..4);
        assert_eq!(py_slice(3, 1, 4), 3..3);
    }

    #[test]
    fn sampling_is_distinct_and_in_range() {
        let mut rng = head_rng(7, 10, 0);
        for k in 0..=10 {
            let mut s = sample_distinct(&mut rng, 10, k);
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), k);
            assert!(s.iter().all(|&v| v < 10));
        }
    }

    #[test]
    fn csc_tiles_point_back_to_the_same_tile() {
        let mask: Vec<u8> = (0..2 * 5 * 5)
            .map(|i| ((i * 7 + 3) % 3 == 0) as u8)
            .collect();
        let l = Layout::from_mask(2, 5, 16, mask).unwrap();
        for h in 0..2 {
            for c in 0..5 {
                let (s, e) = l.column_range(h, c);
                for k in s..e {
                    let r = l.column_rows()[k] as usize;
                    assert_eq!(l.tile_index(h, r, c), Some(l.column_tiles()[k] as usize));
                }
            }
        }
    }
}
