//! Gather / scatter / route, forward and backward, against `ltd-reference`: both orders, all
//! three dtypes, random shapes (odd C included), strided inputs and outputs, outputs poisoned
//! with NaN before every call (an unwritten element fails, and so does a write outside the view).

mod common;

use common::*;
use half::{bf16, f16};
use ltd_core::*;
use proptest::prelude::*;

fn nan<T: Element>() -> T {
    T::from_f32_lossy(f32::NAN)
}

/// A NaN-poisoned output buffer for `layout`.
fn poisoned<T: Element>(layout: &HiddenLayout) -> Vec<T> {
    vec![nan::<T>(); layout.min_buffer_len() + 2]
}

/// Checks an output buffer: its logical content equals `want` bit for bit, everything outside its
/// rows is still NaN.
fn check_output<T: Element>(
    what: &str,
    buf: &[T],
    layout: &HiddenLayout,
    want: &[T],
) -> Result<(), TestCaseError> {
    let got = logical(buf, layout);
    prop_assert!(same_bits(&got, want), "{what}: got {got:?}\nwant {want:?}");
    let cov = covered(buf.len(), layout);
    for (i, (x, c)) in buf.iter().zip(cov).enumerate() {
        prop_assert!(
            c || x.to_f32().is_nan(),
            "{what}: element {i} outside the view was written"
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Case {
    order: HiddenOrder,
    b: usize,
    s: usize,
    c: usize,
    r: usize,
    input: usize,
    output: usize,
    seed: u64,
}

fn check_ops<T: Element + ltd_reference::RefElement>(case: Case) -> Result<(), TestCaseError> {
    let Case {
        order,
        b,
        s,
        c,
        r,
        input,
        output,
        seed,
    } = case;
    let mut rng = Rng(seed);
    let dims = ref_dims(order, b, s, c);
    let lh = layout(order, b, s, c, input_stride(input));
    let hb: Vec<T> = random_buffer(&mut rng, &lh);
    let h_log = logical(&hb, &lh);
    let hidden = HiddenView::strided(&hb, lh).unwrap();
    let lpart_in = layout(order, b, r, c, input_stride(input + 1));
    let pb: Vec<T> = random_buffer(&mut rng, &lpart_in);
    let p_log = logical(&pb, &lpart_in);
    let part = HiddenView::strided(&pb, lpart_in).unwrap();
    let sorted = rng.sorted_indices(b, s, r);
    let any = rng.any_indices(b, s, r);
    let idx_sorted = IndexView::new(&sorted, b, r).unwrap();
    let idx_any = IndexView::new(&any, b, r).unwrap();
    let lpart_out = layout(order, b, r, c, output_stride(output));
    let lfull_out = layout(order, b, s, c, output_stride(output + 1));

    // gather (any in-range indices) and gather_tensor.
    let want = ltd_reference::gather(&h_log, dims, &any, r).unwrap();
    let mut ob = poisoned::<T>(&lpart_out);
    gather(
        &hidden,
        &idx_any,
        &mut HiddenViewMut::strided(&mut ob, lpart_out).unwrap(),
    )
    .unwrap();
    check_output("gather", &ob, &lpart_out, &want)?;
    let t = gather_tensor(&hidden, &idx_any).unwrap();
    prop_assert!(same_bits(t.as_slice(), &want), "gather_tensor");

    // scatter / route out of place, route_tensor.
    let want = ltd_reference::scatter(&h_log, dims, &p_log, &sorted, r).unwrap();
    let mut ob = poisoned::<T>(&lfull_out);
    scatter(
        &hidden,
        &part,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lfull_out).unwrap(),
    )
    .unwrap();
    check_output("scatter", &ob, &lfull_out, &want)?;
    let mut ob = poisoned::<T>(&lfull_out);
    route(
        &hidden,
        &part,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lfull_out).unwrap(),
    )
    .unwrap();
    check_output("route", &ob, &lfull_out, &want)?;
    let t = route_tensor(&hidden, &part, &idx_sorted).unwrap();
    prop_assert!(same_bits(t.as_slice(), &want), "route_tensor");

    // scatter in place into a strided buffer holding h.
    let mut ob = poisoned::<T>(&lfull_out);
    fill_from_logical(&mut ob, &lfull_out, &h_log);
    scatter_in_place(
        &mut HiddenViewMut::strided(&mut ob, lfull_out).unwrap(),
        &part,
        &idx_sorted,
    )
    .unwrap();
    check_output("scatter_in_place", &ob, &lfull_out, &want)?;

    // Backward: gather_backward(g_pass = hidden, g_part = part) and the route's second half.
    let want = ltd_reference::gather_backward(&h_log, dims, &p_log, &sorted, r).unwrap();
    let mut ob = poisoned::<T>(&lfull_out);
    gather_backward(
        &hidden,
        &part,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lfull_out).unwrap(),
    )
    .unwrap();
    check_output("gather_backward", &ob, &lfull_out, &want)?;
    let mut ob = poisoned::<T>(&lfull_out);
    route_backward_to_hidden(
        &hidden,
        &part,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lfull_out).unwrap(),
    )
    .unwrap();
    check_output("route_backward_to_hidden", &ob, &lfull_out, &want)?;

    // scatter_backward (g_y = hidden) and the route's first half.
    let (g_full, want) = ltd_reference::scatter_backward(&h_log, dims, &sorted, r).unwrap();
    prop_assert!(same_bits(&g_full, &h_log));
    let mut ob = poisoned::<T>(&lpart_out);
    scatter_backward(
        &hidden,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lpart_out).unwrap(),
    )
    .unwrap();
    check_output("scatter_backward", &ob, &lpart_out, &want)?;
    let mut ob = poisoned::<T>(&lpart_out);
    route_backward_to_layer(
        &hidden,
        &idx_sorted,
        &mut HiddenViewMut::strided(&mut ob, lpart_out).unwrap(),
    )
    .unwrap();
    check_output("route_backward_to_layer", &ob, &lpart_out, &want)?;
    Ok(())
}

fn check_all_dtypes(case: Case) -> Result<(), TestCaseError> {
    check_ops::<f32>(case)?;
    check_ops::<f16>(case)?;
    check_ops::<bf16>(case)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ops_match_reference(
        seq_batch in any::<bool>(),
        b in 1usize..4,
        s in 1usize..24,
        c in 1usize..13,
        r_frac in 0.0f64..=1.0,
        input in 0usize..4,
        output in 0usize..3,
        seed in any::<u64>(),
    ) {
        let order = if seq_batch { HiddenOrder::SeqBatch } else { HiddenOrder::BatchSeq };
        let r = 1 + ((s - 1) as f64 * r_frac).round() as usize;
        check_all_dtypes(Case { order, b, s, c, r, input, output, seed })?;
    }
}

/// Sizes above `PARALLEL_MIN_ELEMENTS`, so the rayon path runs too, with every stride kind.
#[test]
fn large_calls_take_the_parallel_path_and_match() {
    let (b, s, c, r) = (3, 190, 129, 180);
    assert!(b * r * c >= PARALLEL_MIN_ELEMENTS);
    for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
        for input in 0..4 {
            for output in 0..3 {
                let case = Case {
                    order,
                    b,
                    s,
                    c,
                    r,
                    input,
                    output,
                    seed: (input * 3 + output) as u64,
                };
                check_ops::<bf16>(case).unwrap();
            }
        }
        check_ops::<f32>(Case {
            order,
            b,
            s,
            c,
            r,
            input: 1,
            output: 2,
            seed: 99,
        })
        .unwrap();
        check_ops::<f16>(Case {
            order,
            b,
            s,
            c,
            r,
            input: 2,
            output: 1,
            seed: 98,
        })
        .unwrap();
    }
}

/// r = S (everything kept) and r = 1, S = 1.
#[test]
fn edge_sizes() {
    for (s, r) in [(1, 1), (5, 5), (7, 1)] {
        for order in [HiddenOrder::BatchSeq, HiddenOrder::SeqBatch] {
            check_all_dtypes(Case {
                order,
                b: 2,
                s,
                c: 3,
                r,
                input: 1,
                output: 1,
                seed: s as u64,
            })
            .unwrap();
        }
    }
}
