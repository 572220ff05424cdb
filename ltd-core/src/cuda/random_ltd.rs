//! Random-LTD on the GPU: the keyed-ChaCha sampler, gather / scatter / route and the mask
//! gathers. Same semantics, same validation and bit-identical results as the CPU ops.

use cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};
use ltd_kernels_sys::{
    LTD_ROWS_GATHER, LTD_ROWS_SCATTER, LTD_SAMPLER_WIDE_MIN_SEQ, LtdIndexRowsParams,
    LtdMaskGatherParams, LtdRouteRowsParams, LtdSampleParams, fatbin, names,
};

use super::{CudaDevice, driver_err};
use crate::{CoreError, Element, HiddenLayout, HiddenOrder, Result, SampledIndices};

const MODULE: &str = "random_ltd";

/// Sampled positions `[L, B, r]` (i32, each row sorted ascending, distinct, in `[0, S)`) in GPU
/// memory. Valid by construction: made by [`sample_tokens_cuda`] or uploaded from a (validated)
/// [`SampledIndices`], so the GPU ops never need to re-check the values.
///
/// ```no_run
/// use ltd_core::{CudaDevice, TokenSampler};
/// use ltd_core::cuda::CudaSampledIndices;
/// let dev = CudaDevice::new(0)?;
/// let host = TokenSampler::new(7).sample(0, 2, 4, 128, 32)?;
/// let gpu = CudaSampledIndices::upload(&dev, &host)?;
/// assert_eq!(gpu.download(&dev)?.as_slice(), host.as_slice());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct CudaSampledIndices {
    data: CudaSlice<i32>,
    layers: usize,
    batch: usize,
    reserved: usize,
    seq: usize,
}

impl CudaSampledIndices {
    /// Copies host indices to the GPU.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, TokenSampler, cuda::CudaSampledIndices};
    /// let dev = CudaDevice::new(0)?;
    /// let idx = CudaSampledIndices::upload(&dev, &TokenSampler::new(1).sample(3, 1, 2, 64, 16)?)?;
    /// assert_eq!(idx.reserved(), 16);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn upload(dev: &CudaDevice, host: &SampledIndices) -> Result<CudaSampledIndices> {
        Ok(CudaSampledIndices {
            data: dev.upload(host.as_slice())?,
            layers: host.layers(),
            batch: host.batch(),
            reserved: host.reserved(),
            seq: host.seq(),
        })
    }

    /// Copies the indices back to the host.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, cuda::sample_tokens_cuda};
    /// let dev = CudaDevice::new(0)?;
    /// let host = sample_tokens_cuda(&dev, 1, 0, 2, 2, 64, 8)?.download(&dev)?;
    /// assert_eq!(host.as_slice().len(), 2 * 2 * 8);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn download(&self, dev: &CudaDevice) -> Result<SampledIndices> {
        let data = dev.download(&self.data)?;
        Ok(SampledIndices {
            data,
            layers: self.layers,
            batch: self.batch,
            reserved: self.reserved,
            seq: self.seq,
        })
    }

    /// Number of layers `L`.
    ///
    /// ```no_run
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 3, 2, 64, 8)?.layers(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }
    /// Batch size `B`.
    ///
    /// ```no_run
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 3, 2, 64, 8)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Kept positions per row, `r`.
    ///
    /// ```no_run
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 3, 2, 64, 8)?.reserved(), 8);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }
    /// The sequence length `S` the positions index.
    ///
    /// ```no_run
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 3, 2, 64, 8)?.seq(), 64);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq(&self) -> usize {
        self.seq
    }
    /// The raw `[L, B, r]` device buffer.
    ///
    /// ```no_run
    /// # let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 3, 2, 64, 8)?.as_cuda_slice().len(), 48);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn as_cuda_slice(&self) -> &CudaSlice<i32> {
        &self.data
    }

    /// Samples again into this buffer for a new `(seed, step)`, keeping the shape: no
    /// allocation, one launch (what a training loop does every step).
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, TokenSampler, cuda::sample_tokens_cuda};
    /// let dev = CudaDevice::new(0)?;
    /// let mut idx = sample_tokens_cuda(&dev, 1, 0, 22, 8, 2048, 1024)?;
    /// idx.resample(&dev, 1, 1)?;
    /// assert_eq!(idx.download(&dev)?.as_slice(), TokenSampler::new(1).sample(1, 22, 8, 2048, 1024)?.as_slice());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn resample(&mut self, dev: &CudaDevice, seed: u64, step: u64) -> Result<()> {
        let (l, b, s, r) = (self.layers, self.batch, self.seq, self.reserved);
        sample_tokens_into(dev, seed, step, l, b, s, r, &mut self.data)
    }

    /// The `[B, r]` indices of layer `l` (a view into the buffer).
    fn layer(&self, l: usize) -> Result<CudaView<'_, i32>> {
        if l >= self.layers {
            return Err(CoreError::InvalidSize {
                what: "layer",
                got: l,
                expected: format!("below the number of sampled layers {}", self.layers),
            });
        }
        let n = self.batch * self.reserved;
        Ok(self.data.slice(l * n..(l + 1) * n))
    }
}

fn invalid(what: &'static str, got: usize, expected: impl Into<String>) -> CoreError {
    CoreError::InvalidSize {
        what,
        got,
        expected: expected.into(),
    }
}

/// Samples `[layers, batch, reserved]` sorted positions on the GPU with the keyed-ChaCha
/// algorithm of the design (section 4): bit-identical to
/// [`TokenSampler::sample`](crate::TokenSampler::sample) on the CPU for the same arguments, in
/// one launch for all layers and rows, with no limit on `seq` below 2^31.
///
/// # Errors
/// [`CoreError::InvalidSize`] when `layers`, `batch`, `seq` or `reserved` is 0, `reserved > seq`,
/// `seq >= 2^31` or `layers * batch >= 2^31`; [`CoreError::Cuda`] on a driver failure.
///
/// ```no_run
/// use ltd_core::{CudaDevice, TokenSampler, cuda::sample_tokens_cuda};
/// let dev = CudaDevice::new(0)?;
/// let gpu = sample_tokens_cuda(&dev, 42, 1000, 22, 8, 2048, 1024)?;
/// let cpu = TokenSampler::new(42).sample(1000, 22, 8, 2048, 1024)?;
/// assert_eq!(gpu.download(&dev)?.as_slice(), cpu.as_slice());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn sample_tokens_cuda(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
) -> Result<CudaSampledIndices> {
    for (what, v) in [
        ("layers", layers),
        ("batch", batch),
        ("seq", seq),
        ("reserved", reserved),
    ] {
        if v == 0 {
            return Err(invalid(what, v, "at least 1"));
        }
    }
    if reserved > seq {
        return Err(invalid(
            "reserved",
            reserved,
            format!("at most seq = {seq}"),
        ));
    }
    if seq > i32::MAX as usize {
        return Err(invalid("seq", seq, "below 2^31 (positions are i32)"));
    }
    let rows = layers
        .checked_mul(batch)
        .filter(|&r| r <= i32::MAX as usize);
    let Some(rows) = rows else {
        return Err(invalid(
            "layers * batch",
            layers.saturating_mul(batch),
            "below 2^31",
        ));
    };
    let total = rows.checked_mul(reserved).ok_or(CoreError::SizeOverflow {
        what: "sampled indices",
    })?;
    let stream = dev.stream();
    // SAFETY: every element is written by the kernel before it is read (each row writes exactly
    // `reserved` distinct slots; see the compaction proof in kernels/random_ltd.cu). The tests
    // poison a buffer of the same size first to check this.
    let mut out =
        unsafe { stream.alloc::<i32>(total) }.map_err(driver_err("allocating sampled indices"))?;
    sample_tokens_into(dev, seed, step, layers, batch, seq, reserved, &mut out)?;
    Ok(CudaSampledIndices {
        data: out,
        layers,
        batch,
        reserved,
        seq,
    })
}

/// Launches the sampler into `out` (already validated sizes, `out.len() == layers*batch*reserved`).
#[allow(clippy::too_many_arguments)]
fn sample_tokens_into(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
    out: &mut CudaSlice<i32>,
) -> Result<()> {
    // Keys in shared memory when they fit (one ChaCha pass instead of five), else recomputed.
    let key_bytes = seq * 4;
    let use_smem = key_bytes <= dev.max_dynamic_shared_bytes();
    // 256 threads per row keep more rows resident per SM on short rows; long rows want 512.
    let wide = seq > LTD_SAMPLER_WIDE_MIN_SEQ as usize;
    let threads = if wide { 512 } else { 256 };
    let func = if use_smem {
        let name = if wide {
            names::SAMPLE_TOKENS_SMEM_WIDE
        } else {
            names::SAMPLE_TOKENS_SMEM
        };
        // The entry point's dynamic shared-memory limit follows the keys (raised once per size
        // that exceeds it; the kernel's ~1.3 KB of static shared memory counts against the same
        // 48 KB default, so no size is special-cased here).
        dev.load_function_with_shared(MODULE, fatbin::RANDOM_LTD, name, key_bytes)?
    } else {
        let name = if wide {
            names::SAMPLE_TOKENS_WIDE
        } else {
            names::SAMPLE_TOKENS
        };
        dev.load_function(MODULE, fatbin::RANDOM_LTD, name)?
    };
    let stream = dev.stream();
    let (out_ptr, out_guard) = out.device_ptr_mut(stream);
    let params = LtdSampleParams {
        out: out_ptr,
        seed,
        step,
        layers: layers as i64,
        batch: batch as i64,
        seq: seq as i64,
        reserved: reserved as i64,
    };
    let cfg = LaunchConfig {
        grid_dim: ((layers * batch) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: if use_smem { key_bytes as u32 } else { 0 },
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdSampleParams` by value, as the kernel declares; grid.x = layers * batch
    // rows (< 2^31) and each block writes only out[row*reserved .. (row+1)*reserved), inside
    // `out`, which has layers*batch*reserved elements; the dynamic shared memory is seq*4 bytes
    // when the smem variant runs, exactly what it indexes.
    unsafe { launch.launch(cfg) }.map_err(driver_err("launching ltd_sample_tokens"))?;
    drop(out_guard);
    Ok(())
}

/// A hidden-state tensor in GPU memory: a device buffer and the shape/strides it is read with.
///
/// ```no_run
/// use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHidden};
/// let dev = CudaDevice::new(0)?;
/// let buf = dev.upload(&vec![0.0f32; 2 * 8 * 4])?;
/// let h = CudaHidden::new(&buf, HiddenLayout::contiguous(HiddenOrder::BatchSeq, 2, 8, 4)?)?;
/// assert_eq!(h.layout().seq(), 8);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct CudaHidden<'a, T> {
    data: &'a CudaSlice<T>,
    layout: HiddenLayout,
}

impl<'a, T> CudaHidden<'a, T> {
    /// Checks that `data` covers `layout`.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHidden};
    /// let dev = CudaDevice::new(0)?;
    /// let small = dev.upload(&[0.0f32; 3])?;
    /// assert!(CudaHidden::new(&small, HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, 1, 4)?).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(data: &'a CudaSlice<T>, layout: HiddenLayout) -> Result<Self> {
        check_covers("hidden states", data.len(), &layout)?;
        Ok(CudaHidden { data, layout })
    }
    /// The shape and strides.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHidden};
    /// # let dev = CudaDevice::new(0)?; let b = dev.upload(&[0.0f32; 4])?;
    /// let h = CudaHidden::new(&b, HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, 1, 4)?)?;
    /// assert_eq!(h.layout().channels(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layout(&self) -> &HiddenLayout {
        &self.layout
    }
}

/// A writable hidden-state tensor in GPU memory (rows must not overlap).
///
/// ```no_run
/// use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHiddenMut};
/// let dev = CudaDevice::new(0)?;
/// let mut buf = dev.upload(&vec![0.0f32; 2 * 8 * 4])?;
/// let y = CudaHiddenMut::new(&mut buf, HiddenLayout::contiguous(HiddenOrder::SeqBatch, 2, 8, 4)?)?;
/// assert_eq!(y.layout().batch(), 2);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct CudaHiddenMut<'a, T> {
    data: &'a mut CudaSlice<T>,
    layout: HiddenLayout,
}

impl<'a, T> CudaHiddenMut<'a, T> {
    /// Checks that `data` covers `layout` and that no two rows share elements.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHiddenMut};
    /// let dev = CudaDevice::new(0)?;
    /// let mut b = dev.upload(&[0.0f32; 16])?;
    /// // Sequence stride 2 < C = 4: rows overlap, which an output must not do.
    /// let l = HiddenLayout::strided(HiddenOrder::BatchSeq, 1, 3, 4, 12, 2)?;
    /// assert!(CudaHiddenMut::new(&mut b, l).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(data: &'a mut CudaSlice<T>, layout: HiddenLayout) -> Result<Self> {
        check_covers("output", data.len(), &layout)?;
        layout.check_rows_disjoint("output")?;
        Ok(CudaHiddenMut { data, layout })
    }
    /// The shape and strides.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHiddenMut};
    /// # let dev = CudaDevice::new(0)?; let mut b = dev.upload(&[0.0f32; 4])?;
    /// let y = CudaHiddenMut::new(&mut b, HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, 1, 4)?)?;
    /// assert_eq!(y.layout().seq(), 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layout(&self) -> &HiddenLayout {
        &self.layout
    }
}

fn check_covers(what: &'static str, len: usize, layout: &HiddenLayout) -> Result<()> {
    let needed = layout.min_buffer_len();
    if len < needed {
        return Err(CoreError::BufferTooSmall {
            what,
            got: len,
            needed,
        });
    }
    for (name, v) in [
        ("batch", layout.batch()),
        ("seq", layout.seq()),
        ("channels", layout.channels()),
    ] {
        if v == 0 {
            return Err(invalid(name, v, "at least 1"));
        }
    }
    if needed > (i64::MAX as usize) / 4 {
        return Err(CoreError::SizeOverflow { what });
    }
    Ok(())
}

/// Word width for a row copy: 16 bytes when every address and row offset allows it, else the
/// element width. Returns (index into the kernel-name tables, width).
fn word_width<T: Element>(
    addresses: &[u64],
    strides_bytes: &[usize],
    row_bytes: usize,
) -> (usize, usize) {
    let all16 = addresses.iter().all(|a| a % 16 == 0)
        && strides_bytes.iter().all(|s| s % 16 == 0)
        && row_bytes.is_multiple_of(16);
    if all16 {
        (0, 16)
    } else if T::DTYPE.size_in_bytes() == 4 {
        (1, 4)
    } else {
        (2, 2)
    }
}

fn check_same_rows(
    what: &'static str,
    a: &HiddenLayout,
    batch: usize,
    seq: usize,
    channels: usize,
    order: HiddenOrder,
) -> Result<()> {
    if a.batch() != batch || a.seq() != seq || a.channels() != channels || a.order() != order {
        return Err(CoreError::ShapeMismatch {
            what,
            got: a.shape().to_vec(),
            expected: order.describe(batch, if seq == a.seq() { "S" } else { "r" }, seq, channels),
        });
    }
    Ok(())
}

fn check_indices_match(idx: &CudaSampledIndices, full: &HiddenLayout) -> Result<()> {
    if idx.batch != full.batch() || idx.seq != full.seq() {
        return Err(CoreError::ShapeMismatch {
            what: "indices",
            got: vec![idx.layers, idx.batch, idx.reserved],
            expected: format!(
                "[L, B={}, r] sampled for S={} (they were sampled for B={}, S={})",
                full.batch(),
                full.seq(),
                idx.batch,
                idx.seq
            ),
        });
    }
    Ok(())
}

/// The checks every row op shares: `idx` was sampled for `full`'s batch and length, `part` has
/// `[B, r, C]` in `full`'s order, and `layer` exists. Returns that layer's `[B, r]` indices.
fn checked_layer<'a>(
    idx: &'a CudaSampledIndices,
    full: &HiddenLayout,
    part: &HiddenLayout,
    layer: usize,
) -> Result<CudaView<'a, i32>> {
    check_indices_match(idx, full)?;
    check_same_rows(
        "part",
        part,
        full.batch(),
        idx.reserved,
        full.channels(),
        full.order(),
    )?;
    idx.layer(layer)
}

const ROWS_PER_BLOCK: usize = 4;

fn rows_launch(rows: usize) -> Result<LaunchConfig> {
    let blocks = rows.div_ceil(ROWS_PER_BLOCK);
    if blocks > i32::MAX as usize {
        return Err(invalid("rows", rows, "below 2^33"));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

#[allow(clippy::too_many_arguments)]
fn launch_index_rows<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    mode: u32,
    src: &CudaSlice<T>,
    src_layout: &HiddenLayout,
    dst: &mut CudaSlice<T>,
    dst_layout: &HiddenLayout,
    idx: &CudaView<'_, i32>,
    seq: usize,
    reserved: usize,
) -> Result<()> {
    let stream = dev.stream();
    let e = T::DTYPE.size_in_bytes();
    let row_bytes = src_layout.channels() * e;
    let (src_ptr, src_guard) = src.device_ptr(stream);
    let (dst_ptr, dst_guard) = dst.device_ptr_mut(stream);
    let (idx_ptr, idx_guard) = idx.device_ptr(stream);
    let strides = [
        src_layout.batch_stride() * e,
        src_layout.seq_stride() * e,
        dst_layout.batch_stride() * e,
        dst_layout.seq_stride() * e,
    ];
    let (which, _) = word_width::<T>(&[src_ptr, dst_ptr], &strides, row_bytes);
    let func = dev.load_function(MODULE, fatbin::RANDOM_LTD, names::INDEX_ROWS[which])?;
    let batch = src_layout.batch();
    let params = LtdIndexRowsParams {
        src: src_ptr,
        dst: dst_ptr,
        idx: idx_ptr,
        mode: mode as i32,
        pad_: 0,
        batch: batch as i64,
        seq: seq as i64,
        reserved: reserved as i64,
        row_bytes: row_bytes as i64,
        src_batch_stride_bytes: strides[0] as i64,
        src_seq_stride_bytes: strides[1] as i64,
        dst_batch_stride_bytes: strides[2] as i64,
        dst_seq_stride_bytes: strides[3] as i64,
        idx_batch_stride: reserved as i64,
    };
    let cfg = rows_launch(batch * reserved)?;
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdIndexRowsParams` by value. The callers checked that both buffers cover
    // their layouts (so every row (b, s) with b < batch, s < seq (or < reserved for the
    // compact side) lies inside its buffer), that `idx` holds batch*reserved entries, and that
    // the word width divides every address, stride and row length; the kernel skips indices
    // outside [0, seq), so even a corrupted index cannot leave the buffers.
    unsafe { launch.launch(cfg) }.map_err(driver_err("launching ltd_index_rows"))?;
    drop((src_guard, dst_guard, idx_guard));
    Ok(())
}

/// Gathers the kept rows of layer `layer`: `part[b, k, :] = h[b, idx[layer, b, k], :]` (rows
/// `[r, B, C]` in the SeqBatch order). GPU counterpart of [`crate::gather`]; also the backward
/// of scatter for the layer output (`grad_part = gather(grad_y)`).
///
/// # Errors
/// Shape mismatches between `h`, `idx` and `part` ([`CoreError::ShapeMismatch`]), a dtype or
/// layer out of range, driver failures.
///
/// ```no_run
/// use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder};
/// use ltd_core::cuda::{CudaHidden, CudaHiddenMut, gather_cuda, sample_tokens_cuda};
/// let dev = CudaDevice::new(0)?;
/// let (b, s, r, c) = (2, 64, 16, 8);
/// let h = dev.upload(&vec![1.0f32; b * s * c])?;
/// let mut part = dev.upload(&vec![0.0f32; b * r * c])?;
/// let idx = sample_tokens_cuda(&dev, 0, 0, 1, b, s, r)?;
/// gather_cuda(
///     &dev,
///     CudaHidden::new(&h, HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, s, c)?)?,
///     &idx, 0,
///     CudaHiddenMut::new(&mut part, HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, r, c)?)?,
/// )?;
/// assert_eq!(dev.download(&part)?, vec![1.0; b * r * c]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    h: CudaHidden<'_, T>,
    idx: &CudaSampledIndices,
    layer: usize,
    part: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let view = checked_layer(idx, &h.layout, &part.layout, layer)?;
    let l = &h.layout;
    launch_index_rows(
        dev,
        LTD_ROWS_GATHER,
        h.data,
        &h.layout,
        part.data,
        &part.layout,
        &view,
        l.seq(),
        idx.reserved,
    )
}

/// Writes the layer output back in place: `y[b, idx[layer, b, k], :] = part[b, k, :]`; other
/// rows of `y` are untouched. GPU counterpart of the CPU in-place scatter; also gather's
/// backward (`grad_h = grad_pass` with the kept rows overwritten by `grad_part`).
///
/// # Errors
/// As [`gather_cuda`].
///
/// ```no_run
/// use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder};
/// use ltd_core::cuda::{CudaHidden, CudaHiddenMut, scatter_cuda, sample_tokens_cuda};
/// let dev = CudaDevice::new(0)?;
/// let (b, s, r, c) = (2, 64, 16, 8);
/// let mut y = dev.upload(&vec![0.0f32; b * s * c])?;
/// let part = dev.upload(&vec![1.0f32; b * r * c])?;
/// let idx = sample_tokens_cuda(&dev, 0, 0, 1, b, s, r)?;
/// scatter_cuda(
///     &dev,
///     CudaHidden::new(&part, HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, r, c)?)?,
///     &idx, 0,
///     CudaHiddenMut::new(&mut y, HiddenLayout::contiguous(HiddenOrder::BatchSeq, b, s, c)?)?,
/// )?;
/// let ones = dev.download(&y)?.iter().filter(|&&v| v == 1.0).count();
/// assert_eq!(ones, b * r * c);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn scatter_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    part: CudaHidden<'_, T>,
    idx: &CudaSampledIndices,
    layer: usize,
    y: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let view = checked_layer(idx, &y.layout, &part.layout, layer)?;
    let l = y.layout;
    launch_index_rows(
        dev,
        LTD_ROWS_SCATTER,
        part.data,
        &part.layout,
        y.data,
        &l,
        &view,
        l.seq(),
        idx.reserved,
    )
}

/// Fused out-of-place route: `y = h` with the kept rows of layer `layer` replaced by the layer
/// output `part`, written in one pass (each row of `y` written once, from `h` or from `part`;
/// no clone of `h` first). Also the backward of the routed layer for `h`: route
/// `(grad_y, grad_from_layer)` gives `grad_h`.
///
/// # Errors
/// As [`gather_cuda`]; `y` must have `h`'s shape.
///
/// ```no_run
/// use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder};
/// use ltd_core::cuda::{CudaHidden, CudaHiddenMut, route_cuda, sample_tokens_cuda};
/// let dev = CudaDevice::new(0)?;
/// let (b, s, r, c) = (2, 64, 16, 8);
/// let full = HiddenLayout::contiguous(HiddenOrder::SeqBatch, b, s, c)?;
/// let kept = HiddenLayout::contiguous(HiddenOrder::SeqBatch, b, r, c)?;
/// let h = dev.upload(&vec![0.0f32; b * s * c])?;
/// let part = dev.upload(&vec![1.0f32; b * r * c])?;
/// let mut y = dev.upload(&vec![f32::NAN; b * s * c])?;
/// let idx = sample_tokens_cuda(&dev, 0, 0, 1, b, s, r)?;
/// route_cuda(&dev, CudaHidden::new(&h, full)?, CudaHidden::new(&part, kept)?, &idx, 0, CudaHiddenMut::new(&mut y, full)?)?;
/// assert_eq!(dev.download(&y)?.iter().sum::<f32>(), (b * r * c) as f32);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    h: CudaHidden<'_, T>,
    part: CudaHidden<'_, T>,
    idx: &CudaSampledIndices,
    layer: usize,
    y: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let view = checked_layer(idx, &h.layout, &part.layout, layer)?;
    let l = h.layout;
    check_same_rows("y", &y.layout, l.batch(), l.seq(), l.channels(), l.order())?;
    let stream = dev.stream();
    let e = T::DTYPE.size_in_bytes();
    let row_bytes = l.channels() * e;
    let (h_ptr, h_guard) = h.data.device_ptr(stream);
    let (p_ptr, p_guard) = part.data.device_ptr(stream);
    let (y_ptr, y_guard) = y.data.device_ptr_mut(stream);
    let (i_ptr, i_guard) = view.device_ptr(stream);
    let strides = [
        l.batch_stride() * e,
        l.seq_stride() * e,
        part.layout.batch_stride() * e,
        part.layout.seq_stride() * e,
        y.layout.batch_stride() * e,
        y.layout.seq_stride() * e,
    ];
    let (which, _) = word_width::<T>(&[h_ptr, p_ptr, y_ptr], &strides, row_bytes);
    let func = dev.load_function(MODULE, fatbin::RANDOM_LTD, names::ROUTE_ROWS[which])?;
    let params = LtdRouteRowsParams {
        h: h_ptr,
        part: p_ptr,
        y: y_ptr,
        idx: i_ptr,
        batch: l.batch() as i64,
        seq: l.seq() as i64,
        reserved: idx.reserved as i64,
        row_bytes: row_bytes as i64,
        h_batch_stride_bytes: strides[0] as i64,
        h_seq_stride_bytes: strides[1] as i64,
        part_batch_stride_bytes: strides[2] as i64,
        part_seq_stride_bytes: strides[3] as i64,
        y_batch_stride_bytes: strides[4] as i64,
        y_seq_stride_bytes: strides[5] as i64,
        idx_batch_stride: idx.reserved as i64,
    };
    let cfg = rows_launch(l.batch() * l.seq())?;
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdRouteRowsParams` by value. All three buffers cover their layouts (checked
    // by CudaHidden/CudaHiddenMut), `idx` rows are sorted and in [0, seq) (CudaSampledIndices is
    // valid by construction), the binary search only reads idx[b, 0..reserved), and the word
    // width divides every address, stride and the row length.
    unsafe { launch.launch(cfg) }.map_err(driver_err("launching ltd_route_rows"))?;
    drop((h_guard, p_guard, y_guard, i_guard));
    Ok(())
}

/// Which mask a [`mask_gather_cuda`] call reads.
///
/// ```
/// use ltd_core::cuda::MaskForm;
/// assert_ne!(MaskForm::Full, MaskForm::KeyPadding);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskForm {
    /// `[B, 1, S, S]`: gathered to `[L, B, 1, r, r]` (decoder masks with L = 1, encoder masks).
    Full,
    /// `[B, 1, 1, S]` (a broadcast key-padding mask): gathered to `[L, B, 1, 1, r]`.
    KeyPadding,
}

/// Gathers a contiguous mask at the kept positions of **all** sampled layers in one launch:
/// `out[l, b, 0, i, j] = mask[b, 0, idx[l,b,i], idx[l,b,j]]` (`Full`) or
/// `out[l, b, 0, 0, j] = mask[b, 0, 0, idx[l,b,j]]` (`KeyPadding`). Works for any 1-, 2- or
/// 4-byte element (bool, u8, f16, bf16, f32, additive or boolean masks): it moves bits.
/// `out` must hold exactly `L*B*r*r` (`Full`) or `L*B*r` (`KeyPadding`) elements.
///
/// # Errors
/// [`CoreError::BufferTooSmall`] / [`CoreError::ShapeMismatch`] on wrong buffer sizes,
/// [`CoreError::InvalidArgument`] for element sizes other than 1, 2, 4.
///
/// ```no_run
/// use ltd_core::{CudaDevice, cuda::{MaskForm, mask_gather_cuda, sample_tokens_cuda}};
/// let dev = CudaDevice::new(0)?;
/// let (b, s, r) = (2, 32, 8);
/// // A causal boolean mask, [B,1,S,S].
/// let mask: Vec<u8> = (0..b * s * s).map(|e| ((e % s) <= (e / s) % s) as u8).collect();
/// let mask = dev.upload(&mask)?;
/// let idx = sample_tokens_cuda(&dev, 0, 0, 1, b, s, r)?;
/// let mut out = dev.upload(&vec![9u8; b * r * r])?;
/// mask_gather_cuda(&dev, &mask, MaskForm::Full, &idx, &mut out)?;
/// // Kept positions are sorted, so a causal mask stays causal.
/// let out = dev.download(&out)?;
/// assert_eq!(out[0..r].iter().filter(|&&v| v == 1).count(), 1);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn mask_gather_cuda<M: DeviceRepr>(
    dev: &CudaDevice,
    mask: &CudaSlice<M>,
    form: MaskForm,
    idx: &CudaSampledIndices,
    out: &mut CudaSlice<M>,
) -> Result<()> {
    let e = std::mem::size_of::<M>();
    let which = match e {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => {
            return Err(CoreError::InvalidArgument {
                what: "mask element size",
                got: format!("{e} bytes"),
                expected: "1, 2 or 4 bytes (bool/u8, f16/bf16, f32/i32)".into(),
            });
        }
    };
    let (b, s, r, layers) = (idx.batch, idx.seq, idx.reserved, idx.layers);
    let (mask_len, out_rows) = match form {
        MaskForm::Full => (b * s * s, r),
        MaskForm::KeyPadding => (b * s, 1),
    };
    if mask.len() != mask_len {
        let expected = match form {
            MaskForm::Full => format!("[B={b}, 1, S={s}, S={s}] = {mask_len} elements"),
            MaskForm::KeyPadding => format!("[B={b}, 1, 1, S={s}] = {mask_len} elements"),
        };
        return Err(CoreError::ShapeMismatch {
            what: "mask",
            got: vec![mask.len()],
            expected,
        });
    }
    let out_len = layers * b * out_rows * r;
    if out.len() != out_len {
        return Err(CoreError::ShapeMismatch {
            what: "gathered mask",
            got: vec![out.len()],
            expected: format!("[L={layers}, B={b}, 1, {out_rows}, r={r}] = {out_len} elements"),
        });
    }
    let func = dev.load_function(MODULE, fatbin::RANDOM_LTD, names::MASK_GATHER[which])?;
    let stream = dev.stream();
    let (m_ptr, m_guard) = mask.device_ptr(stream);
    let (i_ptr, i_guard) = idx.data.device_ptr(stream);
    let (o_ptr, o_guard) = out.device_ptr_mut(stream);
    let (batch_stride, row_stride) = match form {
        MaskForm::Full => (s * s, s),
        MaskForm::KeyPadding => (s, 0),
    };
    let params = LtdMaskGatherParams {
        mask: m_ptr,
        idx: i_ptr,
        out: o_ptr,
        layers: layers as i64,
        batch: b as i64,
        seq: s as i64,
        reserved: r as i64,
        out_rows: out_rows as i64,
        gather_rows: i64::from(form == MaskForm::Full),
        mask_batch_stride: batch_stride as i64,
        mask_row_stride: row_stride as i64,
        mask_col_stride: 1,
    };
    let cfg = LaunchConfig {
        grid_dim: (
            r.div_ceil(128) as u32,
            out_rows.min(65_535) as u32,
            (layers * b).min(65_535) as u32,
        ),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdMaskGatherParams` by value. `mask` has exactly B*S*S (or B*S) elements and
    // every index is in [0, S) (valid by construction, and guarded in the kernel), so each read
    // is inside `mask`; `out` has exactly L*B*out_rows*r elements, the kernel's write range; the
    // grid's y and z dimensions are clamped to 65535 and the kernel loops over the rest.
    unsafe { launch.launch(cfg) }.map_err(driver_err("launching ltd_mask_gather"))?;
    drop((m_guard, i_guard, o_guard));
    Ok(())
}
