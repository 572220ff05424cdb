//! Token indices on the GPU: the keyed-ChaCha sampler ([`sample_tokens_cuda`],
//! [`sample_tokens_cuda_into`]), owned indices ([`CudaSampledIndices`]) and views of index
//! buffers the ops read ([`CudaIndices`]: i32 or u32, at any offset, or a raw pointer).

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig, PushKernelArg, SyncOnDrop};
use ltd_kernels_sys::{LTD_SAMPLER_WIDE_MIN_SEQ, LtdSampleParams, names};

use super::buffer::{DeviceBuf, DeviceBufMut};
use super::{CudaDevice, driver_err};
use crate::{CoreError, Result, SampledIndices};

/// The Random-LTD kernels' image, which carries the module name it is cached under.
pub(super) const RANDOM_LTD: &ltd_kernels_sys::KernelImage = &ltd_kernels_sys::image::RANDOM_LTD;

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
        sample_tokens_into(dev, seed, step, l, b, s, r, (&mut self.data).into())
    }
}

pub(super) fn invalid(what: &'static str, got: usize, expected: impl Into<String>) -> CoreError {
    CoreError::InvalidSize {
        what,
        got,
        expected: expected.into(),
    }
}

/// Checks the sampler's sizes; returns the number of indices `L * B * r`.
fn check_sample_sizes(layers: usize, batch: usize, seq: usize, reserved: usize) -> Result<usize> {
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
    rows.checked_mul(reserved).ok_or(CoreError::SizeOverflow {
        what: "sampled indices",
    })
}

/// Samples `[layers, batch, reserved]` sorted positions on the GPU with the keyed-ChaCha
/// algorithm of `docs/design.md` ("Exactness contracts"): bit-identical to
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
    let total = check_sample_sizes(layers, batch, seq, reserved)?;
    let stream = dev.stream();
    // SAFETY: every element is written by the kernel before it is read (each row writes exactly
    // `reserved` distinct slots; see the compaction proof in kernels/random_ltd.cu). The tests
    // poison a buffer of the same size first to check this.
    let mut out =
        unsafe { stream.alloc::<i32>(total) }.map_err(driver_err("allocating sampled indices"))?;
    sample_tokens_into(
        dev,
        seed,
        step,
        layers,
        batch,
        seq,
        reserved,
        (&mut out).into(),
    )?;
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
fn sample_tokens_into<I: IndexElement>(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
    mut out: DeviceBufMut<'_, I>,
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
        dev.load_function_with_shared(RANDOM_LTD.name, RANDOM_LTD.fatbin, name, key_bytes)?
    } else {
        let name = if wide {
            names::SAMPLE_TOKENS_WIDE
        } else {
            names::SAMPLE_TOKENS
        };
        dev.load_function(RANDOM_LTD.name, RANDOM_LTD.fatbin, name)?
    };
    let stream = dev.stream();
    let (out_ptr, out_guard) = out.ptr_mut(stream);
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

/// [`sample_tokens_cuda`] into a caller's buffer of `layers * batch * reserved` i32 or u32
/// elements (a whole slice, a view at an offset, or a raw pointer: a framework's index tensor),
/// with no allocation. The values are the same non-negative positions in either type.
///
/// # Errors
/// As [`sample_tokens_cuda`], plus [`CoreError::ShapeMismatch`] when `out` does not have
/// exactly `layers * batch * reserved` elements.
///
/// ```no_run
/// use ltd_core::{CudaDevice, TokenSampler, cuda::sample_tokens_cuda_into};
/// let dev = CudaDevice::new(0)?;
/// let mut out = dev.stream().alloc_zeros::<u32>(2 * 4 * 16 + 5).unwrap();
/// // Into elements 5.. of the buffer, as u32.
/// sample_tokens_cuda_into(&dev, 9, 3, 2, 4, 64, 16, out.slice_mut(5..))?;
/// let host = dev.download(&out)?;
/// let cpu = TokenSampler::new(9).sample(3, 2, 4, 64, 16)?;
/// assert!(host[5..].iter().zip(cpu.as_slice()).all(|(&a, &b)| a as i32 == b));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn sample_tokens_cuda_into<'a, I: IndexElement + 'a>(
    dev: &CudaDevice,
    seed: u64,
    step: u64,
    layers: usize,
    batch: usize,
    seq: usize,
    reserved: usize,
    out: impl Into<DeviceBufMut<'a, I>>,
) -> Result<()> {
    let total = check_sample_sizes(layers, batch, seq, reserved)?;
    let out = out.into();
    if out.len() != total {
        return Err(CoreError::ShapeMismatch {
            what: "sampler output",
            got: vec![out.len()],
            expected: format!("{total} elements ([L={layers}, B={batch}, r={reserved}])"),
        });
    }
    sample_tokens_into(dev, seed, step, layers, batch, seq, reserved, out)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i32 {}
    impl Sealed for u32 {}
}

/// The element types of index buffers: `i32` (ours) and `u32` (candle's index dtype). Valid
/// positions are below 2^31, so both hold the same bits.
pub trait IndexElement: sealed::Sealed + cudarc::driver::DeviceRepr {}
impl IndexElement for i32 {}
impl IndexElement for u32 {}

/// An index buffer of either element type (made with `.into()` from a slice, a view or a
/// [`DeviceBuf`] of i32 or u32).
///
/// ```no_run
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let idx = dev.upload(&[0u32, 1])?;
/// let buf: ltd_core::cuda::IndexBuf<'_> = (&idx).into();
/// # let _ = buf;
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub enum IndexBuf<'a> {
    /// i32 positions.
    I32(DeviceBuf<'a, i32>),
    /// u32 positions.
    U32(DeviceBuf<'a, u32>),
}

impl IndexBuf<'_> {
    fn len(&self) -> usize {
        match self {
            IndexBuf::I32(b) => b.len(),
            IndexBuf::U32(b) => b.len(),
        }
    }
}

macro_rules! index_buf_from {
    ($($t:ty => $v:ident),*) => {$(
        impl<'a> From<&'a cudarc::driver::CudaSlice<$t>> for IndexBuf<'a> {
            fn from(s: &'a cudarc::driver::CudaSlice<$t>) -> Self {
                IndexBuf::$v(s.into())
            }
        }
        impl<'a> From<cudarc::driver::CudaView<'a, $t>> for IndexBuf<'a> {
            fn from(s: cudarc::driver::CudaView<'a, $t>) -> Self {
                IndexBuf::$v(s.into())
            }
        }
        impl<'a> From<DeviceBuf<'a, $t>> for IndexBuf<'a> {
            fn from(b: DeviceBuf<'a, $t>) -> Self {
                IndexBuf::$v(b)
            }
        }
    )*};
}
index_buf_from!(i32 => I32, u32 => U32);

/// A view of `[L, B, r]` token positions in GPU memory (i32 or u32; a whole slice, a view at an
/// offset, or a raw pointer), as the GPU ops read them. Each row must be strictly ascending
/// and below `S`, as the sampler writes them. The GPU cannot check that without a
/// synchronisation, so it is not checked: the kernels skip positions outside `[0, S)` and never
/// access memory outside the buffers whatever the values, but rows that are not strictly
/// ascending give unspecified (in-bounds) results. [`CudaSampledIndices`] are valid by
/// construction ([`CudaSampledIndices::view`]).
///
/// ```no_run
/// use ltd_core::cuda::{CudaIndices, sample_tokens_cuda};
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let owned = sample_tokens_cuda(&dev, 1, 0, 3, 2, 128, 64)?;
/// let view = owned.view();
/// assert_eq!((view.layers(), view.batch(), view.reserved(), view.seq()), (3, 2, 64, 128));
/// // Layer 1 alone, as a one-layer view at an offset.
/// let one = CudaIndices::new(owned.as_cuda_slice().slice(2 * 64..4 * 64), 1, 2, 64, 128)?;
/// assert_eq!(one.layers(), 1);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct CudaIndices<'a> {
    data: IndexBuf<'a>,
    layers: usize,
    batch: usize,
    reserved: usize,
    seq: usize,
}

impl<'a> CudaIndices<'a> {
    /// A view of `layers * batch * reserved` positions for sequences of length `seq`.
    ///
    /// # Errors
    /// As [`sample_tokens_cuda`]'s size checks, plus [`CoreError::ShapeMismatch`] when `data`
    /// does not have exactly `layers * batch * reserved` elements.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = dev.upload(&[0u32, 2, 1, 3])?;
    /// assert!(ltd_core::cuda::CudaIndices::new(&idx, 1, 2, 2, 4).is_ok());
    /// assert!(ltd_core::cuda::CudaIndices::new(&idx, 1, 2, 3, 4).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(
        data: impl Into<IndexBuf<'a>>,
        layers: usize,
        batch: usize,
        reserved: usize,
        seq: usize,
    ) -> Result<CudaIndices<'a>> {
        let total = check_sample_sizes(layers, batch, seq, reserved)?;
        let data = data.into();
        if data.len() != total {
            return Err(CoreError::ShapeMismatch {
                what: "indices",
                got: vec![data.len()],
                expected: format!("{total} elements ([L={layers}, B={batch}, r={reserved}])"),
            });
        }
        Ok(CudaIndices {
            data,
            layers,
            batch,
            reserved,
            seq,
        })
    }

    /// Layers `L`.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = dev.upload(&[0i32, 1])?;
    /// assert_eq!(ltd_core::cuda::CudaIndices::new(&idx, 2, 1, 1, 4)?.layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Batch `B`.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = dev.upload(&[0i32, 1])?;
    /// assert_eq!(ltd_core::cuda::CudaIndices::new(&idx, 1, 2, 1, 4)?.batch(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Kept tokens per row `r`.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = dev.upload(&[0i32, 1])?;
    /// assert_eq!(ltd_core::cuda::CudaIndices::new(&idx, 1, 1, 2, 4)?.reserved(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Sequence length `S` the positions index into.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = dev.upload(&[0i32, 1])?;
    /// assert_eq!(ltd_core::cuda::CudaIndices::new(&idx, 1, 1, 2, 4)?.seq(), 4);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The device address of layer `layer`'s `[B, r]` rows for a launch on `stream`, and the
    /// guard that records the read when dropped.
    pub(super) fn layer_ptr<'s>(
        &'s self,
        layer: usize,
        stream: &'s CudaStream,
    ) -> Result<(CUdeviceptr, SyncOnDrop<'s>)> {
        if layer >= self.layers {
            return Err(CoreError::InvalidSize {
                what: "layer",
                got: layer,
                expected: format!("below the number of sampled layers {}", self.layers),
            });
        }
        let (base, guard) = match &self.data {
            IndexBuf::I32(b) => b.ptr(stream),
            IndexBuf::U32(b) => b.ptr(stream),
        };
        // Both element types are 4 bytes.
        let offset = (layer * self.batch * self.reserved * 4) as u64;
        Ok((base + offset, guard))
    }
}

impl CudaSampledIndices {
    /// A view of all layers' indices, for the ops.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let idx = ltd_core::cuda::sample_tokens_cuda(&dev, 1, 0, 2, 2, 16, 4)?;
    /// assert_eq!(idx.view().layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn view(&self) -> CudaIndices<'_> {
        CudaIndices {
            data: IndexBuf::I32((&self.data).into()),
            layers: self.layers,
            batch: self.batch,
            reserved: self.reserved,
            seq: self.seq,
        }
    }
}

/// Index sets the GPU ops take: owned [`CudaSampledIndices`] or a [`CudaIndices`] view.
///
/// ```no_run
/// use ltd_core::cuda::{AsCudaIndices, sample_tokens_cuda};
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let idx = sample_tokens_cuda(&dev, 1, 0, 2, 2, 16, 4)?;
/// assert_eq!(idx.as_cuda_indices().reserved(), 4);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub trait AsCudaIndices {
    /// The view the ops read.
    fn as_cuda_indices(&self) -> CudaIndices<'_>;
}

impl AsCudaIndices for CudaSampledIndices {
    fn as_cuda_indices(&self) -> CudaIndices<'_> {
        self.view()
    }
}

impl AsCudaIndices for CudaIndices<'_> {
    fn as_cuda_indices(&self) -> CudaIndices<'_> {
        CudaIndices {
            data: match &self.data {
                IndexBuf::I32(b) => IndexBuf::I32(b.reborrow()),
                IndexBuf::U32(b) => IndexBuf::U32(b.reborrow()),
            },
            layers: self.layers,
            batch: self.batch,
            reserved: self.reserved,
            seq: self.seq,
        }
    }
}
