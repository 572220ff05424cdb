//! The GPU block-sparse matmuls (sdd, dsd, dds; every trans_a x trans_b; f32, f16, bf16; blocks
//! 16/32/64/128; forward and backward) against `ltd-reference` (densify, f64 product,
//! sparsify), with the tolerances of upstream-semantics.md §3.1 that the CPU tests use. Random layouts with
//! empty block rows and columns, batch and heads above 1, dense dims that are and are not
//! multiples of 8 (vector and scalar load paths) and above 64 (several slabs). Outputs are
//! poisoned (NaN) first, so an unwritten element fails. `LTD_GPU_CASES` lowers the proptest
//! case count. Without a GPU the `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

// The GPU test support shared with ltd-core's tests (one file, included by path).
#[path = "../../ltd-core/tests/gpu_support/mod.rs"]
mod gpu_support;

mod common;

use common::{Data, TestElement, assert_close, matmul_reference, poisoned};
use cudarc::driver::DeviceRepr;
use gpu_support::{cases, gpu};
use ltd_core::CudaDevice;
use ltd_sparse_attn::cuda_matmul::{CudaMatMulLayout, matmul_backward_cuda, matmul_forward_cuda};
use ltd_sparse_attn::{BlockSparseMatMul, Layout, MatMulMode, SparseAttnError};
use proptest::prelude::*;

const MODES: [MatMulMode; 3] = [MatMulMode::Sdd, MatMulMode::Dsd, MatMulMode::Dds];

struct Case {
    mode: MatMulMode,
    trans_a: bool,
    trans_b: bool,
    block: usize,
    nb: usize,
    f: usize,
    heads: usize,
    batch: usize,
    density: f32,
    seed: u64,
}

/// A random layout with at least one tile (a zero-length device buffer is not allocatable);
/// low densities leave whole block rows and columns empty.
fn layout_of(data: &mut Data, c: &Case) -> Layout {
    let mut mask = data.mask(c.heads, c.nb, c.density);
    if mask.iter().all(|&v| v == 0) {
        let i = (data.unit() * mask.len() as f32) as usize % mask.len();
        mask[i] = 1;
    }
    Layout::from_mask(c.heads, c.nb, c.block, mask).expect("valid layout")
}

fn check<T: TestElement + DeviceRepr>(dev: &CudaDevice, c: &Case) {
    let mut data = Data::new(c.seed);
    let layout = layout_of(&mut data, c);
    let mm = BlockSparseMatMul::new(c.mode, c.trans_a, c.trans_b);
    let (la, lb, lc) = mm.operand_lens(&layout, c.batch, c.f);
    let a: Vec<T> = data.vec(la, -1.0, 1.0);
    let b: Vec<T> = data.vec(lb, -1.0, 1.0);
    let dc: Vec<T> = data.vec(lc, -1.0, 1.0);
    let (want, wa, wb) = matmul_reference(mm, &layout, c.batch, c.f, (&a, &b, &dc));
    let (ta, tb) = (c.trans_a, c.trans_b);
    let ctx = format!(
        "{:?} {:?} ta {ta} tb {tb} block {} nb {} F {} H {} Z {} nnz {}",
        T::DTYPE,
        c.mode,
        c.block,
        c.nb,
        c.f,
        c.heads,
        c.batch,
        layout.nnz()
    );

    let gl = CudaMatMulLayout::new(dev, &layout).unwrap();
    let (ga, gb, gdc) = (
        dev.upload(&a).unwrap(),
        dev.upload(&b).unwrap(),
        dev.upload(&dc).unwrap(),
    );
    let mut gc = dev.upload(&poisoned::<T>(lc)).unwrap();
    matmul_forward_cuda(dev, &gl, mm, c.batch, c.f, &ga, &gb, &mut gc).unwrap();
    assert_close(&format!("c ({ctx})"), &dev.download(&gc).unwrap(), &want);

    let mut gda = dev.upload(&poisoned::<T>(la)).unwrap();
    let mut gdb = dev.upload(&poisoned::<T>(lb)).unwrap();
    matmul_backward_cuda(
        dev, &gl, mm, c.batch, c.f, &ga, &gb, &gdc, &mut gda, &mut gdb,
    )
    .unwrap();
    assert_close(&format!("da ({ctx})"), &dev.download(&gda).unwrap(), &wa);
    assert_close(&format!("db ({ctx})"), &dev.download(&gdb).unwrap(), &wb);
}

fn check_dtype(dev: &CudaDevice, dtype: usize, c: &Case) {
    match dtype {
        0 => check::<f32>(dev, c),
        1 => check::<half::f16>(dev, c),
        _ => check::<half::bf16>(dev, c),
    }
}

/// Every mode x trans_a x trans_b x dtype x block once, on small random layouts (batch 2,
/// heads 2), with dense dims cycling through the vector path (multiples of 8), the scalar path
/// and more than one 64-wide slab.
#[test]
fn gpu_matmul_every_combination_matches_reference() {
    let dev = gpu();
    let dims = [24usize, 13, 72, 8, 100, 40];
    // `LTD_GPU_COMBO_STEP=k` runs every k-th combination only (for compute-sanitizer runs).
    let step: usize = std::env::var("LTD_GPU_COMBO_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut failures = Vec::new();
    let mut i = 0usize;
    for mode in MODES {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for dtype in 0..3 {
                    for block in [16usize, 32, 64, 128] {
                        let case = Case {
                            mode,
                            trans_a,
                            trans_b,
                            block,
                            nb: if block == 128 { 2 } else { 3 },
                            f: dims[i % dims.len()],
                            heads: 2,
                            batch: 2,
                            density: 0.45,
                            seed: 1000 + i as u64,
                        };
                        if i.is_multiple_of(step) {
                            // Run them all and list every failing combination at the end.
                            let run =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    check_dtype(&dev, dtype, &case)
                                }));
                            if let Err(e) = run {
                                let msg = e
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                failures.push(format!(
                                    "{mode:?} ta {trans_a} tb {trans_b} dtype {dtype} block {block}: {msg}"
                                ));
                            }
                        }
                        i += 1;
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} combinations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// (block, blocks per side, dense dim).
fn sizes() -> impl Strategy<Value = (usize, usize, usize)> {
    prop_oneof![
        3 => (Just(16usize), 1..=6usize, prop_oneof![1..=100usize, (1..=12usize).prop_map(|x| 8 * x)]),
        2 => (Just(32usize), 1..=4usize, prop_oneof![1..=80usize, (1..=10usize).prop_map(|x| 8 * x)]),
        2 => (Just(64usize), 1..=3usize, prop_oneof![1..=140usize, (1..=16usize).prop_map(|x| 8 * x)]),
        1 => (Just(128usize), 1..=2usize, prop_oneof![1..=70usize, (1..=10usize).prop_map(|x| 8 * x)]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn gpu_matmul_matches_reference(
        dtype in 0..3usize,
        mode in prop_oneof![Just(MatMulMode::Sdd), Just(MatMulMode::Dsd), Just(MatMulMode::Dds)],
        trans_a in any::<bool>(),
        trans_b in any::<bool>(),
        (block, nb, f) in sizes(),
        heads in 1..=3usize,
        batch in 1..=3usize,
        density in prop_oneof![Just(0.0f32), 0.05f32..1.0, Just(1.0f32)],
        seed in any::<u64>(),
    ) {
        let dev = gpu();
        let case = Case { mode, trans_a, trans_b, block, nb, f, heads, batch, density, seed };
        check_dtype(&dev, dtype, &case);
    }
}

/// Dense output rows (dsd) and columns (dds) of a block row/column with no tile are exactly 0.
#[test]
fn gpu_matmul_empty_rows_are_zero() {
    let dev = gpu();
    // One head, 3 blocks of 16, only tile (0, 1): block rows 1, 2 and columns 0, 2 are empty.
    let layout = Layout::from_mask(1, 3, 16, vec![0, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let gl = CudaMatMulLayout::new(&dev, &layout).unwrap();
    let f = 24;
    let tile = dev.upload(&vec![1.0f32; 256]).unwrap();
    let dense = dev.upload(&vec![1.0f32; 48 * f]).unwrap();
    let mut out = dev.upload(&vec![f32::NAN; 48 * f]).unwrap();
    let dsd = BlockSparseMatMul::dsd(false, false);
    matmul_forward_cuda(&dev, &gl, dsd, 1, f, &tile, &dense, &mut out).unwrap();
    let got = dev.download(&out).unwrap();
    assert!(got[..16 * f].iter().all(|&x| x == 16.0));
    assert!(got[16 * f..].iter().all(|&x| x == 0.0));
    let dds = BlockSparseMatMul::dds(false, false);
    matmul_forward_cuda(&dev, &gl, dds, 1, f, &dense, &tile, &mut out).unwrap();
    let got = dev.download(&out).unwrap();
    for (i, x) in got.iter().enumerate() {
        let want = if (16..32).contains(&(i % 48)) {
            16.0
        } else {
            0.0
        };
        assert_eq!(*x, want, "dds out[{i}]");
    }
}

#[test]
fn gpu_matmul_rejects_bad_input() {
    let dev = gpu();
    let layout = Layout::from_mask(2, 2, 16, vec![1, 0, 1, 1, 1, 1, 0, 1]).unwrap();
    let gl = CudaMatMulLayout::new(&dev, &layout).unwrap();
    let (batch, f) = (2usize, 8usize);
    let sdd = BlockSparseMatMul::sdd(false, false);
    let (la, lb, lc) = sdd.operand_lens(&layout, batch, f);
    let buf = |n: usize| dev.upload(&vec![0.0f32; n]).unwrap();
    let (a, b) = (buf(la), buf(lb));
    let mut c = buf(lc);

    // A buffer of the wrong length is named, with the expected shape.
    let short = buf(la - 1);
    let e = matmul_forward_cuda(&dev, &gl, sdd, batch, f, &short, &b, &mut c).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::ShapeMismatch { what, .. } if what == "a"),
        "{e}"
    );
    let mut small_c = buf(lc + 1);
    let e = matmul_forward_cuda(&dev, &gl, sdd, batch, f, &a, &b, &mut small_c).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::ShapeMismatch { what, .. } if what == "c"),
        "{e}"
    );
    // A dense dim that does not match the buffers.
    let e = matmul_forward_cuda(&dev, &gl, sdd, batch, f + 1, &a, &b, &mut c).unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    // Zero batch or dense dim.
    let e = matmul_forward_cuda(&dev, &gl, sdd, 0, f, &a, &b, &mut c).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::InvalidArgument { what, .. } if what == "batch"),
        "{e}"
    );
    let e = matmul_forward_cuda(&dev, &gl, sdd, batch, 0, &a, &b, &mut c).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::InvalidArgument { what, .. } if what == "dense_dim"),
        "{e}"
    );
    // Operands swapped between modes (dense where the sparse one is expected).
    let dsd = BlockSparseMatMul::dsd(false, false);
    let e = matmul_forward_cuda(&dev, &gl, dsd, batch, f, &a, &b, &mut c).unwrap_err();
    assert!(matches!(e, SparseAttnError::ShapeMismatch { .. }), "{e}");
    // Backward: gradients must match their operands.
    let dc = buf(lc);
    let (mut da, mut db) = (buf(la), buf(lb));
    let mut bad = buf(lb + 16);
    let e =
        matmul_backward_cuda(&dev, &gl, sdd, batch, f, &a, &b, &dc, &mut bad, &mut db).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::ShapeMismatch { what, .. } if what == "da"),
        "{e}"
    );
    let e =
        matmul_backward_cuda(&dev, &gl, sdd, batch, f, &a, &b, &dc, &mut da, &mut bad).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::ShapeMismatch { what, .. } if what == "db"),
        "{e}"
    );
    let e =
        matmul_backward_cuda(&dev, &gl, sdd, batch, f, &a, &b, &a, &mut da, &mut db).unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::ShapeMismatch { what, .. } if what == "dc"),
        "{e}"
    );
    // Nothing above launched anything; a correct call still works.
    matmul_backward_cuda(&dev, &gl, sdd, batch, f, &a, &b, &dc, &mut da, &mut db).unwrap();
    assert!(dev.download(&da).unwrap().iter().all(|&x| x == 0.0));
}

/// Operands read through views at odd element offsets (the kernels' scalar load path) and the
/// result written through a view at an even offset give the whole-buffer result bit for bit; an
/// f16 result at an odd element offset is a typed error naming `c` (stored in pairs).
#[test]
fn gpu_matmul_views_match_whole_buffers() {
    use half::f16;
    let dev = gpu();
    let layout = Layout::from_mask(2, 2, 16, vec![1, 0, 1, 1, 1, 1, 0, 1]).unwrap();
    let gl = CudaMatMulLayout::new(&dev, &layout).unwrap();
    let (batch, f) = (2, 24);
    let n = batch * 2 * 32 * f; // [Z, H, S, F]
    let op = BlockSparseMatMul::sdd(false, true);
    let mut data = Data::new(17);
    let (a, b): (Vec<f16>, Vec<f16>) = (data.vec(n, -1.0, 1.0), data.vec(n, -1.0, 1.0));
    let nc = batch * layout.nnz() * 16 * 16;
    let (wa, wb) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
    let mut wc = dev.upload(&poisoned::<f16>(nc)).unwrap();
    matmul_forward_cuda(&dev, &gl, op, batch, f, &wa, &wb, &mut wc).unwrap();
    let mut host = vec![f16::ZERO; 3];
    host.extend_from_slice(&a);
    host.extend_from_slice(&b);
    let ab = dev.upload(&host).unwrap();
    let mut vc = dev.upload(&poisoned::<f16>(nc + 4)).unwrap();
    matmul_forward_cuda(
        &dev,
        &gl,
        op,
        batch,
        f,
        ab.slice(3..3 + n),
        ab.slice(3 + n..),
        vc.slice_mut(2..2 + nc),
    )
    .unwrap();
    let bits = |x: Vec<f16>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (got, want) = (
        bits(dev.download(&vc).unwrap()),
        bits(dev.download(&wc).unwrap()),
    );
    assert_eq!(&got[2..2 + nc], &want[..]);
    let e = matmul_forward_cuda(&dev, &gl, op, batch, f, &wa, &wb, vc.slice_mut(1..1 + nc))
        .unwrap_err();
    assert!(
        matches!(&e, SparseAttnError::Misaligned { what, alignment: 2, required: 4, .. } if what == "c"),
        "{e}"
    );
}
