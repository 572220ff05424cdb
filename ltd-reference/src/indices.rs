//! Validation of index tensors (`[B, r]` or `[L, B, r]`, i32), shared by the gathers, the
//! scatters and the sampler checker.

use crate::error::{IndexLocation, IndexProblem, RefError, Result, check_len, nonzero};

/// Which rules beyond "in `[0, seq)`" the rows must follow.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rules {
    /// Only the range rule (gathers: any index may repeat, any order).
    InRange,
    /// Range and distinct within a row (scatters: a repeated index would make the write order
    /// matter).
    Distinct,
    /// Range and strictly ascending (sampler output).
    StrictlyAscending,
}

/// Checks an index tensor of shape `[layers?, batch, r]` whose values index a sequence of length
/// `seq`. Sizes must already be known to be nonzero except where checked here.
pub(crate) fn check_indices(
    what: &'static str,
    idx: &[i32],
    layers: Option<usize>,
    batch: usize,
    r: usize,
    seq: usize,
    rules: Rules,
) -> Result<()> {
    nonzero("r", r)?;
    let n_layers = layers.unwrap_or(1);
    check_len(what, idx, &[n_layers, batch, r])?;
    // first_seen[v] = position of the first occurrence of v in the current row. Only the
    // distinctness rule needs it (and only then is `seq` known to be backed by a real tensor).
    let mut first_seen: Vec<Option<usize>> = match rules {
        Rules::Distinct => vec![None; seq],
        Rules::InRange | Rules::StrictlyAscending => Vec::new(),
    };
    for l in 0..n_layers {
        for b in 0..batch {
            let row = &idx[(l * batch + b) * r..(l * batch + b + 1) * r];
            for (k, &value) in row.iter().enumerate() {
                let location = IndexLocation {
                    layer: layers.map(|_| l),
                    row: b,
                    position: k,
                };
                let bad = |problem| RefError::BadIndex {
                    what,
                    location,
                    value,
                    problem,
                };
                if value < 0 || value as usize >= seq {
                    return Err(bad(IndexProblem::OutOfRange { seq }));
                }
                match rules {
                    Rules::InRange => {}
                    Rules::Distinct => {
                        if let Some(first_position) = first_seen[value as usize] {
                            return Err(bad(IndexProblem::Duplicate { first_position }));
                        }
                        first_seen[value as usize] = Some(k);
                    }
                    Rules::StrictlyAscending => {
                        if k > 0 && value <= row[k - 1] {
                            return Err(bad(IndexProblem::NotAscending {
                                previous: row[k - 1],
                            }));
                        }
                    }
                }
            }
            if !first_seen.is_empty() {
                for &value in row {
                    first_seen[value as usize] = None;
                }
            }
        }
    }
    Ok(())
}
