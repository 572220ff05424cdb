//! The binding's errors and how each reaches Python: a bad argument (shape, dtype, device,
//! layout, config) is a `ValueError`, a CUDA driver failure a `RuntimeError`.

use ltd_core::CoreError;
use ltd_sparse_attn::SparseAttnError;
use pyo3::PyErr;
use pyo3::exceptions::{PyRuntimeError, PyValueError};

/// Everything a binding call can fail with.
///
/// ```text
/// >>> ltd._ltd.gather(h, idx, out, True)   # h float64
/// ValueError: hidden states: dtype float64 is not supported; expected float32, float16 or bfloat16
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// A tensor argument the op cannot take as it is.
    #[error("{what}: {problem}; expected {expected}")]
    Tensor {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
        /// What the op takes.
        expected: String,
    },
    /// An error of the Random-LTD ops.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the sparse-attention ops or layouts.
    #[error(transparent)]
    Attn(#[from] SparseAttnError),
    /// An error of the Random-LTD config or scheduler.
    #[error(transparent)]
    Scheduler(#[from] ltd_scheduler::SchedulerError),
}

impl BindingError {
    /// A [`BindingError::Tensor`].
    ///
    /// ```text
    /// BindingError::tensor("q", "dtype float64 is not supported", "float32, float16 or bfloat16")
    /// ```
    pub fn tensor(
        what: &'static str,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        BindingError::Tensor {
            what,
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    /// Whether the driver (not the caller's arguments) failed.
    fn is_driver(&self) -> bool {
        let core = match self {
            BindingError::Core(e) | BindingError::Attn(SparseAttnError::Core(e)) => e,
            _ => return false,
        };
        matches!(core, CoreError::Cuda { .. } | CoreError::NoCudaDriver)
    }
}

impl From<BindingError> for PyErr {
    fn from(e: BindingError) -> PyErr {
        if e.is_driver() {
            PyRuntimeError::new_err(e.to_string())
        } else {
            PyValueError::new_err(e.to_string())
        }
    }
}

/// `Result` with [`BindingError`].
pub type Result<T> = std::result::Result<T, BindingError>;
