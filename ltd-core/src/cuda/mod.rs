//! The CUDA side of `ltd-core` (feature `cuda`): opening a device, loading the embedded kernel
//! images of `ltd-kernels-sys` once per device, and launching them.
//!
//! This is one of the two places in the workspace (with `ltd-kernels-sys`) where `unsafe` lives:
//! kernel launches. Every launch is preceded by host-side validation of every size, stride and
//! buffer length, so the kernel can never index outside the buffers it is given, and every
//! launch's result is checked.

mod buffer;
mod context;
mod copy;
mod driver_ext;
mod indices;
mod random_ltd;

pub use buffer::{DeviceBuf, DeviceBufMut};
pub use copy::copy_strided_2d_cuda;
pub use driver_ext::{TensorMapElement, kernel_arg, launch_programmatic, tensor_map_3d};
pub use indices::{
    AsCudaIndices, CudaIndices, CudaSampledIndices, IndexBuf, IndexElement, sample_tokens_cuda,
    sample_tokens_cuda_into,
};
pub use random_ltd::{
    CudaHidden, CudaHiddenMut, MaskForm, gather_cuda, mask_gather_cuda, route_cuda, scatter_cuda,
};

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr};

use crate::{CoreError, Result};
use context::{ContextShared, lock};

/// An open CUDA device: a context on a GPU, the one stream all ops of this handle are launched
/// on, and the kernel modules loaded on that context (shared by every handle on the context,
/// so each image is loaded once per context). Cheap to clone (shared handle).
///
/// [`CudaDevice::new`] opens GPU `ordinal`'s primary context with a stream of its own;
/// [`CudaDevice::from_stream`] runs on a caller's stream (a framework's, e.g. candle's), so our
/// kernels are ordered with the framework's work with no synchronisation.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// let dev = CudaDevice::new(0)?;
/// println!("{dev}"); // cuda:0 (NVIDIA H100 80GB HBM3, sm_90)
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

struct Inner {
    stream: Arc<CudaStream>,
    shared: Arc<ContextShared>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal())
            .field("name", &self.name())
            .field("compute_capability", &self.compute_capability())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = self.compute_capability();
        write!(
            f,
            "cuda:{} ({}, sm_{major}{minor})",
            self.ordinal(),
            self.name()
        )
    }
}

pub(crate) fn driver_err(
    during: &'static str,
) -> impl FnOnce(cudarc::driver::DriverError) -> CoreError {
    move |source| CoreError::Cuda { during, source }
}

impl CudaDevice {
    /// Opens GPU `ordinal` (its primary context) and creates a stream for this handle.
    ///
    /// Checks that the driver library exists before the first driver call, so a machine with no
    /// NVIDIA driver gets [`CoreError::NoCudaDriver`] instead of a panic.
    ///
    /// # Errors
    /// [`CoreError::NoCudaDriver`], [`CoreError::InvalidSize`] for an ordinal not below the
    /// device count, [`CoreError::Cuda`] for driver failures.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// assert_eq!(dev.ordinal(), 0);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        if !context::driver_library_present() {
            return Err(CoreError::NoCudaDriver);
        }
        cudarc::driver::result::init().map_err(driver_err("cuInit"))?;
        let count = CudaContext::device_count().map_err(driver_err("counting devices"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(CoreError::InvalidSize {
                what: "CUDA device ordinal",
                got: ordinal,
                expected: format!("an ordinal below the device count {count}"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("creating the context"))?;
        let stream = ctx.new_stream().map_err(driver_err("creating a stream"))?;
        CudaDevice::from_stream(stream)
    }

    /// A handle that launches every op on `stream` (a caller's stream on any context, e.g. the
    /// one a framework such as candle computes on): no stream of its own, no implicit
    /// synchronisation, so our kernels are ordered with the caller's work by the stream alone.
    /// Kernel images are loaded once per context: handles on the same context (this one,
    /// [`CudaDevice::new`]'s on the primary context, other streams) share them.
    ///
    /// # Errors
    /// [`CoreError::Cuda`] when the device's properties cannot be read.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// let ctx = cudarc::driver::CudaContext::new(0).unwrap();
    /// let stream = ctx.new_stream().unwrap();
    /// let dev = CudaDevice::from_stream(stream.clone())?;
    /// assert!(std::sync::Arc::ptr_eq(dev.stream(), &stream));
    /// let other = CudaDevice::from_stream(ctx.new_stream().unwrap())?;
    /// assert!(dev.shares_modules_with(&other)); // one context: images load once
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn from_stream(stream: Arc<CudaStream>) -> Result<CudaDevice> {
        let shared = ContextShared::of(stream.context())?;
        Ok(CudaDevice {
            inner: Arc::new(Inner { stream, shared }),
        })
    }

    /// `true` when `other` runs on the same CUDA context, sharing its loaded kernel modules.
    ///
    /// ```no_run
    /// let (a, b) = (ltd_core::CudaDevice::new(0)?, ltd_core::CudaDevice::new(0)?);
    /// assert!(a.shares_modules_with(&b)); // both on GPU 0's primary context
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn shares_modules_with(&self, other: &CudaDevice) -> bool {
        Arc::ptr_eq(&self.inner.shared, &other.inner.shared)
    }

    /// How many kernel images are loaded on this handle's context (by any handle on it, now or
    /// earlier: they stay loaded for the life of the process, so a framework that makes a
    /// short-lived handle per call pays each image's load once).
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// println!("{} kernel images loaded", dev.loaded_kernel_images());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn loaded_kernel_images(&self) -> usize {
        lock(&self.inner.shared.modules).len()
    }

    /// The device ordinal this handle was opened with.
    ///
    /// ```no_run
    /// assert_eq!(ltd_core::CudaDevice::new(0)?.ordinal(), 0);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn ordinal(&self) -> usize {
        self.inner.shared.ctx.ordinal()
    }

    /// The device's name, e.g. `NVIDIA H100 80GB HBM3`.
    ///
    /// ```no_run
    /// println!("{}", ltd_core::CudaDevice::new(0)?.name());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Number of streaming multiprocessors (132 on an H100 SXM), for sizing work splits.
    ///
    /// ```no_run
    /// assert!(ltd_core::CudaDevice::new(0)?.sm_count() >= 1);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn sm_count(&self) -> usize {
        self.inner.shared.sm_count
    }

    /// `(major, minor)` compute capability, e.g. `(9, 0)` for an H100.
    ///
    /// ```no_run
    /// let (major, _) = ltd_core::CudaDevice::new(0)?.compute_capability();
    /// assert!(major >= 8, "the kernels are built for sm_80 and newer");
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.shared.compute_capability
    }

    /// The stream every op of this handle is launched on. Use it to allocate and copy buffers
    /// with cudarc (`stream.clone_htod(..)`, `stream.alloc_zeros(..)`, `stream.clone_dtoh(..)`).
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let buf = dev.stream().clone_htod(&[1.0f32, 2.0]).unwrap();
    /// assert_eq!(dev.stream().clone_dtoh(&buf).unwrap(), vec![1.0, 2.0]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Copies a host slice to a new device buffer on this handle's stream.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let d = dev.upload(&[1u32, 2, 3])?;
    /// assert_eq!(d.len(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        self.stream()
            .clone_htod(host)
            .map_err(driver_err("copying host to device"))
    }

    /// Copies a device buffer back to a new host vector (waits for the stream).
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let d = dev.upload(&[1u32, 2, 3])?;
    /// assert_eq!(dev.download(&d)?, vec![1, 2, 3]);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn download<T: DeviceRepr>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream()
            .clone_dtoh(dev)
            .map_err(driver_err("copying device to host"))
    }

    /// Waits until all work queued on this handle's stream has finished.
    ///
    /// ```no_run
    /// ltd_core::CudaDevice::new(0)?.synchronize()?;
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn synchronize(&self) -> Result<()> {
        self.stream()
            .synchronize()
            .map_err(driver_err("synchronizing the stream"))
    }

    /// Times GPU work: runs `f` `warmup` times untimed, then `reps` times a batch of `iters`
    /// back-to-back calls between two events on this handle's stream, and returns the median
    /// over the batches of the mean time per call, in microseconds. `f` must queue its work on
    /// [`stream`](Self::stream) (every op of this crate does). Zero `iters` or `reps` is
    /// treated as 1.
    ///
    /// # Errors
    /// `f`'s first error, or [`CoreError::Cuda`] from the events.
    ///
    /// ```no_run
    /// use ltd_core::{CoreError, CudaDevice, cuda::sample_tokens_cuda};
    /// let dev = CudaDevice::new(0)?;
    /// let mut idx = sample_tokens_cuda(&dev, 1, 0, 22, 8, 2048, 1024)?;
    /// let mut step = 0;
    /// let us = dev.median_time_us(3, 10, 7, || {
    ///     step += 1;
    ///     idx.resample(&dev, 1, step)
    /// })?;
    /// println!("sampler: {us:.1} us");
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn median_time_us<E: From<CoreError>>(
        &self,
        warmup: usize,
        iters: usize,
        reps: usize,
        mut f: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<f64, E> {
        let (iters, reps) = (iters.max(1), reps.max(1));
        for _ in 0..warmup {
            f()?;
        }
        let stream = self.stream();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps {
            let start = stream
                .record_event(flags)
                .map_err(driver_err("recording an event"))?;
            for _ in 0..iters {
                f()?;
            }
            let end = stream
                .record_event(flags)
                .map_err(driver_err("recording an event"))?;
            let ms = start
                .elapsed_ms(&end)
                .map_err(driver_err("reading an event time"))?;
            samples.push(f64::from(ms) * 1000.0 / iters as f64);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[reps / 2])
    }

    /// The most dynamic shared memory a kernel of ours may ask for on this device (the opt-in
    /// limit less room for static shared memory).
    pub(crate) fn max_dynamic_shared_bytes(&self) -> usize {
        self.inner.shared.max_dynamic_shared_bytes
    }

    /// Loads (once per CUDA context) the kernel image `image` under the name `module` and
    /// returns its entry point `function` (looked up once, then cached). For the kernel crates of this workspace
    /// (`ltd-sparse-attn` launches its kernels through it); images come from
    /// `ltd_kernels_sys::fatbin`.
    ///
    /// # Errors
    /// [`CoreError::Cuda`] when the image does not load on this device or has no such function.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let f = dev.load_function("copy", ltd_kernels_sys::fatbin::COPY, "ltd_strided_copy_2d_u32")?;
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn load_function(
        &self,
        module: &'static str,
        image: &'static [u8],
        function: &'static str,
    ) -> Result<CudaFunction> {
        let key = (module, function);
        if let Some(f) = lock(&self.inner.shared.functions).get(&key) {
            return Ok(f.clone());
        }
        let loaded = {
            let mut modules = lock(&self.inner.shared.modules);
            match modules.get(module) {
                Some(m) => m.clone(),
                None => {
                    // The driver wants the fatbin at an aligned address: copy it into a fresh
                    // allocation (a few hundred KB, once per module and device).
                    let m = self
                        .stream()
                        .context()
                        .load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec()))
                        .map_err(driver_err("loading a kernel module"))?;
                    modules.insert(module, m.clone());
                    m
                }
            }
        };
        let f = loaded
            .load_function(function)
            .map_err(driver_err("looking up a kernel"))?;
        lock(&self.inner.shared.functions).insert(key, f.clone());
        Ok(f)
    }

    /// [`load_function`](Self::load_function), and the entry point may use `bytes` of dynamic
    /// shared memory per block: the driver's limit is raised the first time a call needs more
    /// than the limit so far (past 48 KB the kernel must opt in), so a launch path calls this
    /// every time at no driver cost once the limit is in place.
    ///
    /// # Errors
    /// As [`load_function`](Self::load_function), or [`CoreError::Cuda`] when the driver
    /// refuses the limit (more than the device's opt-in maximum per block).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_kernels_sys::{fatbin, names};
    /// let dev = CudaDevice::new(0)?;
    /// let f = dev.load_function_with_shared("random_ltd", fatbin::RANDOM_LTD, names::SAMPLE_TOKENS_SMEM, 64 * 1024)?;
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn load_function_with_shared(
        &self,
        module: &'static str,
        image: &'static [u8],
        function: &'static str,
        bytes: usize,
    ) -> Result<CudaFunction> {
        let f = self.load_function(module, image, function)?;
        let mut limits = lock(&self.inner.shared.shared_limits);
        let limit = limits.entry((module, function)).or_insert(0);
        if bytes > *limit {
            let value = i32::try_from(bytes).map_err(|_| CoreError::InvalidSize {
                what: "dynamic shared memory",
                got: bytes,
                expected: format!(
                    "at most {} bytes on this device",
                    self.max_dynamic_shared_bytes()
                ),
            })?;
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                value,
            )
            .map_err(driver_err("raising a kernel's shared-memory limit"))?;
            *limit = bytes;
        }
        Ok(f)
    }

    /// How many blocks of `threads` threads with `bytes` of dynamic shared memory the entry
    /// point `function` of `module` keeps resident per multiprocessor on this device (the
    /// driver's occupancy calculator over its registers, shared memory and block size). Asked
    /// of the driver once per (entry point, threads, bytes) and cached, so a launch path can
    /// choose between kernels by occupancy on every call.
    ///
    /// # Errors
    /// As [`load_function_with_shared`](Self::load_function_with_shared), or
    /// [`CoreError::Cuda`] when the driver's occupancy query fails.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_kernels_sys::{fatbin, names};
    /// let dev = CudaDevice::new(0)?;
    /// let blocks = dev.blocks_per_multiprocessor("random_ltd", fatbin::RANDOM_LTD, names::SAMPLE_TOKENS_SMEM, 256, 64 * 1024)?;
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn blocks_per_multiprocessor(
        &self,
        module: &'static str,
        image: &'static [u8],
        function: &'static str,
        threads: u32,
        bytes: usize,
    ) -> Result<usize> {
        let key = (module, function, threads, bytes);
        if let Some(&blocks) = lock(&self.inner.shared.occupancy).get(&key) {
            return Ok(blocks);
        }
        let f = self.load_function_with_shared(module, image, function, bytes)?;
        let blocks = f
            .occupancy_max_active_blocks_per_multiprocessor(threads, bytes, None)
            .map_err(driver_err("querying a kernel's occupancy"))?;
        let blocks = usize::try_from(blocks).unwrap_or(0);
        lock(&self.inner.shared.occupancy).insert(key, blocks);
        Ok(blocks)
    }
}
