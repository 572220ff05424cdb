//! Block-sparse matrix products `sdd`, `dsd`, `dds` with transposes and backward (upstream-semantics.md §2.6).

use super::{axpy, check_len, dot, narrow_into, widen};
use crate::error::{Result, SparseAttnError};
use crate::layout::Layout;
use ltd_core::{Accumulator, CpuElement};
use rayon::prelude::*;

/// Which operand is sparse (upstream's mode string: output, A, B; `s` sparse, `d` dense).
///
/// ```
/// use ltd_sparse_attn::MatMulMode;
/// assert_eq!(MatMulMode::parse("dsd").unwrap(), MatMulMode::Dsd);
/// assert!(MatMulMode::parse("sss").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatMulMode {
    /// Sparse = dense x dense, computed only at the layout's tiles.
    Sdd,
    /// Dense = sparse x dense.
    Dsd,
    /// Dense = dense x sparse.
    Dds,
}

impl MatMulMode {
    /// Parses `"sdd"`, `"dsd"` or `"dds"`.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::MatMulMode::parse("dds").is_ok());
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sdd" => Ok(MatMulMode::Sdd),
            "dsd" => Ok(MatMulMode::Dsd),
            "dds" => Ok(MatMulMode::Dds),
            other => Err(SparseAttnError::InvalidArgument {
                what: "mode".into(),
                value: format!("{other:?}"),
                expected: "one of \"sdd\", \"dsd\", \"dds\"".into(),
            }),
        }
    }
}

/// A block-sparse product `C = op(A) x op(B)`, `op(X) = Xᵀ` when the trans flag is set (upstream
/// `MatMul(layout, block, mode, trans_a, trans_b)`).
///
/// With `Z` = `batch`, `H` = the layout's heads, `S = nb * b` and `F` = `dense_dim` (the one size
/// the layout does not fix):
///
/// | mode | `op(A)` | `op(B)` | `C` | `F` is |
/// |---|---|---|---|---|
/// | `Sdd` | dense `[Z,H,S,F]` | dense `[Z,H,F,S]` | sparse `[Z,nnz,b,b]` | the inner size `K` |
/// | `Dsd` | sparse `[S,S]` | dense `[Z,H,S,F]` | dense `[Z,H,S,F]` | the output width `N` |
/// | `Dds` | dense `[Z,H,F,S]` | sparse `[S,S]` | dense `[Z,H,F,S]` | the output height `M` |
///
/// A dense operand with its trans flag is stored transposed (`[Z,H,cols,rows]` of `op`). A
/// transposed sparse operand means each tile is transposed and the layout read transposed.
/// Results equal the dense product of the densified operands (zeros outside the layout);
/// rows or columns of a dense output with no blocks are zero. `f32` accumulation for `f32`,
/// `f16` and `bf16`, `f64` for `f64`.
///
/// ```
/// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
/// let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
/// let a = vec![1.0f32; 16 * 4]; // [1,1,16,4]
/// let b = vec![0.5f32; 4 * 16]; // [1,1,4,16]
/// let mut c = vec![f32::NAN; 16 * 16]; // [1,1,16,16]
/// BlockSparseMatMul::sdd(false, false).forward(&layout, &a, &b, 1, 4, &mut c).unwrap();
/// assert!(c.iter().all(|&x| x == 2.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockSparseMatMul {
    /// Which operand is sparse.
    pub mode: MatMulMode,
    /// Use `Aᵀ`.
    pub trans_a: bool,
    /// Use `Bᵀ`.
    pub trans_b: bool,
}

/// Shapes of one product on accumulator buffers.
#[derive(Clone, Copy)]
struct Dims {
    z: usize,
    h: usize,
    nb: usize,
    b: usize,
}

impl Dims {
    fn of(layout: &Layout, batch: usize) -> Self {
        Dims {
            z: batch,
            h: layout.num_heads(),
            nb: layout.num_blocks(),
            b: layout.block(),
        }
    }
    fn s(&self) -> usize {
        self.nb * self.b
    }
}

impl BlockSparseMatMul {
    /// A product of the given mode.
    ///
    /// ```
    /// use ltd_sparse_attn::{BlockSparseMatMul, MatMulMode};
    /// let m = BlockSparseMatMul::new(MatMulMode::Dsd, true, false);
    /// assert_eq!(m, BlockSparseMatMul::dsd(true, false));
    /// ```
    pub fn new(mode: MatMulMode, trans_a: bool, trans_b: bool) -> Self {
        BlockSparseMatMul {
            mode,
            trans_a,
            trans_b,
        }
    }

    /// `sdd`: sparse = dense x dense.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::BlockSparseMatMul::sdd(false, true).mode, ltd_sparse_attn::MatMulMode::Sdd);
    /// ```
    pub fn sdd(trans_a: bool, trans_b: bool) -> Self {
        Self::new(MatMulMode::Sdd, trans_a, trans_b)
    }

    /// `dsd`: dense = sparse x dense.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::BlockSparseMatMul::dsd(true, false).mode, ltd_sparse_attn::MatMulMode::Dsd);
    /// ```
    pub fn dsd(trans_a: bool, trans_b: bool) -> Self {
        Self::new(MatMulMode::Dsd, trans_a, trans_b)
    }

    /// `dds`: dense = dense x sparse.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::BlockSparseMatMul::dds(false, false).mode, ltd_sparse_attn::MatMulMode::Dds);
    /// ```
    pub fn dds(trans_a: bool, trans_b: bool) -> Self {
        Self::new(MatMulMode::Dds, trans_a, trans_b)
    }

    /// Element counts of (A, B, C) for `batch` and `dense_dim`.
    ///
    /// ```
    /// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
    /// let l = Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
    /// assert_eq!(BlockSparseMatMul::sdd(false, false).operand_lens(&l, 2, 8),
    ///            (2 * 32 * 8, 2 * 8 * 32, 2 * 3 * 256));
    /// ```
    pub fn operand_lens(
        &self,
        layout: &Layout,
        batch: usize,
        dense_dim: usize,
    ) -> (usize, usize, usize) {
        let d = Dims::of(layout, batch);
        let dense =
            d.z.saturating_mul(d.h)
                .saturating_mul(d.s())
                .saturating_mul(dense_dim);
        let sparse = d.z.saturating_mul(layout.nnz()).saturating_mul(d.b * d.b);
        match self.mode {
            MatMulMode::Sdd => (dense, dense, sparse),
            MatMulMode::Dsd => (sparse, dense, dense),
            MatMulMode::Dds => (dense, sparse, dense),
        }
    }

    /// Checks the three buffer lengths `lens` (named, in A, B, C order) against the table above.
    pub(crate) fn check(
        &self,
        layout: &Layout,
        batch: usize,
        dense_dim: usize,
        lens: [(&str, usize); 3],
    ) -> Result<()> {
        let d = Dims::of(layout, batch);
        let (sa, sb, sc) = (self.trans_a, self.trans_b, false);
        let dense_shape = |trans: bool, rows: usize, cols: usize| {
            if trans {
                [d.z, d.h, cols, rows]
            } else {
                [d.z, d.h, rows, cols]
            }
        };
        let sparse = [d.z, layout.nnz(), d.b, d.b];
        let f = dense_dim;
        let s = d.s();
        let shapes: [[usize; 4]; 3] = match self.mode {
            MatMulMode::Sdd => [dense_shape(sa, s, f), dense_shape(sb, f, s), sparse],
            MatMulMode::Dsd => [sparse, dense_shape(sb, s, f), dense_shape(sc, s, f)],
            MatMulMode::Dds => [dense_shape(sa, f, s), sparse, dense_shape(sc, f, s)],
        };
        let names = match self.mode {
            MatMulMode::Sdd => ["[Z,H,rows,cols]", "[Z,H,rows,cols]", "[Z,nnz,b,b]"],
            MatMulMode::Dsd => ["[Z,nnz,b,b]", "[Z,H,rows,cols]", "[Z,H,rows,cols]"],
            MatMulMode::Dds => ["[Z,H,rows,cols]", "[Z,nnz,b,b]", "[Z,H,rows,cols]"],
        };
        for ((what, len), (shape, name)) in lens.iter().zip(shapes.iter().zip(names)) {
            check_len(what, *len, shape, name)?;
        }
        Ok(())
    }

    /// Computes `C = op(A) x op(B)` into `c` (every element written).
    ///
    /// Errors: a buffer whose length does not match the table above.
    ///
    /// ```
    /// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
    /// use half::bf16;
    /// let layout = Layout::from_mask(1, 2, 16, vec![1, 0, 0, 1]).unwrap();
    /// let a = vec![bf16::ONE; 2 * 256]; // sparse [1,2,16,16]: two identity-free tiles of ones
    /// let b = vec![bf16::ONE; 32 * 3]; // dense [1,1,32,3]
    /// let mut c = vec![bf16::NAN; 32 * 3];
    /// BlockSparseMatMul::dsd(false, false).forward(&layout, &a, &b, 1, 3, &mut c).unwrap();
    /// assert!(c.iter().all(|x| x.to_f32() == 16.0));
    /// ```
    pub fn forward<T: CpuElement>(
        &self,
        layout: &Layout,
        a: &[T],
        b: &[T],
        batch: usize,
        dense_dim: usize,
        c: &mut [T],
    ) -> Result<()> {
        self.check(
            layout,
            batch,
            dense_dim,
            [("a", a.len()), ("b", b.len()), ("c", c.len())],
        )?;
        let out = self.forward_acc(layout, &widen(a), &widen(b), batch, dense_dim);
        narrow_into(&out, c);
        Ok(())
    }

    /// Gradients of [`BlockSparseMatMul::forward`]: given `dc` (shaped like `C`), writes `da`
    /// (shaped like `A`) and `db` (shaped like `B`). Sparse gradients are restricted to the
    /// layout. Upstream's mode rules: `dA` uses `sdd→dsd, dsd→sdd, dds→dds`, `dB` uses
    /// `sdd→dds, dsd→dsd, dds→sdd`, with adjusted trans flags.
    ///
    /// ```
    /// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
    /// let layout = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
    /// let (a, b) = (vec![1.0f32; 16 * 2], vec![3.0f32; 2 * 16]);
    /// let dc = vec![1.0f32; 256];
    /// let (mut da, mut db) = (vec![f32::NAN; 32], vec![f32::NAN; 32]);
    /// BlockSparseMatMul::sdd(false, false)
    ///     .backward(&layout, &a, &b, &dc, 1, 2, &mut da, &mut db).unwrap();
    /// assert!(da.iter().all(|&x| x == 48.0)); // sum over 16 columns of 3
    /// assert!(db.iter().all(|&x| x == 16.0));
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: CpuElement>(
        &self,
        layout: &Layout,
        a: &[T],
        b: &[T],
        dc: &[T],
        batch: usize,
        dense_dim: usize,
        da: &mut [T],
        db: &mut [T],
    ) -> Result<()> {
        self.check_backward(
            layout,
            batch,
            dense_dim,
            [a.len(), b.len(), dc.len(), da.len(), db.len()],
        )?;
        let (a, b, dc) = (widen(a), widen(b), widen(dc));
        let (ga, gb) = self.backward_acc(layout, &a, &b, &dc, batch, dense_dim);
        narrow_into(&ga, da);
        narrow_into(&gb, db);
        Ok(())
    }

    /// Forward on accumulator buffers of the right sizes.
    fn forward_acc<A: Accumulator>(
        &self,
        layout: &Layout,
        a: &[A],
        b: &[A],
        batch: usize,
        f: usize,
    ) -> Vec<A> {
        let d = Dims::of(layout, batch);
        match self.mode {
            MatMulMode::Sdd => sdd(layout, d, a, b, f, self.trans_a, self.trans_b),
            MatMulMode::Dsd => dsd(layout, d, a, b, f, self.trans_a, self.trans_b),
            MatMulMode::Dds => dds(layout, d, a, b, f, self.trans_a, self.trans_b),
        }
    }

    /// Checks the buffer lengths of a backward call, `[a, b, dc, da, db]` (CPU and GPU).
    pub(crate) fn check_backward(
        &self,
        layout: &Layout,
        batch: usize,
        dense_dim: usize,
        [a, b, dc, da, db]: [usize; 5],
    ) -> Result<()> {
        self.check(layout, batch, dense_dim, [("a", a), ("b", b), ("dc", dc)])?;
        check_len("da", da, &[a], "len(a)")?;
        check_len("db", db, &[b], "len(b)")
    }

    /// The two forward products the backward pass is made of, `[dA, dB]`, each as
    /// `(product, x, y)`: the gradient is `product(x, y)` of the named buffers (upstream: `dA`
    /// by mode `m[1]m[0]m[2]`, `dB` by `m[2]m[1]m[0]`, with the trans flags folded in). The CPU
    /// [`backward`](Self::backward) and the GPU one in `cuda_matmul` both run this table.
    pub(crate) fn backward_products(&self) -> [(BlockSparseMatMul, Operand, Operand); 2] {
        use MatMulMode::{Dds, Dsd, Sdd};
        use Operand::{A, B, Dc};
        let (ta, tb) = (self.trans_a, self.trans_b);
        let mm = BlockSparseMatMul::new;
        // (mode of dA when A is not / is transposed, mode of dB when B is not / is transposed)
        let (da_modes, db_modes) = match self.mode {
            // C sparse [S,S] = op(A)[S,F] op(B)[F,S].
            Sdd => ((Dsd, Dds), (Dds, Dsd)),
            // C dense [S,F] = op(A)sparse[S,S] op(B)[S,F].
            Dsd => ((Sdd, Sdd), (Dsd, Dds)),
            // C dense [F,S] = op(A)[F,S] op(B)sparse[S,S].
            Dds => ((Dds, Dsd), (Sdd, Sdd)),
        };
        [
            if !ta {
                (mm(da_modes.0, false, !tb), Dc, B)
            } else {
                (mm(da_modes.1, tb, true), B, Dc)
            },
            if !tb {
                (mm(db_modes.0, !ta, false), A, Dc)
            } else {
                (mm(db_modes.1, true, ta), Dc, A)
            },
        ]
    }

    /// Backward on accumulator buffers; returns `(dA, dB)`.
    fn backward_acc<A: Accumulator>(
        &self,
        layout: &Layout,
        a: &[A],
        b: &[A],
        dc: &[A],
        batch: usize,
        f: usize,
    ) -> (Vec<A>, Vec<A>) {
        let pick = |o: Operand| match o {
            Operand::A => a,
            Operand::B => b,
            Operand::Dc => dc,
        };
        let [da, db] = self
            .backward_products()
            .map(|(op, x, y)| op.forward_acc(layout, pick(x), pick(y), batch, f));
        (da, db)
    }
}

/// A buffer of a backward call: one of [`BlockSparseMatMul::backward_products`]' operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    A,
    B,
    Dc,
}

/// Copies a `[G, rows, cols]` stack of matrices, transposing each when `transpose`, so that the
/// result is `[G, rows', cols']` of the *requested* orientation. `rows`/`cols` describe the
/// stored matrices.
fn oriented<A: Accumulator>(
    x: &[A],
    groups: usize,
    rows: usize,
    cols: usize,
    transpose: bool,
) -> Vec<A> {
    if !transpose {
        return x.to_vec();
    }
    let mut out = vec![A::ZERO; x.len()];
    for g in 0..groups {
        let src = &x[g * rows * cols..(g + 1) * rows * cols];
        let dst = &mut out[g * rows * cols..(g + 1) * rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                dst[c * rows + r] = src[r * cols + c];
            }
        }
    }
    out
}

/// The `[G, rows, cols]` stack op(x), rows contiguous, from `x` stored as op(x) or, when
/// `transposed`, as op(x)ᵀ (`[G, cols, rows]`).
fn op_rows<A: Accumulator>(
    x: &[A],
    groups: usize,
    rows: usize,
    cols: usize,
    transposed: bool,
) -> Vec<A> {
    let (stored_rows, stored_cols) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    oriented(x, groups, stored_rows, stored_cols, transposed)
}

/// `(head, block_row, block_col)` of every tile.
fn tile_coords(layout: &Layout) -> Vec<(usize, usize, usize)> {
    let nb = layout.num_blocks();
    let mut v = Vec::with_capacity(layout.nnz());
    for h in 0..layout.num_heads() {
        for r in 0..nb {
            let (s, e) = layout.row_range(h, r);
            for &c in &layout.row_columns()[s..e] {
                v.push((h, r, c as usize));
            }
        }
    }
    v
}

/// Sparse `[Z,nnz,b,b]` = op(A)[S,F] x op(B)[F,S] at the layout's tiles.
fn sdd<A: Accumulator>(
    layout: &Layout,
    d: Dims,
    a: &[A],
    b: &[A],
    f: usize,
    ta: bool,
    tb: bool,
) -> Vec<A> {
    let s = d.s();
    let bb = d.b * d.b;
    let nnz = layout.nnz();
    let mut out = vec![A::ZERO; d.z * nnz * bb];
    if out.is_empty() {
        return out;
    }
    // Rows of op(A) ([S,F]) and rows of op(B)ᵀ ([S,F]), contiguous over F.
    let a_rows = op_rows(a, d.z * d.h, s, f, ta);
    let b_cols = op_rows(b, d.z * d.h, s, f, !tb);
    let coords = tile_coords(layout);
    out.par_chunks_mut(bb).enumerate().for_each(|(idx, tile)| {
        let (z, t) = (idx / nnz, idx % nnz);
        let (h, i, j) = coords[t];
        let base = (z * d.h + h) * s * f;
        for r in 0..d.b {
            let ar = &a_rows[base + (i * d.b + r) * f..][..f];
            for c in 0..d.b {
                let bc = &b_cols[base + (j * d.b + c) * f..][..f];
                tile[r * d.b + c] = dot(ar, bc);
            }
        }
    });
    out
}

/// Tiles of a sparse operand, each transposed when `transpose`.
fn oriented_tiles<A: Accumulator>(x: &[A], b: usize, transpose: bool) -> Vec<A> {
    oriented(x, x.len() / (b * b).max(1), b, b, transpose)
}

/// For output block-row `i` of head `h` of op(S) where S is sparse with `layout`: the
/// `(key block, tile)` pairs of that row (CSR row of S, or CSC column of S when transposed).
fn op_row_tiles(layout: &Layout, h: usize, i: usize, transposed: bool) -> Vec<(usize, usize)> {
    if transposed {
        let (s, e) = layout.column_range(h, i);
        (s..e)
            .map(|k| {
                (
                    layout.column_rows()[k] as usize,
                    layout.column_tiles()[k] as usize,
                )
            })
            .collect()
    } else {
        let (s, e) = layout.row_range(h, i);
        (s..e)
            .map(|t| (layout.row_columns()[t] as usize, t))
            .collect()
    }
}

/// Dense `[Z,H,S,F]` = op(A)sparse[S,S] x op(B)[S,F].
fn dsd<A: Accumulator>(
    layout: &Layout,
    d: Dims,
    a: &[A],
    b: &[A],
    f: usize,
    ta: bool,
    tb: bool,
) -> Vec<A> {
    let s = d.s();
    let bb = d.b * d.b;
    let nnz = layout.nnz();
    let mut out = vec![A::ZERO; d.z * d.h * s * f];
    if out.is_empty() {
        return out;
    }
    let tiles = oriented_tiles(a, d.b, ta);
    let b_rows = op_rows(b, d.z * d.h, s, f, tb);
    out.par_chunks_mut(d.b * f)
        .enumerate()
        .for_each(|(idx, rows)| {
            let (zh, i) = (idx / d.nb, idx % d.nb);
            let (z, h) = (zh / d.h, zh % d.h);
            for (kb, t) in op_row_tiles(layout, h, i, ta) {
                let tile = &tiles[(z * nnz + t) * bb..][..bb];
                for r in 0..d.b {
                    let acc = &mut rows[r * f..(r + 1) * f];
                    for c in 0..d.b {
                        let brow = &b_rows[(zh * s + kb * d.b + c) * f..][..f];
                        axpy(tile[r * d.b + c], brow, acc);
                    }
                }
            }
        });
    out
}

/// Dense `[Z,H,F,S]` = op(A)[F,S] x op(B)sparse[S,S].
fn dds<A: Accumulator>(
    layout: &Layout,
    d: Dims,
    a: &[A],
    b: &[A],
    f: usize,
    ta: bool,
    tb: bool,
) -> Vec<A> {
    let s = d.s();
    let bb = d.b * d.b;
    let nnz = layout.nnz();
    let mut out = vec![A::ZERO; d.z * d.h * f * s];
    if out.is_empty() {
        return out;
    }
    let a_rows = op_rows(a, d.z * d.h, f, s, ta);
    let tiles = oriented_tiles(b, d.b, tb);
    // Output block-column j of op(B) gathers op(B)'s column j: the CSC column of B, or the CSR
    // row of B when transposed.
    let col_tiles: Vec<Vec<Vec<(usize, usize)>>> = (0..d.h)
        .map(|h| (0..d.nb).map(|j| op_row_tiles(layout, h, j, !tb)).collect())
        .collect();
    let rows_per_task = 16usize;
    out.par_chunks_mut(f * s)
        .enumerate()
        .for_each(|(zh, per_head)| {
            let (z, h) = (zh / d.h, zh % d.h);
            per_head
                .par_chunks_mut(s * rows_per_task)
                .enumerate()
                .for_each(|(part, chunk)| {
                    for (lr, orow) in chunk.chunks_mut(s).enumerate() {
                        let m = part * rows_per_task + lr;
                        let arow = &a_rows[(zh * f + m) * s..][..s];
                        for (j, list) in col_tiles[h].iter().enumerate() {
                            let acc = &mut orow[j * d.b..(j + 1) * d.b];
                            for &(kb, t) in list {
                                let tile = &tiles[(z * nnz + t) * bb..][..bb];
                                for c in 0..d.b {
                                    axpy(arow[kb * d.b + c], &tile[c * d.b..(c + 1) * d.b], acc);
                                }
                            }
                        }
                    }
                });
        });
    out
}
