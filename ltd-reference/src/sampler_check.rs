//! Validity of sampled Random-LTD indices (the sampler's contract, not its exact output).

use crate::error::{Result, check_reserved, nonzero};
use crate::indices::{Rules, check_indices};

/// Checks sampler output `idx [layers, batch, r]`: the right total length, every value in
/// `[0, seq)`, and every row strictly ascending (hence distinct).
///
/// Errors: [`RefError::ZeroSize`](crate::RefError::ZeroSize) for a zero size,
/// [`RefError::ReservedTooLong`](crate::RefError::ReservedTooLong) for `r > seq`,
/// [`RefError::LengthMismatch`](crate::RefError::LengthMismatch) for a wrong length, and
/// [`RefError::BadIndex`](crate::RefError::BadIndex) naming the first bad (layer, row,
/// position, value) and the rule it breaks.
///
/// ```
/// use ltd_reference::{check_sampled_indices, IndexProblem, RefError};
/// // 1 layer, 2 rows, r = 2, S = 4.
/// check_sampled_indices(&[0, 3, 1, 2], 1, 2, 2, 4)?;
/// let err = check_sampled_indices(&[0, 3, 2, 2], 1, 2, 2, 4).unwrap_err();
/// assert!(matches!(err, RefError::BadIndex { problem: IndexProblem::NotAscending { previous: 2 }, .. }));
/// assert_eq!(
///     err.to_string(),
///     "idx at [layer 0, row 1, position 1] is 2, which is not greater than the previous value 2 \
///      (rows must be strictly ascending)"
/// );
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn check_sampled_indices(
    idx: &[i32],
    layers: usize,
    batch: usize,
    r: usize,
    seq: usize,
) -> Result<()> {
    nonzero("layers", layers)?;
    nonzero("batch", batch)?;
    nonzero("seq", seq)?;
    check_reserved(r, seq)?;
    check_indices(
        "idx",
        idx,
        Some(layers),
        batch,
        r,
        seq,
        Rules::StrictlyAscending,
    )
}
