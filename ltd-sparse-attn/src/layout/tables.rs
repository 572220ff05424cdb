//! The CSR and CSC lookup tables of a layout mask, built in time linear in its size.

use crate::error::Result;

/// The CSR tables of a `[rows, nb]` 0/1 mask with `nnz` ones, read row by row.
pub(super) fn csr_tables(
    mask: &[u8],
    rows: usize,
    nb: usize,
    nnz: usize,
) -> Result<(Vec<i32>, Vec<i32>)> {
    let mut row_offsets = ltd_core::try_with_capacity("layout row offsets", rows + 1)?;
    let mut row_columns = ltd_core::try_with_capacity("layout row columns", nnz)?;
    row_offsets.push(0i32);
    if nb > 0 {
        for row in mask.chunks_exact(nb) {
            row_columns.extend(
                row.iter()
                    .enumerate()
                    .filter(|&(_, &v)| v == 1)
                    .map(|(c, _)| c as i32),
            );
            // nnz <= i32::MAX was checked by the caller.
            row_offsets.push(row_columns.len() as i32);
        }
    } else {
        row_offsets.resize(rows + 1, 0);
    }
    Ok((row_offsets, row_columns))
}

/// The CSC tables, transposed from the CSR tables in one counting pass per head (linear in the
/// number of tiles; rows come out ascending because the CSR is walked in row order).
pub(super) type CscTables = (Vec<i32>, Vec<i32>, Vec<i32>);
pub(super) fn csc_tables(
    row_offsets: &[i32],
    row_columns: &[i32],
    num_heads: usize,
    nb: usize,
) -> Result<CscTables> {
    let nnz = row_columns.len();
    let mut column_offsets = ltd_core::try_vec("layout column offsets", num_heads * nb + 1, 0i32)?;
    let mut column_rows = ltd_core::try_vec("layout column rows", nnz, 0i32)?;
    let mut column_tiles = ltd_core::try_vec("layout column tiles", nnz, 0i32)?;
    // Count the tiles of every (head, column), then prefix-sum into offsets.
    for h in 0..num_heads {
        let tiles = row_offsets[h * nb] as usize..row_offsets[(h + 1) * nb] as usize;
        for &c in &row_columns[tiles] {
            column_offsets[h * nb + c as usize + 1] += 1;
        }
    }
    for i in 1..column_offsets.len() {
        column_offsets[i] += column_offsets[i - 1];
    }
    let mut next: Vec<i32> = ltd_core::try_with_capacity("layout column cursor", num_heads * nb)?;
    next.extend_from_slice(&column_offsets[..num_heads * nb]);
    for h in 0..num_heads {
        for r in 0..nb {
            let hr = h * nb + r;
            for tile in row_offsets[hr] as usize..row_offsets[hr + 1] as usize {
                let slot = &mut next[h * nb + row_columns[tile] as usize];
                column_rows[*slot as usize] = r as i32;
                column_tiles[*slot as usize] = tile as i32;
                *slot += 1;
            }
        }
    }
    Ok((column_offsets, column_rows, column_tiles))
}
