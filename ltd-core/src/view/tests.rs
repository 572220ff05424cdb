//! Row enumeration and overlap checks of the hidden-state layouts.

use super::*;
use crate::CoreError;

#[test]
fn rows_mut_cover_every_row_once_in_both_loop_orders() {
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        let (b, s, c) = (3, 5, 2);
        let mut data = vec![0u32; b * s * c + 20];
        let layout = match order {
            // Padded batch-outer.
            HiddenOrder::BatchSeq => HiddenLayout::strided(order, b, s, c, s * c + 1, c).unwrap(),
            // Seq-outer with a pitch.
            HiddenOrder::SeqBatch => HiddenLayout::strided(order, b, s, c, c, b * c + 2).unwrap(),
        };
        let mut data_f: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        let mut v = HiddenViewMut::strided(&mut data_f, layout).unwrap();
        let mut rows = v.rows_mut();
        let n = rows.rows.len();
        assert_eq!(n, b * s);
        for k in 0..n {
            let (bb, ss) = rows.coords(k);
            rows.rows[k].fill((bb * 100 + ss) as f32);
        }
        let view = v.as_view();
        for bb in 0..b {
            for ss in 0..s {
                assert!(
                    view.row(bb, ss)
                        .unwrap()
                        .iter()
                        .all(|&x| x == (bb * 100 + ss) as f32)
                );
            }
        }
        data.clear();
    }
}

#[test]
fn overlapping_output_rows_are_refused() {
    let mut d = vec![0.0f32; 100];
    let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 12, 3).unwrap();
    let e = HiddenViewMut::strided(&mut d, l).unwrap_err();
    assert!(matches!(e, CoreError::OverlappingRows { .. }), "{e}");
    // A transposed output is fine.
    let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 2, 3, 4, 4, 8).unwrap();
    assert!(HiddenViewMut::strided(&mut d, l).is_ok());
}

#[test]
fn overflow_is_an_error() {
    assert!(matches!(
        HiddenLayout::strided(HiddenOrder::BatchSeq, 3, 1, 1, usize::MAX, 1),
        Err(CoreError::SizeOverflow { .. })
    ));
    assert!(matches!(
        HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, usize::MAX, 2),
        Err(CoreError::SizeOverflow { .. })
    ));
}
