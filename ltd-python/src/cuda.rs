//! The GPU side shared by every op: a [`CudaDevice`] that launches on the caller's (torch's
//! current) CUDA stream, and device buffers borrowed from DLPack tensors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::CUstream;
use ltd_core::CudaDevice;
use ltd_core::cuda::{DeviceBuf, DeviceBufMut};

use crate::dlpack::{Device, Tensor};
use crate::error::{BindingError, Result};

/// The primary context of each GPU, opened once: torch computes on the same primary context,
/// so pointers and streams it hands over are valid on it.
fn context(ordinal: usize) -> Result<Arc<CudaContext>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<usize, Arc<CudaContext>>>> = OnceLock::new();
    let map = CONTEXTS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(&ordinal) {
        return Ok(ctx.clone());
    }
    // `CudaDevice::new` checks for the driver library first (no panic without one) and opens
    // the primary context; only its context is kept.
    let ctx = CudaDevice::new(ordinal)?.stream().context().clone();
    map.insert(ordinal, ctx.clone());
    Ok(ctx)
}

/// A device handle for GPU `ordinal` that queues every launch on `stream`, the raw `CUstream`
/// of `torch.cuda.current_stream(device).cuda_stream` (0 for the legacy default stream).
///
/// # Errors
/// [`BindingError::Core`] when there is no driver or the context cannot be opened.
///
/// ```text
/// let dev = device(0, torch_stream)?;
/// ```
pub fn device(ordinal: usize, stream: u64) -> Result<CudaDevice> {
    let ctx = context(ordinal)?;
    // SAFETY: `stream` is torch's current stream on this device, on the primary context `ctx`
    // belongs to. torch never destroys its streams (the default stream and the pool streams
    // `torch.cuda.Stream()` hands out live for the process); a `torch.cuda.ExternalStream` must
    // outlive the modules that ran on it, since the layout tables a first call uploads are
    // freed on that stream (ltd-python/README.md says so). Our work is ordered with torch's by
    // sharing the stream.
    let stream = unsafe { ctx.wrap_borrowed_stream(stream as CUstream) };
    Ok(CudaDevice::from_stream(stream)?)
}

/// The ordinal of a CUDA tensor, or an error naming it.
///
/// # Errors
/// [`BindingError::Tensor`] for a CPU tensor.
///
/// ```text
/// let ordinal = cuda_ordinal(&q)?;
/// ```
pub fn cuda_ordinal(t: &Tensor) -> Result<usize> {
    match t.device {
        Device::Cuda(o) => Ok(o),
        Device::Cpu => Err(BindingError::tensor(
            t.what,
            "is on the CPU",
            "a CUDA tensor",
        )),
    }
}

/// The tensor's memory as a device buffer of `T`.
///
/// # Safety
/// The tensor is a CUDA tensor of element type `T` on the device the op runs on, and its
/// capsule (hence its memory) outlives the work queued on the op's stream: torch's caching
/// allocator reuses memory in the order of the stream it was allocated on, which is the one
/// the op runs on.
///
/// ```text
/// let q = unsafe { buf::<f16>(&q) };
/// ```
pub unsafe fn buf<'a, T>(t: &Tensor) -> DeviceBuf<'a, T> {
    // SAFETY: the caller's contract; `addr` is aligned to `T` (checked when read).
    unsafe { DeviceBuf::from_raw(t.addr, t.numel()) }
}

/// The tensor's memory as a writable device buffer of `T`.
///
/// # Safety
/// As [`buf`], and nothing else uses the memory until the op's work is done (outputs are fresh
/// tensors, checked disjoint from the inputs).
///
/// ```text
/// let out = unsafe { buf_mut::<f16>(&out) };
/// ```
pub unsafe fn buf_mut<'a, T>(t: &Tensor) -> DeviceBufMut<'a, T> {
    // SAFETY: the caller's contract.
    unsafe { DeviceBufMut::from_raw(t.addr, t.numel()) }
}

/// GPU tables built once per device and kept for the owner's lifetime: a matmul's or
/// softmax's layout tables, uploaded on the first CUDA call on each device.
///
/// ```text
/// let tables = self.tables.get_or_build(&dev, |d| CudaMatMulLayout::new(d, &self.layout))?;
/// ```
pub struct PerDevice<T> {
    map: Mutex<HashMap<usize, Arc<T>>>,
}

impl<T> Default for PerDevice<T> {
    fn default() -> Self {
        PerDevice {
            map: Mutex::default(),
        }
    }
}

impl<T> PerDevice<T> {
    /// The tables of `dev`'s device, built by `build` on first use.
    ///
    /// # Errors
    /// What `build` returns (driver failures while uploading).
    ///
    /// ```text
    /// let t = cache.get_or_build(&dev, |d| Ok(CudaAttentionLayout::new(d, &layout)?))?;
    /// ```
    pub fn get_or_build(
        &self,
        dev: &CudaDevice,
        build: impl FnOnce(&CudaDevice) -> Result<T>,
    ) -> Result<Arc<T>> {
        // Built under the lock so that concurrent first calls upload the tables once.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(&dev.ordinal()) {
            return Ok(t.clone());
        }
        let built = Arc::new(build(dev)?);
        map.insert(dev.ordinal(), built.clone());
        Ok(built)
    }
}
