//! NaN / Inf propagation on the GPU, the rule the CPU tests of `hardening.rs` pin down: a query
//! row that sees a NaN or `+inf` score (NaN / Inf in K, `+inf` in Q, in the key-padding mask or
//! in the bias) gets a NaN output row and a NaN lse, and NaN gradients; a fully masked row keeps
//! zero output and lse = -inf. Checked against `ltd-reference` (NaN exactly where the oracle has
//! NaN, close elsewhere) on every kernel the device runs, fp16 and bf16, causal and key-padding
//! masks, whole and split rows; the block-sparse softmax likewise. Outputs start as a finite
//! sentinel, so an unwritten element fails whether NaN is expected or not. Without a GPU the
//! `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

// The GPU test support shared with ltd-core's tests (one file, included by path; the case
// count is for property tests, which this file has none of).
#[allow(dead_code)]
#[path = "../../ltd-core/tests/gpu_support/mod.rs"]
mod gpu_support;

mod common;

use common::{Data, kernels, make_layout};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use gpu_support::gpu;
use half::{bf16, f16};
use ltd_core::{CudaDevice, DType, Element};
use ltd_reference as reference;
use ltd_reference::RefElement;
use ltd_sparse_attn::cuda::{
    CoarseTables, CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout,
    CudaAttentionOptions, CudaSoftmaxOptions, attention_backward_cuda, attention_forward_cuda,
    softmax_backward_cuda, softmax_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, BigBirdConfig, Layout, SparseAttnError as E};

/// What every output starts as: finite, and far from any value the ops write.
const SENTINEL: f32 = 1000.0;

/// One attention problem: inputs `[B, H, L, D]`, an additive f32 key-padding mask `[B, L]`, a
/// bias `[B, H, L, L]`, causal or not, and the upstream gradient.
struct Problem<T> {
    shape: AttentionShape,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    kpm: Option<Vec<f32>>,
    bias: Option<Vec<T>>,
    causal: bool,
    dout: Vec<T>,
}

impl<T: Element> Problem<T> {
    /// Random inputs in [-1, 1) (bias in [-0.5, 0.5) when asked for), no mask.
    fn new(shape: AttentionShape, causal: bool, with_bias: bool, seed: u64) -> Self {
        let n = shape.qkv_len();
        let mut data = Data::new(seed);
        let bias_len = shape.lse_len() * shape.seq_len;
        Problem {
            shape,
            q: data.vec(n, -1.0, 1.0),
            k: data.vec(n, -1.0, 1.0),
            v: data.vec(n, -1.0, 1.0),
            kpm: None,
            bias: with_bias.then(|| data.vec(bias_len, -0.5, 0.5)),
            causal,
            dout: data.vec(n, -1.0, 1.0),
        }
    }

    /// Index of element `col` of row `row` of (batch `b`, head `h`) in a `[B, H, L, D]` buffer.
    fn at(&self, b: usize, h: usize, row: usize, col: usize) -> usize {
        let s = self.shape;
        ((b * s.heads + h) * s.seq_len + row) * s.head_dim + col
    }

    fn scale(&self) -> f32 {
        1.0 / (self.shape.head_dim as f32).sqrt()
    }
}

/// What the GPU wrote, widened to f32.
struct GpuRun {
    out: Vec<f32>,
    lse: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

fn sentinel<T: Element + DeviceRepr>(dev: &CudaDevice, n: usize) -> CudaSlice<T> {
    dev.upload(&vec![T::from_f32_lossy(SENTINEL); n]).unwrap()
}

fn download<T: Element + DeviceRepr>(dev: &CudaDevice, x: &CudaSlice<T>) -> Vec<f32> {
    dev.download(x)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect()
}

/// The fused forward, then the backward from its output, on `kernel`.
fn run_gpu<T: Element + DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    p: &Problem<T>,
    kernel: CudaAttentionKernel,
) -> GpuRun {
    let n = p.shape.qkv_len();
    let up = |x: &[T]| dev.upload(x).unwrap();
    let (q, k, v, dout) = (up(&p.q), up(&p.k), up(&p.v), up(&p.dout));
    let kpm = p.kpm.as_ref().map(|m| dev.upload(m).unwrap());
    let bias = p.bias.as_ref().map(|b| up(b));
    let opts = CudaAttentionOptions {
        scale: Some(p.scale()),
        causal: p.causal,
        key_padding_mask: kpm.as_ref().map(Into::into),
        bias: bias.as_ref().map(Into::into),
        kernel,
    };
    let mut out = sentinel::<T>(dev, n);
    let mut lse = sentinel::<f32>(dev, p.shape.lse_len());
    attention_forward_cuda(
        dev,
        layout,
        p.shape,
        (&q, &k, &v),
        &opts,
        &mut out,
        &mut lse,
    )
    .unwrap();
    let (mut dq, mut dk, mut dv) = (sentinel(dev, n), sentinel(dev, n), sentinel(dev, n));
    let mut dbias = p.bias.as_ref().map(|b| sentinel::<T>(dev, b.len()));
    attention_backward_cuda(
        dev,
        layout,
        p.shape,
        (&q, &k, &v),
        (&out, &lse),
        &dout,
        &opts,
        CudaAttentionGrads {
            dbias: dbias.as_mut().map(Into::into),
            ..CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv)
        },
    )
    .unwrap();
    GpuRun {
        out: download(dev, &out),
        lse: dev.download(&lse).unwrap(),
        dq: download(dev, &dq),
        dk: download(dev, &dk),
        dv: download(dev, &dv),
    }
}

/// The oracle's forward `(out, lse)` on the layout.
fn oracle<T: Element + RefElement>(layout: &Layout, p: &Problem<T>) -> (Vec<f64>, Vec<f64>) {
    let nb = layout.num_blocks();
    let heads = p.shape.heads;
    let kpm_t: Option<Vec<T>> = p
        .kpm
        .as_ref()
        .map(|m| m.iter().map(|&x| T::from_f32_lossy(x)).collect());
    let mut ropts = reference::AttentionOptions::new(p.scale() as f64);
    ropts.causal = p.causal;
    ropts.layout = Some(reference::Layout::new(
        layout.mask(),
        heads,
        nb,
        nb,
        layout.block(),
    ));
    ropts.bias = p.bias.as_deref();
    ropts.key_padding = kpm_t.as_deref().map(|values| reference::Mask {
        values,
        mode: reference::MaskMode::Add,
    });
    let dims = reference::AttnDims {
        batch: p.shape.batch,
        heads,
        seq: p.shape.seq_len,
        head_dim: p.shape.head_dim,
    };
    let o = reference::attention_forward(&p.q, &p.k, &p.v, dims, &ropts).unwrap();
    (
        o.out.iter().map(|x| RefElement::to_f64(*x)).collect(),
        o.lse,
    )
}

/// NaN exactly where the oracle has NaN (every output element and lse), `-inf` lse where it has
/// `-inf`, the same finite values elsewhere; for every poisoned row a NaN dq row, and then NaN
/// somewhere in dk and in dv (the CPU test's checks). Returns the number of poisoned rows.
fn assert_matches_oracle<T: Element>(
    ctx: &str,
    got: &GpuRun,
    want: &(Vec<f64>, Vec<f64>),
) -> usize {
    let (rtol, atol) = match T::DTYPE {
        DType::F16 => (3e-2, 2e-3),
        _ => (5e-2, 1e-2),
    };
    for (i, (&g, &e)) in got.out.iter().zip(&want.0).enumerate() {
        assert_eq!(g.is_nan(), e.is_nan(), "out[{i}] = {g}, oracle {e} ({ctx})");
        if !e.is_nan() {
            let g = g as f64;
            assert!(
                (g - e).abs() <= atol + rtol * e.abs(),
                "out[{i}] = {g}, oracle {e} ({ctx})"
            );
        }
    }
    for (i, (&g, &e)) in got.lse.iter().zip(&want.1).enumerate() {
        assert_eq!(g.is_nan(), e.is_nan(), "lse[{i}] = {g}, oracle {e} ({ctx})");
        if e == f64::NEG_INFINITY {
            assert_eq!(g, f32::NEG_INFINITY, "lse[{i}] ({ctx})");
        } else if !e.is_nan() {
            let g = g as f64;
            assert!(
                (g - e).abs() <= 1e-3 + 1e-3 * e.abs(),
                "lse[{i}] = {g}, oracle {e} ({ctx})"
            );
        }
    }
    let d = got.dq.len() / got.lse.len();
    let poisoned: Vec<usize> = (0..got.lse.len())
        .filter(|&r| got.lse[r].is_nan())
        .collect();
    for &r in &poisoned {
        assert!(
            got.dq[r * d..(r + 1) * d].iter().all(|x| x.is_nan()),
            "dq row {r} of a NaN row ({ctx})"
        );
    }
    if !poisoned.is_empty() {
        assert!(got.dk.iter().any(|x| x.is_nan()), "dk has no NaN ({ctx})");
        assert!(got.dv.iter().any(|x| x.is_nan()), "dv has no NaN ({ctx})");
    }
    poisoned.len()
}

/// Runs `p` on every kernel against the oracle; asserts some rows are poisoned and some not.
fn check_all_kernels<T: Element + RefElement + DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    layout: &Layout,
    p: &Problem<T>,
    what: &str,
) -> Vec<GpuRun> {
    let gl = CudaAttentionLayout::new(dev, layout).unwrap();
    let want = oracle(layout, p);
    let rows = p.shape.lse_len();
    let bad = want.1.iter().filter(|x| x.is_nan()).count();
    assert!(
        bad > 0 && bad < rows,
        "{what}: the oracle poisons {bad} of {rows} rows"
    );
    let mut runs = Vec::new();
    for kernel in kernels(dev) {
        let ctx = format!(
            "{what}, {:?} {:?} block {} causal {} kernel {:?}",
            T::DTYPE,
            p.shape,
            layout.block(),
            p.causal,
            kernel.resolve(dev.compute_capability())
        );
        let got = run_gpu(dev, &gl, p, kernel);
        assert_eq!(assert_matches_oracle::<T>(&ctx, &got, &want), bad, "{ctx}");
        runs.push(got);
    }
    runs
}

fn shape(batch: usize, heads: usize, seq_len: usize, head_dim: usize) -> AttentionShape {
    AttentionShape {
        batch,
        heads,
        seq_len,
        head_dim,
    }
}

/// NaN or `+inf` in K: key 70 of (batch 0, head 0) and key 150 of (batch 1, head 1), on a
/// dense block-16 layout (causal and not: with causal, rows before the key stay finite) and a
/// Fixed block-32 one with a bias (the bias kernels).
fn k_case<T: Element + RefElement + DeviceRepr + ValidAsZeroBits>(dev: &CudaDevice, d: usize) {
    let s = shape(2, 2, 200, d);
    for bad in [f32::NAN, f32::INFINITY] {
        for (family, block, causal, bias) in [
            (4u8, 16, true, false),
            (4, 16, false, false),
            (0, 32, false, true),
        ] {
            let layout = make_layout(family, 2, block, 200, false, 3);
            let mut p = Problem::<T>::new(s, causal, bias, 7);
            let (i, j) = (p.at(0, 0, 70, 1), p.at(1, 1, 150, 5));
            p.k[i] = T::from_f32_lossy(bad);
            p.k[j] = T::from_f32_lossy(bad);
            let runs = check_all_kernels(dev, &layout, &p, &format!("k = {bad}"));
            if causal {
                for r in &runs {
                    assert!(
                        r.out[..70 * d].iter().all(|x| x.is_finite()),
                        "rows before key 70"
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_nan_or_inf_in_k_makes_the_rows_that_see_it_nan() {
    let dev = gpu();
    k_case::<bf16>(&dev, 64);
    k_case::<f16>(&dev, 64);
    k_case::<f16>(&dev, 128);
}

/// `+inf` in Q (row 3 of batch 0, head 1) and in the key-padding mask (key 5 of batch 0), with
/// batch 1 fully masked by the padding mask: zero output, lse = -inf and zero gradients there.
fn q_kpm_case<T: Element + RefElement + DeviceRepr + ValidAsZeroBits>(dev: &CudaDevice, d: usize) {
    let s = shape(2, 2, 200, d);
    let layout = make_layout(4, 2, 16, 200, false, 0);
    for causal in [false, true] {
        let mut p = Problem::<T>::new(s, causal, false, 11);
        let at = p.at(0, 1, 3, 0);
        p.q[at] = T::from_f32_lossy(f32::INFINITY);
        // Key 0 (seen by row 3, causal or not) gets a positive factor: a +inf score.
        let key0 = p.at(0, 1, 0, 0);
        p.k[key0] = T::from_f32_lossy(0.5);
        let runs = check_all_kernels(dev, &layout, &p, "q = +inf");
        for r in &runs {
            let row = 200 + 3; // (batch 0, head 1, row 3)
            assert!(
                r.lse[row].is_nan() && r.out[row * d..(row + 1) * d].iter().all(|x| x.is_nan())
            );
            assert!(r.lse[row - 1].is_finite());
        }

        let mut p = Problem::<T>::new(s, causal, false, 12);
        let mut kpm = vec![0.0f32; 400];
        kpm[5] = f32::INFINITY;
        kpm[200..].fill(f32::NEG_INFINITY);
        p.kpm = Some(kpm);
        let half = s.qkv_len() / 2;
        for r in &check_all_kernels(dev, &layout, &p, "kpm = +inf") {
            // Batch 0: every row that sees key 5 (all of them, or from row 5 on with causal).
            let first = if causal { 5 } else { 0 };
            for h in 0..2 {
                let rows = &r.lse[h * 200..(h + 1) * 200];
                assert!(
                    rows[first..].iter().all(|x| x.is_nan())
                        && rows[..first].iter().all(|x| x.is_finite())
                );
            }
            // Batch 1, fully masked: the old convention, gradients exactly zero.
            assert!(r.out[half..].iter().all(|&x| x == 0.0));
            assert!(r.lse[400..].iter().all(|&x| x == f32::NEG_INFINITY));
            for g in [&r.dq, &r.dk, &r.dv] {
                assert!(g[half..].iter().all(|&x| x == 0.0));
            }
        }
    }
}

#[test]
fn gpu_plus_inf_in_q_or_the_padding_mask_is_nan_not_zero() {
    let dev = gpu();
    q_kpm_case::<bf16>(&dev, 64);
    q_kpm_case::<f16>(&dev, 64);
    q_kpm_case::<bf16>(&dev, 128);
}

/// BigBird's global rows and columns at L = 1200 are split into pieces on a GPU of any size
/// (as in `gpu_split_rows_match_whole_rows`): a NaN in one piece must make the combined row NaN,
/// also when every other piece saw no key (lse -inf), and an all-masked split row stays zero.
fn split_case<T: Element + RefElement + DeviceRepr + ValidAsZeroBits>(dev: &CudaDevice, d: usize) {
    let mut c = BigBirdConfig::new(2);
    c.block = 64;
    c.num_global_blocks = 2;
    let layout = c.make_layout(1200).unwrap();
    let t = CoarseTables::new(&layout);
    let sm = dev.sm_count();
    assert!(!t.forward_plan(t.forward_split_chunks(sm)).split.is_empty());
    assert!(
        !t.backward_plan(t.backward_split_chunks(sm))
            .split
            .is_empty()
    );
    let s = shape(2, 2, 1200, d);

    // NaN in key 700 of (batch 0, head 0): the global rows see it in one of their pieces.
    let mut p = Problem::<T>::new(s, false, false, 21);
    let at = p.at(0, 0, 700, 3);
    p.k[at] = T::from_f32_lossy(f32::NAN);
    for r in &check_all_kernels(dev, &layout, &p, "split, k = NaN") {
        assert!(
            r.lse[..128].iter().all(|x| x.is_nan()),
            "global rows of (0, 0)"
        );
    }

    // Batch 0 sees only key 700, at +inf: the global rows' other pieces have lse = -inf. Batch
    // 1 sees no key at all.
    let mut p = Problem::<T>::new(s, false, false, 22);
    let mut kpm = vec![f32::NEG_INFINITY; 2400];
    kpm[700] = f32::INFINITY;
    p.kpm = Some(kpm);
    for r in &check_all_kernels(dev, &layout, &p, "split, kpm = +inf / -inf") {
        for h in 0..2 {
            assert!(
                r.lse[h * 1200..h * 1200 + 128].iter().all(|x| x.is_nan()),
                "global rows of head {h}"
            );
        }
        assert!(r.lse[2400..].iter().all(|&x| x == f32::NEG_INFINITY));
        assert!(r.out[s.qkv_len() / 2..].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn gpu_split_rows_propagate_nan() {
    let dev = gpu();
    split_case::<bf16>(&dev, 64);
    split_case::<f16>(&dev, 128);
}

/// The CPU test's problem (one dense 16 x 16 tile, NaN in row 0, `+inf` in row 1) and a Fixed
/// layout with `+inf` in the key-padding mask against the oracle; the backward refuses a
/// non-finite scale with the CPU's error.
fn softmax_case<T: Element + RefElement + DeviceRepr>(dev: &CudaDevice) {
    let (rtol, atol): (f64, f64) = match T::DTYPE {
        DType::F32 => (5e-4, 5e-5),
        DType::F16 => (3e-2, 2e-3),
        DType::BF16 => (5e-2, 1e-2),
    };
    let tile = Layout::from_mask(1, 1, 16, vec![1]).unwrap();
    let gl = CudaAttentionLayout::new(dev, &tile).unwrap();
    let mut x = vec![T::from_f32_lossy(0.0); 256];
    x[3] = T::from_f32_lossy(f32::NAN);
    x[16 + 2] = T::from_f32_lossy(f32::INFINITY);
    let dx_ = dev.upload(&x).unwrap();
    let mut y = sentinel::<T>(dev, 256);
    softmax_forward_cuda(dev, &gl, 1, &dx_, &CudaSoftmaxOptions::default(), &mut y).unwrap();
    let got = download(dev, &y);
    assert!(got[..32].iter().all(|v| v.is_nan()), "{:?}", T::DTYPE);
    assert!(
        got[32..]
            .iter()
            .all(|&v| (v as f64 - 1.0 / 16.0).abs() <= atol + rtol / 16.0)
    );
    let mut dx = sentinel::<T>(dev, 256);
    for scale in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let err = softmax_backward_cuda(dev, &gl, 1, &y, &y, scale, &mut dx).unwrap_err();
        assert!(err.to_string().starts_with("scale:"), "{err}");
        assert!(
            matches!(err, E::InvalidArgument { ref what, .. } if what == "scale"),
            "{err}"
        );
    }
    assert!(
        download(dev, &dx).iter().all(|&v| v == SENTINEL),
        "dx written despite the error"
    );

    // Fixed layout, 2 heads, batch 2: key 5 of batch 0 at +inf, batch 1 all -inf.
    let layout = make_layout(0, 2, 16, 128, false, 0);
    let (heads, nb, b) = (2, layout.num_blocks(), 16);
    let n = 2 * layout.nnz() * b * b;
    let x: Vec<T> = Data::new(5).vec(n, -2.0, 2.0);
    let mut kpm = vec![T::from_f32_lossy(0.0); 256];
    kpm[5] = T::from_f32_lossy(f32::INFINITY);
    kpm[128..].fill(T::from_f32_lossy(f32::NEG_INFINITY));
    let gl = CudaAttentionLayout::new(dev, &layout).unwrap();
    let (d_x, d_kpm) = (dev.upload(&x).unwrap(), dev.upload(&kpm).unwrap());
    let opts = CudaSoftmaxOptions {
        scale: 0.4,
        key_padding_mask: Some((&d_kpm).into()),
        ..Default::default()
    };
    let mut y = sentinel::<T>(dev, n);
    softmax_forward_cuda(dev, &gl, 2, &d_x, &opts, &mut y).unwrap();
    let rl = reference::Layout::new(layout.mask(), heads, nb, nb, b);
    let mut ropts = reference::SoftmaxOptions::new(0.4);
    ropts.key_padding = Some(reference::Mask {
        values: &kpm,
        mode: reference::MaskMode::Add,
    });
    let want = reference::block_sparse_softmax(&x, 2, &rl, &ropts).unwrap();
    let got = download(dev, &y);
    assert!(want.iter().any(|w| RefElement::to_f64(*w).is_nan()));
    for (i, (&g, w)) in got.iter().zip(&want).enumerate() {
        let w = RefElement::to_f64(*w);
        assert_eq!(
            g.is_nan(),
            w.is_nan(),
            "y[{i}] = {g}, oracle {w} ({:?})",
            T::DTYPE
        );
        if !w.is_nan() {
            assert!(
                (g as f64 - w).abs() <= atol + rtol * w.abs(),
                "y[{i}] = {g}, oracle {w}"
            );
        }
    }
    assert!(
        got[n / 2..].iter().all(|&v| v == 0.0),
        "batch 1 is fully masked"
    );
}

#[test]
fn gpu_softmax_propagates_nan_and_rejects_a_nan_scale_backward() {
    let dev = gpu();
    softmax_case::<f32>(&dev);
    softmax_case::<f16>(&dev);
    softmax_case::<bf16>(&dev);
}

#[test]
fn gpu_forward_rejects_a_non_finite_scale() {
    let dev = gpu();
    let s = shape(1, 1, 64, 64);
    let layout = make_layout(4, 1, 16, 64, false, 0);
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let x = dev.upload(&vec![bf16::ONE; s.qkv_len()]).unwrap();
    let mut out = sentinel::<bf16>(&dev, s.qkv_len());
    let mut lse = sentinel::<f32>(&dev, 64);
    for scale in [f32::NAN, f32::INFINITY] {
        let opts = CudaAttentionOptions {
            scale: Some(scale),
            ..Default::default()
        };
        let e = attention_forward_cuda(&dev, &gl, s, (&x, &x, &x), &opts, &mut out, &mut lse)
            .unwrap_err();
        assert!(
            matches!(e, E::InvalidArgument { ref what, .. } if what == "scale"),
            "{e}"
        );
    }
}
