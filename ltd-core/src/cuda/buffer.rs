//! Device buffers the GPU entry points read and write: a whole [`CudaSlice`], a cudarc view at
//! an offset ([`CudaView`] / [`CudaViewMut`], e.g. `slice.slice(off..)`), or a raw device
//! pointer with a length (for frameworks whose buffers are not cudarc types). Views and raw
//! pointers let a tensor slice run with no copy.

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, SyncOnDrop,
};

/// A device buffer an op reads.
///
/// ```no_run
/// use ltd_core::cuda::DeviceBuf;
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let x = dev.upload(&[1.0f32, 2.0, 3.0, 4.0])?;
/// let whole: DeviceBuf<'_, f32> = (&x).into();
/// let tail: DeviceBuf<'_, f32> = x.slice(1..).into(); // starts at element 1, no copy
/// assert_eq!((whole.len(), tail.len()), (4, 3));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct DeviceBuf<'a, T> {
    kind: Kind<'a, T>,
}

enum Kind<'a, T> {
    Slice(&'a CudaSlice<T>),
    View(CudaView<'a, T>),
    Raw { ptr: CUdeviceptr, len: usize },
}

impl<'a, T> DeviceBuf<'a, T> {
    /// A buffer of `len` elements of `T` at device address `ptr`.
    ///
    /// # Safety
    /// `ptr` must be the address of `len` initialised elements of `T`, on the context of the
    /// device handle the op runs with, valid (not freed, not written by other work) until the
    /// work the op queues on that handle's stream has finished, and aligned for `T`. The op
    /// records no event for it: order any work on other streams yourself.
    ///
    /// ```no_run
    /// use cudarc::driver::DevicePtr;
    /// use ltd_core::cuda::DeviceBuf;
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let x = dev.upload(&[1.0f32; 8])?;
    /// let (ptr, _guard) = x.device_ptr(dev.stream());
    /// // SAFETY: `x` holds 8 f32 on this device and outlives the op's work on its stream.
    /// let buf = unsafe { DeviceBuf::<f32>::from_raw(ptr, 8) };
    /// assert_eq!(buf.len(), 8);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub unsafe fn from_raw(ptr: CUdeviceptr, len: usize) -> Self {
        DeviceBuf {
            kind: Kind::Raw { ptr, len },
        }
    }

    /// Number of elements.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let x = dev.upload(&[0u8; 5])?;
    /// assert_eq!(ltd_core::cuda::DeviceBuf::from(&x).len(), 5);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Slice(s) => s.len(),
            Kind::View(v) => v.len(),
            Kind::Raw { len, .. } => *len,
        }
    }

    /// `true` for an empty buffer.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let x = dev.upload(&[0u8; 5])?;
    /// assert!(ltd_core::cuda::DeviceBuf::from(x.slice(5..)).is_empty());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same buffer, borrowed again.
    pub(crate) fn reborrow(&self) -> DeviceBuf<'_, T> {
        DeviceBuf {
            kind: match &self.kind {
                Kind::Slice(s) => Kind::Slice(s),
                Kind::View(v) => Kind::View(v.slice(..)),
                Kind::Raw { ptr, len } => Kind::Raw {
                    ptr: *ptr,
                    len: *len,
                },
            },
        }
    }

    /// The device address for a launch on `stream`, and the guard that records the read when
    /// dropped (after the launch).
    pub(crate) fn ptr<'s>(&'s self, stream: &'s CudaStream) -> (CUdeviceptr, SyncOnDrop<'s>) {
        match &self.kind {
            Kind::Slice(s) => s.device_ptr(stream),
            Kind::View(v) => v.device_ptr(stream),
            Kind::Raw { ptr, .. } => (*ptr, SyncOnDrop::Record(None)),
        }
    }
}

impl<'a, T> From<&'a CudaSlice<T>> for DeviceBuf<'a, T> {
    fn from(s: &'a CudaSlice<T>) -> Self {
        DeviceBuf {
            kind: Kind::Slice(s),
        }
    }
}

impl<'a, T> From<CudaView<'a, T>> for DeviceBuf<'a, T> {
    fn from(v: CudaView<'a, T>) -> Self {
        DeviceBuf {
            kind: Kind::View(v),
        }
    }
}

impl<'a, T> From<&'a mut CudaSlice<T>> for DeviceBuf<'a, T> {
    fn from(s: &'a mut CudaSlice<T>) -> Self {
        DeviceBuf {
            kind: Kind::Slice(s),
        }
    }
}

/// A device buffer an op writes.
///
/// ```no_run
/// use ltd_core::cuda::DeviceBufMut;
/// let dev = ltd_core::CudaDevice::new(0)?;
/// let mut y = dev.stream().alloc_zeros::<f32>(8).unwrap();
/// let second_half: DeviceBufMut<'_, f32> = y.slice_mut(4..).into();
/// assert_eq!(second_half.len(), 4);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub struct DeviceBufMut<'a, T> {
    kind: KindMut<'a, T>,
}

enum KindMut<'a, T> {
    Slice(&'a mut CudaSlice<T>),
    View(CudaViewMut<'a, T>),
    Raw { ptr: CUdeviceptr, len: usize },
}

impl<'a, T> DeviceBufMut<'a, T> {
    /// A writable buffer of `len` elements of `T` at device address `ptr`.
    ///
    /// # Safety
    /// As [`DeviceBuf::from_raw`], and nothing else may read or write the buffer until the
    /// op's work on its stream has finished.
    ///
    /// ```no_run
    /// use cudarc::driver::DevicePtrMut;
    /// use ltd_core::cuda::DeviceBufMut;
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let mut y = dev.stream().alloc_zeros::<u32>(6).unwrap();
    /// let (ptr, _guard) = y.device_ptr_mut(dev.stream());
    /// // SAFETY: `y` holds 6 u32 on this device, used by nothing else meanwhile.
    /// let buf = unsafe { DeviceBufMut::<u32>::from_raw(ptr, 6) };
    /// assert_eq!(buf.len(), 6);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub unsafe fn from_raw(ptr: CUdeviceptr, len: usize) -> Self {
        DeviceBufMut {
            kind: KindMut::Raw { ptr, len },
        }
    }

    /// Number of elements.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let mut y = dev.stream().alloc_zeros::<u8>(3).unwrap();
    /// assert_eq!(ltd_core::cuda::DeviceBufMut::from(&mut y).len(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn len(&self) -> usize {
        match &self.kind {
            KindMut::Slice(s) => s.len(),
            KindMut::View(v) => v.len(),
            KindMut::Raw { len, .. } => *len,
        }
    }

    /// `true` for an empty buffer.
    ///
    /// ```no_run
    /// let dev = ltd_core::CudaDevice::new(0)?;
    /// let mut y = dev.stream().alloc_zeros::<u8>(3).unwrap();
    /// assert!(!ltd_core::cuda::DeviceBufMut::from(&mut y).is_empty());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device address for a launch on `stream`, and the guard that records the write when
    /// dropped (after the launch).
    pub(crate) fn ptr_mut<'s>(
        &'s mut self,
        stream: &'s CudaStream,
    ) -> (CUdeviceptr, SyncOnDrop<'s>) {
        match &mut self.kind {
            KindMut::Slice(s) => s.device_ptr_mut(stream),
            KindMut::View(v) => v.device_ptr_mut(stream),
            KindMut::Raw { ptr, .. } => (*ptr, SyncOnDrop::Record(None)),
        }
    }
}

impl<'a, T> From<&'a mut CudaSlice<T>> for DeviceBufMut<'a, T> {
    fn from(s: &'a mut CudaSlice<T>) -> Self {
        DeviceBufMut {
            kind: KindMut::Slice(s),
        }
    }
}

impl<'a, T> From<CudaViewMut<'a, T>> for DeviceBufMut<'a, T> {
    fn from(v: CudaViewMut<'a, T>) -> Self {
        DeviceBufMut {
            kind: KindMut::View(v),
        }
    }
}
