//! The fused GPU attention and block-sparse softmax against `ltd-reference` (dense attention
//! restricted to the layout, f64) and against each other: bf16 and f16, head dims 64 and 128,
//! layout blocks 16/32/64/128, every layout family, lengths that are and are not multiples of the
//! block, causal and key-padding masks, views, bad input. Outputs are poisoned (NaN) first.
//! Without a GPU the `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

// The GPU test support shared with ltd-core's tests (one file, included by path).
#[path = "../../../ltd-core/tests/gpu_support/mod.rs"]
mod gpu_support;

#[path = "../common/mod.rs"]
mod common;

// proptest keeps this target's failure seeds in `tests/proptest-regressions/<module>.txt`: its
// root is a `main.rs`, so proptest's default places them beside this folder.
mod at_scale;
mod edge_cases;
mod errors;
mod gathered;
mod reference;
mod self_attention;
mod softmax;
mod views;

use half::bf16;
use ltd_core::{CudaDevice, Element};
use ltd_sparse_attn::AttentionShape;
use ltd_sparse_attn::cuda::{
    CudaAttentionGrads, CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions,
    attention_backward_cuda, attention_forward_cuda,
};

/// An additive key-padding mask `[batch, seq]` on the device that drops the last `dropped`
/// keys of batch row 1 and keeps everything else.
fn drop_last_keys_of_row_1(
    dev: &CudaDevice,
    batch: usize,
    seq: usize,
    dropped: usize,
) -> cudarc::driver::CudaSlice<f32> {
    let kpm: Vec<f32> = (0..batch * seq)
        .map(|i| {
            if i / seq == 1 && i % seq >= seq - dropped {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    dev.upload(&kpm).unwrap()
}

/// The options of the at-scale comparisons: `kernel`, with (`masked`) or without causal masking
/// and the key-padding mask `kpm`.
fn masked_options(
    masked: bool,
    kpm: &cudarc::driver::CudaSlice<f32>,
    kernel: CudaAttentionKernel,
) -> CudaAttentionOptions<'_, bf16> {
    CudaAttentionOptions {
        causal: masked,
        key_padding_mask: masked.then_some(kpm.into()),
        kernel,
        ..Default::default()
    }
}

/// A bf16 device buffer, downloaded as f32.
fn download_f32(dev: &CudaDevice, x: &cudarc::driver::CudaSlice<bf16>) -> Vec<f32> {
    dev.download(x)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect()
}

/// Q, K and V of a bf16 call on the device.
type Qkv<'a> = (
    &'a cudarc::driver::CudaSlice<bf16>,
    &'a cudarc::driver::CudaSlice<bf16>,
    &'a cudarc::driver::CudaSlice<bf16>,
);

/// Q, K and V of `n` elements each, uniform in [-2, 2], drawn from `data` in that order and
/// uploaded.
fn random_qkv(
    dev: &CudaDevice,
    data: &mut common::Data,
    n: usize,
) -> [cudarc::driver::CudaSlice<bf16>; 3] {
    [(); 3].map(|_| dev.upload(&data.vec::<bf16>(n, -2.0, 2.0)).unwrap())
}

/// Forward output and lse of one kernel on `layout`, outputs poisoned with NaN first.
fn forward_with(
    dev: &CudaDevice,
    gl: &CudaAttentionLayout,
    shape: AttentionShape,
    qkv: Qkv<'_>,
    opts: &CudaAttentionOptions<bf16>,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
    let mut lse = dev.upload(&vec![f32::NAN; shape.lse_len()]).unwrap();
    attention_forward_cuda(dev, gl, shape, qkv, opts, &mut out, &mut lse).unwrap();
    (download_f32(dev, &out), dev.download(&lse).unwrap())
}

/// dQ, dK and dV of one backward kernel on `layout` from a given forward output, the gradients
/// poisoned first.
fn backward_with(
    dev: &CudaDevice,
    gl: &CudaAttentionLayout,
    shape: AttentionShape,
    qkv: Qkv<'_>,
    (out, lse): (
        &cudarc::driver::CudaSlice<bf16>,
        &cudarc::driver::CudaSlice<f32>,
    ),
    dout: &cudarc::driver::CudaSlice<bf16>,
    opts: &CudaAttentionOptions<bf16>,
) -> [Vec<f32>; 3] {
    let n = shape.qkv_len();
    let poison = || dev.upload(&common::poisoned::<bf16>(n)).unwrap();
    let (mut gq, mut gk, mut gv) = (poison(), poison(), poison());
    let g = CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv);
    attention_backward_cuda(dev, gl, shape, qkv, (out, lse), dout, opts, g).unwrap();
    [gq, gk, gv].map(|x| download_f32(dev, &x))
}

/// Asserts that two forwards of one call agree: lse equal (infinities of rows with no visible
/// key) or within 1e-3 relative, outputs within bf16 rounding (both round f32 sums to 8 bits;
/// the sums differ in order only). `want_is` names the kernel `want` came from.
fn assert_forwards_agree(
    (got_o, got_l): &(Vec<f32>, Vec<f32>),
    (want_o, want_l): (&[f32], &[f32]),
    want_is: &str,
    ctx: &str,
) {
    for (i, (g, w)) in got_l.iter().zip(want_l).enumerate() {
        let same = g == w || (g - w).abs() <= 1e-3 * (1.0 + w.abs());
        assert!(same, "lse[{i}] = {g}, {want_is} {w} ({ctx})");
    }
    for (i, (g, w)) in got_o.iter().zip(want_o).enumerate() {
        let close = (g - w).abs() <= 2e-2 + 1e-2 * w.abs();
        assert!(close, "out[{i}] = {g}, {want_is} {w} ({ctx})");
    }
}

/// dQ, dK and dV of two backward kernels (bf16, from the same forward output) agree: both round
/// f32 sums to bf16 and their sums differ in order (dQ's reductions arrive in any order), so
/// each element within 2% of the tensor's largest plus 1% of itself, and the whole tensor within
/// 1% (relative root-mean-square).
fn assert_grads_agree(got: &[Vec<f32>; 3], want: &[Vec<f32>; 3], other: &str, ctx: &str) {
    for (what, g, w) in [
        ("dq", &got[0], &want[0]),
        ("dk", &got[1], &want[1]),
        ("dv", &got[2], &want[2]),
    ] {
        let max = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            assert!(
                g.is_finite() && (g - w).abs() <= 2e-2 * max + 1e-2 * w.abs(),
                "{what}[{i}] = {g}, {other} {w} (max {max}) ({ctx})"
            );
            num += ((g - w) as f64).powi(2);
            den += (*w as f64).powi(2);
        }
        let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
        assert!(rel <= 1e-2, "{what} relative difference {rel} ({ctx})");
    }
}

/// `[pad zeros | parts...]` in one device buffer: the parts then start at `pad`, `pad + len`, ...
fn packed<T: Element + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    pad: usize,
    parts: &[&[T]],
) -> cudarc::driver::CudaSlice<T> {
    let mut host = vec![T::from_f32_lossy(0.0); pad];
    for p in parts {
        host.extend_from_slice(p);
    }
    dev.upload(&host).unwrap()
}
