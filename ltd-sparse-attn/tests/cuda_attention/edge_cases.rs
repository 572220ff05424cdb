//! Hard cases: long rows, a tile past the end, split rows, bias tiles, fully masked rows.

use crate::common::{kernels, make_layout};
use crate::gpu_support::gpu;
use crate::reference::check;
use half::{bf16, f16};
use ltd_sparse_attn::cuda::{
    CoarseTables, CudaAttentionGrads, CudaAttentionLayout, CudaAttentionOptions,
    attention_backward_cuda, attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, BigBirdConfig};

#[test]
fn gpu_fused_forward_long_sequence() {
    // Many chunks per query tile (online softmax across chunks), block 16 and 128.
    let dev = gpu();
    for kernel in kernels(&dev) {
        for (block, family, d) in [(16, 0u8, 64), (128, 2, 128), (64, 1, 64), (32, 3, 128)] {
            let layout = make_layout(family, 2, block, 1000, false, 3);
            check::<bf16>(
                &dev,
                &layout,
                1,
                2,
                1000,
                d,
                true,
                true,
                block == 64,
                7,
                kernel,
            );
        }
    }
}

#[test]
fn gpu_query_tile_past_the_end() {
    // L = 900 with block 128: the layout covers 1024 rows, so its last 64-row query tile
    // (rows 960..1024) lies entirely past L. The backward still visits it for every key chunk
    // whose column holds that block (its rows see no key and add nothing) and must find its
    // row statistics there.
    let dev = gpu();
    for kernel in kernels(&dev) {
        for (family, d, causal) in [(4u8, 64, false), (1, 128, true), (2, 64, false)] {
            let layout = make_layout(family, 2, 128, 900, false, 5);
            check::<bf16>(&dev, &layout, 2, 2, 900, d, causal, true, false, 11, kernel);
        }
    }
}

#[test]
fn gpu_fully_masked_rows_are_zero() {
    let dev = gpu();
    let layout = make_layout(4, 1, 16, 40, false, 0);
    let shape = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: 40,
        head_dim: 64,
    };
    let x = dev
        .upload(&vec![bf16::from_f32(0.25); shape.qkv_len()])
        .unwrap();
    let kpm = dev.upload(&[f32::NEG_INFINITY; 40]).unwrap();
    let gl = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let mut out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
    let mut lse = dev.upload(&[f32::NAN; 40]).unwrap();
    // Every kernel; the backward below recomputes the forward with Auto.
    for kernel in kernels(&dev) {
        let opts = CudaAttentionOptions {
            key_padding_mask: Some((&kpm).into()),
            kernel,
            ..Default::default()
        };
        attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &opts, &mut out, &mut lse).unwrap();
        assert!(
            dev.download(&out)
                .unwrap()
                .iter()
                .all(|v| v.to_f32() == 0.0),
            "{kernel:?}"
        );
        assert!(
            dev.download(&lse)
                .unwrap()
                .iter()
                .all(|&v| v == f32::NEG_INFINITY),
            "{kernel:?}"
        );
        // Poison again so the next call must write everything.
        out = dev.upload(&vec![bf16::NAN; shape.qkv_len()]).unwrap();
        lse = dev.upload(&[f32::NAN; 40]).unwrap();
    }
    let opts = CudaAttentionOptions {
        key_padding_mask: Some((&kpm).into()),
        ..Default::default()
    };
    attention_forward_cuda(&dev, &gl, shape, (&x, &x, &x), &opts, &mut out, &mut lse).unwrap();
    // Their gradients are zero too (not NaN).
    let n = shape.qkv_len();
    let (mut gq, mut gk, mut gv) = (
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
        dev.upload(&vec![bf16::NAN; n]).unwrap(),
    );
    attention_backward_cuda(
        &dev,
        &gl,
        shape,
        (&x, &x, &x),
        (&out, &lse),
        &x,
        &opts,
        CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv),
    )
    .unwrap();
    for g in [&gq, &gk, &gv] {
        assert!(dev.download(g).unwrap().iter().all(|v| v.to_f32() == 0.0));
    }
}

#[test]
fn gpu_split_rows_match_whole_rows() {
    // BigBird's global rows and columns (19 chunks at L = 1200, pieces of at most 16) are split
    // on a GPU of any size (also the pair forward's pairs of rows): compare with the reference
    // through the regular check (forward and backward, every kernel the device runs), causal,
    // key padding and bias included.
    let dev = gpu();
    let mut c = BigBirdConfig::new(2);
    c.block = 64;
    c.num_global_blocks = 2;
    let layout = c.make_layout(1200).unwrap();
    let t = CoarseTables::new(&layout);
    let (fwd, bwd) = (
        t.forward_split_chunks(dev.sm_count()),
        t.backward_split_chunks(dev.sm_count()),
    );
    assert!(!t.forward_plan(fwd).split.is_empty());
    assert!(!t.backward_plan(bwd).split.is_empty());
    assert!(!t.backward_pair_plan(bwd).split.is_empty());
    // The pair forward (WgmmaPairs): 19 tiles, so the last pair has no second tile.
    let pair_plan = t.forward_pair_plan(t.forward_pair_split_chunks(dev.sm_count()));
    assert!(!pair_plan.split.is_empty());
    assert_eq!(t.num_qtiles % 2, 1);
    for kernel in kernels(&dev) {
        check::<bf16>(
            &dev, &layout, 2, 2, 1200, 64, false, true, false, 11, kernel,
        );
        check::<f16>(
            &dev, &layout, 1, 2, 1200, 128, true, false, true, 12, kernel,
        );
    }
}

#[test]
fn gpu_split_rows_of_the_pair_backward_match_whole_rows() {
    // Block 128: adjacent key chunks see the same query tiles, so at head dim 128 the pair
    // backward runs (`Auto` and `WgmmaPairs` the pair kernel, `WgmmaWarpSpecialized` its
    // warp-specialised variant). BigBird's two global columns (38 query tiles at L = 2400, pieces
    // of at most 16) are split: compare with the reference, with and without causal and key
    // padding. Named `split_rows` so that the sanitizer runs of the split-row tests cover it.
    // Off compute capability 9.0 no pair backward runs: the test says so and checks nothing.
    let dev = gpu();
    let mut c = BigBirdConfig::new(2);
    c.block = 128;
    c.num_global_blocks = 2;
    let layout = c.make_layout(2400).unwrap();
    let t = CoarseTables::new(&layout);
    let bwd = t.backward_split_chunks(dev.sm_count());
    assert!(!t.backward_pair_plan(bwd).split.is_empty());
    let cc = dev.compute_capability();
    if cc != (9, 0) {
        eprintln!("the pair backward runs on compute capability 9.0 only: nothing to check");
        return;
    }
    let gpu_layout = CudaAttentionLayout::new(&dev, &layout).unwrap();
    let pair_kernels: Vec<_> = kernels(&dev)
        .into_iter()
        .filter(|k| k.backward_pairs(cc, &gpu_layout, 128, false))
        .collect();
    assert_eq!(pair_kernels.len(), 3, "{pair_kernels:?}");
    assert!(
        pair_kernels
            .iter()
            .any(|k| k.backward_warp_specialized(cc, &gpu_layout, 128, false))
    );
    for kernel in pair_kernels {
        check::<bf16>(
            &dev, &layout, 1, 2, 2400, 128, false, true, false, 13, kernel,
        );
        check::<f16>(
            &dev, &layout, 1, 2, 2400, 128, true, false, false, 14, kernel,
        );
    }
}

#[test]
fn gpu_bias_tiles_and_per_element_bias_match_the_reference() {
    // The kernels read a bias one 64 x 64 tile per (query tile, chunk) (TMA on Hopper,
    // cp.async in the mma.sync ones, whose forward takes the tiles only where they keep its
    // CTAs per SM: on an H100, not on an A100) when its rows are 16-byte multiples
    // (L % 8 == 0), and per element otherwise: both against the reference, with dbias, on a
    // layout with split rows and columns, every kernel.
    let dev = gpu();
    let mut c = BigBirdConfig::new(2);
    c.block = 64;
    c.num_global_blocks = 2;
    for (seq, causal, kpm) in [
        (1200, false, true),
        (1196, true, false),
        (1131, false, false),
    ] {
        let layout = c.make_layout(seq).unwrap();
        // The global rows and columns are split into pieces on this device (so the bias reaches
        // the partial outputs and the combine kernels too).
        let t = CoarseTables::new(&layout);
        let sm = dev.sm_count();
        assert!(
            !t.forward_plan(t.forward_split_chunks(sm)).split.is_empty(),
            "L {seq}: no split row"
        );
        assert!(
            !t.backward_plan(t.backward_split_chunks(sm))
                .split
                .is_empty(),
            "L {seq}: no split column"
        );
        for kernel in kernels(&dev) {
            check::<bf16>(&dev, &layout, 2, 2, seq, 64, causal, kpm, true, 21, kernel);
            check::<f16>(&dev, &layout, 1, 2, seq, 128, causal, kpm, true, 22, kernel);
        }
    }
}
