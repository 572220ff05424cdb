//! `SparseSelfAttention`'s GPU calls: its layout cache, and its checks before building a layout.

use crate::gpu_support::gpu;
use half::bf16;
use ltd_sparse_attn::cuda::{CudaAttentionGrads, CudaAttentionOptions};
use ltd_sparse_attn::{AttentionShape, FixedConfig, SparseAttnError};

#[test]
fn gpu_tables_are_cached_per_length() {
    let dev = gpu();
    let attn = ltd_sparse_attn::SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let a = attn.cuda_layout(&dev, 100).unwrap();
    let b = attn.cuda_layout(&dev, 110).unwrap(); // same block count (7 blocks of 16)
    let c = attn.cuda_layout(&dev, 200).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(c.heads(), 2);
}

/// `SparseSelfAttention`'s GPU calls check lengths before building a layout (a huge length
/// with short buffers is a length error) and do nothing for an empty batch.
#[test]
fn gpu_module_checks_before_the_layout() {
    use ltd_sparse_attn::SparseSelfAttention;
    let dev = gpu();
    let attn = SparseSelfAttention::new(FixedConfig::new(2).into()).unwrap();
    let x = dev.upload(&[bf16::ZERO; 64]).unwrap();
    let mut out = dev.upload(&[bf16::ZERO; 64]).unwrap();
    let mut lse = dev.upload(&[0.0f32; 4]).unwrap();
    let huge = AttentionShape {
        batch: 1,
        heads: 2,
        seq_len: 1 << 40,
        head_dim: 64,
    };
    let opts = CudaAttentionOptions::default();
    let e = attn
        .forward_cuda(&dev, huge, (&x, &x, &x), &opts, &mut out, &mut lse)
        .unwrap_err();
    assert!(
        matches!(e, SparseAttnError::ShapeMismatch { ref what, .. } if what == "q"),
        "{e}"
    );
    assert!(attn.cache().is_empty(), "no layout was built");
    let empty = AttentionShape {
        batch: 0,
        heads: 2,
        seq_len: 128,
        head_dim: 64,
    };
    let none = dev.upload(&[bf16::ZERO; 1]).unwrap();
    let mut none_out = dev.upload(&[bf16::ZERO; 1]).unwrap();
    let mut none_lse = dev.upload(&[0.0f32; 1]).unwrap();
    attn.forward_cuda(
        &dev,
        empty,
        (none.slice(..0), none.slice(..0), none.slice(..0)),
        &opts,
        none_out.slice_mut(..0),
        none_lse.slice_mut(..0),
    )
    .unwrap();
    let one = || dev.upload(&[bf16::ZERO; 1]).unwrap();
    let (mut a, mut b, mut c) = (one(), one(), one());
    let grads = CudaAttentionGrads::new(a.slice_mut(..0), b.slice_mut(..0), c.slice_mut(..0));
    attn.backward_cuda(
        &dev,
        empty,
        (none.slice(..0), none.slice(..0), none.slice(..0)),
        (none.slice(..0), none_lse.slice(..0)),
        none.slice(..0),
        &opts,
        grads,
    )
    .unwrap();
    assert!(attn.cache().is_empty(), "no layout for an empty batch");
}
