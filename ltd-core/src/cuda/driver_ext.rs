//! Driver features cudarc's safe layer does not wrap, for the kernel crates of this workspace:
//! programmatic dependent launches and TMA tensor maps (compute capability 9.0).

use cudarc::driver::sys;
use cudarc::driver::{CudaFunction, CudaStream, DriverError, LaunchConfig};
use ltd_kernels_sys::LtdTensorMap;

use super::driver_err;
use crate::Result;

/// Launches `func` on `stream` as a programmatic dependent launch (compute capability 9.0 and
/// newer): the GPU may schedule its CTAs while the kernel before it on the stream finishes, once
/// every CTA of that kernel has executed `griddepcontrol.launch_dependents` (or exited), which
/// hides the launch gap behind that kernel's tail. The kernel must execute
/// `griddepcontrol.wait` before it reads anything the previous kernel wrote.
///
/// # Safety
///
/// As for any kernel launch (`cudarc::driver::LaunchArgs::launch`): `args` point to one live
/// value of each of the kernel's parameter types, in order, and the launch must be valid for
/// the buffers those values name; and the kernel must wait as above before reading the previous
/// kernel's results.
///
/// ```no_run
/// use cudarc::driver::LaunchConfig;
/// use ltd_core::{CudaDevice, cuda::{kernel_arg, launch_programmatic}};
/// let dev = CudaDevice::new(0)?;
/// let f = dev.load_function("copy", ltd_kernels_sys::fatbin::COPY, "ltd_strided_copy_2d_u32")?;
/// let params = ltd_kernels_sys::LtdStridedCopy2dParams::default(); // 0 rows: copies nothing
/// // SAFETY: the kernel takes one `LtdStridedCopy2dParams`; with 0 rows it touches no memory.
/// unsafe { launch_programmatic(dev.stream(), &f, LaunchConfig::for_num_elems(1), &mut [kernel_arg(&params)]) }
///     .unwrap();
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub unsafe fn launch_programmatic(
    stream: &CudaStream,
    func: &CudaFunction,
    cfg: LaunchConfig,
    args: &mut [*mut std::ffi::c_void],
) -> std::result::Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        // SAFETY: a plain-data union of integers and structs of integers; all zeros is valid.
        value: unsafe { std::mem::zeroed() },
    };
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: the config and its one attribute outlive the call; the function, its stream and
    // context are live (borrowed); the arguments are the caller's promise above.
    unsafe {
        sys::cuLaunchKernelEx(
            &config,
            func.cu_function(),
            args.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
}

/// The address of a by-value kernel argument, as [`launch_programmatic`] takes it.
///
/// ```
/// let x = 3i64;
/// assert_eq!(ltd_core::cuda::kernel_arg(&x) as *const i64, &x as *const i64);
/// ```
pub fn kernel_arg<P>(value: &P) -> *mut std::ffi::c_void {
    value as *const P as *mut std::ffi::c_void
}

/// Element type of a tensor map, as the kernels read it (2-byte elements are moved as raw
/// 16-bit words, so fp16 and bf16 share one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorMapElement {
    /// 2-byte elements (fp16, bf16).
    U16,
    /// f32.
    F32,
}

impl TensorMapElement {
    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(ltd_core::cuda::TensorMapElement::F32.bytes(), 4);
    /// ```
    pub fn bytes(self) -> usize {
        match self {
            TensorMapElement::U16 => 2,
            TensorMapElement::F32 => 4,
        }
    }

    fn data_type(self) -> sys::CUtensorMapDataType {
        match self {
            TensorMapElement::U16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT16,
            TensorMapElement::F32 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        }
    }
}

/// Encodes a TMA tensor map over `[matrices][rows][cols]` elements at device address `ptr`:
/// boxes of `box_rows` rows by `box_cols` elements (128-byte box rows, `box_cols *
/// element.bytes() == 128`, for the 128-byte swizzle the kernels use), rows past `rows` read as
/// zeros.
///
/// # Errors
/// [`crate::CoreError::Cuda`] when the driver rejects the map (misaligned address or strides,
/// a box it cannot encode).
///
/// ```no_run
/// use ltd_core::{CudaDevice, cuda::{TensorMapElement, tensor_map_3d}};
/// use cudarc::driver::DevicePtr;
/// let dev = CudaDevice::new(0)?;
/// let buf = dev.upload(&vec![half::bf16::ZERO; 2 * 100 * 64])?;
/// let (ptr, _guard) = buf.device_ptr(dev.stream());
/// let map = tensor_map_3d(ptr, TensorMapElement::U16, [64, 64], [2, 100, 64])?;
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn tensor_map_3d(
    ptr: u64,
    element: TensorMapElement,
    [box_cols, box_rows]: [u32; 2],
    [matrices, rows, cols]: [usize; 3],
) -> Result<LtdTensorMap> {
    let elem_bytes = element.bytes();
    let dims = [cols as u64, rows as u64, matrices as u64];
    let strides = [
        (cols * elem_bytes) as u64,
        (rows * cols * elem_bytes) as u64,
    ];
    let boxes = [box_cols, box_rows, 1];
    let steps = [1u32; 3];
    let mut map = LtdTensorMap::default();
    const _: () =
        assert!(std::mem::size_of::<LtdTensorMap>() == std::mem::size_of::<sys::CUtensorMap>());
    // SAFETY: `map` is a 64-byte-aligned 128-byte buffer, the size of `CUtensorMap` (checked
    // above), which the call only writes; the dimension, stride, box and step arrays hold rank 3
    // (rank - 1 for strides) elements and outlive the call. The driver only encodes `ptr` (the
    // callers' buffer of matrices * rows * cols elements) and validates the rest, returning an
    // error for anything it rejects.
    unsafe {
        sys::cuTensorMapEncodeTiled(
            (&mut map as *mut LtdTensorMap).cast::<sys::CUtensorMap>(),
            element.data_type(),
            3,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()
    }
    .map_err(driver_err("encoding a TMA tensor map"))?;
    Ok(map)
}
