//! Random-LTD core ops (placeholder module list; filled in by the foundation and CPU issues).

mod copy;
#[cfg(feature = "cuda")]
mod cuda;
mod device;
mod dtype;
mod error;

pub use copy::{StridedLayout2d, copy_strided_2d};
#[cfg(feature = "cuda")]
pub use cuda::copy_strided_2d_cuda;
pub use device::{CudaDevice, Device};
pub use dtype::{DType, Element};
pub use error::{CoreError, CudaDriverError, Result};
