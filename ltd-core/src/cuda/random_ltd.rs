//! Random-LTD's row moves on the GPU: gather / scatter / route and the mask gathers, on hidden
//! states given as device buffers (whole slices, views at an offset, raw pointers) with any
//! batch and sequence strides. Same semantics, same validation and bit-identical results as the
//! CPU ops.

use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use ltd_kernels_sys::{
    LTD_ROWS_GATHER, LTD_ROWS_SCATTER, LtdIndexRowsParams, LtdMaskGatherParams, LtdRouteRowsParams,
    names,
};

use super::buffer::{DeviceBuf, DeviceBufMut};
use super::indices::{AsCudaIndices, CudaIndices, RANDOM_LTD, invalid};
use super::{CudaDevice, driver_err};
use crate::{CoreError, Element, HiddenLayout, HiddenOrder, Result};

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
    data: DeviceBuf<'a, T>,
    layout: HiddenLayout,
}

impl<'a, T> CudaHidden<'a, T> {
    /// Checks that `data` (a slice, a view at an offset, or a [`DeviceBuf`]) covers `layout`.
    ///
    /// ```no_run
    /// # use ltd_core::{CudaDevice, HiddenLayout, HiddenOrder, cuda::CudaHidden};
    /// let dev = CudaDevice::new(0)?;
    /// let small = dev.upload(&[0.0f32; 3])?;
    /// assert!(CudaHidden::new(&small, HiddenLayout::contiguous(HiddenOrder::BatchSeq, 1, 1, 4)?).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(data: impl Into<DeviceBuf<'a, T>>, layout: HiddenLayout) -> Result<Self> {
        let data = data.into();
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
    data: DeviceBufMut<'a, T>,
    layout: HiddenLayout,
}

impl<'a, T> CudaHiddenMut<'a, T> {
    /// Checks that `data` (a slice, a view at an offset, or a [`DeviceBufMut`]) covers `layout`
    /// and that no two rows share elements.
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
    pub fn new(data: impl Into<DeviceBufMut<'a, T>>, layout: HiddenLayout) -> Result<Self> {
        let data = data.into();
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

fn check_indices_match(idx: &CudaIndices<'_>, full: &HiddenLayout) -> Result<()> {
    if idx.batch() != full.batch() || idx.seq() != full.seq() {
        return Err(CoreError::ShapeMismatch {
            what: "indices",
            got: vec![idx.layers(), idx.batch(), idx.reserved()],
            expected: format!(
                "[L, B={}, r] sampled for S={} (they were sampled for B={}, S={})",
                full.batch(),
                full.seq(),
                idx.batch(),
                idx.seq()
            ),
        });
    }
    Ok(())
}

/// The checks every row op shares: `idx` was sampled for `full`'s batch and length, `part` has
/// `[B, r, C]` in `full`'s order, and `layer` exists.
fn check_layer(
    idx: &CudaIndices<'_>,
    full: &HiddenLayout,
    part: &HiddenLayout,
    layer: usize,
) -> Result<()> {
    check_indices_match(idx, full)?;
    check_same_rows(
        "part",
        part,
        full.batch(),
        idx.reserved(),
        full.channels(),
        full.order(),
    )?;
    if layer >= idx.layers() {
        return Err(invalid(
            "layer",
            layer,
            format!("below the number of sampled layers {}", idx.layers()),
        ));
    }
    Ok(())
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

/// Gather (`mode` = [`LTD_ROWS_GATHER`]) or in-place scatter of the rows of one layer.
fn launch_index_rows<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    mode: u32,
    src: CudaHidden<'_, T>,
    dst: CudaHiddenMut<'_, T>,
    (idx, layer): (&CudaIndices<'_>, usize),
) -> Result<()> {
    let (src_layout, dst_layout) = (src.layout, dst.layout);
    let (seq, reserved) = (idx.seq(), idx.reserved());
    let mut dst_data = dst.data;
    let stream = dev.stream();
    let e = T::DTYPE.size_in_bytes();
    let row_bytes = src_layout.channels() * e;
    let (src_ptr, src_guard) = src.data.ptr(stream);
    let (dst_ptr, dst_guard) = dst_data.ptr_mut(stream);
    let (idx_ptr, idx_guard) = idx.layer_ptr(layer, stream)?;
    let strides = [
        src_layout.batch_stride() * e,
        src_layout.seq_stride() * e,
        dst_layout.batch_stride() * e,
        dst_layout.seq_stride() * e,
    ];
    let (which, _) = word_width::<T>(&[src_ptr, dst_ptr], &strides, row_bytes);
    let func = dev.load_function(RANDOM_LTD.name, RANDOM_LTD.fatbin, names::INDEX_ROWS[which])?;
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
pub fn gather_cuda<T: Element + DeviceRepr, I: AsCudaIndices + ?Sized>(
    dev: &CudaDevice,
    h: CudaHidden<'_, T>,
    idx: &I,
    layer: usize,
    part: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let idx = idx.as_cuda_indices();
    check_layer(&idx, &h.layout, &part.layout, layer)?;
    launch_index_rows(dev, LTD_ROWS_GATHER, h, part, (&idx, layer))
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
pub fn scatter_cuda<T: Element + DeviceRepr, I: AsCudaIndices + ?Sized>(
    dev: &CudaDevice,
    part: CudaHidden<'_, T>,
    idx: &I,
    layer: usize,
    y: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let idx = idx.as_cuda_indices();
    check_layer(&idx, &y.layout, &part.layout, layer)?;
    launch_index_rows(dev, LTD_ROWS_SCATTER, part, y, (&idx, layer))
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
pub fn route_cuda<T: Element + DeviceRepr, I: AsCudaIndices + ?Sized>(
    dev: &CudaDevice,
    h: CudaHidden<'_, T>,
    part: CudaHidden<'_, T>,
    idx: &I,
    layer: usize,
    y: CudaHiddenMut<'_, T>,
) -> Result<()> {
    let idx = idx.as_cuda_indices();
    check_layer(&idx, &h.layout, &part.layout, layer)?;
    let l = h.layout;
    let mut y_data = y.data;
    check_same_rows("y", &y.layout, l.batch(), l.seq(), l.channels(), l.order())?;
    let stream = dev.stream();
    let e = T::DTYPE.size_in_bytes();
    let row_bytes = l.channels() * e;
    let (h_ptr, h_guard) = h.data.ptr(stream);
    let (p_ptr, p_guard) = part.data.ptr(stream);
    let (y_ptr, y_guard) = y_data.ptr_mut(stream);
    let (i_ptr, i_guard) = idx.layer_ptr(layer, stream)?;
    let strides = [
        l.batch_stride() * e,
        l.seq_stride() * e,
        part.layout.batch_stride() * e,
        part.layout.seq_stride() * e,
        y.layout.batch_stride() * e,
        y.layout.seq_stride() * e,
    ];
    let (which, _) = word_width::<T>(&[h_ptr, p_ptr, y_ptr], &strides, row_bytes);
    let func = dev.load_function(RANDOM_LTD.name, RANDOM_LTD.fatbin, names::ROUTE_ROWS[which])?;
    let params = LtdRouteRowsParams {
        h: h_ptr,
        part: p_ptr,
        y: y_ptr,
        idx: i_ptr,
        batch: l.batch() as i64,
        seq: l.seq() as i64,
        reserved: idx.reserved() as i64,
        row_bytes: row_bytes as i64,
        h_batch_stride_bytes: strides[0] as i64,
        h_seq_stride_bytes: strides[1] as i64,
        part_batch_stride_bytes: strides[2] as i64,
        part_seq_stride_bytes: strides[3] as i64,
        y_batch_stride_bytes: strides[4] as i64,
        y_seq_stride_bytes: strides[5] as i64,
        idx_batch_stride: idx.reserved() as i64,
    };
    let cfg = rows_launch(l.batch() * l.seq())?;
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdRouteRowsParams` by value. All three buffers cover their layouts (checked
    // by CudaHidden/CudaHiddenMut), `idx` holds L*B*r entries (checked by CudaIndices) and the kernel's binary search reads only row b's r entries (CudaSampledIndices is
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
pub fn mask_gather_cuda<'m, M: DeviceRepr + 'm, I: AsCudaIndices + ?Sized>(
    dev: &CudaDevice,
    mask: impl Into<DeviceBuf<'m, M>>,
    form: MaskForm,
    idx: &I,
    out: impl Into<DeviceBufMut<'m, M>>,
) -> Result<()> {
    let (mask, mut out) = (mask.into(), out.into());
    let idx = idx.as_cuda_indices();
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
    let (b, s, r, layers) = (idx.batch(), idx.seq(), idx.reserved(), idx.layers());
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
    let func = dev.load_function(
        RANDOM_LTD.name,
        RANDOM_LTD.fatbin,
        names::MASK_GATHER[which],
    )?;
    let stream = dev.stream();
    let (m_ptr, m_guard) = mask.ptr(stream);
    let (i_ptr, i_guard) = idx.layer_ptr(0, stream)?;
    let (o_ptr, o_guard) = out.ptr_mut(stream);
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
