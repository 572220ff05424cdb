//! The gathered Hopper kernels: the forward against the CPU reference (and the backward after
//! it), with split rows, at scale, with NaN keys; the gathered-set backward at scale.

use crate::common::{Data, make_layout};
use crate::gpu_support::gpu;
use crate::reference::check;
use crate::{
    assert_forwards_agree, assert_grads_agree, backward_with, drop_last_keys_of_row_1,
    forward_with, masked_options, random_qkv,
};
use half::{bf16, f16};
use ltd_core::CudaDevice;
use ltd_sparse_attn::cuda::{
    CoarseTables, CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions,
};
use ltd_sparse_attn::plan::GatheredTables;
use ltd_sparse_attn::{AttentionShape, BigBirdConfig, Direction, FixedConfig, Layout};

/// Layouts of block 16 and 32 whose key chunks mostly hold one or two active 16-key slices per
/// query tile, so the gathered forward packs them: Fixed (bi- and unidirectional, windows of one
/// chunk), BigBird of block 16 and 32, Variable of block 16 and 32, and "stripes" (block 16:
/// the diagonal, slice 3 of every chunk for all rows, slice 1 of every other chunk for even
/// rows; long enough rows are split into pieces).
fn gathered_layouts(heads: usize, seq: usize, seed: u64) -> Vec<(&'static str, Layout)> {
    let fixed = |dir| {
        let mut c = FixedConfig::new(heads);
        c.num_local_blocks = 4;
        c.attention = dir;
        c.make_layout(seq).unwrap()
    };
    let mut bigbird32 = BigBirdConfig::new(heads);
    bigbird32.block = 32;
    bigbird32.seed = seed;
    vec![
        ("fixed b16", fixed(Direction::Bidirectional)),
        ("fixed b16 unidirectional", fixed(Direction::Unidirectional)),
        ("bigbird b16", make_layout(1, heads, 16, seq, false, seed)),
        ("bigbird b32", bigbird32.make_layout(seq).unwrap()),
        ("variable b16", make_layout(3, heads, 16, seq, false, seed)),
        ("variable b32", make_layout(3, heads, 32, seq, true, seed)),
        ("stripes b16", stripes(heads, seq)),
    ]
}

/// The "stripes" layout of [`gathered_layouts`].
fn stripes(heads: usize, seq: usize) -> Layout {
    let nb = seq.div_ceil(16);
    let mask: Vec<u8> = (0..heads * nb * nb)
        .map(|i| {
            let (r, c) = ((i / nb) % nb, i % nb);
            u8::from(c == r || c % 4 == 3 || (c % 8 == 1 && r % 2 == 0))
        })
        .collect();
    Layout::from_mask(heads, nb, 16, mask).unwrap()
}

/// Whether the gathered forward runs for `kernel` on `layout` (no bias), building its tables.
fn runs_gathered(dev: &CudaDevice, layout: &Layout, kernel: CudaAttentionKernel) -> bool {
    let gl = CudaAttentionLayout::new(dev, layout).unwrap();
    kernel.forward_gathered(dev.compute_capability(), &gl, false)
}

/// The device when it runs the gathered forward (compute capability 9.0), else `None` after a
/// note that the test has nothing to check.
fn gathered_gpu() -> Option<CudaDevice> {
    let dev = gpu();
    if CudaAttentionKernel::WgmmaGathered.runs_on(dev.compute_capability()) {
        Some(dev)
    } else {
        eprintln!("the gathered forward runs on compute capability 9.0 only: nothing to check");
        None
    }
}

#[test]
fn gpu_gathered_forward_matches_reference() {
    // The gathered Hopper forward (forced, so it cannot pass on the plain path) against the
    // reference, and the backward after it: every gathered layout, lengths that are not
    // multiples of 64 or 16, D 64 and 128, bf16 and f16, causal and key padding each on and off.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let cases = [
        (1000usize, 64usize, false, true, true),
        (777, 128, true, false, false),
        (1001, 64, true, true, false),
        (960, 128, false, false, true),
    ];
    for (i, &(seq, d, causal, kpm, bf)) in cases.iter().enumerate() {
        for (name, layout) in gathered_layouts(2, seq, i as u64) {
            assert!(runs_gathered(&dev, &layout, forced), "{name} L {seq}");
            let seed = 100 + i as u64;
            if bf {
                check::<bf16>(
                    &dev, &layout, 2, 2, seq, d, causal, kpm, false, seed, forced,
                );
            } else {
                check::<f16>(
                    &dev, &layout, 2, 2, seq, d, causal, kpm, false, seed, forced,
                );
            }
        }
    }
    // Auto takes it where the gathered table is markedly shorter (Fixed b16), never with a bias.
    let (_, fixed) = gathered_layouts(2, 1000, 0).swap_remove(0);
    assert!(runs_gathered(&dev, &fixed, CudaAttentionKernel::Auto));
    assert!(!runs_gathered(&dev, &fixed, CudaAttentionKernel::Wgmma));
    let gl = CudaAttentionLayout::new(&dev, &fixed).unwrap();
    assert!(!CudaAttentionKernel::Auto.forward_gathered((9, 0), &gl, true));
    let auto = CudaAttentionKernel::Auto;
    check::<bf16>(&dev, &fixed, 1, 2, 1000, 128, true, true, false, 5, auto);
    // With a bias the plain forward runs (no gathered bias kernel).
    check::<f16>(&dev, &fixed, 1, 2, 1000, 64, false, false, true, 6, forced);
}

#[test]
fn gpu_gathered_forward_split_rows_match_reference() {
    // Rows of the stripes layout hold more gathered chunks than a piece (16 entries) at
    // L = 4500, so they are split and combined; forward and backward against the reference.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let seq = 4500;
    let layout = stripes(1, seq);
    let g = GatheredTables::new(&CoarseTables::new(&layout));
    assert!(
        !g.forward_plan(g.forward_split_chunks(dev.sm_count()))
            .split
            .is_empty()
    );
    assert!(runs_gathered(&dev, &layout, forced));
    check::<bf16>(&dev, &layout, 1, 1, seq, 64, false, true, false, 21, forced);
    check::<f16>(
        &dev, &layout, 1, 1, seq, 128, true, false, false, 22, forced,
    );
}

#[test]
fn gpu_gathered_forward_agrees_with_plain_at_scale() {
    // The bench's Fixed block-16 layout (16 local blocks) at L = 16384 (rows of 20 entries, 16
    // of them gathered) and BigBird block 16 at L = 4096 (global rows split): the
    // gathered forward against the plain Hopper one, causal and key padding on half the cases.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let mut fixed = FixedConfig::new(4);
    fixed.num_local_blocks = 16;
    let mut bigbird = BigBirdConfig::new(4);
    bigbird.block = 16;
    bigbird.different_layout_per_head = true;
    let mut data = Data::new(0x5eed);
    for (name, layout, seq) in [
        ("fixed b16", fixed.make_layout(16384).unwrap(), 16384usize),
        ("bigbird b16", bigbird.make_layout(4096).unwrap(), 4096),
    ] {
        let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
        assert!(forced.forward_gathered(dev.compute_capability(), &gl, false));
        assert!(CudaAttentionKernel::Auto.forward_gathered(dev.compute_capability(), &gl, false));
        for d in [64usize, 128] {
            let shape = AttentionShape {
                batch: 2,
                heads: 4,
                seq_len: seq,
                head_dim: d,
            };
            let n = shape.qkv_len();
            let [q, k, v] = random_qkv(&dev, &mut data, n);
            let kpm = drop_last_keys_of_row_1(&dev, 2, seq, seq / 3);
            let masked = d == 128;
            let opts = |kernel| masked_options(masked, &kpm, kernel);
            let plain = opts(CudaAttentionKernel::Wgmma);
            let (want_o, want_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &plain);
            let got = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(forced));
            let ctx = format!("{name}, D {d}, causal and key padding {masked}");
            assert_forwards_agree(&got, (&want_o[..], &want_l[..]), "plain", &ctx);
        }
    }
}

#[test]
fn gpu_gathered_backward_agrees_with_plain_at_scale() {
    // The gathered-set backward (forced) against the plain Hopper one from the same forward
    // output: the bench's Fixed block-16 layout (a global slice per window in every column) at
    // L = 4000 (a partial last chunk), BigBird block 16 with a layout per head, and stripes
    // (long set columns, split into pieces); causal and key padding on half the cases.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let (batch, heads, seq) = (2usize, 4usize, 4000usize);
    let mut fixed = FixedConfig::new(heads);
    fixed.num_local_blocks = 16;
    let mut bigbird = BigBirdConfig::new(heads);
    bigbird.block = 16;
    bigbird.different_layout_per_head = true;
    let mut data = Data::new(0x6a7b);
    for (li, (name, layout)) in [
        ("fixed b16", fixed.make_layout(seq).unwrap()),
        ("bigbird b16", bigbird.make_layout(seq).unwrap()),
        ("stripes b16", stripes(heads, seq)),
    ]
    .into_iter()
    .enumerate()
    {
        let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
        assert!(
            forced.backward_gathered(dev.compute_capability(), &gl, false),
            "{name}"
        );
        for d in [64usize, 128] {
            let shape = AttentionShape {
                batch,
                heads,
                seq_len: seq,
                head_dim: d,
            };
            let n = shape.qkv_len();
            let [q, k, v] = random_qkv(&dev, &mut data, n);
            let dout = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
            let kpm = drop_last_keys_of_row_1(&dev, batch, seq, seq / 3);
            let masked = (li + d / 64) % 2 == 1;
            let opts = |kernel| masked_options(masked, &kpm, kernel);
            let plain = opts(CudaAttentionKernel::Wgmma);
            let (out, lse) = forward_with(&dev, &gl, shape, (&q, &k, &v), &plain);
            // The output came from bf16, so it converts back exactly.
            let out: Vec<bf16> = out.iter().map(|&x| bf16::from_f32(x)).collect();
            let (out, lse) = (dev.upload(&out).unwrap(), dev.upload(&lse).unwrap());
            let grads = |opts: &CudaAttentionOptions<bf16>| {
                backward_with(&dev, &gl, shape, (&q, &k, &v), (&out, &lse), &dout, opts)
            };
            let ctx = format!("{name}, D {d}, causal and key padding {masked}");
            assert_grads_agree(&grads(&opts(forced)), &grads(&plain), "plain", &ctx);
        }
    }
}

#[test]
fn gpu_gathered_forward_nan_key_poisons_exactly_the_rows_that_see_it() {
    // A NaN in one key of K poisons (NaN output and lse) exactly the rows that see that key
    // (layout, causal), in the gathered forward as on the CPU path: key 1020 is in the summary
    // block of window 3 (a gathered slice of every other window's tiles), key 1000 in window 3
    // only (its slice is in no gathered chunk; the plain kernel loads it with the summary slice
    // and masks it). Every other row is finite and equals the plain forward's.
    let Some(dev) = gathered_gpu() else { return };
    let forced = CudaAttentionKernel::WgmmaGathered;
    let seq = 2000;
    let mut c = FixedConfig::new(1);
    c.num_local_blocks = 16; // windows of 256 keys, block 16
    let layout = c.make_layout(seq).unwrap();
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    assert!(forced.forward_gathered(dev.compute_capability(), &gl, false));
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: seq,
        head_dim: 64,
    };
    let n = shape.qkv_len();
    let mut data = Data::new(77);
    let q = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
    let v = dev.upload(&data.vec::<bf16>(n, -1.0, 1.0)).unwrap();
    let k_host: Vec<bf16> = data.vec(n, -1.0, 1.0);
    for bad in [1020usize, 1000] {
        let mut kh = k_host.clone();
        kh[bad * 64 + 5] = bf16::NAN;
        let k = dev.upload(&kh).unwrap();
        for causal in [false, true] {
            let opts = |kernel| CudaAttentionOptions::<bf16> {
                causal,
                kernel,
                ..Default::default()
            };
            let (got_o, got_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(forced));
            let plain = opts(CudaAttentionKernel::Wgmma);
            let (want_o, want_l) = forward_with(&dev, &gl, shape, (&q, &k, &v), &plain);
            let mut poisoned_rows = 0;
            for row in 0..seq {
                let sees = layout.is_active(0, row / 16, bad / 16) && (!causal || bad <= row);
                let ctx = format!("NaN key {bad}, row {row}, causal {causal}");
                let o = &got_o[row * 64..(row + 1) * 64];
                if sees {
                    poisoned_rows += 1;
                    assert!(got_l[row].is_nan(), "lse {} ({ctx})", got_l[row]);
                    assert!(o.iter().all(|x| x.is_nan()), "{ctx}");
                    continue;
                }
                let (w, wo) = (want_l[row], &want_o[row * 64..(row + 1) * 64]);
                assert!(!got_l[row].is_nan(), "{ctx}");
                assert!(
                    got_l[row] == w || (got_l[row] - w).abs() <= 1e-3 * (1.0 + w.abs()),
                    "{ctx}"
                );
                for (g, w) in o.iter().zip(wo) {
                    assert!(
                        g.is_finite() && (g - w).abs() <= 2e-2 + 1e-2 * w.abs(),
                        "{ctx}: {g} vs {w}"
                    );
                }
            }
            // Key 1020 is seen by every row without the causal mask, key 1000 by window 3 only.
            assert!(poisoned_rows > 0, "key {bad}");
            assert!(
                bad == 1020 || poisoned_rows < seq,
                "key {bad}: {poisoned_rows} rows"
            );
        }
    }
}
