//! Reading a DLPack capsule (`tensor.__dlpack__()`) as a borrowed tensor: its address, device,
//! dtype and shape, with no copy and without consuming the capsule (the caller keeps it, and
//! with it the producer's memory, alive for the whole call).
//!
//! The structs mirror `dlpack.h`'s `DLManagedTensor` (the unversioned ABI every torch >= 1.10
//! exports under the capsule name `"dltensor"`). They are mirrored here rather than taken from
//! `dlpark` because the binding only reads the struct's fields: a crate whose API converts
//! whole tensors would add a dependency tree for six field reads.

use std::ffi::{CStr, c_void};

use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::error::{BindingError, Result};

/// `DLDevice`.
#[repr(C)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

/// `DLTensor`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

/// `DLManagedTensor`: the capsule's pointer. Only `dl_tensor` is read.
#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

const DL_CPU: i32 = 1;
const DL_CUDA: i32 = 2;
const CAPSULE_NAME: &CStr = c"dltensor";

/// Where a tensor lives.
///
/// ```text
/// Device::Cpu, Device::Cuda(0)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Host memory.
    Cpu,
    /// A CUDA device, by ordinal.
    Cuda(usize),
}

/// The element types the binding tells apart.
///
/// ```text
/// torch.float32 -> Dt::F32, torch.int32 -> Dt::I32
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
    /// float64 (the CPU ops only).
    F64,
    /// int32.
    I32,
    /// Anything else, by its DLPack name (`int64`, `uint8`, ...).
    Other(u8, u8),
}

impl Dt {
    fn from_dl(t: &DlDataType) -> Dt {
        match (t.code, t.bits, t.lanes) {
            (2, 32, 1) => Dt::F32,
            (2, 16, 1) => Dt::F16,
            (4, 16, 1) => Dt::BF16,
            (2, 64, 1) => Dt::F64,
            (0, 32, 1) => Dt::I32,
            (code, bits, _) => Dt::Other(code, bits),
        }
    }

    /// torch's name of the dtype, for error messages.
    ///
    /// ```text
    /// Dt::BF16.name() == "bfloat16"
    /// ```
    pub fn name(self) -> String {
        match self {
            Dt::F32 => "float32".into(),
            Dt::F16 => "float16".into(),
            Dt::BF16 => "bfloat16".into(),
            Dt::F64 => "float64".into(),
            Dt::I32 => "int32".into(),
            Dt::Other(6, 1) | Dt::Other(1, 1) => "bool".into(),
            Dt::Other(0, b) => format!("int{b}"),
            Dt::Other(1, b) => format!("uint{b}"),
            Dt::Other(2, b) => format!("float{b}"),
            Dt::Other(c, b) => format!("DLPack type code {c} with {b} bits"),
        }
    }

    fn size(self) -> usize {
        match self {
            Dt::F32 | Dt::I32 => 4,
            Dt::F16 | Dt::BF16 => 2,
            Dt::F64 => 8,
            Dt::Other(_, b) => usize::from(b).div_ceil(8).max(1),
        }
    }
}

/// A borrowed, contiguous (row-major) tensor read from a DLPack capsule.
///
/// ```text
/// let t = Tensor::read("q", capsule)?; // t.shape == [B, H, L, D]
/// ```
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Which argument (for errors).
    pub what: &'static str,
    /// Address of element 0 (data + byte offset); an integer so the descriptor is `Send`.
    pub addr: u64,
    /// Where the memory is.
    pub device: Device,
    /// Element type.
    pub dtype: Dt,
    /// Sizes.
    pub shape: Vec<usize>,
}

impl Tensor {
    /// Reads the capsule `obj` (a `"dltensor"` PyCapsule) as argument `what`. Refuses devices
    /// other than CPU and CUDA, vector dtypes and non-contiguous strides (the Python layer
    /// makes tensors contiguous first), and addresses not aligned to the element size.
    ///
    /// # Errors
    /// [`BindingError::Tensor`] naming `what` and the problem.
    ///
    /// ```text
    /// Tensor::read("q", q.__dlpack__())
    /// ```
    pub fn read(what: &'static str, obj: &Bound<'_, PyAny>) -> Result<Tensor> {
        let capsule = obj.cast::<PyCapsule>().map_err(|_| {
            BindingError::tensor(what, "is not a DLPack capsule", "tensor.__dlpack__()")
        })?;
        let ptr = capsule.pointer_checked(Some(CAPSULE_NAME)).map_err(|_| {
            BindingError::tensor(
                what,
                "is not an unconsumed \"dltensor\" capsule",
                "a fresh tensor.__dlpack__() (unversioned)",
            )
        })?;
        // SAFETY: a live capsule named "dltensor" holds a `DLManagedTensor*` (the DLPack
        // protocol), valid while the capsule is; `capsule` borrows it for this whole function and
        // nothing here writes through it.
        let t = unsafe { &(*ptr.as_ptr().cast::<DlManagedTensor>()).dl_tensor };
        let ndim = usize::try_from(t.ndim)
            .map_err(|_| BindingError::tensor(what, format!("ndim {}", t.ndim), "ndim >= 0"))?;
        let shape: Vec<usize> = if ndim == 0 {
            Vec::new()
        } else {
            // SAFETY: DLPack guarantees `shape` points to `ndim` int64 values.
            let s = unsafe { std::slice::from_raw_parts(t.shape, ndim) };
            s.iter().map(|&x| usize::try_from(x).unwrap_or(0)).collect()
        };
        let strides = if t.strides.is_null() || ndim == 0 {
            None
        } else {
            // SAFETY: a non-null `strides` points to `ndim` int64 values (DLPack).
            Some(unsafe { std::slice::from_raw_parts(t.strides, ndim) }.to_vec())
        };
        let device = match t.device.device_type {
            DL_CPU => Device::Cpu,
            DL_CUDA => Device::Cuda(usize::try_from(t.device.device_id).unwrap_or(0)),
            other => {
                return Err(BindingError::tensor(
                    what,
                    format!("DLPack device type {other} is not supported"),
                    "a CPU or CUDA tensor",
                ));
            }
        };
        let dtype = Dt::from_dl(&t.dtype);
        if t.dtype.lanes != 1 {
            return Err(BindingError::tensor(
                what,
                "has vector lanes",
                "scalar elements",
            ));
        }
        if let Some(st) = strides {
            check_contiguous(what, &shape, &st)?;
        }
        let addr = (t.data as u64).wrapping_add(t.byte_offset);
        let tensor = Tensor {
            what,
            addr,
            device,
            dtype,
            shape,
        };
        if tensor.numel() > 0 && addr % dtype.size() as u64 != 0 {
            return Err(BindingError::tensor(
                what,
                format!("address {addr:#x} is not aligned to its element size"),
                format!("a multiple of {} bytes", dtype.size()),
            ));
        }
        Ok(tensor)
    }

    /// Number of elements.
    ///
    /// ```text
    /// [2, 3] -> 6
    /// ```
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Fails unless the tensor has exactly `shape`.
    ///
    /// # Errors
    /// [`BindingError::Tensor`].
    ///
    /// ```text
    /// out.expect_shape(&[b, h, l, d], "[B, H, L, D] like q")?
    /// ```
    pub fn expect_shape(&self, shape: &[usize], meaning: &str) -> Result<()> {
        if self.shape != shape {
            return Err(BindingError::tensor(
                self.what,
                format!("shape {:?}", self.shape),
                format!("{shape:?} ({meaning})"),
            ));
        }
        Ok(())
    }

    /// Fails unless the tensor has dtype `dtype`.
    ///
    /// # Errors
    /// [`BindingError::Tensor`].
    ///
    /// ```text
    /// lse.expect_dtype(Dt::F32)?
    /// ```
    pub fn expect_dtype(&self, dtype: Dt, meaning: &str) -> Result<()> {
        if self.dtype != dtype {
            return Err(BindingError::tensor(
                self.what,
                format!("dtype {}", self.dtype.name()),
                format!("{} ({meaning})", dtype.name()),
            ));
        }
        Ok(())
    }

    /// Fails unless the tensor is on `device`.
    ///
    /// # Errors
    /// [`BindingError::Tensor`].
    ///
    /// ```text
    /// k.expect_device(q.device)?
    /// ```
    pub fn expect_device(&self, device: Device) -> Result<()> {
        if self.device != device {
            return Err(BindingError::tensor(
                self.what,
                format!("is on {:?}", self.device),
                format!("{device:?} (the device of the op's first input)"),
            ));
        }
        Ok(())
    }

    /// The byte range the tensor covers.
    fn bytes(&self) -> std::ops::Range<u64> {
        self.addr..self.addr + (self.numel() * self.dtype.size()) as u64
    }

    /// The host memory as a slice of `T` (`T` must match `dtype`; the caller checks).
    ///
    /// # Safety
    /// The tensor is on the CPU, its element type is `T`, the capsule it was read from is alive
    /// for `'a`, and nothing writes the memory during `'a`.
    ///
    /// ```text
    /// let q: &[f32] = unsafe { q.host::<f32>() };
    /// ```
    pub unsafe fn host<'a, T>(&self) -> &'a [T] {
        if self.numel() == 0 {
            return &[];
        }
        // SAFETY: the caller's contract: `numel` initialised `T` at the aligned address `addr`.
        unsafe { std::slice::from_raw_parts(self.addr as *const T, self.numel()) }
    }

    /// The host memory as a mutable slice of `T`.
    ///
    /// # Safety
    /// As [`Tensor::host`], and nothing else reads or writes the memory during `'a` (outputs
    /// are fresh `torch.empty` tensors; [`check_disjoint`] refuses overlaps with the inputs).
    ///
    /// ```text
    /// let out: &mut [f32] = unsafe { out.host_mut::<f32>() };
    /// ```
    pub unsafe fn host_mut<'a, T>(&self) -> &'a mut [T] {
        if self.numel() == 0 {
            return &mut [];
        }
        // SAFETY: the caller's contract, as in `host`, plus exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut T, self.numel()) }
    }
}

/// Row-major contiguity, ignoring the strides of dimensions of size 1 (torch reports arbitrary
/// strides for those) and of tensors with no element (no stride is ever followed).
fn check_contiguous(what: &'static str, shape: &[usize], strides: &[i64]) -> Result<()> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut expected: i64 = 1;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n > 1 && s != expected {
            return Err(BindingError::tensor(
                what,
                format!("strides {strides:?} for shape {shape:?}"),
                "a contiguous (row-major) tensor",
            ));
        }
        expected *= n as i64;
    }
    Ok(())
}

/// Fails when an output overlaps any input or another output: the ops write outputs while
/// reading inputs, so overlapping memory would race (and break Rust's aliasing rules on the CPU).
///
/// # Errors
/// [`BindingError::Tensor`] naming the output.
///
/// ```text
/// check_disjoint(&[&out, &lse], &[&q, &k, &v])?
/// ```
pub fn check_disjoint(outputs: &[&Tensor], inputs: &[&Tensor]) -> Result<()> {
    for (i, o) in outputs.iter().enumerate() {
        let ob = o.bytes();
        let others = outputs[i + 1..].iter().chain(inputs.iter());
        for x in others {
            let xb = x.bytes();
            if o.device == x.device
                && !ob.is_empty()
                && !xb.is_empty()
                && ob.start < xb.end
                && xb.start < ob.end
            {
                return Err(BindingError::tensor(
                    o.what,
                    format!("shares memory with {}", x.what),
                    "a separate output tensor",
                ));
            }
        }
    }
    Ok(())
}

/// The dtypes the matmul, softmax and token ops take on the CPU (float64 computed in float64).
pub const CPU_DTYPES: &str = "float32, float16, bfloat16 or float64";

/// The dtypes the matmul, softmax and token ops take on CUDA.
#[cfg(feature = "cuda")]
pub const GPU_DTYPES: &str = "float32, float16 or bfloat16 (float64 runs on the CPU only)";

/// The error for a dtype an op does not take on `device`, which takes `expected`.
///
/// ```text
/// unsupported(&x, "CUDA", GPU_DTYPES)
/// // x: dtype float64 is not supported on CUDA; expected float32, float16 or bfloat16 (...)
/// ```
pub fn unsupported(t: &Tensor, device: &str, expected: &str) -> BindingError {
    BindingError::tensor(
        t.what,
        format!("dtype {} is not supported on {device}", t.dtype.name()),
        expected,
    )
}

/// The error for a CUDA tensor given to a build without the `cuda` feature.
///
/// ```text
/// no_cuda(&q)
/// // q: is a CUDA tensor, and this build of ltd has no CUDA support; expected a CPU tensor, ...
/// ```
#[cfg(not(feature = "cuda"))]
pub fn no_cuda(t: &Tensor) -> BindingError {
    BindingError::tensor(
        t.what,
        "is a CUDA tensor, and this build of ltd has no CUDA support",
        "a CPU tensor, or a wheel built with the `cuda` feature",
    )
}

/// Runs `$body` with `$t` the element type of `$x.dtype` (f32, f16 or bf16), or returns
/// `Err($unsupported)` for any other dtype: the one dtype `match` of the bindings.
macro_rules! float_dispatch {
    ($x:expr, $t:ident => $body:expr, else $unsupported:expr) => {
        match $x.dtype {
            $crate::dlpack::Dt::F32 => {
                type $t = f32;
                $body
            }
            $crate::dlpack::Dt::F16 => {
                type $t = half::f16;
                $body
            }
            $crate::dlpack::Dt::BF16 => {
                type $t = half::bf16;
                $body
            }
            _ => Err($unsupported),
        }
    };
}
pub(crate) use float_dispatch;

/// [`float_dispatch!`] for the CPU paths, which also take float64 (`$t = f64`, computed in f64).
macro_rules! cpu_float_dispatch {
    ($x:expr, $t:ident => $body:expr, else $unsupported:expr) => {
        match $x.dtype {
            $crate::dlpack::Dt::F64 => {
                type $t = f64;
                $body
            }
            _ => $crate::dlpack::float_dispatch!($x, $t => $body, else $unsupported),
        }
    };
}
pub(crate) use cpu_float_dispatch;
