//! [`SparseAttnError`]: the one error type of this crate.

/// Everything that can go wrong in `ltd-sparse-attn`. Every message names the bad value and what
/// was expected.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, SparseAttnError};
/// let mut cfg = FixedConfig::new(4);
/// cfg.block = 24;
/// let err = cfg.validate().unwrap_err();
/// assert!(matches!(err, SparseAttnError::InvalidConfig { .. }));
/// assert_eq!(err.to_string(), "block: 24 is not a supported block size; expected one of 16, 32, 64, 128");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparseAttnError {
    /// A configuration value is invalid. `key` is the key path (for example
    /// `sparse_attention.num_local_blocks` when the value came from a DeepSpeed JSON file).
    #[error("{key}: {message}")]
    InvalidConfig {
        /// Key path of the offending value.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A JSON object has keys this crate does not know.
    #[error("{path}: unknown key(s) {keys:?}; expected only {expected}")]
    UnknownKeys {
        /// Path of the object holding the keys.
        path: String,
        /// The unknown keys, sorted.
        keys: Vec<String>,
        /// The accepted keys, comma separated.
        expected: String,
    },
    /// The text is not valid JSON, or the top level is not an object.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A whole DeepSpeed config was given but it has no `sparse_attention` section.
    #[error("the DeepSpeed config has no `sparse_attention` section")]
    MissingSection,
    /// A buffer or tensor shape does not match what the op expects.
    #[error("{what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// Which argument (for example `q` or `key_padding_mask`).
        what: String,
        /// Expected shape or length.
        expected: String,
        /// Actual shape or length.
        actual: String,
    },
    /// The head count of the inputs differs from the layout's.
    #[error("head count mismatch: the inputs have {actual} heads but the layout has {expected}")]
    HeadMismatch {
        /// Heads in the layout.
        expected: usize,
        /// Heads in the inputs.
        actual: usize,
    },
    /// The sequence length of the inputs does not fit the layout.
    #[error(
        "sequence length {seq_len} needs {needed} blocks of {block}, but the layout has {num_blocks} blocks"
    )]
    LayoutLengthMismatch {
        /// Sequence length of the inputs.
        seq_len: usize,
        /// Block size of the layout.
        block: usize,
        /// Blocks needed, `ceil(seq_len / block)`.
        needed: usize,
        /// Blocks in the layout.
        num_blocks: usize,
    },
    /// A layout mask is malformed (wrong length, or a value other than 0 or 1).
    #[error("invalid layout: {0}")]
    InvalidLayout(String),
    /// A numeric argument is out of range (for example a non-finite scale).
    #[error("{what}: {value} is invalid; expected {expected}")]
    InvalidArgument {
        /// Which argument.
        what: String,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A device buffer starts at an address the GPU kernels cannot read from (a view at an
    /// element offset that breaks their vector loads, or a raw pointer).
    #[error(
        "{what}: device address {address:#x} is aligned to {alignment} bytes; expected a multiple of {required} ({why})"
    )]
    Misaligned {
        /// Which buffer (for example `q` or `bias`).
        what: String,
        /// Its device address.
        address: u64,
        /// The largest power of two dividing the address (capped at 256).
        alignment: u64,
        /// The alignment the kernels need.
        required: u64,
        /// Why the kernels need it.
        why: &'static str,
    },
    /// Encoding a PNG picture failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// Writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A device-side failure from `ltd-core` (no driver, a CUDA error, a bad device buffer).
    #[error(transparent)]
    Core(#[from] ltd_core::CoreError),
}

/// `Result` with [`SparseAttnError`].
///
/// ```
/// fn f() -> ltd_sparse_attn::Result<usize> { Ok(1) }
/// assert_eq!(f().unwrap(), 1);
/// ```
pub type Result<T, E = SparseAttnError> = std::result::Result<T, E>;

impl SparseAttnError {
    /// Shorthand for [`SparseAttnError::InvalidConfig`].
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        SparseAttnError::InvalidConfig {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`SparseAttnError::ShapeMismatch`].
    pub(crate) fn shape(
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
    ) -> Self {
        SparseAttnError::ShapeMismatch {
            what: what.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// Shorthand for [`SparseAttnError::InvalidArgument`].
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn invalid(
        what: &str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        SparseAttnError::InvalidArgument {
            what: what.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Maps a driver error to [`SparseAttnError::Core`], naming what was being done.
    #[cfg(feature = "cuda")]
    pub(crate) fn driver(
        during: &'static str,
    ) -> impl FnOnce(cudarc::driver::DriverError) -> SparseAttnError {
        move |source| SparseAttnError::Core(ltd_core::CoreError::Cuda { during, source })
    }

    /// Prefixes the key path of an [`SparseAttnError::InvalidConfig`] (or the path of
    /// [`SparseAttnError::UnknownKeys`]) with `prefix` and a dot; other errors pass through.
    ///
    /// ```
    /// use ltd_sparse_attn::SparseAttnError;
    /// let e = SparseAttnError::InvalidConfig { key: "block".into(), message: "bad".into() };
    /// assert_eq!(e.with_key_prefix("sparse_attention").to_string(), "sparse_attention.block: bad");
    /// ```
    pub fn with_key_prefix(self, prefix: &str) -> Self {
        match self {
            SparseAttnError::InvalidConfig { key, message } => SparseAttnError::InvalidConfig {
                key: format!("{prefix}.{key}"),
                message,
            },
            other => other,
        }
    }
}
