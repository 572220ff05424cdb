//! Where an op runs: [`Device::Cpu`] or a CUDA GPU.

#[cfg(not(feature = "cuda"))]
use crate::CoreError;
use crate::Result;

/// Where an op runs.
///
/// The CPU is always available. A CUDA device needs the `cuda` feature at build time and an
/// NVIDIA driver (580 / CUDA 13.0 or newer) at run time; opening one on a machine without a
/// driver returns [`CoreError::NoCudaDriver`], never a panic.
///
/// ```
/// use ltd_core::Device;
/// // Use the first GPU when there is one, the CPU otherwise.
/// let dev = Device::cuda_if_available(0);
/// println!("running on {dev}");
/// assert!(Device::Cpu.is_cpu());
/// ```
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The host CPU (multi-threaded with rayon where it pays).
    #[default]
    Cpu,
    /// A CUDA GPU. Without the `cuda` feature this variant cannot be constructed.
    Cuda(CudaDevice),
}

impl Device {
    /// Opens CUDA device `ordinal`.
    ///
    /// # Errors
    /// [`CoreError::CudaNotCompiled`] without the `cuda` feature; [`CoreError::NoCudaDriver`]
    /// when no driver library can be loaded; [`CoreError::InvalidSize`] when `ordinal` is not
    /// below the number of devices; [`CoreError::Cuda`] when the driver fails.
    ///
    /// ```
    /// use ltd_core::{CoreError, Device};
    /// match Device::cuda(0) {
    ///     Ok(dev) => println!("opened {dev}"),
    ///     Err(e @ (CoreError::NoCudaDriver | CoreError::CudaNotCompiled)) => println!("no GPU: {e}"),
    ///     Err(e) => println!("GPU present but unusable: {e}"),
    /// }
    /// ```
    pub fn cuda(ordinal: usize) -> Result<Device> {
        CudaDevice::new(ordinal).map(Device::Cuda)
    }

    /// Opens CUDA device `ordinal` if that works, and falls back to the CPU otherwise.
    ///
    /// ```
    /// let dev = ltd_core::Device::cuda_if_available(0);
    /// assert!(dev.is_cpu() || dev.is_cuda());
    /// ```
    pub fn cuda_if_available(ordinal: usize) -> Device {
        Device::cuda(ordinal).unwrap_or(Device::Cpu)
    }

    /// `true` for [`Device::Cpu`].
    ///
    /// ```
    /// assert!(ltd_core::Device::Cpu.is_cpu());
    /// ```
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// `true` for a CUDA device.
    ///
    /// ```
    /// assert!(!ltd_core::Device::Cpu.is_cuda());
    /// ```
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl std::fmt::Display for Device {
    /// `cpu`, or `cuda:0 (NVIDIA H100 80GB HBM3, sm_90)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(d) => std::fmt::Display::fmt(d, f),
        }
    }
}

#[cfg(feature = "cuda")]
pub use crate::cuda::CudaDevice;

/// A CUDA device. Without the `cuda` feature this type has no values, so `Device::Cuda` can
/// never be constructed and code matching on it still compiles.
///
/// ```
/// assert!(ltd_core::CudaDevice::new(0).is_err());
/// ```
#[cfg(not(feature = "cuda"))]
#[derive(Clone, Debug)]
pub struct CudaDevice {
    never: std::convert::Infallible,
}

#[cfg(not(feature = "cuda"))]
impl CudaDevice {
    /// Always [`CoreError::CudaNotCompiled`]: this build has no CUDA support.
    ///
    /// ```
    /// assert!(matches!(ltd_core::CudaDevice::new(0), Err(ltd_core::CoreError::CudaNotCompiled)));
    /// ```
    pub fn new(_ordinal: usize) -> Result<CudaDevice> {
        Err(CoreError::CudaNotCompiled)
    }
}

#[cfg(not(feature = "cuda"))]
impl std::fmt::Display for CudaDevice {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_default_and_displays() {
        assert!(Device::default().is_cpu());
        assert_eq!(Device::Cpu.to_string(), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_an_error_not_a_panic() {
        let err = Device::cuda(0).unwrap_err();
        assert!(matches!(err, CoreError::CudaNotCompiled));
        assert!(err.to_string().contains("--features cuda"), "{err}");
        assert!(Device::cuda_if_available(0).is_cpu());
    }
}
