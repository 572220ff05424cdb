//! [`RefError`], the one error type of the crate, and the small validation helpers every oracle
//! uses.

use std::fmt;

/// Everything an oracle can reject. Every message names the bad value and what was expected.
///
/// ```
/// use ltd_reference::RefError;
/// let e = RefError::LengthMismatch { what: "idx", got: 5, expected: 6 };
/// assert_eq!(e.to_string(), "idx has 5 elements, expected 6");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// A flat buffer has the wrong number of elements for the dimensions given with it.
    #[error("{what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length its dimensions call for.
        expected: usize,
    },
    /// A size that must be positive is zero.
    #[error("{what} must be at least 1, got 0")]
    ZeroSize {
        /// Which size (e.g. `"batch"`, `"r"`).
        what: &'static str,
    },
    /// The reserved length exceeds the sequence length.
    #[error("reserved length r = {r} exceeds the sequence length S = {seq}; expected 1 <= r <= S")]
    ReservedTooLong {
        /// The reserved length.
        r: usize,
        /// The sequence length.
        seq: usize,
    },
    /// The product of the dimensions does not fit in `usize`.
    #[error("{what}: the product of the dimensions {dims:?} overflows usize")]
    TooLarge {
        /// Which argument.
        what: &'static str,
        /// The dimensions.
        dims: Vec<usize>,
    },
    /// An index tensor holds a bad value.
    #[error("{what} at {location} is {value}, which {problem}")]
    BadIndex {
        /// Which argument.
        what: &'static str,
        /// Where the value is.
        location: IndexLocation,
        /// The value.
        value: i32,
        /// The rule it breaks.
        problem: IndexProblem,
    },
    /// A layout entry is neither 0 nor 1.
    #[error("layout[head {head}, block row {row}, block col {col}] is {value}, expected 0 or 1")]
    BadLayoutValue {
        /// Head.
        head: usize,
        /// Block row.
        row: usize,
        /// Block column.
        col: usize,
        /// The value found.
        value: u8,
    },
    /// A dimension is not a multiple of the block size.
    #[error("{what} = {dim} is not a multiple of the block size {block}")]
    BlockNotDividing {
        /// Which dimension.
        what: &'static str,
        /// Its size.
        dim: usize,
        /// The block size.
        block: usize,
    },
    /// A dimension disagrees with another argument's (e.g. layout heads vs tensor heads).
    #[error("{what} is {got}, expected {expected}")]
    DimMismatch {
        /// Which dimension.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The value it must have.
        expected: usize,
    },
    /// A buffer sized from the arguments could never be allocated on this machine.
    #[error("{what} needs {bytes} bytes, more than this machine's memory")]
    AllocationTooLarge {
        /// Which buffer.
        what: &'static str,
        /// The bytes it would need (saturated at `u128::MAX`).
        bytes: u128,
    },
    /// The softmax scale is NaN or infinite.
    #[error("scale must be finite, got {0}")]
    NonFiniteScale(f64),
}

/// Where a bad index sits: layer (for `[L, B, r]` index tensors), row (batch entry) and position
/// within the row.
///
/// ```
/// use ltd_reference::IndexLocation;
/// let at = IndexLocation { layer: Some(1), row: 0, position: 3 };
/// assert_eq!(at.to_string(), "[layer 1, row 0, position 3]");
/// let at = IndexLocation { layer: None, row: 2, position: 0 };
/// assert_eq!(at.to_string(), "[row 2, position 0]");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLocation {
    /// Layer, when the index tensor has a layer dimension.
    pub layer: Option<usize>,
    /// Row (batch entry).
    pub row: usize,
    /// Position within the row (`0..r`).
    pub position: usize,
}

impl fmt::Display for IndexLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            Some(l) => write!(
                f,
                "[layer {l}, row {}, position {}]",
                self.row, self.position
            ),
            None => write!(f, "[row {}, position {}]", self.row, self.position),
        }
    }
}

/// The rule a bad index breaks.
///
/// ```
/// use ltd_reference::IndexProblem;
/// assert_eq!(IndexProblem::OutOfRange { seq: 4 }.to_string(), "is outside [0, 4)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexProblem {
    /// Not in `[0, seq)`.
    OutOfRange {
        /// The sequence length.
        seq: usize,
    },
    /// The same value already appears earlier in the row.
    Duplicate {
        /// Position of the earlier occurrence.
        first_position: usize,
    },
    /// Not strictly greater than the previous value of the row (rows must be sorted ascending).
    NotAscending {
        /// The previous value.
        previous: i32,
    },
}

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IndexProblem::OutOfRange { seq } => write!(f, "is outside [0, {seq})"),
            IndexProblem::Duplicate { first_position } => write!(
                f,
                "repeats the value at position {first_position} (indices of a row must be distinct)"
            ),
            IndexProblem::NotAscending { previous } => write!(
                f,
                "is not greater than the previous value {previous} (rows must be strictly ascending)"
            ),
        }
    }
}

/// The crate's result type.
///
/// ```
/// fn first_row(idx: &[i32]) -> ltd_reference::Result<()> {
///     ltd_reference::check_sampled_indices(idx, 1, 1, idx.len(), 8)
/// }
/// assert!(first_row(&[1, 5]).is_ok());
/// assert!(first_row(&[5, 1]).is_err());
/// ```
pub type Result<T> = std::result::Result<T, RefError>;

/// Errors with [`RefError::ZeroSize`] when `value` is zero.
pub(crate) fn nonzero(what: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(RefError::ZeroSize { what })
    } else {
        Ok(())
    }
}

/// The product of `dims`, or [`RefError::TooLarge`] on overflow.
pub(crate) fn product(what: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| RefError::TooLarge {
            what,
            dims: dims.to_vec(),
        })
}

/// Checks that `buf` has exactly `product(dims)` elements.
pub(crate) fn check_len<T>(what: &'static str, buf: &[T], dims: &[usize]) -> Result<()> {
    check_count(what, buf.len(), dims)
}

/// Checks that a buffer length `len` equals `product(dims)`.
pub(crate) fn check_count(what: &'static str, len: usize, dims: &[usize]) -> Result<()> {
    let expected = product(what, dims)?;
    if len != expected {
        return Err(RefError::LengthMismatch {
            what,
            got: len,
            expected,
        });
    }
    Ok(())
}

/// Checks that `got == expected`.
pub(crate) fn same_dim(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(RefError::DimMismatch {
            what,
            got,
            expected,
        });
    }
    Ok(())
}

/// Checks `1 <= r <= seq`.
pub(crate) fn check_reserved(r: usize, seq: usize) -> Result<()> {
    nonzero("r", r)?;
    if r > seq {
        return Err(RefError::ReservedTooLong { r, seq });
    }
    Ok(())
}
