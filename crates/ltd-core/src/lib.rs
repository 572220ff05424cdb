//! Random-LTD core ops (placeholder module list; filled in by the foundation and CPU issues).

mod dtype;
mod error;

pub use dtype::{DType, Element};
pub use error::{CoreError, CudaDriverError, Result};
