//! Hand-computed cases and bad-input errors for gather/scatter, mask gathers and the sampler
//! checker.

use half::{bf16, f16};
use ltd_reference::{
    EncoderMaskForm, Hidden, HiddenOrder, IndexLocation, IndexProblem, RefError,
    check_sampled_indices, decoder_mask_gather, encoder_mask_gather, gather, gather_backward,
    scatter, scatter_backward,
};

fn dims(batch: usize, seq: usize, channels: usize, order: HiddenOrder) -> Hidden {
    Hidden {
        batch,
        seq,
        channels,
        order,
    }
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|x| x as f32).collect()
}

// ---------------------------------------------------------------------------------------------
// Gather / scatter forward
// ---------------------------------------------------------------------------------------------

#[test]
fn gather_batch_seq_by_hand() {
    // h[b, s, c] = (b*3 + s)*2 + c, B=2, S=3, C=2; idx = [[0, 2], [1, 2]].
    let h = iota(12);
    let part = gather(&h, dims(2, 3, 2, HiddenOrder::BatchSeq), &[0, 2, 1, 2], 2).unwrap();
    // b0: rows 0, 2 -> [0,1], [4,5]; b1: rows 1, 2 -> [8,9], [10,11].
    assert_eq!(part, vec![0.0, 1.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
}

#[test]
fn gather_seq_batch_by_hand() {
    // h[s, b, c] = (s*2 + b)*2 + c, S=3, B=2, C=2; idx = [[0, 2], [1, 2]].
    let h = iota(12);
    let part = gather(&h, dims(2, 3, 2, HiddenOrder::SeqBatch), &[0, 2, 1, 2], 2).unwrap();
    // part is [r, B, C]: k0 = (h[0,0], h[1,1]) = ([0,1], [6,7]); k1 = (h[2,0], h[2,1]) =
    // ([8,9], [10,11]).
    assert_eq!(part, vec![0.0, 1.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
}

#[test]
fn gather_allows_repeats_and_any_order() {
    let h = [10.0f32, 20.0, 30.0];
    let d = dims(1, 3, 1, HiddenOrder::BatchSeq);
    assert_eq!(
        gather(&h, d, &[2, 0, 2], 3).unwrap(),
        vec![30.0, 10.0, 30.0]
    );
}

#[test]
fn gather_works_for_half_types_and_bool() {
    let h: Vec<f16> = [1.5f32, -2.0, 3.25]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let d = dims(1, 3, 1, HiddenOrder::BatchSeq);
    assert_eq!(gather(&h, d, &[1], 1).unwrap(), vec![f16::from_f32(-2.0)]);
    let hb: Vec<bf16> = [1.0f32, 2.0, 3.0]
        .iter()
        .map(|&x| bf16::from_f32(x))
        .collect();
    assert_eq!(gather(&hb, d, &[2], 1).unwrap(), vec![bf16::from_f32(3.0)]);
    assert_eq!(
        gather(&[true, false, true], d, &[1, 2], 2).unwrap(),
        vec![false, true]
    );
}

#[test]
fn scatter_batch_seq_by_hand() {
    // h_full [B=2, S=3, C=1] = [1,2,3 | 4,5,6]; idx [[0,2],[1,2]]; part = [10,30 | 50,60].
    let y = scatter(
        &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
        dims(2, 3, 1, HiddenOrder::BatchSeq),
        &[10.0, 30.0, 50.0, 60.0],
        &[0, 2, 1, 2],
        2,
    )
    .unwrap();
    assert_eq!(y, vec![10.0, 2.0, 30.0, 4.0, 50.0, 60.0]);
}

#[test]
fn scatter_seq_batch_by_hand() {
    // h_full [S=3, B=2, C=1]: h[s, b] = 10*s + b -> [0,1, 10,11, 20,21].
    // part [r=2, B=2, C=1] = [[100 (b0,k0), 101 (b1,k0)], [200 (b0,k1), 201 (b1,k1)]].
    // idx b0 = [0, 2], b1 = [1, 2]. So y[0,0]=100, y[2,0]=200, y[1,1]=101, y[2,1]=201.
    let y = scatter(
        &[0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0],
        dims(2, 3, 1, HiddenOrder::SeqBatch),
        &[100.0, 101.0, 200.0, 201.0],
        &[0, 2, 1, 2],
        2,
    )
    .unwrap();
    assert_eq!(y, vec![100.0, 1.0, 10.0, 101.0, 200.0, 201.0]);
}

#[test]
fn scatter_accepts_unsorted_distinct_indices() {
    let y = scatter(
        &[0.0f32; 3],
        dims(1, 3, 1, HiddenOrder::BatchSeq),
        &[7.0, 8.0],
        &[2, 0],
        2,
    )
    .unwrap();
    assert_eq!(y, vec![8.0, 0.0, 7.0]);
}

#[test]
fn gather_then_scatter_is_identity_both_orders() {
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let d = dims(2, 5, 3, order);
        let h = iota(30);
        let idx = [0, 3, 4, 1, 2, 4];
        let part = gather(&h, d, &idx, 3).unwrap();
        assert_eq!(scatter(&h, d, &part, &idx, 3).unwrap(), h);
    }
}

#[test]
fn r_equal_s_is_a_full_permutation() {
    let d = dims(1, 3, 2, HiddenOrder::BatchSeq);
    let h = iota(6);
    let part = gather(&h, d, &[2, 1, 0], 3).unwrap();
    assert_eq!(part, vec![4.0, 5.0, 2.0, 3.0, 0.0, 1.0]);
}

// ---------------------------------------------------------------------------------------------
// Backward (upstream-semantics.md §1.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn gather_backward_overwrites_kept_rows() {
    // g_pass [B=1, S=4, C=1] = [1, 2, 3, 4], kept idx [1, 3], g_part = [10, 30].
    // Kept rows are OVERWRITTEN (not accumulated): [1, 10, 3, 30], not [1, 12, 3, 34].
    let g_h = gather_backward(
        &[1.0f32, 2.0, 3.0, 4.0],
        dims(1, 4, 1, HiddenOrder::BatchSeq),
        &[10.0, 30.0],
        &[1, 3],
        2,
    )
    .unwrap();
    assert_eq!(g_h, vec![1.0, 10.0, 3.0, 30.0]);
}

#[test]
fn gather_backward_seq_batch() {
    // g_pass [S=2, B=2, C=1] = [1, 2, 3, 4] (g[s,b] = 2s + b + 1); idx b0 = [1], b1 = [0];
    // g_part [r=1, B=2, C=1] = [10 (b0), 20 (b1)] -> g[1,0] = 10, g[0,1] = 20.
    let g_h = gather_backward(
        &[1.0f32, 2.0, 3.0, 4.0],
        dims(2, 2, 1, HiddenOrder::SeqBatch),
        &[10.0, 20.0],
        &[1, 0],
        1,
    )
    .unwrap();
    assert_eq!(g_h, vec![1.0, 20.0, 10.0, 4.0]);
}

#[test]
fn scatter_backward_passes_all_of_g_y_to_h_full() {
    // g_y [B=1, S=4, C=2]; kept idx [0, 2]. g_h_full = g_y entirely (kept rows NOT zeroed),
    // g_part = rows 0 and 2 of g_y.
    let g_y = iota(8);
    let (g_full, g_part) =
        scatter_backward(&g_y, dims(1, 4, 2, HiddenOrder::BatchSeq), &[0, 2], 2).unwrap();
    assert_eq!(g_full, g_y);
    assert_eq!(g_part, vec![0.0, 1.0, 4.0, 5.0]);
}

#[test]
fn net_effect_of_the_wrapper_graph() {
    // y = scatter(h, layer(gather(h)), idx) with layer(x) = 3x. The total gradient is
    // g_y at dropped rows and 3 g_y at kept rows (upstream-semantics.md §1.4 "net effect").
    let d = dims(1, 4, 1, HiddenOrder::BatchSeq);
    let idx = [1, 2];
    let g_y = [1.0f32, 2.0, 3.0, 4.0];
    let (g_full, g_part) = scatter_backward(&g_y, d, &idx, 2).unwrap();
    let g_layer_in: Vec<f32> = g_part.iter().map(|g| 3.0 * g).collect();
    let g_h = gather_backward(&g_full, d, &g_layer_in, &idx, 2).unwrap();
    assert_eq!(g_h, vec![1.0, 6.0, 9.0, 4.0]);
}

// ---------------------------------------------------------------------------------------------
// Gather / scatter errors
// ---------------------------------------------------------------------------------------------

#[test]
fn gather_rejects_out_of_range_indices() {
    let d = dims(2, 3, 1, HiddenOrder::BatchSeq);
    let h = [0.0f32; 6];
    let err = gather(&h, d, &[0, 1, 2, 3], 2).unwrap_err();
    assert_eq!(
        err,
        RefError::BadIndex {
            what: "idx",
            location: IndexLocation {
                layer: None,
                row: 1,
                position: 1
            },
            value: 3,
            problem: IndexProblem::OutOfRange { seq: 3 },
        }
    );
    assert_eq!(
        err.to_string(),
        "idx at [row 1, position 1] is 3, which is outside [0, 3)"
    );
    let err = gather(&h, d, &[-1, 1, 0, 1], 2).unwrap_err();
    assert!(matches!(err, RefError::BadIndex { value: -1, .. }));
}

#[test]
fn scatter_family_rejects_duplicates() {
    let d = dims(1, 4, 1, HiddenOrder::BatchSeq);
    let h = [0.0f32; 4];
    let part = [1.0f32, 2.0, 3.0];
    let idx = [0, 2, 0];
    let expected = RefError::BadIndex {
        what: "idx",
        location: IndexLocation {
            layer: None,
            row: 0,
            position: 2,
        },
        value: 0,
        problem: IndexProblem::Duplicate { first_position: 0 },
    };
    assert_eq!(scatter(&h, d, &part, &idx, 3).unwrap_err(), expected);
    assert_eq!(
        gather_backward(&h, d, &part, &idx, 3).unwrap_err(),
        expected
    );
    assert_eq!(scatter_backward(&h, d, &idx, 3).unwrap_err(), expected);
    assert!(
        expected
            .to_string()
            .contains("repeats the value at position 0")
    );
}

#[test]
fn scatter_rejects_out_of_range() {
    let d = dims(1, 4, 1, HiddenOrder::SeqBatch);
    let err = scatter(&[0.0f32; 4], d, &[1.0], &[4], 1).unwrap_err();
    assert!(matches!(
        err,
        RefError::BadIndex {
            value: 4,
            problem: IndexProblem::OutOfRange { seq: 4 },
            ..
        }
    ));
}

#[test]
fn gather_scatter_reject_zero_sizes_and_bad_r() {
    let h = [0.0f32; 6];
    let bs = HiddenOrder::BatchSeq;
    assert_eq!(
        gather(&h, dims(0, 3, 2, bs), &[], 1).unwrap_err(),
        RefError::ZeroSize { what: "batch" }
    );
    assert_eq!(
        gather(&h, dims(1, 0, 2, bs), &[], 1).unwrap_err(),
        RefError::ZeroSize { what: "seq" }
    );
    assert_eq!(
        gather(&h, dims(1, 3, 0, bs), &[0], 1).unwrap_err(),
        RefError::ZeroSize { what: "channels" }
    );
    assert_eq!(
        gather(&h, dims(1, 3, 2, bs), &[], 0).unwrap_err(),
        RefError::ZeroSize { what: "r" }
    );
    let err = gather(&h, dims(1, 3, 2, bs), &[0, 1, 2, 0], 4).unwrap_err();
    assert_eq!(err, RefError::ReservedTooLong { r: 4, seq: 3 });
    assert_eq!(
        err.to_string(),
        "reserved length r = 4 exceeds the sequence length S = 3; expected 1 <= r <= S"
    );
    assert!(matches!(
        scatter(&h, dims(1, 3, 2, bs), &h, &[0, 1, 2, 0], 4).unwrap_err(),
        RefError::ReservedTooLong { r: 4, seq: 3 }
    ));
    assert!(matches!(
        scatter_backward(&h, dims(1, 3, 2, bs), &[], 0).unwrap_err(),
        RefError::ZeroSize { what: "r" }
    ));
}

#[test]
fn gather_scatter_reject_length_mismatches() {
    let d = dims(2, 3, 2, HiddenOrder::BatchSeq);
    let err = gather(&[0.0f32; 11], d, &[0, 1], 1).unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            what: "h",
            got: 11,
            expected: 12
        }
    );
    assert_eq!(err.to_string(), "h has 11 elements, expected 12");
    assert_eq!(
        gather(&[0.0f32; 12], d, &[0, 1, 2], 1).unwrap_err(),
        RefError::LengthMismatch {
            what: "idx",
            got: 3,
            expected: 2
        }
    );
    assert_eq!(
        scatter(&[0.0f32; 12], d, &[0.0; 3], &[0, 1], 1).unwrap_err(),
        RefError::LengthMismatch {
            what: "part",
            got: 3,
            expected: 4
        }
    );
    assert_eq!(
        gather_backward(&[0.0f32; 12], d, &[0.0; 5], &[0, 1], 1).unwrap_err(),
        RefError::LengthMismatch {
            what: "g_part",
            got: 5,
            expected: 4
        }
    );
    assert_eq!(
        scatter_backward(&[0.0f32; 13], d, &[0, 1], 1).unwrap_err(),
        RefError::LengthMismatch {
            what: "g_y",
            got: 13,
            expected: 12
        }
    );
}

#[test]
fn huge_dims_report_overflow_not_panic() {
    let d = dims(usize::MAX, 2, 2, HiddenOrder::BatchSeq);
    assert!(matches!(
        gather(&[0.0f32; 4], d, &[0], 1).unwrap_err(),
        RefError::TooLarge { what: "h", .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Mask gathers
// ---------------------------------------------------------------------------------------------

#[test]
fn decoder_mask_is_gathered_at_kept_positions_not_sliced() {
    // Causal 4x4 mask with the last key padded (1 = attend):
    //   q0: 1 0 0 0
    //   q1: 1 1 0 0
    //   q2: 1 1 1 0
    //   q3: 1 1 1 0
    #[rustfmt::skip]
    let mask = [1u8, 0, 0, 0,
                1, 1, 0, 0,
                1, 1, 1, 0,
                1, 1, 1, 0];
    // Keep positions 1 and 3: out[i][j] = mask[idx i][idx j] = [[m11, m13], [m31, m33]].
    let out = decoder_mask_gather(&mask, &[1, 3], 1, 2, 4).unwrap();
    assert_eq!(out, vec![1, 0, 1, 0]);
    // Upstream's top-left slice would have given [[1, 0], [1, 1]]: different.
    assert_ne!(out, vec![1, 0, 1, 1]);
}

#[test]
fn decoder_mask_gather_two_batches_float() {
    // B=2, S=2, r=1: out[b] = mask[b][idx b][idx b].
    let mask = [0.0f32, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0];
    let out = decoder_mask_gather(&mask, &[1, 0], 2, 1, 2).unwrap();
    assert_eq!(out, vec![-3.0, -4.0]);
}

#[test]
fn encoder_full_mask_gather_by_hand() {
    // mask [B=1, 1, S=3, S=3], m[i][j] = 10 i + j; idx [L=2, B=1, r=2] = [[0, 2]], [[2, 1]].
    #[rustfmt::skip]
    let mask = [0i32, 1, 2,
                10, 11, 12,
                20, 21, 22];
    let out = encoder_mask_gather(&mask, EncoderMaskForm::Full, &[0, 2, 2, 1], 2, 1, 2, 3).unwrap();
    // Layer 0: [[m00, m02], [m20, m22]]; layer 1: [[m22, m21], [m12, m11]].
    assert_eq!(out, vec![0, 2, 20, 22, 22, 21, 12, 11]);
}

#[test]
fn encoder_key_padding_gather_by_hand() {
    // mask [B=2, 1, 1, S=3] = [[1, 2, 3], [4, 5, 6]]; idx [L=1, B=2, r=2] = [[0, 2], [1, 2]].
    let mask = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let out = encoder_mask_gather(
        &mask,
        EncoderMaskForm::KeyPadding,
        &[0, 2, 1, 2],
        1,
        2,
        2,
        3,
    )
    .unwrap();
    assert_eq!(out, vec![1.0, 3.0, 5.0, 6.0]);
}

#[test]
fn mask_gathers_reject_bad_input() {
    let full = [0.0f32; 9];
    // Wrong mask length for the form.
    assert_eq!(
        encoder_mask_gather(&full, EncoderMaskForm::KeyPadding, &[0], 1, 1, 1, 3).unwrap_err(),
        RefError::LengthMismatch {
            what: "mask",
            got: 9,
            expected: 3
        }
    );
    assert_eq!(
        decoder_mask_gather(&full[..8], &[0], 1, 1, 3).unwrap_err(),
        RefError::LengthMismatch {
            what: "mask",
            got: 8,
            expected: 9
        }
    );
    // Out of range, with the layer named.
    let err =
        encoder_mask_gather(&full, EncoderMaskForm::Full, &[0, 1, 3], 3, 1, 1, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "idx at [layer 2, row 0, position 0] is 3, which is outside [0, 3)"
    );
    // Zero sizes and r > S.
    assert_eq!(
        encoder_mask_gather(&full, EncoderMaskForm::Full, &[], 0, 1, 1, 3).unwrap_err(),
        RefError::ZeroSize { what: "layers" }
    );
    assert_eq!(
        decoder_mask_gather(&full, &[], 1, 0, 3).unwrap_err(),
        RefError::ZeroSize { what: "r" }
    );
    assert_eq!(
        decoder_mask_gather(&full, &[0, 1, 2, 0], 1, 4, 3).unwrap_err(),
        RefError::ReservedTooLong { r: 4, seq: 3 }
    );
    assert_eq!(
        decoder_mask_gather(&full, &[0], 0, 1, 3).unwrap_err(),
        RefError::ZeroSize { what: "batch" }
    );
    // Wrong idx length.
    assert_eq!(
        encoder_mask_gather(&full, EncoderMaskForm::Full, &[0, 1, 2], 2, 1, 1, 3).unwrap_err(),
        RefError::LengthMismatch {
            what: "idx",
            got: 3,
            expected: 2
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Sampler checker
// ---------------------------------------------------------------------------------------------

#[test]
fn sampler_check_accepts_valid_indices() {
    // L=2, B=2, r=3, S=5.
    let idx = [0, 1, 4, 1, 2, 3, 0, 2, 4, 2, 3, 4];
    check_sampled_indices(&idx, 2, 2, 3, 5).unwrap();
    // r = S: the identity.
    check_sampled_indices(&[0, 1, 2], 1, 1, 3, 3).unwrap();
}

#[test]
fn sampler_check_names_the_bad_entry() {
    // Unsorted at layer 1, row 0, position 1.
    let idx = [0, 1, 4, 1, 2, 3, 2, 0, 4, 2, 3, 4];
    let err = check_sampled_indices(&idx, 2, 2, 3, 5).unwrap_err();
    assert_eq!(
        err,
        RefError::BadIndex {
            what: "idx",
            location: IndexLocation {
                layer: Some(1),
                row: 0,
                position: 1
            },
            value: 0,
            problem: IndexProblem::NotAscending { previous: 2 },
        }
    );
    // Duplicate: also "not strictly ascending".
    let err = check_sampled_indices(&[1, 1], 1, 1, 2, 3).unwrap_err();
    assert!(matches!(
        err,
        RefError::BadIndex {
            value: 1,
            problem: IndexProblem::NotAscending { previous: 1 },
            ..
        }
    ));
    // Out of range: S itself, and negative.
    let err = check_sampled_indices(&[0, 3], 1, 1, 2, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "idx at [layer 0, row 0, position 1] is 3, which is outside [0, 3)"
    );
    let err = check_sampled_indices(&[-1, 2], 1, 1, 2, 3).unwrap_err();
    assert!(matches!(
        err,
        RefError::BadIndex {
            value: -1,
            problem: IndexProblem::OutOfRange { seq: 3 },
            ..
        }
    ));
}

#[test]
fn sampler_check_rejects_bad_sizes() {
    assert_eq!(
        check_sampled_indices(&[0, 1, 2], 1, 2, 2, 3).unwrap_err(),
        RefError::LengthMismatch {
            what: "idx",
            got: 3,
            expected: 4
        }
    );
    assert_eq!(
        check_sampled_indices(&[0, 1, 2, 3], 1, 1, 4, 3).unwrap_err(),
        RefError::ReservedTooLong { r: 4, seq: 3 }
    );
    assert_eq!(
        check_sampled_indices(&[], 0, 1, 1, 3).unwrap_err(),
        RefError::ZeroSize { what: "layers" }
    );
    assert_eq!(
        check_sampled_indices(&[], 1, 0, 1, 3).unwrap_err(),
        RefError::ZeroSize { what: "batch" }
    );
    assert_eq!(
        check_sampled_indices(&[], 1, 1, 0, 3).unwrap_err(),
        RefError::ZeroSize { what: "r" }
    );
    assert_eq!(
        check_sampled_indices(&[], 1, 1, 1, 0).unwrap_err(),
        RefError::ZeroSize { what: "seq" }
    );
}

#[test]
fn huge_seq_in_the_sampler_check_does_not_allocate_or_panic() {
    check_sampled_indices(&[0, 1 << 30], 1, 1, 2, usize::MAX).unwrap();
    assert!(matches!(
        check_sampled_indices(&[0, 1], 1, usize::MAX, 2, 4).unwrap_err(),
        RefError::TooLarge { what: "idx", .. }
    ));
}
