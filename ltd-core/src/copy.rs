//! Strided 2-D copies: make a strided view contiguous (used before the vectorised ops, and the
//! first kernel that exercises the whole CPU/GPU pipeline).

use crate::{CoreError, Element, Result};

/// A strided 2-D view: element `(i, j)` is at `i * row_stride + j * col_stride` (in elements).
///
/// ```
/// use ltd_core::StridedLayout2d;
/// // A contiguous 2x3 matrix.
/// let l = StridedLayout2d::contiguous(2, 3);
/// assert_eq!((l.row_stride, l.col_stride), (3, 1));
/// assert_eq!(l.min_buffer_len(), 6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridedLayout2d {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

impl StridedLayout2d {
    /// A row-major contiguous `rows × cols` layout.
    ///
    /// ```
    /// assert_eq!(ltd_core::StridedLayout2d::contiguous(4, 5).row_stride, 5);
    /// ```
    pub fn contiguous(rows: usize, cols: usize) -> StridedLayout2d {
        StridedLayout2d {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The fewest elements a buffer needs to hold this view (0 for an empty view); saturates
    /// at `usize::MAX` on overflow, which no buffer can satisfy.
    ///
    /// ```
    /// let t = ltd_core::StridedLayout2d { rows: 3, cols: 2, row_stride: 1, col_stride: 3 };
    /// assert_eq!(t.min_buffer_len(), 6);
    /// ```
    pub fn min_buffer_len(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|a| {
                (self.cols - 1)
                    .checked_mul(self.col_stride)
                    .and_then(|b| a.checked_add(b))
            })
            .and_then(|last| last.checked_add(1))
            .unwrap_or(usize::MAX)
    }
}

/// Checks a strided copy's arguments (shared by the CPU and GPU versions).
pub(crate) fn check_strided_copy(
    src_len: usize,
    layout: StridedLayout2d,
    dst_len: usize,
) -> Result<()> {
    for (what, got) in [("rows", layout.rows), ("cols", layout.cols)] {
        if got == 0 {
            return Err(CoreError::InvalidSize {
                what,
                got,
                expected: "at least 1".into(),
            });
        }
    }
    let needed = layout.min_buffer_len();
    if src_len < needed {
        return Err(CoreError::BufferTooSmall {
            what: "source",
            got: src_len,
            needed,
        });
    }
    let needed = layout.rows.saturating_mul(layout.cols);
    if dst_len < needed {
        return Err(CoreError::BufferTooSmall {
            what: "destination",
            got: dst_len,
            needed,
        });
    }
    if i64::try_from(needed).is_err() || i64::try_from(src_len).is_err() {
        return Err(CoreError::InvalidSize {
            what: "elements",
            got: needed.max(src_len),
            expected: format!("at most {}", i64::MAX),
        });
    }
    Ok(())
}

/// Copies the strided `rows × cols` view of `src` described by `layout` into a new contiguous
/// row-major vector.
///
/// # Errors
/// [`CoreError::InvalidSize`] for zero rows or columns; [`CoreError::BufferTooSmall`] when
/// `src` does not cover the view.
///
/// ```
/// use ltd_core::{StridedLayout2d, copy_strided_2d};
/// // Transpose a 2x3 row-major matrix by reading it as a 3x2 view with strides (1, 3).
/// let m = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let t = StridedLayout2d { rows: 3, cols: 2, row_stride: 1, col_stride: 3 };
/// assert_eq!(copy_strided_2d(&m, t)?, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn copy_strided_2d<T: Element>(src: &[T], layout: StridedLayout2d) -> Result<Vec<T>> {
    // Broadcast (zero) strides let a tiny `src` describe a huge view: size the output checked.
    let len = layout
        .rows
        .checked_mul(layout.cols)
        .ok_or(CoreError::SizeOverflow {
            what: "strided copy output",
        })?;
    check_strided_copy(src.len(), layout, len)?;
    let mut out = crate::try_with_capacity("strided copy output", len)?;
    for i in 0..layout.rows {
        let row = i * layout.row_stride;
        if layout.col_stride == 1 {
            out.extend_from_slice(&src[row..row + layout.cols]);
        } else {
            out.extend((0..layout.cols).map(|j| src[row + j * layout.col_stride]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_by_hand() {
        let m = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let t = StridedLayout2d {
            rows: 3,
            cols: 2,
            row_stride: 1,
            col_stride: 3,
        };
        assert_eq!(
            copy_strided_2d(&m, t).unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn padded_rows() {
        // 2x2 view of a buffer with row pitch 3.
        let m = [1u16, 2, 99, 3, 4];
        let v: Vec<half::f16> = m.iter().map(|&x| half::f16::from_f32(x as f32)).collect();
        let l = StridedLayout2d {
            rows: 2,
            cols: 2,
            row_stride: 3,
            col_stride: 1,
        };
        let got: Vec<f32> = copy_strided_2d(&v, l)
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        assert_eq!(got, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let m = [0.0f32; 5];
        let l = StridedLayout2d {
            rows: 2,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        let e = copy_strided_2d(&m, l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source buffer has 5 elements, but its shape and strides need at least 6"
        );
        let e = copy_strided_2d(&m, StridedLayout2d::contiguous(0, 3)).unwrap_err();
        assert_eq!(e.to_string(), "rows = 0 is invalid: expected at least 1");
        let huge = StridedLayout2d {
            rows: 3,
            cols: 1,
            row_stride: usize::MAX,
            col_stride: 1,
        };
        assert!(matches!(
            copy_strided_2d(&m, huge),
            Err(CoreError::BufferTooSmall {
                needed: usize::MAX,
                ..
            })
        ));
    }
}
