//! Block-sparse primitives (upstream-semantics.md §2.6–2.7): [`BlockSparseMatMul`] (`sdd`, `dsd`, `dds`, with
//! transposes and backward) and the block-sparse softmax ([`softmax_forward`],
//! [`softmax_backward`]).
//!
//! Sparse operands use the format `[Z, nnz, b, b]`: `nnz` = the layout's active tiles over all
//! heads, in `(head, block_row, block_col)` order, tile `k` holding the dense sub-matrix at rows
//! `i*b..(i+1)*b` and columns `j*b..(j+1)*b` of its head. Dense operands are `[Z, H, rows, cols]`
//! row-major with `H` = the layout's heads. Element types are the [`CpuElement`]s: arithmetic is
//! in `f32` for `f32`, `f16` and `bf16`, and in `f64` for `f64`; outputs are rounded once to the
//! element type. Every output element is written.
//!
//! Layouts are square (`nb x nb` blocks), as attention needs; upstream's rectangular `sdd`
//! layouts are not supported.
//!
//! Upstream's attention as three primitives (scores, softmax, weighted sum):
//!
//! ```
//! use ltd_sparse_attn::ops::{BlockSparseMatMul, SoftmaxOptions, softmax_forward_in_place};
//! use ltd_sparse_attn::Layout;
//! let layout = Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1]).unwrap();
//! let (s, d) = (32, 8);
//! let q = vec![0.1f32; s * d];
//! let mut scores = vec![0.0f32; 3 * 16 * 16];
//! BlockSparseMatMul::sdd(false, true).forward(&layout, &q, &q, 1, d, &mut scores).unwrap();
//! let opts = SoftmaxOptions { scale: 0.35, ..SoftmaxOptions::new() };
//! softmax_forward_in_place(&layout, &mut scores, 1, &opts).unwrap();
//! let mut out = vec![0.0f32; s * d];
//! BlockSparseMatMul::dsd(false, false).forward(&layout, &scores, &q, 1, d, &mut out).unwrap();
//! assert!(out.iter().all(|&x| (x - 0.1).abs() < 1e-6));
//! ```

mod matmul;
mod softmax;

#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use matmul::Operand;
pub use matmul::{BlockSparseMatMul, MatMulMode};
pub use softmax::{
    MaskMode, SoftmaxOptions, softmax_backward, softmax_forward, softmax_forward_in_place,
};

use crate::error::{Result, SparseAttnError};
use ltd_core::{Accumulator, CpuElement};

/// Widens a slice to its accumulator type (`f32`, or `f64` for `f64`).
pub(crate) fn widen<T: CpuElement>(x: &[T]) -> Vec<T::Acc> {
    x.iter().map(|v| v.to_acc()).collect()
}

/// Rounds `src` into `dst` (same length).
pub(crate) fn narrow_into<T: CpuElement>(src: &[T::Acc], dst: &mut [T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = T::from_acc(s);
    }
}

/// Checks `buf.len()` against the product of `dims`, naming `what` and the shape in the error.
pub(crate) fn check_len(what: &str, len: usize, dims: &[usize], names: &str) -> Result<()> {
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    match expected {
        Some(e) if e == len => Ok(()),
        Some(e) => Err(SparseAttnError::shape(
            what,
            format!("{e} elements ({names} = {shape})"),
            format!("{len} elements"),
        )),
        None => Err(SparseAttnError::shape(
            what,
            format!("{names} = {shape} (overflows usize)"),
            len,
        )),
    }
}

/// Dot product with eight independent accumulators (lets the compiler vectorise it).
#[inline]
pub(crate) fn dot<A: Accumulator>(a: &[A], b: &[A]) -> A {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [A::ZERO; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x * *y;
    }
    s
}

/// `y += alpha * x` over the common length.
#[inline]
pub(crate) fn axpy<A: Accumulator>(alpha: A, x: &[A], y: &mut [A]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}

/// Splits `buf` into consecutive chunks of the given lengths (which must sum to at most
/// `buf.len()`), for parallel iteration over variable-size pieces.
pub(crate) fn split_lengths<T>(
    mut buf: &mut [T],
    lengths: impl IntoIterator<Item = usize>,
) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    for len in lengths {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(len);
        out.push(head);
        buf = tail;
    }
    out
}
