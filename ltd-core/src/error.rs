//! The error type of `ltd-core`.

use crate::DType;

/// Everything that can go wrong in `ltd-core`. Every variant names the bad value and what was
/// expected, so the message alone tells a caller what to fix.
///
/// ```
/// use ltd_core::{CoreError, DType};
/// let e = CoreError::DTypeMismatch { what: "layer output", got: DType::F16, expected: DType::BF16 };
/// assert_eq!(e.to_string(), "layer output has dtype f16, expected bf16 (the dtype of the hidden states)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A tensor argument has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The expected shape, in words (e.g. `"[B=2, r=8]"`).
        expected: String,
    },
    /// A size parameter is out of its valid range (e.g. `r = 0`, `r > S`, `B = 0`).
    #[error("{what} = {got} is invalid: expected {expected}")]
    InvalidSize {
        /// Name of the parameter.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The valid range, in words.
        expected: String,
    },
    /// A buffer is too short for the shape and strides it is described with.
    #[error("{what} buffer has {got} elements, but its shape and strides need at least {needed}")]
    BufferTooSmall {
        /// Which argument.
        what: &'static str,
        /// Elements in the buffer.
        got: usize,
        /// Elements needed.
        needed: usize,
    },
    /// Two arguments that must share a dtype do not.
    #[error("{what} has dtype {got}, expected {expected} (the dtype of the hidden states)")]
    DTypeMismatch {
        /// Which argument.
        what: &'static str,
        /// Its dtype.
        got: DType,
        /// The dtype it must have.
        expected: DType,
    },
    /// An index tensor holds a bad value (out of range, unsorted or duplicated).
    #[error("{what}[{layer}, {row}, {pos}] = {value} is invalid: {reason}")]
    InvalidIndex {
        /// Which argument.
        what: &'static str,
        /// Layer coordinate.
        layer: usize,
        /// Batch-row coordinate.
        row: usize,
        /// Position in the row.
        pos: usize,
        /// The bad value.
        value: i64,
        /// Why it is bad, with the expected range or order.
        reason: String,
    },
    /// A mutable (output) view whose rows would overlap, so one element would be written twice.
    #[error(
        "{what} rows overlap: {detail}; expected strides that give every (batch, position) row its own elements"
    )]
    OverlappingRows {
        /// Which argument.
        what: &'static str,
        /// The shape and strides that overlap, in words.
        detail: String,
    },
    /// Shape arithmetic (element counts, offsets) overflows `usize`.
    #[error("{what} is too large: its element count or last offset overflows usize")]
    SizeOverflow {
        /// Which argument.
        what: &'static str,
    },
    /// A buffer sized from the arguments cannot be allocated: more than this machine's memory, or
    /// the allocator refused it. Returned instead of aborting.
    #[error("{what} needs {bytes} bytes, which cannot be allocated: {reason}")]
    AllocationFailed {
        /// Which buffer.
        what: &'static str,
        /// The bytes it would need (saturated at `u128::MAX`).
        bytes: u128,
        /// Why it cannot be allocated, with the limit where there is one.
        reason: String,
    },
    /// An argument that must be given is missing, or one argument does not go with another.
    #[error("{what}: got {got}, expected {expected}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// What was passed, in words.
        got: String,
        /// What is accepted, in words.
        expected: String,
    },
    /// A wrapped [`Layer`](crate::Layer) failed; its own error is the source.
    #[error("layer {layer_index} failed in {during}: {source}")]
    Layer {
        /// The model layer index the router was called with.
        layer_index: usize,
        /// `"forward"` or `"backward"`.
        during: &'static str,
        /// The layer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// No CUDA driver library (`libcuda.so`) could be loaded on this machine.
    #[error(
        "no CUDA driver found (libcuda.so could not be loaded): install an NVIDIA driver (580 / CUDA 13.0 or newer) or use the CPU ops"
    )]
    NoCudaDriver,
    /// A CUDA driver call failed.
    #[error("CUDA driver error in {during}: {source}")]
    Cuda {
        /// What we were doing.
        during: &'static str,
        /// The driver's error.
        #[source]
        source: CudaDriverError,
    },
    /// An argument lives on a different device than the op runs on.
    #[error("{what} is on {got}, expected {expected}")]
    WrongDevice {
        /// Which argument.
        what: &'static str,
        /// Where it is.
        got: String,
        /// Where it must be.
        expected: String,
    },
}

/// The CUDA driver's error type when the `cuda` feature is on; uninhabited otherwise.
#[cfg(feature = "cuda")]
pub type CudaDriverError = cudarc::driver::DriverError;

/// The CUDA driver's error type when the `cuda` feature is on; uninhabited otherwise.
#[cfg(not(feature = "cuda"))]
#[derive(Debug, thiserror::Error)]
#[error("unreachable: CUDA is not compiled in")]
pub enum CudaDriverError {}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
