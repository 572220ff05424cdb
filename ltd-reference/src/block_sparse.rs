//! Block-sparse primitives through densify → compute → sparsify (upstream-semantics.md §2.1, §2.6, §2.7).
//!
//! Sparse tensors are `[Z, nnz, b, b]`: for each batch entry `z`, the active tiles of the layout
//! in lexicographic `(head, block_row, block_col)` order over all heads ([`Layout::tiles`]).
//! Tile `k = (h, i, j)` holds rows `i·b..(i+1)·b` and columns `j·b..(j+1)·b` of head `h` of the
//! dense equivalent `[Z, H, block_rows·b, block_cols·b]`, which is zero outside the layout.
//!
//! Matmuls: `op(X) = Xᵀ` when the trans flag is set. [`MatmulDims`] gives the shapes of the
//! operation itself: `op(A)` is `[M, K]`, `op(B)` is `[K, N]`, `C` is `[M, N]` (per `z`, `h`).
//! A sparse operand is given with the layout of its *stored* (untransposed) dense equivalent; a
//! transposed sparse operand means each tile is transposed and the layout read transposed.

use crate::alloc::{check_alloc, try_vec};
use crate::element::{RefElement, from_f64_vec, to_f64_vec};
use crate::error::{RefError, Result, check_len, nonzero, product, same_dim};
use crate::layout::Layout;
use crate::modifiers::{Mask, Modifiers, softmax_row};

/// Shapes of a block-sparse matmul `C = op(A) · op(B)`: `op(A)` is `[batch, heads, m, k]`,
/// `op(B)` is `[batch, heads, k, n]`, `C` is `[batch, heads, m, n]`. A stored dense operand with
/// its trans flag set has its last two dims swapped (`A` stored `[.., k, m]`).
///
/// ```
/// use ltd_reference::MatmulDims;
/// let dims = MatmulDims { batch: 1, heads: 2, m: 32, n: 16, k: 8 };
/// assert_eq!(dims.m * dims.k, 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulDims {
    /// `Z`.
    pub batch: usize,
    /// `H` (must equal the layout's heads).
    pub heads: usize,
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// The reduction size.
    pub k: usize,
}

/// Validates the layout and the batch size, and returns `nnz`.
fn check_layout(batch: usize, layout: &Layout<'_>) -> Result<usize> {
    nonzero("batch", batch)?;
    layout.validate()?;
    Ok(layout.nnz())
}

/// `(block_rows · b, block_cols · b)`, checked for overflow.
fn dense_dims(layout: &Layout<'_>) -> Result<(usize, usize)> {
    Ok((
        product("dense rows", &[layout.block_rows, layout.block])?,
        product("dense cols", &[layout.block_cols, layout.block])?,
    ))
}

/// Offset of element `(r, c)` of tile `k` of batch `z` in a `[Z, nnz, b, b]` tensor.
fn sparse_at(z: usize, k: usize, r: usize, c: usize, nnz: usize, b: usize) -> usize {
    ((z * nnz + k) * b + r) * b + c
}

/// Dense `[Z, H, block_rows·b, block_cols·b]` → sparse `[Z, nnz, b, b]`: picks the layout tiles
/// in `(head, block_row, block_col)` order.
///
/// ```
/// use ltd_reference::{dense_to_sparse, Layout};
/// // One head, 2x2 blocks of size 1, tiles (0,1) and (1,0) active.
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// assert_eq!(dense_to_sparse(&[1, 2, 3, 4], 1, &layout)?, vec![2, 3]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn dense_to_sparse<T: Copy>(dense: &[T], batch: usize, layout: &Layout<'_>) -> Result<Vec<T>> {
    let nnz = check_layout(batch, layout)?;
    let b = layout.block;
    let (rows, cols) = dense_dims(layout)?;
    check_len("dense", dense, &[batch, layout.heads, rows, cols])?;
    let tiles = layout.tiles();
    let len = (batch as u128 * nnz as u128).saturating_mul((b * b) as u128);
    check_alloc("sparse [Z, nnz, b, b]", len, size_of::<T>())?;
    let mut sparse = Vec::with_capacity(batch * nnz * b * b);
    for z in 0..batch {
        for &(h, i, j) in &tiles {
            for r in 0..b {
                for c in 0..b {
                    let (row, col) = (i * b + r, j * b + c);
                    sparse.push(dense[((z * layout.heads + h) * rows + row) * cols + col]);
                }
            }
        }
    }
    Ok(sparse)
}

/// Sparse `[Z, nnz, b, b]` → dense `[Z, H, block_rows·b, block_cols·b]`, with `fill` outside the
/// layout (0 for matmul operands, `-inf` for scores).
///
/// ```
/// use ltd_reference::{sparse_to_dense, Layout};
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// assert_eq!(sparse_to_dense(&[2, 3], 1, &layout, 0)?, vec![0, 2, 3, 0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn sparse_to_dense<T: Copy>(
    sparse: &[T],
    batch: usize,
    layout: &Layout<'_>,
    fill: T,
) -> Result<Vec<T>> {
    let nnz = check_layout(batch, layout)?;
    let b = layout.block;
    let (rows, cols) = dense_dims(layout)?;
    check_len("sparse", sparse, &[batch, nnz, b, b])?;
    let total = product("dense", &[batch, layout.heads, rows, cols])?;
    let mut dense = try_vec("dense [Z, H, rows, cols]", total as u128, fill)?;
    for z in 0..batch {
        for (k, &(h, i, j)) in layout.tiles().iter().enumerate() {
            for r in 0..b {
                for c in 0..b {
                    let (row, col) = (i * b + r, j * b + c);
                    dense[((z * layout.heads + h) * rows + row) * cols + col] =
                        sparse[sparse_at(z, k, r, c, nnz, b)];
                }
            }
        }
    }
    Ok(dense)
}

/// `[n, rows, cols]` → `[n, cols, rows]`.
fn transpose(x: &[f64], n: usize, rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; x.len()];
    for s in 0..n {
        for r in 0..rows {
            for c in 0..cols {
                t[(s * cols + c) * rows + r] = x[(s * rows + r) * cols + c];
            }
        }
    }
    t
}

/// `X` if not `trans`, else `Xᵀ`; `x` is stored `[n, rows, cols]`.
fn op(x: Vec<f64>, n: usize, rows: usize, cols: usize, trans: bool) -> Vec<f64> {
    if trans {
        transpose(&x, n, rows, cols)
    } else {
        x
    }
}

/// Batched `[n, m, k] · [n, k, p] → [n, m, p]`, plain loops, f64.
fn bmm(a: &[f64], b: &[f64], n: usize, m: usize, k: usize, p: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * m * p];
    for s in 0..n {
        for i in 0..m {
            for j in 0..p {
                let mut acc = 0.0;
                for t in 0..k {
                    acc += a[(s * m + i) * k + t] * b[(s * k + t) * p + j];
                }
                c[(s * m + i) * p + j] = acc;
            }
        }
    }
    c
}

/// Stored shape `(rows, cols)` of an operand whose op-shape is `(op_rows, op_cols)`.
fn stored(op_rows: usize, op_cols: usize, trans: bool) -> (usize, usize) {
    if trans {
        (op_cols, op_rows)
    } else {
        (op_rows, op_cols)
    }
}

/// Checks that the layout describes a stored sparse operand of shape `[rows, cols]`.
fn check_sparse_fit(
    layout: &Layout<'_>,
    heads: usize,
    rows: usize,
    cols: usize,
    rows_what: &'static str,
    cols_what: &'static str,
) -> Result<()> {
    same_dim("layout heads", layout.heads, heads)?;
    let b = layout.block;
    for (dim, what) in [(rows, rows_what), (cols, cols_what)] {
        if dim % b != 0 {
            return Err(RefError::BlockNotDividing {
                what,
                dim,
                block: b,
            });
        }
    }
    same_dim("layout block rows", layout.block_rows, rows / b)?;
    same_dim("layout block cols", layout.block_cols, cols / b)
}

fn check_dims(dims: &MatmulDims) -> Result<()> {
    nonzero("batch", dims.batch)?;
    nonzero("heads", dims.heads)?;
    nonzero("m", dims.m)?;
    nonzero("n", dims.n)?;
    nonzero("k", dims.k)
}

/// The three matmul modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sdd,
    Dsd,
    Dds,
}

/// The dense-equivalent f64 operands `op(A) [ZH, M, K]`, `op(B) [ZH, K, N]` of a validated
/// matmul.
struct Operands {
    op_a: Vec<f64>,
    op_b: Vec<f64>,
}

/// Validates a matmul of `mode` and returns its dense-equivalent operands.
fn prepare<T: RefElement>(
    mode: Mode,
    a: &[T],
    b: &[T],
    dims: &MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<Operands> {
    check_dims(dims)?;
    let nnz = check_layout(dims.batch, layout)?;
    let blk = layout.block;
    product("c", &[dims.batch, dims.heads, dims.m, dims.n])?;
    let (zh, m, n, k) = (
        dims.batch as u128 * dims.heads as u128,
        dims.m as u128,
        dims.n as u128,
        dims.k as u128,
    );
    check_alloc(
        "dense operands and result (f64)",
        (m.saturating_mul(k))
            .saturating_add(k.saturating_mul(n))
            .saturating_add(m.saturating_mul(n))
            .saturating_mul(zh),
        8,
    )?;
    let (ar, ac) = stored(dims.m, dims.k, trans_a);
    let (br, bc) = stored(dims.k, dims.n, trans_b);
    let sparse_shape = [dims.batch, nnz, blk, blk];
    let a_dense = match mode {
        Mode::Dsd => {
            let (rw, cw) = if trans_a { ("K", "M") } else { ("M", "K") };
            check_sparse_fit(layout, dims.heads, ar, ac, rw, cw)?;
            check_len("a", a, &sparse_shape)?;
            sparse_to_dense(&to_f64_vec(a), dims.batch, layout, 0.0)?
        }
        Mode::Sdd | Mode::Dds => {
            check_len("a", a, &[dims.batch, dims.heads, ar, ac])?;
            to_f64_vec(a)
        }
    };
    let b_dense = match mode {
        Mode::Dds => {
            let (rw, cw) = if trans_b { ("N", "K") } else { ("K", "N") };
            check_sparse_fit(layout, dims.heads, br, bc, rw, cw)?;
            check_len("b", b, &sparse_shape)?;
            sparse_to_dense(&to_f64_vec(b), dims.batch, layout, 0.0)?
        }
        Mode::Sdd | Mode::Dsd => {
            check_len("b", b, &[dims.batch, dims.heads, br, bc])?;
            to_f64_vec(b)
        }
    };
    if mode == Mode::Sdd {
        check_sparse_fit(layout, dims.heads, dims.m, dims.n, "M", "N")?;
    }
    // Every length is now known to fit, so plain arithmetic below cannot overflow.
    let n = dims.batch * dims.heads;
    Ok(Operands {
        op_a: op(a_dense, n, ar, ac, trans_a),
        op_b: op(b_dense, n, br, bc, trans_b),
    })
}

/// `C = op(A) · op(B)` on the dense equivalents, f64, `[ZH, M, N]`.
fn forward(ops: &Operands, dims: &MatmulDims) -> Vec<f64> {
    bmm(
        &ops.op_a,
        &ops.op_b,
        dims.batch * dims.heads,
        dims.m,
        dims.k,
        dims.n,
    )
}

/// SDD: sparse `C = op(A) · op(B)` at the layout tiles only.
///
/// `a` is dense `[Z, H, M, K]` (`[Z, H, K, M]` if `trans_a`), `b` dense `[Z, H, K, N]`
/// (`[Z, H, N, K]` if `trans_b`); the result is `[Z, nnz, b, b]` for `layout [H, M/b, N/b]`.
/// Errors on zero sizes, length mismatches, a malformed layout, heads differing from the
/// layout's, `M` or `N` not a multiple of the block, or a layout of the wrong block counts.
///
/// ```
/// use ltd_reference::{sdd, Layout, MatmulDims};
/// // M = N = 2, K = 1, block 1, only the diagonal tiles: C = diag(a0·b0, a1·b1).
/// let layout = Layout::square(&[1, 0, 0, 1], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 2, n: 2, k: 1 };
/// assert_eq!(sdd(&[2.0f32, 3.0], &[5.0, 7.0], dims, &layout, false, false)?, vec![10.0, 21.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn sdd<T: RefElement>(
    a: &[T],
    b: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<T>> {
    let ops = prepare(Mode::Sdd, a, b, &dims, layout, trans_a, trans_b)?;
    let c = forward(&ops, &dims);
    Ok(from_f64_vec(&dense_to_sparse(&c, dims.batch, layout)?))
}

/// DSD: dense `C = op(A) · op(B)` with `A` sparse.
///
/// `a` is `[Z, nnz, b, b]` with `layout` describing the stored `A` (`[H, M/b, K/b]`, or
/// `[H, K/b, M/b]` if `trans_a`); `b` is dense `[Z, H, K, N]` (`[Z, H, N, K]` if `trans_b`);
/// the result is dense `[Z, H, M, N]`.
///
/// ```
/// use ltd_reference::{dsd, Layout, MatmulDims};
/// // A = [[0, 2], [3, 0]] stored as tiles (0,1)=2 and (1,0)=3; B = [1, 10]ᵀ.
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 2, n: 1, k: 2 };
/// assert_eq!(dsd(&[2.0f32, 3.0], &[1.0, 10.0], dims, &layout, false, false)?, vec![20.0, 3.0]);
/// // Aᵀ = [[0, 3], [2, 0]]:
/// assert_eq!(dsd(&[2.0f32, 3.0], &[1.0, 10.0], dims, &layout, true, false)?, vec![30.0, 2.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn dsd<T: RefElement>(
    a: &[T],
    b: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<T>> {
    let ops = prepare(Mode::Dsd, a, b, &dims, layout, trans_a, trans_b)?;
    Ok(from_f64_vec(&forward(&ops, &dims)))
}

/// DDS: dense `C = op(A) · op(B)` with `B` sparse.
///
/// `a` is dense `[Z, H, M, K]` (`[Z, H, K, M]` if `trans_a`); `b` is `[Z, nnz, b, b]` with
/// `layout` describing the stored `B` (`[H, K/b, N/b]`, or `[H, N/b, K/b]` if `trans_b`); the
/// result is dense `[Z, H, M, N]`.
///
/// ```
/// use ltd_reference::{dds, Layout, MatmulDims};
/// // A = [1, 10] (1x2), B = [[0, 2], [3, 0]] → C = [30, 2].
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 1, n: 2, k: 2 };
/// assert_eq!(dds(&[1.0f32, 10.0], &[2.0, 3.0], dims, &layout, false, false)?, vec![30.0, 2.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn dds<T: RefElement>(
    a: &[T],
    b: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<T>> {
    let ops = prepare(Mode::Dds, a, b, &dims, layout, trans_a, trans_b)?;
    Ok(from_f64_vec(&forward(&ops, &dims)))
}

/// The dense-equivalent gradients of the stored `A` and `B` for a dense `dC [ZH, M, N]`:
/// `d op(A) = dC · op(B)ᵀ`, `d op(B) = op(A)ᵀ · dC`, transposed back where the flag is set.
fn dense_grads(
    ops: &Operands,
    dc: &[f64],
    dims: &MatmulDims,
    trans_a: bool,
    trans_b: bool,
) -> (Vec<f64>, Vec<f64>) {
    let n = dims.batch * dims.heads;
    let (m, k, p) = (dims.m, dims.k, dims.n);
    let op_b_t = transpose(&ops.op_b, n, k, p); // [n, N, K]
    let d_op_a = bmm(dc, &op_b_t, n, m, p, k); // [n, M, K]
    let op_a_t = transpose(&ops.op_a, n, m, k); // [n, K, M]
    let d_op_b = bmm(&op_a_t, dc, n, k, m, p); // [n, K, N]
    let da = op(d_op_a, n, m, k, trans_a);
    let db = op(d_op_b, n, k, p, trans_b);
    (da, db)
}

/// Backward of [`sdd`]: given `dc [Z, nnz, b, b]`, returns `(da, db)` in the stored shapes of
/// `a` and `b` (dense). Computed as `d op(A) = dC · op(B)ᵀ`, `d op(B) = op(A)ᵀ · dC` with `dC`
/// densified (zeros outside the layout).
///
/// ```
/// use ltd_reference::{sdd_backward, Layout, MatmulDims};
/// // C = diag(a0·b0, a1·b1) (K = 1): da = [dc0·b0, dc1·b1], db = [a0·dc0, a1·dc1].
/// let layout = Layout::square(&[1, 0, 0, 1], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 2, n: 2, k: 1 };
/// let (da, db) = sdd_backward(&[2.0f32, 3.0], &[5.0, 7.0], &[1.0, 10.0], dims, &layout, false, false)?;
/// assert_eq!((da, db), (vec![5.0, 70.0], vec![2.0, 30.0]));
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn sdd_backward<T: RefElement>(
    a: &[T],
    b: &[T],
    dc: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let ops = prepare(Mode::Sdd, a, b, &dims, layout, trans_a, trans_b)?;
    let blk = layout.block;
    check_len("dc", dc, &[dims.batch, layout.nnz(), blk, blk])?;
    let dc_dense = sparse_to_dense(&to_f64_vec(dc), dims.batch, layout, 0.0)?;
    let (da, db) = dense_grads(&ops, &dc_dense, &dims, trans_a, trans_b);
    Ok((from_f64_vec(&da), from_f64_vec(&db)))
}

/// Backward of [`dsd`]: given dense `dc [Z, H, M, N]`, returns `(da, db)` with `da` sparse
/// `[Z, nnz, b, b]` (the dense gradient restricted to the layout) and `db` dense in `b`'s stored
/// shape.
///
/// ```
/// use ltd_reference::{dsd_backward, Layout, MatmulDims};
/// // A = [[0, 2], [3, 0]] (tiles 2, 3), B = [1, 10]ᵀ, dC = [1, 1]ᵀ:
/// // dA = dC·Bᵀ = [[1, 10], [1, 10]] → tiles (0,1) = 10, (1,0) = 1; dB = Aᵀ·dC = [3, 2].
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 2, n: 1, k: 2 };
/// let (da, db) = dsd_backward(&[2.0f32, 3.0], &[1.0, 10.0], &[1.0, 1.0], dims, &layout, false, false)?;
/// assert_eq!((da, db), (vec![10.0, 1.0], vec![3.0, 2.0]));
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn dsd_backward<T: RefElement>(
    a: &[T],
    b: &[T],
    dc: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let ops = prepare(Mode::Dsd, a, b, &dims, layout, trans_a, trans_b)?;
    check_len("dc", dc, &[dims.batch, dims.heads, dims.m, dims.n])?;
    let (da, db) = dense_grads(&ops, &to_f64_vec(dc), &dims, trans_a, trans_b);
    let da = dense_to_sparse(&da, dims.batch, layout)?;
    Ok((from_f64_vec(&da), from_f64_vec(&db)))
}

/// Backward of [`dds`]: given dense `dc [Z, H, M, N]`, returns `(da, db)` with `da` dense in
/// `a`'s stored shape and `db` sparse `[Z, nnz, b, b]` (restricted to the layout).
///
/// ```
/// use ltd_reference::{dds_backward, Layout, MatmulDims};
/// // A = [1, 10], B = [[0, 2], [3, 0]], dC = [1, 1]: dA = dC·Bᵀ = [2, 3];
/// // dB = Aᵀ·dC = [[1, 1], [10, 10]] → tiles (0,1) = 1, (1,0) = 10.
/// let layout = Layout::square(&[0, 1, 1, 0], 1, 2, 1);
/// let dims = MatmulDims { batch: 1, heads: 1, m: 1, n: 2, k: 2 };
/// let (da, db) = dds_backward(&[1.0f32, 10.0], &[2.0, 3.0], &[1.0, 1.0], dims, &layout, false, false)?;
/// assert_eq!((da, db), (vec![2.0, 3.0], vec![1.0, 10.0]));
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn dds_backward<T: RefElement>(
    a: &[T],
    b: &[T],
    dc: &[T],
    dims: MatmulDims,
    layout: &Layout<'_>,
    trans_a: bool,
    trans_b: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let ops = prepare(Mode::Dds, a, b, &dims, layout, trans_a, trans_b)?;
    check_len("dc", dc, &[dims.batch, dims.heads, dims.m, dims.n])?;
    let (da, db) = dense_grads(&ops, &to_f64_vec(dc), &dims, trans_a, trans_b);
    let db = dense_to_sparse(&db, dims.batch, layout)?;
    Ok((from_f64_vec(&da), from_f64_vec(&db)))
}

/// What modifies the scores of [`block_sparse_softmax`]. Shapes (with `S = block_rows · b`):
/// `rpe [Z, H, S, S]`, `key_padding [Z, S]`, `attn_mask [S, S]`.
///
/// ```
/// use ltd_reference::SoftmaxOptions;
/// let opts = SoftmaxOptions::<f32>::new(0.4);
/// assert!(opts.rpe.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxOptions<'a, T> {
    /// Multiplies the scores first. Must be finite.
    pub scale: f64,
    /// Relative-position bias, added after scaling.
    pub rpe: Option<&'a [T]>,
    /// Key-padding mask, applied after the rpe.
    pub key_padding: Option<Mask<'a, T>>,
    /// Attention mask, applied last.
    pub attn_mask: Option<Mask<'a, T>>,
}

impl<T> SoftmaxOptions<'_, T> {
    /// Options with the given scale and nothing else.
    ///
    /// ```
    /// use ltd_reference::SoftmaxOptions;
    /// assert_eq!(SoftmaxOptions::<f32>::new(1.0).scale, 1.0);
    /// ```
    pub fn new(scale: f64) -> Self {
        SoftmaxOptions {
            scale,
            rpe: None,
            key_padding: None,
            attn_mask: None,
        }
    }
}

/// Validates a square layout for the softmax and returns `(nnz, S)`.
fn check_softmax_layout(batch: usize, layout: &Layout<'_>) -> Result<(usize, usize)> {
    let nnz = check_layout(batch, layout)?;
    same_dim(
        "layout block cols (softmax layouts are square)",
        layout.block_cols,
        layout.block_rows,
    )?;
    Ok((nnz, dense_dims(layout)?.0))
}

/// For each (head, block row), the active tiles `(tile index k, block col)` in order.
fn row_tiles(layout: &Layout<'_>) -> Vec<Vec<(usize, usize)>> {
    let mut rows = vec![Vec::new(); layout.heads * layout.block_rows];
    for (k, (h, i, j)) in layout.tiles().into_iter().enumerate() {
        rows[h * layout.block_rows + i].push((k, j));
    }
    rows
}

/// Block-sparse softmax forward (upstream-semantics.md §2.7): for batch `z`, head `h`, query `i` and each key `j`
/// in the active tiles of `i`'s block row, `s = x·scale + rpe[z,h,i,j] + kpm term(z, j) +
/// attn-mask term(i, j)`, then a softmax over those keys; returns `y [Z, nnz, b, b]`.
///
/// Keys in inactive tiles are excluded. A row whose active keys are all `-inf` gives zeros (our
/// convention; upstream gives NaN). The layout must be square. Errors on zero sizes, length
/// mismatches, a malformed or non-square layout and a non-finite scale.
///
/// ```
/// use ltd_reference::{block_sparse_softmax, Layout, Mask, MaskMode, SoftmaxOptions};
/// // S = 2, block 2, one tile; the second key masked (mul mode, value 0).
/// let layout = Layout::square(&[1], 1, 1, 2);
/// let am = [1.0f32, 0.0, 1.0, 1.0];
/// let opts = SoftmaxOptions { attn_mask: Some(Mask { values: &am, mode: MaskMode::Mul }),
///                             ..SoftmaxOptions::new(1.0) };
/// let y = block_sparse_softmax(&[0.0f32, 5.0, 0.0, 0.0], 1, &layout, &opts)?;
/// assert_eq!(y, vec![1.0, 0.0, 0.5, 0.5]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn block_sparse_softmax<T: RefElement>(
    x: &[T],
    batch: usize,
    layout: &Layout<'_>,
    opts: &SoftmaxOptions<'_, T>,
) -> Result<Vec<T>> {
    let (nnz, seq) = check_softmax_layout(batch, layout)?;
    let blk = layout.block;
    check_len("x", x, &[batch, nnz, blk, blk])?;
    if !opts.scale.is_finite() {
        return Err(RefError::NonFiniteScale(opts.scale));
    }
    let heads = layout.heads;
    if let Some(rpe) = opts.rpe {
        check_len("rpe", rpe, &[batch, heads, seq, seq])?;
    }
    if let Some(m) = opts.key_padding {
        check_len("key_padding", m.values, &[batch, seq])?;
    }
    if let Some(m) = opts.attn_mask {
        check_len("attn_mask", m.values, &[seq, seq])?;
    }
    let rpe = opts.rpe.map(to_f64_vec);
    let kpm = opts.key_padding.map(|m| (to_f64_vec(m.values), m.mode));
    let am = opts.attn_mask.map(|m| (to_f64_vec(m.values), m.mode));
    let mods = Modifiers {
        scale: opts.scale,
        bias: rpe.as_deref(),
        key_padding: kpm.as_ref().map(|(v, mode)| (&v[..], *mode)),
        attn_mask: am.as_ref().map(|(v, mode)| (&v[..], *mode)),
    };
    let y = softmax_f64(&to_f64_vec(x), batch, layout, &mods);
    Ok(from_f64_vec(&y))
}

/// Block-sparse softmax forward in f64 on validated inputs (`x [Z, nnz, b, b]`).
pub(crate) fn softmax_f64(
    x: &[f64],
    batch: usize,
    layout: &Layout<'_>,
    mods: &Modifiers<'_>,
) -> Vec<f64> {
    let (heads, blk, nnz) = (layout.heads, layout.block, layout.nnz());
    let seq = layout.block_rows * blk;
    let mut y = vec![0.0; x.len()];
    let rows = row_tiles(layout);
    for z in 0..batch {
        for h in 0..heads {
            for bi in 0..layout.block_rows {
                let tiles = &rows[h * layout.block_rows + bi];
                for r in 0..blk {
                    let i = bi * blk + r;
                    // The row's active keys, tile by tile, column by column.
                    let mut s = Vec::with_capacity(tiles.len() * blk);
                    for &(k, bj) in tiles {
                        for c in 0..blk {
                            let xv = x[sparse_at(z, k, r, c, nnz, blk)];
                            s.push(mods.apply(xv, z, h, i, bj * blk + c, heads, seq));
                        }
                    }
                    let (p, _) = softmax_row(&s);
                    for (t, &(k, _)) in tiles.iter().enumerate() {
                        for c in 0..blk {
                            y[sparse_at(z, k, r, c, nnz, blk)] = p[t * blk + c];
                        }
                    }
                }
            }
        }
    }
    y
}

/// Block-sparse softmax backward (upstream-semantics.md §2.7): `dx = y ⊙ (dy − Σ_j y_j·dy_j) · scale`, the sum
/// over the active keys of the row (all tiles of the block row). `y` and `dy` are
/// `[Z, nnz, b, b]`. A fully masked row (`y` all zero) gives zeros. No gradient flows to rpe or
/// masks.
///
/// ```
/// use ltd_reference::{block_sparse_softmax_backward, Layout};
/// // One 2x2 tile; row 0: y = [0.5, 0.5], dy = [1, 0] → Σ = 0.5, dx = [0.25, -0.25]·scale.
/// let layout = Layout::square(&[1], 1, 1, 2);
/// let dx = block_sparse_softmax_backward(&[0.5f32, 0.5, 1.0, 0.0], &[1.0, 0.0, 0.0, 0.0],
///                                        1, &layout, 2.0)?;
/// assert_eq!(dx, vec![0.5, -0.5, 0.0, 0.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn block_sparse_softmax_backward<T: RefElement>(
    y: &[T],
    dy: &[T],
    batch: usize,
    layout: &Layout<'_>,
    scale: f64,
) -> Result<Vec<T>> {
    let (nnz, _) = check_softmax_layout(batch, layout)?;
    let blk = layout.block;
    check_len("y", y, &[batch, nnz, blk, blk])?;
    check_len("dy", dy, &[batch, nnz, blk, blk])?;
    if !scale.is_finite() {
        return Err(RefError::NonFiniteScale(scale));
    }
    let dx = softmax_backward_f64(&to_f64_vec(y), &to_f64_vec(dy), batch, layout, scale);
    Ok(from_f64_vec(&dx))
}

/// Block-sparse softmax backward in f64 on validated inputs.
pub(crate) fn softmax_backward_f64(
    y: &[f64],
    dy: &[f64],
    batch: usize,
    layout: &Layout<'_>,
    scale: f64,
) -> Vec<f64> {
    let (blk, nnz) = (layout.block, layout.nnz());
    let mut dx = vec![0.0; y.len()];
    let rows = row_tiles(layout);
    for z in 0..batch {
        for tiles in &rows {
            for r in 0..blk {
                let mut dot = 0.0;
                for &(k, _) in tiles {
                    for c in 0..blk {
                        let at = sparse_at(z, k, r, c, nnz, blk);
                        dot += y[at] * dy[at];
                    }
                }
                for &(k, _) in tiles {
                    for c in 0..blk {
                        let at = sparse_at(z, k, r, c, nnz, blk);
                        dx[at] = y[at] * (dy[at] - dot) * scale;
                    }
                }
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modifiers::MaskMode;

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn softmax_backward_matches_central_differences() {
        // Z=2, H=2, S=6, block 2, with rpe, kpm (mul, one key dropped) and attention mask
        // (add, one row fully -inf).
        #[rustfmt::skip]
        let values_layout = [1u8, 0, 1,  1, 1, 0,  0, 1, 1,
                             0, 1, 0,  1, 0, 1,  1, 1, 1];
        let layout = Layout::square(&values_layout, 2, 3, 2);
        let (z, s) = (2, 6);
        let nnz = layout.nnz();
        let x = values(z * nnz * 4, 1);
        let dy = values(z * nnz * 4, 2);
        let rpe = values(z * 2 * s * s, 3);
        let mut kpm = vec![1.0; z * s];
        kpm[4] = 0.0;
        let mut am = vec![0.0; s * s];
        am[2 * s..3 * s].fill(f64::NEG_INFINITY);
        let scale = 0.7;
        let mods = Modifiers {
            scale,
            bias: Some(&rpe),
            key_padding: Some((&kpm, MaskMode::Mul)),
            attn_mask: Some((&am, MaskMode::Add)),
        };
        let loss = |x: &[f64]| -> f64 {
            softmax_f64(x, z, &layout, &mods)
                .iter()
                .zip(&dy)
                .map(|(a, b)| a * b)
                .sum()
        };
        let y = softmax_f64(&x, z, &layout, &mods);
        let dx = softmax_backward_f64(&y, &dy, z, &layout, scale);
        let h = 1e-6;
        for e in 0..x.len() {
            let mut plus = x.clone();
            plus[e] += h;
            let mut minus = x.clone();
            minus[e] -= h;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
            assert!(
                (dx[e] - numeric).abs() <= 1e-7 * (1.0 + numeric.abs()),
                "dx[{e}]: analytic {}, finite difference {numeric}",
                dx[e]
            );
        }
        assert!(dx.iter().any(|&v| v.abs() > 1e-3));
        // Each row's probabilities sum to 1 or (fully masked row 2) to 0.
        let rows = row_tiles(&layout);
        for zz in 0..z {
            for (hi, tiles) in rows.iter().enumerate() {
                for r in 0..2 {
                    let sum: f64 = tiles
                        .iter()
                        .flat_map(|&(k, _)| (0..2).map(move |c| (k, c)))
                        .map(|(k, c)| y[sparse_at(zz, k, r, c, nnz, 2)])
                        .sum();
                    let query = (hi % 3) * 2 + r;
                    let want = if query == 2 { 0.0 } else { 1.0 };
                    assert!((sum - want).abs() < 1e-12, "z {zz} row {hi}/{r}: {sum}");
                }
            }
        }
    }
}
