//! Argument checks shared by the ops (sizes, index ranges and order).

use crate::{CoreError, IndexView, Result};

/// What an index row must satisfy beyond being in `[0, S)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexRule {
    /// Only the range (gathers: repeats and any order are harmless).
    InRange,
    /// Strictly ascending (scatters and routes: every kept row written exactly once, in the
    /// sampler's order).
    StrictlyAscending,
}

/// `value >= 1`, else [`CoreError::InvalidSize`] naming `what`.
pub(crate) fn nonzero(what: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(CoreError::InvalidSize {
            what,
            got: 0,
            expected: "at least 1".into(),
        });
    }
    Ok(())
}

/// `1 <= r <= S`.
pub(crate) fn reserved_in_range(reserved: usize, seq: usize) -> Result<()> {
    if reserved == 0 || reserved > seq {
        return Err(CoreError::InvalidSize {
            what: "r (reserved length)",
            got: reserved,
            expected: format!("1 <= r <= S = {seq}"),
        });
    }
    Ok(())
}

/// Checks every index of `idx` is in `[0, seq)` and, under
/// [`IndexRule::StrictlyAscending`], larger than the one before it in its row.
pub(crate) fn check_indices(
    what: &'static str,
    idx: &IndexView<'_>,
    seq: usize,
    rule: IndexRule,
) -> Result<()> {
    for b in 0..idx.batch() {
        let row = idx.row_unchecked(b);
        let mut prev: i64 = -1;
        for (k, &v) in row.iter().enumerate() {
            let v64 = i64::from(v);
            let bad = |reason: String| CoreError::InvalidIndex {
                what,
                layer: idx.layer_index(),
                row: b,
                pos: k,
                value: v64,
                reason,
            };
            if v < 0 || v64 as u64 >= seq as u64 {
                return Err(bad(format!("expected a position in [0, S = {seq})")));
            }
            if rule == IndexRule::StrictlyAscending && v64 <= prev {
                let reason = if v64 == prev {
                    format!(
                        "duplicate of the previous position {prev}; expected distinct, strictly ascending positions"
                    )
                } else {
                    format!(
                        "below the previous position {prev}; expected strictly ascending positions"
                    )
                };
                return Err(bad(reason));
            }
            prev = v64;
        }
    }
    Ok(())
}
