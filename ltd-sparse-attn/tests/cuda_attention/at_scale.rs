//! Every kernel the device runs against the mma.sync one at bench-like sizes, forward and backward.

use crate::common::{Data, kernels, poisoned};
use crate::gpu_support::gpu;
use crate::{
    assert_forwards_agree, assert_grads_agree, backward_with, drop_last_keys_of_row_1,
    forward_with, masked_options, random_qkv,
};
use half::bf16;
use ltd_core::CudaDevice;
use ltd_sparse_attn::cuda::{
    CudaAttentionKernel, CudaAttentionLayout, CudaAttentionOptions, attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, BSLongformerConfig, BigBirdConfig, Layout};

/// Every kernel choice the device runs besides `MmaSync` (the at-scale tests compare them with
/// it).
fn kernels_besides_mma_sync(dev: &CudaDevice) -> Vec<CudaAttentionKernel> {
    kernels(dev)
        .into_iter()
        .filter(|&k| k != CudaAttentionKernel::MmaSync)
        .collect()
}

/// The at-scale tests' layouts of `heads` heads over `seq` tokens: BSLongformer (block 64),
/// BigBird of `bigbird_block` with a different random layout per head, and a block-64 layout
/// holding block (row r, column c) of head h where `on(h, r, c)`.
fn at_scale_layouts(
    heads: usize,
    seq: usize,
    bigbird_block: usize,
    on: impl Fn(usize, usize, usize) -> bool,
) -> (Layout, Layout, Layout) {
    let mut longformer = BSLongformerConfig::new(heads);
    longformer.block = 64;
    let mut bigbird = BigBirdConfig::new(heads);
    bigbird.block = bigbird_block;
    bigbird.different_layout_per_head = true;
    let nb = seq.div_ceil(64);
    let mask: Vec<u8> = (0..heads * nb * nb)
        .map(|i| u8::from(on(i / (nb * nb), (i / nb) % nb, i % nb)))
        .collect();
    (
        longformer.make_layout(seq).unwrap(),
        bigbird.make_layout(seq).unwrap(),
        Layout::from_mask(heads, nb, 64, mask).unwrap(),
    )
}

#[test]
fn gpu_forward_kernels_agree_at_scale() {
    // The reference checks above run small shapes (a few dozen CTAs). At the bench's size
    // (B 4, H 16, L 4096: thousands of work items, several waves of CTAs) compare every other
    // kernel the device runs (Auto, and on an H100 the Hopper ones) with the mma.sync one
    // (itself checked against the reference) on BSLongformer (global rows split into
    // pieces), BigBird with random blocks, and a layout with empty rows between short ones;
    // causal and key padding on half of the cases. WgmmaPairs is the pair forward here.
    let dev = gpu();
    let others = kernels_besides_mma_sync(&dev);
    let (heads, seq) = (16usize, 4096usize);
    // Row r of head h: empty when (7 r + h) % 9 == 0, else the diagonal block, its right
    // neighbour and column 0; row 0 sees every column (split into pieces).
    let (longformer, bigbird, empty_rows) = at_scale_layouts(heads, seq, 64, |h, r, c| {
        r == 0 || ((7 * r + h) % 9 != 0 && (c == r || c == r + 1 || c == 0))
    });
    let layouts = [
        ("bslongformer", longformer),
        ("bigbird", bigbird),
        ("empty rows", empty_rows),
    ];
    let mut data = Data::new(0x9e37_79b9_7f4a_7c15);
    for d in [64usize, 128] {
        let shape = AttentionShape {
            batch: 4,
            heads,
            seq_len: seq,
            head_dim: d,
        };
        let n = shape.qkv_len();
        let [q, k, v] = random_qkv(&dev, &mut data, n);
        let kpm = drop_last_keys_of_row_1(&dev, 4, seq, 1000);
        for (li, (name, layout)) in layouts.iter().enumerate() {
            let gl = CudaAttentionLayout::new(&dev, layout).unwrap();
            // On an H100, WgmmaPairs runs the pair forward: here the two tiles of a pair often
            // see different chunks, and one of them may be empty.
            if dev.compute_capability() == (9, 0) {
                let pairs = CudaAttentionKernel::WgmmaPairs.forward_pairs((9, 0), &gl, d, false);
                assert!(pairs, "{name}: WgmmaPairs should run the pair forward");
                assert!(
                    gl.row_pair_sharing() > 0.5,
                    "{name}: the pairs share only part"
                );
            }
            let masked = (li + d / 64) % 2 == 0;
            let opts = |kernel| masked_options(masked, &kpm, kernel);
            let (want_o, want_l) = forward_with(
                &dev,
                &gl,
                shape,
                (&q, &k, &v),
                &opts(CudaAttentionKernel::MmaSync),
            );
            for &kernel in &others {
                let got = forward_with(&dev, &gl, shape, (&q, &k, &v), &opts(kernel));
                let ctx = format!("{kernel:?}, {name}, D {d}, causal and key padding {masked}");
                assert_forwards_agree(&got, (&want_o[..], &want_l[..]), "mma.sync", &ctx);
            }
        }
    }
}

#[test]
fn gpu_backward_kernels_agree_at_scale() {
    // The backward's reference checks run small shapes too. At a bench-like size (B 2, H 16,
    // L 4000: 63 key chunks, so a pair of chunks has its second past the last) compare dQ, dK
    // and dV of every other kernel the device runs (Auto, which runs the pair backward at
    // D 128 on BigBird block 128; Wgmma; WgmmaPairs everywhere) with the mma.sync one (itself
    // checked against the reference), from the same forward output; long columns are split
    // into pieces (global blocks) and some columns are empty. Causal and key padding on half
    // of the cases.
    let dev = gpu();
    let others = kernels_besides_mma_sync(&dev);
    let (batch, heads, seq) = (2usize, 16usize, 4000usize);
    // Column c of head h: empty when (5 c + h) % 7 == 0, else the diagonal block, the one above
    // and row 0; column 0 is seen by every row (split into pieces).
    let (longformer, bigbird, empty_columns) = at_scale_layouts(heads, seq, 128, |h, r, c| {
        c == 0 || ((5 * c + h) % 7 != 0 && (r == c || r + 1 == c || r == 0))
    });
    // Row r of head h: empty when (7 r + h) % 9 == 0 (no key sees it, so its dq is 0 from the
    // zeroed accumulator alone), else column 0, the diagonal and the block right of it.
    let nb = seq.div_ceil(64);
    let empty_rows = Layout::from_mask(
        heads,
        nb,
        64,
        (0..heads * nb * nb)
            .map(|i| {
                let (h, r, c) = (i / (nb * nb), (i / nb) % nb, i % nb);
                u8::from((7 * r + h) % 9 != 0 && (c == 0 || c == r || c == r + 1))
            })
            .collect(),
    )
    .unwrap();
    let layouts = [
        ("bigbird b128", bigbird),
        ("bslongformer b64", longformer),
        ("empty columns", empty_columns),
        ("empty rows", empty_rows),
    ];
    let mut data = Data::new(0x2545_f491_4f6c_dd1d);
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
        let kpm = drop_last_keys_of_row_1(&dev, batch, seq, 900);
        for (li, (name, layout)) in layouts.iter().enumerate() {
            let gl = CudaAttentionLayout::new(&dev, layout).unwrap();
            let masked = (li + d / 64) % 2 == 1;
            let opts = |kernel| masked_options(masked, &kpm, kernel);
            let mut out = dev.upload(&poisoned::<bf16>(n)).unwrap();
            let mut lse = dev.upload(&vec![f32::NAN; shape.lse_len()]).unwrap();
            let mma = opts(CudaAttentionKernel::MmaSync);
            attention_forward_cuda(&dev, &gl, shape, (&q, &k, &v), &mma, &mut out, &mut lse)
                .unwrap();
            let grads = |opts: &CudaAttentionOptions<bf16>| {
                backward_with(&dev, &gl, shape, (&q, &k, &v), (&out, &lse), &dout, opts)
            };
            let want = grads(&mma);
            for &kernel in &others {
                let got = grads(&opts(kernel));
                let pairs = kernel.backward_pairs(dev.compute_capability(), &gl, d, false);
                let ctx = format!(
                    "{kernel:?} (pair backward {pairs}), {name}, D {d}, causal and key padding {masked}"
                );
                assert_grads_agree(&got, &want, "mma.sync", &ctx);
            }
        }
    }
}
