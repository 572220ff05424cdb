//! The strided 2-D copy kernel: the smallest kernel that goes through the whole pipeline.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use ltd_kernels_sys::{LtdStridedCopy2dParams, image, names};

use super::buffer::{DeviceBuf, DeviceBufMut};
use super::{CudaDevice, driver_err};
use crate::copy::{StridedLayout2d, check_strided_copy};
use crate::{Element, Result};

/// GPU version of [`crate::copy_strided_2d`]: copies the strided `rows × cols` view of `src`
/// described by `layout` into the first `rows * cols` elements of `dst`, row-major and
/// contiguous. Bit-exact for every element type (it moves bits, no arithmetic).
///
/// # Errors
/// [`crate::CoreError::InvalidSize`] for zero rows/cols, [`crate::CoreError::BufferTooSmall`]
/// when `src` does not cover the view or `dst` is shorter than `rows * cols`,
/// [`crate::CoreError::Cuda`] when the launch fails.
///
/// ```no_run
/// use ltd_core::{CudaDevice, StridedLayout2d, copy_strided_2d_cuda};
/// let dev = CudaDevice::new(0)?;
/// // The transpose of a 2x3 row-major matrix is a 3x2 view with strides (1, 3).
/// let src = dev.upload(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let mut dst = dev.stream().alloc_zeros::<f32>(6).unwrap();
/// let t = StridedLayout2d { rows: 3, cols: 2, row_stride: 1, col_stride: 3 };
/// copy_strided_2d_cuda(&dev, &src, t, &mut dst)?;
/// assert_eq!(dev.download(&dst)?, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn copy_strided_2d_cuda<'a, T: Element + cudarc::driver::DeviceRepr + 'a>(
    dev: &CudaDevice,
    src: impl Into<DeviceBuf<'a, T>>,
    layout: StridedLayout2d,
    dst: impl Into<DeviceBufMut<'a, T>>,
) -> Result<()> {
    let (src, mut dst) = (src.into(), dst.into());
    check_strided_copy(src.len(), layout, dst.len())?;
    let function = match T::DTYPE.size_in_bytes() {
        2 => names::STRIDED_COPY_2D_U16,
        _ => names::STRIDED_COPY_2D_U32,
    };
    let func = dev.load_function(image::COPY.name, image::COPY.fatbin, function)?;
    let stream = dev.stream();
    let (src_ptr, src_guard) = src.ptr(stream);
    let (dst_ptr, dst_guard) = dst.ptr_mut(stream);
    // Every value below fits in i64: check_strided_copy bounded each by a buffer length.
    let params = LtdStridedCopy2dParams {
        src: src_ptr,
        dst: dst_ptr,
        rows: layout.rows as i64,
        cols: layout.cols as i64,
        src_row_stride: layout.row_stride as i64,
        src_col_stride: layout.col_stride as i64,
        dst_row_stride: layout.cols as i64,
    };
    let total = layout.rows * layout.cols;
    let threads = 256u32;
    let blocks = total.div_ceil(threads as usize).clamp(1, 65_535 * 8) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: the kernel takes exactly one `LtdStridedCopy2dParams` by value (kernels/copy.cu).
    // check_strided_copy proved that every source index `i*row_stride + j*col_stride` for
    // i < rows, j < cols is below src.len(), and that rows*cols <= dst.len(), so the kernel
    // reads and writes only inside the two buffers; the pointer guards are held until after
    // the launch is queued, so the stream orders it after earlier writes to both buffers.
    unsafe { launch.launch(cfg) }.map_err(driver_err("launching ltd_strided_copy_2d"))?;
    drop(src_guard);
    drop(dst_guard);
    Ok(())
}
