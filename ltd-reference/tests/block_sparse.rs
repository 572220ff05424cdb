//! Hand-computed cases, self-consistency checks and bad-input errors for the block-sparse
//! primitives.

use ltd_reference::{
    Layout, Mask, MaskMode, MatmulDims, RefError, SoftmaxOptions, block_sparse_softmax,
    block_sparse_softmax_backward, dds, dds_backward, dense_to_sparse, dsd, dsd_backward, sdd,
    sdd_backward, sparse_to_dense,
};

const LN3: f64 = 1.098_612_288_668_109_8;

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}\n got: {got:?}\nwant: {want:?}"
        );
    }
}

fn single(m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims {
        batch: 1,
        heads: 1,
        m,
        n,
        k,
    }
}

/// Small integers in [-3, 3] from a fixed sequence: every product and sum below stays exact
/// in f32, so finite differences with step 1 are exact.
fn ints(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % 7) as i64 - 3) as f32
        })
        .collect()
}

/// `[n, rows, cols]` -> `[n, cols, rows]`, for building transposed inputs in tests.
fn transposed(x: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
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

// ---------------------------------------------------------------------------------------------
// dense_to_sparse / sparse_to_dense
// ---------------------------------------------------------------------------------------------

#[test]
fn tile_order_is_head_row_col_over_all_heads() {
    // Z = 2, H = 2, 2x2 blocks of size 1. Head 0 tiles (0,1),(1,0); head 1 tile (1,1).
    // dense[z,h,i,j] = 100 z + 10 h + 2 i + j... written out:
    let layout_values = [0u8, 1, 1, 0, 0, 0, 0, 1];
    let layout = Layout::square(&layout_values, 2, 2, 1);
    let dense: Vec<i32> = (0..2)
        .flat_map(|z| (0..2).flat_map(move |h| (0..4).map(move |e| 100 * z + 10 * h + e)))
        .collect();
    let sparse = dense_to_sparse(&dense, 2, &layout).unwrap();
    // Per z: (h0,0,1) = e 1, (h0,1,0) = e 2, (h1,1,1) = 10 + 3.
    assert_eq!(sparse, vec![1, 2, 13, 101, 102, 113]);
    let back = sparse_to_dense(&sparse, 2, &layout, -1).unwrap();
    assert_eq!(
        back,
        vec![
            -1, 1, 2, -1, -1, -1, -1, 13, -1, 101, 102, -1, -1, -1, -1, 113
        ]
    );
}

#[test]
fn tiles_are_row_major_blocks() {
    // One head, 4x4 dense, block 2, tiles (0,1) and (1,0).
    let layout_values = [0u8, 1, 1, 0];
    let layout = Layout::square(&layout_values, 1, 2, 2);
    let dense: Vec<i32> = (0..16).collect();
    // Tile (0,1): rows 0-1, cols 2-3 = [2,3,6,7]; tile (1,0): rows 2-3, cols 0-1 = [8,9,12,13].
    assert_eq!(
        dense_to_sparse(&dense, 1, &layout).unwrap(),
        vec![2, 3, 6, 7, 8, 9, 12, 13]
    );
}

#[test]
fn conversions_reject_bad_input() {
    let layout_values = [1u8, 0, 0, 1];
    let layout = Layout::square(&layout_values, 1, 2, 2);
    assert_eq!(
        dense_to_sparse(&[0; 15], 1, &layout).unwrap_err(),
        RefError::LengthMismatch {
            what: "dense",
            got: 15,
            expected: 16
        }
    );
    assert_eq!(
        sparse_to_dense(&[0; 7], 1, &layout, 0).unwrap_err(),
        RefError::LengthMismatch {
            what: "sparse",
            got: 7,
            expected: 8
        }
    );
    assert_eq!(
        dense_to_sparse(&[0; 16], 0, &layout).unwrap_err(),
        RefError::ZeroSize { what: "batch" }
    );
    let bad = [1u8, 0, 3, 1];
    assert_eq!(
        dense_to_sparse(&[0; 16], 1, &Layout::square(&bad, 1, 2, 2)).unwrap_err(),
        RefError::BadLayoutValue {
            head: 0,
            row: 1,
            col: 0,
            value: 3
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Matmul forward, by hand
// ---------------------------------------------------------------------------------------------

// A [4, 2] = [[1,0],[0,1],[1,1],[2,0]], B [2, 4] = [[1,2,3,4],[5,6,7,8]], so
// C = A·B = [[1,2,3,4],[5,6,7,8],[6,8,10,12],[2,4,6,8]].
const A: [f32; 8] = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0];
const B: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
// Lower-triangular 2x2 block layout, block 2.
const TRI: [u8; 4] = [1, 0, 1, 1];

#[test]
fn sdd_two_by_two_blocks_by_hand() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    let c = sdd(&A, &B, single(4, 4, 2), &layout, false, false).unwrap();
    // Tiles (0,0) = [1,2,5,6], (1,0) = [6,8,2,4], (1,1) = [10,12,6,8].
    let want = [1.0, 2.0, 5.0, 6.0, 6.0, 8.0, 2.0, 4.0, 10.0, 12.0, 6.0, 8.0];
    assert_eq!(c, want);
    // Same product with transposed storage of either operand.
    let at = transposed(&A, 1, 4, 2);
    let bt = transposed(&B, 1, 2, 4);
    assert_eq!(
        sdd(&at, &B, single(4, 4, 2), &layout, true, false).unwrap(),
        want
    );
    assert_eq!(
        sdd(&A, &bt, single(4, 4, 2), &layout, false, true).unwrap(),
        want
    );
    assert_eq!(
        sdd(&at, &bt, single(4, 4, 2), &layout, true, true).unwrap(),
        want
    );
}

// Sparse operand used below: block-diagonal layout, block 2, tiles T0 = [1,2,3,4] and
// T1 = [5,6,7,8], i.e. the dense equivalent
//   S = [[1,2,0,0],[3,4,0,0],[0,0,5,6],[0,0,7,8]],  Sᵀ = [[1,3,0,0],[2,4,0,0],[0,0,5,7],[0,0,6,8]].
const DIAG: [u8; 4] = [1, 0, 0, 1];
const S_TILES: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];

#[test]
fn dsd_by_hand_with_and_without_transpose() {
    let layout = Layout::square(&DIAG, 1, 2, 2);
    let ones = [1.0f32; 4];
    // S · 1 = row sums = [3, 7, 11, 15]; Sᵀ · 1 = column sums of S = [4, 6, 12, 14].
    assert_eq!(
        dsd(&S_TILES, &ones, single(4, 1, 4), &layout, false, false).unwrap(),
        vec![3.0, 7.0, 11.0, 15.0]
    );
    assert_eq!(
        dsd(&S_TILES, &ones, single(4, 1, 4), &layout, true, false).unwrap(),
        vec![4.0, 6.0, 12.0, 14.0]
    );
    // trans_b with a [N=2, K=4] stored B: rows [1,1,1,1] and [1,0,0,0] -> C[:,1] = S[:,0].
    let bt = [1.0f32, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    assert_eq!(
        dsd(&S_TILES, &bt, single(4, 2, 4), &layout, false, true).unwrap(),
        vec![3.0, 1.0, 7.0, 3.0, 11.0, 0.0, 15.0, 0.0]
    );
}

#[test]
fn dds_by_hand_with_and_without_transpose() {
    let layout = Layout::square(&DIAG, 1, 2, 2);
    let ones = [1.0f32; 4];
    // 1ᵀ · S = column sums = [4, 6, 12, 14]; 1ᵀ · Sᵀ = row sums = [3, 7, 11, 15].
    assert_eq!(
        dds(&ones, &S_TILES, single(1, 4, 4), &layout, false, false).unwrap(),
        vec![4.0, 6.0, 12.0, 14.0]
    );
    assert_eq!(
        dds(&ones, &S_TILES, single(1, 4, 4), &layout, false, true).unwrap(),
        vec![3.0, 7.0, 11.0, 15.0]
    );
}

#[test]
fn dsd_rows_without_blocks_are_zero() {
    // Only tile (0,0) active: rows 2-3 of the output have no blocks and are zero.
    let layout_values = [1u8, 0, 0, 0];
    let layout = Layout::square(&layout_values, 1, 2, 2);
    let c = dsd(
        &[1.0f32, 2.0, 3.0, 4.0],
        &[1.0f32; 4],
        single(4, 1, 4),
        &layout,
        false,
        false,
    )
    .unwrap();
    assert_eq!(c, vec![3.0, 7.0, 0.0, 0.0]);
}

#[test]
fn non_square_layouts() {
    // sdd with M = 2, N = 4, block 2: layout [1, 2 blocks]; only tile (0,1).
    let layout_values = [0u8, 1];
    let layout = Layout::new(&layout_values, 1, 1, 2, 2);
    let a = [1.0f32, 0.0, 0.0, 1.0]; // identity [2,2]
    let c = sdd(&a, &B, single(2, 4, 2), &layout, false, false).unwrap();
    assert_eq!(c, vec![3.0, 4.0, 7.0, 8.0]);
}

// ---------------------------------------------------------------------------------------------
// Matmul self-consistency
// ---------------------------------------------------------------------------------------------

/// Dense `[n, m, k] · [n, k, p]` in plain loops, for comparison.
fn matmul(a: &[f32], b: &[f32], n: usize, m: usize, k: usize, p: usize) -> Vec<f32> {
    let mut c = vec![0.0; n * m * p];
    for s in 0..n {
        for i in 0..m {
            for j in 0..p {
                for t in 0..k {
                    c[(s * m + i) * p + j] += a[(s * m + i) * k + t] * b[(s * k + t) * p + j];
                }
            }
        }
    }
    c
}

#[rustfmt::skip]
const LAYOUT_2H: [u8; 18] = [
    1, 0, 1,  0, 1, 0,  1, 1, 0,
    0, 0, 1,  1, 1, 1,  0, 0, 0,
];

#[test]
fn sdd_then_densify_equals_masked_dense_matmul() {
    let (z, h, m, n, k, blk) = (2, 2, 6, 6, 4, 2);
    let layout = Layout::square(&LAYOUT_2H, h, 3, blk);
    let a = ints(z * h * m * k, 1);
    let b = ints(z * h * k * n, 2);
    let dims = MatmulDims {
        batch: z,
        heads: h,
        m,
        n,
        k,
    };
    let c = sdd(&a, &b, dims, &layout, false, false).unwrap();
    let dense = sparse_to_dense(&c, z, &layout, 0.0).unwrap();
    let mut want = matmul(&a, &b, z * h, m, k, n);
    for zz in 0..z {
        for hh in 0..h {
            for i in 0..m {
                for j in 0..n {
                    if !layout.is_active(hh, i / blk, j / blk) {
                        want[((zz * h + hh) * m + i) * n + j] = 0.0;
                    }
                }
            }
        }
    }
    assert_eq!(dense, want);
}

#[test]
fn dsd_and_dds_equal_dense_matmul_of_the_densified_operand() {
    let (z, h, blk) = (2, 2, 2);
    let layout = Layout::square(&LAYOUT_2H, h, 3, blk);
    let nnz = layout.nnz();
    let s = ints(z * nnz * blk * blk, 3);
    let s_dense = sparse_to_dense(&s, z, &layout, 0.0).unwrap(); // [z, h, 6, 6]
    let x = ints(z * h * 6 * 5, 4); // [z, h, 6, 5]
    // dsd: S [6,6] · X [6,5].
    let dims = MatmulDims {
        batch: z,
        heads: h,
        m: 6,
        n: 5,
        k: 6,
    };
    assert_eq!(
        dsd(&s, &x, dims, &layout, false, false).unwrap(),
        matmul(&s_dense, &x, z * h, 6, 6, 5)
    );
    // dsd with trans_a: Sᵀ · X.
    let s_dense_t = transposed(&s_dense, z * h, 6, 6);
    assert_eq!(
        dsd(&s, &x, dims, &layout, true, false).unwrap(),
        matmul(&s_dense_t, &x, z * h, 6, 6, 5)
    );
    // dds: Xᵀ [5,6] · S [6,6], with X given transposed (stored [6,5], trans_a).
    let dims = MatmulDims {
        batch: z,
        heads: h,
        m: 5,
        n: 6,
        k: 6,
    };
    let xt = transposed(&x, z * h, 6, 5);
    assert_eq!(
        dds(&x, &s, dims, &layout, true, false).unwrap(),
        matmul(&xt, &s_dense, z * h, 5, 6, 6)
    );
    assert_eq!(
        dds(&x, &s, dims, &layout, true, true).unwrap(),
        matmul(&xt, &s_dense_t, z * h, 5, 6, 6)
    );
}

/// Σ over all elements of x ⊙ w.
fn dot(x: &[f32], w: &[f32]) -> f64 {
    x.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// A matmul forward with everything but the operands fixed.
type Forward<'a> = dyn Fn(&[f32], &[f32]) -> Vec<f32> + 'a;

/// Checks `(da, db)` against exact step-1 finite differences of `loss = Σ C ⊙ dC` (the loss is
/// linear in each operand and every value is a small integer, so the difference is exact).
fn check_grads_by_differences(
    a: &[f32],
    b: &[f32],
    dc: &[f32],
    forward: &Forward<'_>,
    da: &[f32],
    db: &[f32],
) {
    let base = dot(&forward(a, b), dc);
    for e in 0..a.len() {
        let mut a2 = a.to_vec();
        a2[e] += 1.0;
        assert_eq!(dot(&forward(&a2, b), dc) - base, da[e] as f64, "da[{e}]");
    }
    for e in 0..b.len() {
        let mut b2 = b.to_vec();
        b2[e] += 1.0;
        assert_eq!(dot(&forward(a, &b2), dc) - base, db[e] as f64, "db[{e}]");
    }
}

#[test]
fn matmul_backward_equals_finite_differences_all_modes_and_transposes() {
    let (z, h, blk) = (1, 2, 2);
    let layout = Layout::square(&LAYOUT_2H, h, 3, blk);
    let nnz = layout.nnz();
    let sparse_len = z * nnz * blk * blk;
    for trans_a in [false, true] {
        for trans_b in [false, true] {
            let seed = 10 + 2 * trans_a as u64 + trans_b as u64;
            // sdd: M = N = 6, K = 3.
            let dims = MatmulDims {
                batch: z,
                heads: h,
                m: 6,
                n: 6,
                k: 3,
            };
            let (a, b, dc) = (
                ints(z * h * 6 * 3, seed),
                ints(z * h * 3 * 6, seed + 100),
                ints(sparse_len, seed + 200),
            );
            let (da, db) = sdd_backward(&a, &b, &dc, dims, &layout, trans_a, trans_b).unwrap();
            let f = |a: &[f32], b: &[f32]| sdd(a, b, dims, &layout, trans_a, trans_b).unwrap();
            check_grads_by_differences(&a, &b, &dc, &f, &da, &db);

            // dsd: A sparse [6,6], M = K = 6, N = 3.
            let dims = MatmulDims {
                batch: z,
                heads: h,
                m: 6,
                n: 3,
                k: 6,
            };
            let (a, b, dc) = (
                ints(sparse_len, seed + 300),
                ints(z * h * 6 * 3, seed + 400),
                ints(z * h * 6 * 3, seed + 500),
            );
            let (da, db) = dsd_backward(&a, &b, &dc, dims, &layout, trans_a, trans_b).unwrap();
            let f = |a: &[f32], b: &[f32]| dsd(a, b, dims, &layout, trans_a, trans_b).unwrap();
            check_grads_by_differences(&a, &b, &dc, &f, &da, &db);

            // dds: B sparse [6,6], K = N = 6, M = 3.
            let dims = MatmulDims {
                batch: z,
                heads: h,
                m: 3,
                n: 6,
                k: 6,
            };
            let (a, b, dc) = (
                ints(z * h * 3 * 6, seed + 600),
                ints(sparse_len, seed + 700),
                ints(z * h * 3 * 6, seed + 800),
            );
            let (da, db) = dds_backward(&a, &b, &dc, dims, &layout, trans_a, trans_b).unwrap();
            let f = |a: &[f32], b: &[f32]| dds(a, b, dims, &layout, trans_a, trans_b).unwrap();
            check_grads_by_differences(&a, &b, &dc, &f, &da, &db);
        }
    }
}

#[test]
fn matmul_backward_by_hand_block_two() {
    // sdd with TRI layout, A and B as above, dC = 1 on tile (1,0) only, 0 elsewhere.
    // dC dense = 1 at rows 2-3, cols 0-1. dA = dC · Bᵀ: rows 2,3 = [B00 + B01, B10 + B11]
    // = [3, 11]; rows 0,1 zero. dB = Aᵀ · dC: cols 0,1 = A[2,:] + A[3,:] = [3, 1]; cols 2,3 zero.
    let layout = Layout::square(&TRI, 1, 2, 2);
    let mut dc = [0.0f32; 12];
    dc[4..8].fill(1.0);
    let (da, db) = sdd_backward(&A, &B, &dc, single(4, 4, 2), &layout, false, false).unwrap();
    assert_eq!(da, vec![0.0, 0.0, 0.0, 0.0, 3.0, 11.0, 3.0, 11.0]);
    assert_eq!(db, vec![3.0, 3.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    // dsd: dA restricted to the layout. A = S (DIAG tiles), B = ones [4,1], dC = [1,2,3,4]ᵀ:
    // dA = dC · Bᵀ = [[1,1,1,1],[2,2,2,2],[3,3,3,3],[4,4,4,4]] -> tiles [1,1,2,2], [3,3,4,4];
    // dB = Sᵀ · dC = [1+6, 2+8, 15+28, 18+32] = [7, 10, 43, 50].
    let layout = Layout::square(&DIAG, 1, 2, 2);
    let (da, db) = dsd_backward(
        &S_TILES,
        &[1.0f32; 4],
        &[1.0, 2.0, 3.0, 4.0],
        single(4, 1, 4),
        &layout,
        false,
        false,
    )
    .unwrap();
    assert_eq!(da, vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
    assert_eq!(db, vec![7.0, 10.0, 43.0, 50.0]);
}

// ---------------------------------------------------------------------------------------------
// Matmul errors
// ---------------------------------------------------------------------------------------------

#[test]
fn matmul_rejects_dims_the_block_does_not_divide() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    // Block not dividing M (sdd, M = 5).
    let err = sdd(
        &[0.0f32; 10],
        &[0.0f32; 8],
        single(5, 4, 2),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RefError::BlockNotDividing {
            what: "M",
            dim: 5,
            block: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "M = 5 is not a multiple of the block size 2"
    );
    // Block not dividing K for a dsd (the sparse operand's columns).
    let err = dsd(
        &[0.0f32; 12],
        &[0.0f32; 3],
        single(4, 1, 3),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        RefError::BlockNotDividing {
            what: "K",
            dim: 3,
            ..
        }
    ));
}

#[test]
fn matmul_rejects_a_layout_of_the_wrong_shape() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    // Layout of the wrong size for the operands: M = 6 needs 3 block rows.
    let err = sdd(
        &[0.0f32; 12],
        &[0.0f32; 8],
        single(6, 4, 2),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RefError::DimMismatch {
            what: "layout block rows",
            got: 2,
            expected: 3
        }
    );
    // Heads differ from the layout's.
    let dims = MatmulDims {
        heads: 2,
        ..single(4, 4, 2)
    };
    let err = sdd(&[0.0f32; 16], &[0.0f32; 16], dims, &layout, false, false).unwrap_err();
    assert_eq!(
        err,
        RefError::DimMismatch {
            what: "layout heads",
            got: 1,
            expected: 2
        }
    );
}

#[test]
fn matmul_rejects_operands_of_the_wrong_length() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    // Sparse operand of the wrong length (nnz = 3 tiles of 4).
    let err = dsd(
        &[0.0f32; 8],
        &[0.0f32; 4],
        single(4, 1, 4),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            what: "a",
            got: 8,
            expected: 12
        }
    );
    // Dense operand of the wrong length.
    let err = dds(
        &[0.0f32; 3],
        &[0.0f32; 12],
        single(1, 4, 4),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            what: "a",
            got: 3,
            expected: 4
        }
    );
    // dc of the wrong length.
    let err = sdd_backward(
        &A,
        &B,
        &[0.0f32; 11],
        single(4, 4, 2),
        &layout,
        false,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            what: "dc",
            got: 11,
            expected: 12
        }
    );
}

#[test]
fn matmul_rejects_zero_sizes() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    for (dims, what) in [
        (
            MatmulDims {
                batch: 0,
                ..single(4, 4, 2)
            },
            "batch",
        ),
        (single(0, 4, 2), "m"),
        (single(4, 0, 2), "n"),
        (single(4, 4, 0), "k"),
    ] {
        assert_eq!(
            sdd(&A, &B, dims, &layout, false, false).unwrap_err(),
            RefError::ZeroSize { what }
        );
    }
    let zero_block = Layout::square(&TRI, 1, 2, 0);
    assert_eq!(
        sdd(&A, &B, single(4, 4, 2), &zero_block, false, false).unwrap_err(),
        RefError::ZeroSize { what: "block" }
    );
}

#[test]
fn matmul_rejects_a_malformed_layout() {
    // Wrong layout length and a layout value of 2.
    let short = Layout::square(&TRI[..3], 1, 2, 2);
    assert_eq!(
        sdd(&A, &B, single(4, 4, 2), &short, false, false).unwrap_err(),
        RefError::LengthMismatch {
            what: "layout",
            got: 3,
            expected: 4
        }
    );
    let two = [1u8, 0, 2, 1];
    assert!(matches!(
        sdd(
            &A,
            &B,
            single(4, 4, 2),
            &Layout::square(&two, 1, 2, 2),
            false,
            false
        )
        .unwrap_err(),
        RefError::BadLayoutValue { value: 2, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Softmax
// ---------------------------------------------------------------------------------------------

#[test]
fn softmax_row_by_hand_with_inactive_tiles() {
    // S = 2, block 1, layout [[1,0],[1,1]]: tiles (0,0), (1,0), (1,1).
    // Row 0 has one active key -> 1. Row 1: x = [0, ln3] -> [1/4, 3/4].
    let layout_values = [1u8, 0, 1, 1];
    let layout = Layout::square(&layout_values, 1, 2, 1);
    let y = block_sparse_softmax(
        &[5.0f32, 0.0, LN3 as f32],
        1,
        &layout,
        &SoftmaxOptions::new(1.0),
    )
    .unwrap();
    assert_close(&y, &[1.0, 0.25, 0.75], 1e-6);
}

#[test]
fn softmax_row_with_a_masked_key() {
    // One 1x3 row (S = 3, block 3). x = [0, 9, ln3]; key 1 masked by kpm in mul mode (value 0)
    // -> softmax over [0, ln3] -> [1/4, 0, 3/4]. Other rows: x = 0, same mask -> [1/2, 0, 1/2].
    let layout = Layout::square(&[1], 1, 1, 3);
    let mut x = [0.0f32; 9];
    x[1] = 9.0;
    x[2] = LN3 as f32;
    let kpm = [1.0f32, 0.0, 1.0];
    let opts = SoftmaxOptions {
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Mul,
        }),
        ..SoftmaxOptions::new(1.0)
    };
    let y = block_sparse_softmax(&x, 1, &layout, &opts).unwrap();
    assert_close(&y, &[0.25, 0.0, 0.75, 0.5, 0.0, 0.5, 0.5, 0.0, 0.5], 1e-6);
}

#[test]
fn softmax_order_scale_then_rpe_then_masks() {
    // S = 2, one tile. Row 0: x = [0, 2], scale 0.5, rpe = [0, ln3 - 1] -> [0, ln3] ->
    // [1/4, 3/4]. Row 1: x = [0, 0], attention mask (add) [ln3, 0] -> [3/4, 1/4].
    let layout = Layout::square(&[1], 1, 1, 2);
    let rpe = [0.0f32, (LN3 - 1.0) as f32, 0.0, 0.0];
    let am = [0.0f32, 0.0, LN3 as f32, 0.0];
    let opts = SoftmaxOptions {
        rpe: Some(&rpe),
        attn_mask: Some(Mask {
            values: &am,
            mode: MaskMode::Add,
        }),
        ..SoftmaxOptions::new(0.5)
    };
    let y = block_sparse_softmax(&[0.0f32, 2.0, 0.0, 0.0], 1, &layout, &opts).unwrap();
    assert_close(&y, &[0.25, 0.75, 0.75, 0.25], 1e-6);
}

#[test]
fn softmax_fully_masked_row_gives_zeros() {
    // S = 2, one tile; row 0's keys both masked by the attention mask (mul, zeros).
    let layout = Layout::square(&[1], 1, 1, 2);
    let am = [0.0f32, 0.0, 1.0, 1.0];
    let opts = SoftmaxOptions {
        attn_mask: Some(Mask {
            values: &am,
            mode: MaskMode::Mul,
        }),
        ..SoftmaxOptions::new(1.0)
    };
    let y = block_sparse_softmax(&[1.0f32, 2.0, 0.0, 0.0], 1, &layout, &opts).unwrap();
    assert_eq!(y, vec![0.0, 0.0, 0.5, 0.5]);
    let dx = block_sparse_softmax_backward(&y, &[1.0, 2.0, 3.0, 4.0], 1, &layout, 1.0).unwrap();
    // Row 0 zero; row 1: dot = 3.5, dx = 0.5 * ([3, 4] - 3.5) = [-0.25, 0.25].
    assert_eq!(dx, vec![0.0, 0.0, -0.25, 0.25]);
}

#[test]
fn softmax_key_padding_per_batch_and_rpe_per_head() {
    // Z = 2, H = 2, S = 2, block 2, all tiles active. x = 0 everywhere.
    // kpm: batch 0 masks key 1 (add, -inf); batch 1 none. rpe: head 1 of batch 1 adds ln3 to
    // key 0 of every row.
    let layout = Layout::square(&[1, 1], 2, 1, 2);
    let kpm = [0.0f32, f32::NEG_INFINITY, 0.0, 0.0];
    let mut rpe = [0.0f32; 16];
    rpe[12] = LN3 as f32; // [z1, h1, i0, j0]
    rpe[14] = LN3 as f32; // [z1, h1, i1, j0]
    let opts = SoftmaxOptions {
        rpe: Some(&rpe),
        key_padding: Some(Mask {
            values: &kpm,
            mode: MaskMode::Add,
        }),
        ..SoftmaxOptions::new(1.0)
    };
    let y = block_sparse_softmax(&[0.0f32; 16], 2, &layout, &opts).unwrap();
    #[rustfmt::skip]
    let want = [
        1.0, 0.0, 1.0, 0.0,   1.0, 0.0, 1.0, 0.0,    // z0: h0, h1
        0.5, 0.5, 0.5, 0.5,   0.75, 0.25, 0.75, 0.25, // z1: h0, h1
    ];
    assert_close(&y, &want, 1e-6);
}

#[test]
fn softmax_backward_sums_over_all_tiles_of_the_row() {
    // Layout [[1,0],[1,1]] block 1, y = [1, 1/4, 3/4], dy = [2, 1, 0], scale 1:
    // row 0: dot = 2, dx = 1 * (2 - 2) = 0; row 1: dot = 1/4,
    // dx = [1/4 (1 - 1/4), 3/4 (0 - 1/4)] = [3/16, -3/16].
    let layout_values = [1u8, 0, 1, 1];
    let layout = Layout::square(&layout_values, 1, 2, 1);
    let dx =
        block_sparse_softmax_backward(&[1.0f32, 0.25, 0.75], &[2.0, 1.0, 0.0], 1, &layout, 1.0)
            .unwrap();
    assert_eq!(dx, vec![0.0, 0.1875, -0.1875]);
    // The scale multiplies the result.
    let dx =
        block_sparse_softmax_backward(&[1.0f32, 0.25, 0.75], &[2.0, 1.0, 0.0], 1, &layout, 2.0)
            .unwrap();
    assert_eq!(dx, vec![0.0, 0.375, -0.375]);
}

#[test]
fn softmax_rejects_bad_input() {
    let layout = Layout::square(&[1], 1, 1, 2);
    let x = [0.0f32; 4];
    let plain = SoftmaxOptions::<f32>::new(1.0);
    assert_eq!(
        block_sparse_softmax(&x[..3], 1, &layout, &plain).unwrap_err(),
        RefError::LengthMismatch {
            what: "x",
            got: 3,
            expected: 4
        }
    );
    assert_eq!(
        block_sparse_softmax(&x, 0, &layout, &plain).unwrap_err(),
        RefError::ZeroSize { what: "batch" }
    );
    let short = [0.0f32; 3];
    let rpe = SoftmaxOptions {
        rpe: Some(&short),
        ..plain
    };
    assert_eq!(
        block_sparse_softmax(&x, 1, &layout, &rpe).unwrap_err(),
        RefError::LengthMismatch {
            what: "rpe",
            got: 3,
            expected: 4
        }
    );
    let kpm = SoftmaxOptions {
        key_padding: Some(Mask {
            values: &short,
            mode: MaskMode::Add,
        }),
        ..plain
    };
    assert_eq!(
        block_sparse_softmax(&x, 1, &layout, &kpm).unwrap_err(),
        RefError::LengthMismatch {
            what: "key_padding",
            got: 3,
            expected: 2
        }
    );
    let am = SoftmaxOptions {
        attn_mask: Some(Mask {
            values: &short,
            mode: MaskMode::Mul,
        }),
        ..plain
    };
    assert_eq!(
        block_sparse_softmax(&x, 1, &layout, &am).unwrap_err(),
        RefError::LengthMismatch {
            what: "attn_mask",
            got: 3,
            expected: 4
        }
    );
    assert!(matches!(
        block_sparse_softmax(&x, 1, &layout, &SoftmaxOptions::new(f64::NAN)).unwrap_err(),
        RefError::NonFiniteScale(_)
    ));
    // Non-square layout.
    let wide = Layout::new(&[1, 1], 1, 1, 2, 2);
    assert!(matches!(
        block_sparse_softmax(&[0.0f32; 8], 1, &wide, &plain).unwrap_err(),
        RefError::DimMismatch {
            got: 2,
            expected: 1,
            ..
        }
    ));
    // Backward: y / dy lengths, scale.
    assert_eq!(
        block_sparse_softmax_backward(&x, &x[..2], 1, &layout, 1.0).unwrap_err(),
        RefError::LengthMismatch {
            what: "dy",
            got: 2,
            expected: 4
        }
    );
    assert!(matches!(
        block_sparse_softmax_backward(&x, &x, 1, &layout, f64::INFINITY).unwrap_err(),
        RefError::NonFiniteScale(_)
    ));
    let bad = Layout::square(&[2], 1, 1, 2);
    assert!(matches!(
        block_sparse_softmax_backward(&x, &x, 1, &bad, 1.0).unwrap_err(),
        RefError::BadLayoutValue { value: 2, .. }
    ));
}

#[test]
fn huge_dims_report_errors_not_panics() {
    let layout = Layout::square(&TRI, 1, 2, 2);
    let dims = MatmulDims {
        batch: usize::MAX,
        ..single(4, 4, 2)
    };
    assert!(matches!(
        sdd(&A, &B, dims, &layout, false, false).unwrap_err(),
        RefError::TooLarge { .. }
    ));
    let huge_block = Layout::square(&TRI, 1, 2, usize::MAX);
    assert!(matches!(
        sparse_to_dense(&[0.0f32; 4], 1, &huge_block, 0.0).unwrap_err(),
        RefError::TooLarge { .. }
    ));
    assert!(matches!(
        block_sparse_softmax(&[0.0f32; 4], 1, &huge_block, &SoftmaxOptions::new(1.0)).unwrap_err(),
        RefError::TooLarge { .. }
    ));
}
