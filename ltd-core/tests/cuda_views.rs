//! GPU entry points on views (offsets, u32 indices, raw pointers) and on a caller's stream: the
//! same results as on whole buffers, and kernel images shared per context. Without a GPU the
//! `gpu_*` tests fail (skip them by name there).
#![cfg(feature = "cuda")]

#[allow(dead_code)] // `cases` is for the proptest files
mod gpu_support;

use cudarc::driver::{DevicePtr, DevicePtrMut};
use gpu_support::gpu;
use ltd_core::cuda::{
    CudaHidden, CudaHiddenMut, CudaIndices, DeviceBuf, DeviceBufMut, MaskForm, gather_cuda,
    mask_gather_cuda, route_cuda, sample_tokens_cuda, sample_tokens_cuda_into, scatter_cuda,
};
use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, TokenSampler};

#[test]
fn gpu_from_stream_runs_on_that_stream_and_shares_modules() {
    let dev = gpu();
    let stream = dev.stream().context().new_stream().unwrap();
    let other = CudaDevice::from_stream(stream.clone()).unwrap();
    assert!(std::sync::Arc::ptr_eq(other.stream(), &stream));
    assert!(
        other.shares_modules_with(&dev),
        "one context: one module cache"
    );
    assert_eq!(other.ordinal(), dev.ordinal());
    // Work queued on the caller's stream is ordered by that stream alone.
    let idx = sample_tokens_cuda(&other, 3, 4, 2, 3, 300, 100).unwrap();
    let want = TokenSampler::new(3).sample(4, 2, 3, 300, 100).unwrap();
    assert_eq!(idx.download(&other).unwrap().as_slice(), want.as_slice());
}

#[test]
fn gpu_images_stay_loaded_after_every_handle_is_dropped() {
    let stream = gpu().stream().context().new_stream().unwrap();
    let first = CudaDevice::from_stream(stream.clone()).unwrap();
    sample_tokens_cuda(&first, 1, 0, 1, 2, 64, 16).unwrap();
    let loaded = first.loaded_kernel_images();
    assert!(loaded >= 1, "the sampler's image is loaded");
    drop(first);
    // A new short-lived handle (as a framework makes per op call) finds the images loaded.
    let again = CudaDevice::from_stream(stream).unwrap();
    assert_eq!(again.loaded_kernel_images(), loaded);
}

#[test]
fn gpu_sampler_into_u32_at_an_offset() {
    let dev = gpu();
    let (l, b, s, r) = (3, 2, 500, 123);
    let n = l * b * r;
    let mut out = dev.upload(&vec![u32::MAX; n + 7]).unwrap();
    sample_tokens_cuda_into(&dev, 8, 9, l, b, s, r, out.slice_mut(7..)).unwrap();
    let host = dev.download(&out).unwrap();
    assert!(
        host[..7].iter().all(|&x| x == u32::MAX),
        "nothing before the view is written"
    );
    let want = TokenSampler::new(8).sample(9, l, b, s, r).unwrap();
    let got: Vec<i32> = host[7..].iter().map(|&x| x as i32).collect();
    assert_eq!(got, want.as_slice());
    assert!(sample_tokens_cuda_into(&dev, 8, 9, l, b, s, r, out.slice_mut(8..)).is_err());
}

/// gather / route / scatter with hidden states, parts and indices at offsets (views and raw
/// pointers, u32 indices) give what the whole-buffer calls give.
#[test]
fn gpu_views_match_whole_buffers() {
    let dev = gpu();
    let (b, s, c, r, off) = (3, 80, 12, 30, 5);
    let h_host: Vec<f32> = (0..b * s * c + off).map(|i| i as f32).collect();
    let p_host: Vec<f32> = (0..b * r * c + off).map(|i| -(i as f32)).collect();
    let full = HiddenLayout::contiguous(HiddenOrder::SeqBatch, b, s, c).unwrap();
    let kept = HiddenLayout::contiguous(HiddenOrder::SeqBatch, b, r, c).unwrap();
    let owned = sample_tokens_cuda(&dev, 1, 2, 2, b, s, r).unwrap();
    let idx_host: Vec<u32> = owned
        .download(&dev)
        .unwrap()
        .as_slice()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let mut padded = vec![u32::MAX; off];
    padded.extend(&idx_host);
    let idx_u32 = dev.upload(&padded).unwrap();
    let h = dev.upload(&h_host).unwrap();
    let p = dev.upload(&p_host).unwrap();

    // Reference: whole buffers (copies of the views' ranges), owned indices, layer 1.
    let h0 = dev.upload(&h_host[off..]).unwrap();
    let p0 = dev.upload(&p_host[off..]).unwrap();
    let mut want_part = dev.upload(&vec![0f32; b * r * c]).unwrap();
    gather_cuda(
        &dev,
        CudaHidden::new(&h0, full).unwrap(),
        &owned,
        1,
        CudaHiddenMut::new(&mut want_part, kept).unwrap(),
    )
    .unwrap();
    let mut want_y = dev.upload(&vec![0f32; b * s * c]).unwrap();
    route_cuda(
        &dev,
        CudaHidden::new(&h0, full).unwrap(),
        CudaHidden::new(&p0, kept).unwrap(),
        &owned,
        1,
        CudaHiddenMut::new(&mut want_y, full).unwrap(),
    )
    .unwrap();
    let mut want_sc = h0.clone();
    scatter_cuda(
        &dev,
        CudaHidden::new(&p0, kept).unwrap(),
        &owned,
        1,
        CudaHiddenMut::new(&mut want_sc, full).unwrap(),
    )
    .unwrap();

    // Views at offsets; u32 indices of all layers at an offset.
    let idx = CudaIndices::new(idx_u32.slice(off..), 2, b, r, s).unwrap();
    let mut part = dev.upload(&vec![f32::NAN; b * r * c + off]).unwrap();
    gather_cuda(
        &dev,
        CudaHidden::new(h.slice(off..), full).unwrap(),
        &idx,
        1,
        CudaHiddenMut::new(part.slice_mut(off..), kept).unwrap(),
    )
    .unwrap();
    assert_eq!(
        dev.download(&part).unwrap()[off..],
        dev.download(&want_part).unwrap()[..]
    );
    let mut y = dev.upload(&vec![f32::NAN; b * s * c + off]).unwrap();
    route_cuda(
        &dev,
        CudaHidden::new(h.slice(off..), full).unwrap(),
        CudaHidden::new(p.slice(off..), kept).unwrap(),
        &idx,
        1,
        CudaHiddenMut::new(y.slice_mut(off..), full).unwrap(),
    )
    .unwrap();
    assert_eq!(
        dev.download(&y).unwrap()[off..],
        dev.download(&want_y).unwrap()[..]
    );

    // Raw pointers (a framework's buffers).
    let mut sc = dev.upload(&h_host).unwrap();
    {
        let (pp, _pg) = p.device_ptr(dev.stream());
        let (sp, _sg) = sc.device_ptr_mut(dev.stream());
        // SAFETY: `p` and `sc` hold these many f32 on this device and outlive the launch, which
        // the guards order on this stream; element `off` keeps f32 alignment.
        let part = unsafe { DeviceBuf::<f32>::from_raw(pp + 4 * off as u64, b * r * c) };
        let y = unsafe { DeviceBufMut::<f32>::from_raw(sp + 4 * off as u64, b * s * c) };
        scatter_cuda(
            &dev,
            CudaHidden::new(part, kept).unwrap(),
            &idx,
            1,
            CudaHiddenMut::new(y, full).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(
        dev.download(&sc).unwrap()[off..],
        dev.download(&want_sc).unwrap()[..]
    );

    // Mask gather from a mask view with u32 indices.
    let mask_host: Vec<u8> = (0..b * s * s + off).map(|i| (i % 3) as u8).collect();
    let mask = dev.upload(&mask_host).unwrap();
    let mut got = dev.upload(&vec![9u8; 2 * b * r * r]).unwrap();
    mask_gather_cuda(&dev, mask.slice(off..), MaskForm::Full, &idx, &mut got).unwrap();
    let mask0 = dev.upload(&mask_host[off..]).unwrap();
    let mut want = dev.upload(&vec![9u8; 2 * b * r * r]).unwrap();
    mask_gather_cuda(&dev, &mask0, MaskForm::Full, &owned, &mut want).unwrap();
    assert_eq!(dev.download(&got).unwrap(), dev.download(&want).unwrap());
}
