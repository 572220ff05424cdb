//! CPU float types: [`CpuElement`] names what the CPU ops read and write (`f32`, `f16`, `bf16`
//! and `f64`), [`Accumulator`] what they compute in (`f32` for the first three, `f64` for `f64`).
//!
//! The GPU kernels exist for [`Element`](crate::Element)'s three types only, so `f64` is a
//! `CpuElement` but not an `Element`; every `Element` is a `CpuElement` with `Acc = f32`, so code
//! generic over `Element` calls the CPU ops unchanged.

use half::{bf16, f16};
use num_traits::{ConstOne, ConstZero, Float};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// The float type a CPU op computes in: `f32` or `f64`.
///
/// The arithmetic comes from [`Float`] (`exp`, `ln`, `sqrt`, `max`, `is_nan`, `neg_infinity()`,
/// ...) and [`ConstZero`] / [`ConstOne`] (`ZERO`, `ONE`); with num-traits' `std` feature each
/// forwards to the standard library's method of the same name, so results are those of `f32` /
/// `f64`. `max` is the standard library's (a NaN operand is ignored), so the ops test NaN
/// explicitly. Code that reaches the type as `T::Acc` (an associated type) needs these traits in
/// scope; ltd-core re-exports them.
///
/// ```
/// use ltd_core::{Accumulator, ConstZero, CpuElement, Float};
/// fn logsumexp<A: Accumulator>(xs: &[A]) -> A {
///     let m = xs.iter().copied().fold(A::neg_infinity(), A::max);
///     m + xs.iter().map(|&x| (x - m).exp()).sum::<A>().ln()
/// }
/// assert!((logsumexp(&[0.0f64, 0.0]) - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(<f32 as Accumulator>::from_f32(0.1), 0.1f32);
///
/// fn positive_max<T: CpuElement>(xs: &[T]) -> T::Acc {
///     xs.iter().map(|x| x.to_acc()).fold(T::Acc::ZERO, T::Acc::max)
/// }
/// assert_eq!(positive_max(&[half::bf16::from_f32(-1.0), half::bf16::NAN]), 0.0f32);
/// ```
pub trait Accumulator:
    sealed::Sealed
    + Float
    + ConstZero
    + ConstOne
    + Default
    + Send
    + Sync
    + Debug
    + Display
    + 'static
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// Widens an `f32` (exact).
    fn from_f32(v: f32) -> Self;
    /// Converts a count, as `n as f32` / `n as f64` does.
    fn from_usize(n: usize) -> Self;
}

macro_rules! accumulator {
    ($t:ident) => {
        impl Accumulator for $t {
            #[inline]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as $t
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
        // Through the trait, as generic ops call them.
        fn max<A: Accumulator>(a: A, b: A) -> A {
            a.max(b)
        }
        fn round_trip<A: Accumulator>(x: A) -> A {
            x.exp().ln()
        }
        assert_eq!(<f64 as Accumulator>::from_f32(0.1), f64::from(0.1f32));
        assert_eq!(<f32 as Accumulator>::from_usize(3), 3.0);
        assert_eq!(max(f64::NAN, 1.0), 1.0);
        assert_eq!(max(1.0f32, f32::NAN), 1.0);
        assert!(<f64 as Float>::nan().is_nan());
        assert!(!<f32 as Float>::neg_infinity().is_finite());
        assert_eq!(
            (<f32 as ConstZero>::ZERO, <f64 as ConstOne>::ONE),
            (0.0, 1.0)
        );
        assert_eq!(round_trip(2.0f64), 2.0);
        assert_eq!(Float::sqrt(4.0f32), 2.0);
    }
}
