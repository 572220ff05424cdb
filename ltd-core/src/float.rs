//! CPU float types: [`CpuElement`] names what the CPU ops read and write (`f32`, `f16`, `bf16`
//! and `f64`), [`Accumulator`] what they compute in (`f32` for the first three, `f64` for `f64`).
//!
//! The GPU kernels exist for [`Element`](crate::Element)'s three types only, so `f64` is a
//! `CpuElement` but not an `Element`; every `Element` is a `CpuElement` with `Acc = f32`, so code
//! generic over `Element` calls the CPU ops unchanged.

use half::{bf16, f16};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// The float type a CPU op computes in: `f32` or `f64`, with the few operations the ops need.
///
/// `max` is the standard library's (a NaN operand is ignored), so the ops test NaN explicitly.
///
/// ```
/// use ltd_core::Accumulator;
/// fn logsumexp<A: Accumulator>(xs: &[A]) -> A {
///     let m = xs.iter().copied().fold(A::NEG_INFINITY, A::max);
///     m + xs.iter().map(|&x| (x - m).exp()).sum::<A>().ln()
/// }
/// assert!((logsumexp(&[0.0f64, 0.0]) - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(<f32 as Accumulator>::from_f32(0.1), 0.1f32);
/// ```
pub trait Accumulator:
    sealed::Sealed
    + Copy
    + Default
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + Debug
    + Display
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// `+inf`.
    const INFINITY: Self;
    /// `-inf`.
    const NEG_INFINITY: Self;
    /// A quiet NaN.
    const NAN: Self;
    /// Widens an `f32` (exact).
    fn from_f32(v: f32) -> Self;
    /// Converts a count, as `n as f32` / `n as f64` does.
    fn from_usize(n: usize) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// The larger of the two; a NaN operand is ignored (as `f32::max`).
    fn max(self, other: Self) -> Self;
    /// Whether this is NaN.
    fn is_nan(self) -> bool;
    /// Whether this is neither infinite nor NaN.
    fn is_finite(self) -> bool;
}

macro_rules! accumulator {
    ($t:ident) => {
        impl Accumulator for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = $t::INFINITY;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            const NAN: Self = $t::NAN;
            #[inline]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            #[inline]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
        }
    };
}
accumulator!(f32);
accumulator!(f64);

/// An element type the CPU ops read and write: `f32`, `half::f16`, `half::bf16` (computed in
/// `f32`) or `f64` (computed in `f64`).
///
/// Inputs are widened to [`CpuElement::Acc`] with [`to_acc`](CpuElement::to_acc) (exact) and
/// each output is rounded once with [`from_acc`](CpuElement::from_acc) (to nearest, ties to
/// even). For the three [`Element`](crate::Element) types these are `Element::to_f32` and
/// `Element::from_f32_lossy`.
///
/// ```
/// use ltd_core::{Accumulator, CpuElement};
/// use half::bf16;
/// fn mean<T: CpuElement>(xs: &[T]) -> T {
///     let sum: T::Acc = xs.iter().map(|x| x.to_acc()).sum();
///     T::from_acc(sum / T::Acc::from_usize(xs.len()))
/// }
/// assert_eq!(mean(&[1.0f64, 2.0, 4.0]), 7.0 / 3.0);
/// assert_eq!(mean(&[bf16::ONE, bf16::from_f32(2.0)]), bf16::from_f32(1.5));
/// assert_eq!(<f64 as CpuElement>::NAME, "f64");
/// ```
pub trait CpuElement:
    sealed::Sealed + Copy + Default + Send + Sync + PartialEq + Debug + 'static
{
    /// The type the CPU ops compute in for this element type.
    type Acc: Accumulator;
    /// Lower-case name (`"f32"`, `"f16"`, `"bf16"`, `"f64"`), for messages.
    const NAME: &'static str;
    /// Widens to the accumulator type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds an accumulator value to this type (to nearest, ties to even).
    fn from_acc(v: Self::Acc) -> Self;
}

impl CpuElement for f32 {
    type Acc = f32;
    const NAME: &'static str = "f32";
    #[inline]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline]
    fn from_acc(v: f32) -> Self {
        v
    }
}

impl CpuElement for f16 {
    type Acc = f32;
    const NAME: &'static str = "f16";
    #[inline]
    fn to_acc(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_acc(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl CpuElement for bf16 {
    type Acc = f32;
    const NAME: &'static str = "bf16";
    #[inline]
    fn to_acc(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline]
    fn from_acc(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl CpuElement for f64 {
    type Acc = f64;
    const NAME: &'static str = "f64";
    #[inline]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline]
    fn from_acc(v: f64) -> Self {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Element;

    #[test]
    fn element_types_round_trip_like_element() {
        for x in [0.1f32, -3.5, 65519.0, 1e-8, f32::INFINITY] {
            assert_eq!(f16::from_acc(x), f16::from_f32_lossy(x));
            assert_eq!(bf16::from_acc(x), bf16::from_f32_lossy(x));
            assert_eq!(<f32 as CpuElement>::from_acc(x), x);
        }
        assert_eq!(bf16::from_f32(0.1).to_acc(), bf16::from_f32(0.1).to_f32());
        assert!(<f64 as CpuElement>::from_acc(f64::NAN).is_nan());
        assert_eq!(0.1f64.to_acc(), 0.1);
    }

    #[test]
    fn accumulator_operations() {
        assert_eq!(<f64 as Accumulator>::from_f32(0.1), f64::from(0.1f32));
        assert_eq!(<f32 as Accumulator>::from_usize(3), 3.0);
        assert_eq!(Accumulator::max(f64::NAN, 1.0), 1.0);
        assert!(Accumulator::is_nan(<f64 as Accumulator>::NAN));
        assert!(!Accumulator::is_finite(<f32 as Accumulator>::NEG_INFINITY));
        assert_eq!(Accumulator::ln(Accumulator::exp(2.0f64)), 2.0);
        assert_eq!(Accumulator::sqrt(4.0f32), 2.0);
    }
}
