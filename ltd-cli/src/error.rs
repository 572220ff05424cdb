//! The one error type of the `ltd` command, and its exit codes.

use std::path::Path;

/// Everything that makes a subcommand fail. [`CliError::exit_code`] says which exit status it
/// gives: 2 for a usage error (bad arguments), 1 for everything else.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments do not make sense together (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration is malformed or invalid; `message` starts with the key path.
    #[error("{source_name}: {message}")]
    Config {
        /// Where the configuration came from (a file name or "embedded default").
        source_name: String,
        /// What is wrong, starting with the key path.
        message: String,
    },
    /// A Random-LTD scheduler error (its message names the key path).
    #[error(transparent)]
    Scheduler(#[from] ltd_scheduler::SchedulerError),
    /// A sparse-attention error (config errors name the key path).
    #[error(transparent)]
    Sparse(#[from] ltd_sparse_attn::SparseAttnError),
    /// An `ltd-core` error.
    #[error(transparent)]
    Core(#[from] ltd_core::CoreError),
    /// A training error (`ltd train`); its message names the file, flag or key.
    #[error(transparent)]
    Train(#[from] ltd_train::TrainError),
    /// An oracle (`ltd-reference`) error.
    #[error("reference oracle: {0}")]
    Reference(#[from] ltd_reference::RefError),
    /// A PNG could not be encoded.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// The demo's check against the reference failed.
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// Writing the command's output failed (for example a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// A CUDA driver call failed.
    #[cfg(feature = "cuda")]
    #[error("CUDA: {0}")]
    Cuda(#[from] cudarc::driver::DriverError),
}

impl CliError {
    /// The process exit status for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// A read error for `path`.
    pub fn read(path: &Path, source: std::io::Error) -> Self {
        CliError::Read {
            path: path.display().to_string(),
            source,
        }
    }

    /// A write error for `path`.
    pub fn write(path: &Path, source: std::io::Error) -> Self {
        CliError::Write {
            path: path.display().to_string(),
            source,
        }
    }
}

/// `Result` with [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Writes `bytes` to `path` atomically (a temporary file beside it, then a rename: the file is
/// complete or absent, and an existing one is untouched until the new one is whole), naming the
/// file in the error. Every file the command writes goes through here.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    ltd_core::write_file_atomic(path, bytes).map_err(|e| CliError::write(path, e))
}
