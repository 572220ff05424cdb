//! Element types: [`DType`] names them at run time, [`Element`] ties a Rust type to its `DType`.

use crate::CpuElement;
use half::{bf16, f16};

/// The element types the ops support.
///
/// All arithmetic inside the ops is done in `f32` (or wider); `F16` and `BF16` are storage formats.
/// The CPU ops also take `f64` ([`CpuElement`](crate::CpuElement)), which has no `DType`: the GPU
/// kernels are written for these three types only.
///
/// ```
/// use ltd_core::DType;
/// assert_eq!(DType::BF16.size_in_bytes(), 2);
/// assert_eq!(DType::F32.to_string(), "f32");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16 (`half::f16`).
    F16,
    /// bfloat16 (`half::bf16`).
    BF16,
}

impl DType {
    /// Size of one element in bytes.
    ///
    /// ```
    /// assert_eq!(ltd_core::DType::F32.size_in_bytes(), 4);
    /// ```
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Lower-case name, as used in error messages and CLI output (`"f32"`, `"f16"`, `"bf16"`).
    ///
    /// ```
    /// assert_eq!(ltd_core::DType::F16.as_str(), "f16");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A Rust element type the ops accept: `f32`, `half::f16` or `half::bf16`.
///
/// Sealed: the kernels are written for exactly these three types. Each is also a
/// [`CpuElement`] computed in `f32`, so generic code bounded by `Element` calls the CPU ops
/// (whose `lse` buffers are `&mut [T::Acc]`) with `f32` buffers.
///
/// ```
/// use ltd_core::{DType, Element};
/// use half::bf16;
/// assert_eq!(<bf16 as Element>::DTYPE, DType::BF16);
/// assert_eq!(bf16::from_f32_lossy(1.5).to_f32(), 1.5);
/// ```
pub trait Element:
    sealed::Sealed
    + CpuElement<Acc = f32>
    + Copy
    + Default
    + Send
    + Sync
    + PartialEq
    + std::fmt::Debug
    + 'static
{
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// Widens to `f32` (exact for all three types).
    fn to_f32(self) -> f32;
    /// Rounds an `f32` to this type (round to nearest even).
    fn from_f32_lossy(v: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32_lossy(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_f32_lossy(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline]
    fn from_f32_lossy(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        for (d, s, n) in [
            (DType::F32, 4, "f32"),
            (DType::F16, 2, "f16"),
            (DType::BF16, 2, "bf16"),
        ] {
            assert_eq!(d.size_in_bytes(), s);
            assert_eq!(d.as_str(), n);
        }
        assert_eq!(std::mem::size_of::<f16>(), DType::F16.size_in_bytes());
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            f16::from_f32_lossy(0.1).to_f32(),
            f16::from_f32(0.1).to_f32()
        );
        assert_eq!(bf16::from_f32_lossy(-3.0).to_f32(), -3.0);
        assert_eq!(<f32 as Element>::from_f32_lossy(0.1), 0.1);
    }
}
