//! The crate's one error type.

use std::path::Path;

/// Everything that can make training fail. Each message names the bad value (a file, a key path,
/// a flag) and what was expected.
///
/// ```
/// use ltd_train::TrainError;
///
/// let err = TrainError::Data { source_name: "x.txt".into(), message: "the file is empty".into() };
/// assert_eq!(err.to_string(), "x.txt: the file is empty");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The training text is unusable (empty, a directory, not UTF-8, too short).
    #[error("{source_name}: {message}")]
    Data {
        /// The file, or `embedded corpus`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration value is invalid; `message` starts with the key path or flag.
    #[error("{source_name}: {message}")]
    Config {
        /// Where the configuration came from (a file name or `embedded default`).
        source_name: String,
        /// What is wrong, starting with the key path or flag.
        message: String,
    },
    /// A checkpoint file is missing, unreadable, truncated or from another run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file that is wrong.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Data-parallel training could not start or a collective failed (a rank outside the world,
    /// a batch the world size does not divide, an NCCL error); `message` names the value.
    #[error("data-parallel: {message}")]
    Parallel {
        /// What is wrong, naming the flag or value and what was expected.
        message: String,
    },
    /// A Random-LTD scheduler error (names the key path).
    #[error(transparent)]
    Scheduler(#[from] ltd_scheduler::SchedulerError),
    /// A sparse-attention error (config errors name the key path).
    #[error(transparent)]
    Sparse(#[from] ltd_sparse_attn::SparseAttnError),
    /// An `ltd-core` error (for example the token sampler's).
    #[error(transparent)]
    Core(#[from] ltd_core::CoreError),
    /// An `ltd-candle` op (sparse attention, token routing) rejected its input.
    #[error(transparent)]
    LtdCandle(#[from] ltd_candle::LtdCandleError),
    /// A candle tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// An I/O error for `path`.
    ///
    /// ```
    /// let err = ltd_train::TrainError::io(std::path::Path::new("a.csv"), std::io::Error::other("disk full"));
    /// assert_eq!(err.to_string(), "a.csv: disk full");
    /// ```
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A checkpoint error for `path`.
    ///
    /// ```
    /// let err = ltd_train::TrainError::checkpoint(std::path::Path::new("ck/state.json"), "missing");
    /// assert_eq!(err.to_string(), "checkpoint ck/state.json: missing");
    /// ```
    pub fn checkpoint(path: &Path, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// `Result` with [`TrainError`].
///
/// ```
/// let ok: ltd_train::Result<u8> = Ok(1);
/// assert!(ok.is_ok());
/// ```
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
