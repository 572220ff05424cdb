//! The error type of `ltd-candle`.

/// Everything that can go wrong in `ltd-candle`. Every variant names the bad value and what was
/// expected. Converts to and from [`candle_core::Error`], so `?` works in either direction.
///
/// ```
/// use ltd_candle::LtdCandleError;
/// let e = LtdCandleError::Unsupported { what: "q dtype", got: "f64".into(), expected: "f32, f16 or bf16".into() };
/// assert_eq!(e.to_string(), "q dtype f64 is not supported: expected f32, f16 or bf16");
/// let c: candle_core::Error = e.into(); // into a candle error, message kept
/// assert!(c.to_string().contains("f64 is not supported"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LtdCandleError {
    /// A combination this build cannot run (a dtype, a device, a device/dtype pair). Never
    /// replaced by a silent fallback or a copy to another device.
    #[error("{what} {got} is not supported: expected {expected}")]
    Unsupported {
        /// Which argument or combination.
        what: &'static str,
        /// What was given.
        got: String,
        /// What this build accepts.
        expected: String,
    },
    /// A tensor argument has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Its dims.
        got: Vec<usize>,
        /// The expected shape, in words.
        expected: String,
    },
    /// Two tensors that must live on one device do not.
    #[error(
        "{what} is on {got}, expected {expected} (the device of {reference}); nothing is copied between devices"
    )]
    DeviceMismatch {
        /// Which argument.
        what: &'static str,
        /// Its device.
        got: String,
        /// The device it must be on.
        expected: String,
        /// The argument that fixes the device.
        reference: &'static str,
    },
    /// Two tensors that must share a dtype do not.
    #[error("{what} has dtype {got:?}, expected {expected:?} (the dtype of {reference})")]
    DTypeMismatch {
        /// Which argument.
        what: &'static str,
        /// Its dtype.
        got: candle_core::DType,
        /// The dtype it must have.
        expected: candle_core::DType,
        /// The argument that fixes the dtype.
        reference: &'static str,
    },
    /// An index tensor holds a bad value.
    #[error("{what}[{row}, {pos}] = {value} is invalid: {reason}")]
    InvalidIndex {
        /// Which argument.
        what: &'static str,
        /// Batch row.
        row: usize,
        /// Position in the row.
        pos: usize,
        /// The value.
        value: u64,
        /// Why it is invalid (out of range, not strictly ascending).
        reason: String,
    },
    /// The Random-LTD wrapper was used out of order (e.g. a training forward before any step).
    #[error("{0}")]
    State(String),
    /// From `ltd-core` (samplers, gather / scatter / route, masks, CUDA devices).
    #[error(transparent)]
    Core(#[from] ltd_core::CoreError),
    /// From `ltd-sparse-attn` (layouts, attention kernels).
    #[error(transparent)]
    SparseAttn(#[from] ltd_sparse_attn::SparseAttnError),
    /// From `ltd-scheduler` (the DeepSpeed config, the reserved-length schedule).
    #[error(transparent)]
    Scheduler(#[from] ltd_scheduler::SchedulerError),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<LtdCandleError> for candle_core::Error {
    fn from(e: LtdCandleError) -> Self {
        match e {
            LtdCandleError::Candle(c) => c,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// `Result` with [`LtdCandleError`].
pub type Result<T, E = LtdCandleError> = std::result::Result<T, E>;

/// Converts any of our errors into a candle error inside candle's op callbacks.
pub(crate) fn to_candle(e: impl Into<LtdCandleError>) -> candle_core::Error {
    e.into().into()
}
