//! [`RefElement`]: the element types the oracles accept (`f32`, `half::f16`, `half::bf16`, `f64`).

use half::{bf16, f16};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type the oracles read and write: exactly `f32`, `half::f16`, `half::bf16` and
/// `f64`.
///
/// Oracles convert every input to `f64` with [`RefElement::to_f64`] (exact for all four types),
/// compute in `f64`, and round each output once with [`RefElement::from_f64`] (round to nearest,
/// ties to even). The trait is sealed and deliberately independent of `ltd-core`'s `Element`, so
/// the oracle shares no code with what it checks.
///
/// ```
/// use ltd_reference::RefElement;
/// use half::{bf16, f16};
/// assert_eq!(f16::from_f64(1.0 / 3.0).to_f64(), 0.333251953125);
/// assert_eq!(bf16::from_f64(1.0 + 1.0 / 256.0).to_f64(), 1.0); // tie, rounds to even
/// assert_eq!(<f32 as RefElement>::NAME, "f32");
/// assert_eq!(<f64 as RefElement>::from_f64(0.1), 0.1); // f64 in, f64 out: no rounding
/// ```
pub trait RefElement:
    sealed::Sealed + Copy + Default + PartialEq + Send + Sync + std::fmt::Debug + 'static
{
    /// Lower-case type name (`"f32"`, `"f16"`, `"bf16"`, `"f64"`), for messages.
    const NAME: &'static str;

    /// Widens to `f64`; exact for all four types.
    ///
    /// ```
    /// use ltd_reference::RefElement;
    /// assert_eq!(RefElement::to_f64(0.1f32), 0.1f32 as f64);
    /// ```
    fn to_f64(self) -> f64;

    /// Narrows from `f64`, rounding to nearest (ties to even); overflow gives ±infinity, NaN
    /// stays NaN.
    ///
    /// ```
    /// use ltd_reference::RefElement;
    /// use half::f16;
    /// assert_eq!(<f16 as RefElement>::from_f64(65520.0), f16::INFINITY);
    /// assert_eq!(<f32 as RefElement>::from_f64(0.1), 0.1f32);
    /// ```
    fn from_f64(x: f64) -> Self;
}

impl RefElement for f32 {
    const NAME: &'static str = "f32";
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        // `as` rounds to nearest, ties to even.
        x as f32
    }
}

impl RefElement for f64 {
    const NAME: &'static str = "f64";
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// Rounds `x` to `f32` with round-to-odd: truncate toward zero and, if inexact, set the last
/// mantissa bit. Rounding that result to nearest-even in any format with at most 22 mantissa
/// bits (f16: 10, bf16: 7) gives the correctly rounded value of `x`. This avoids `half`'s
/// `from_f64`, which drops the low 32 bits of the f64 mantissa (or goes through an
/// `as f32` rounding) and can therefore round a value just above a tie the wrong way.
fn f64_to_f32_round_to_odd(x: f64) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    let nearest = x as f32;
    if f64::from(nearest) == x {
        return nearest;
    }
    let mut bits = nearest.to_bits();
    if f64::from(nearest).abs() > x.abs() {
        // Rounded away from zero (possibly to infinity): step one ulp back toward zero.
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

impl RefElement for f16 {
    const NAME: &'static str = "f16";
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f32(f64_to_f32_round_to_odd(x))
    }
}

impl RefElement for bf16 {
    const NAME: &'static str = "bf16";
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f32(f64_to_f32_round_to_odd(x))
    }
}

/// Widens a slice to `f64`.
///
/// ```
/// use ltd_reference::to_f64_vec;
/// assert_eq!(to_f64_vec(&[1.5f32, -2.0]), vec![1.5, -2.0]);
/// ```
pub fn to_f64_vec<T: RefElement>(xs: &[T]) -> Vec<f64> {
    xs.iter().map(|x| x.to_f64()).collect()
}

/// Narrows a slice of `f64` to `T`, rounding each value to nearest.
///
/// ```
/// use ltd_reference::from_f64_vec;
/// use half::bf16;
/// let v: Vec<bf16> = from_f64_vec(&[1.0, 0.5]);
/// assert_eq!(v, vec![bf16::ONE, bf16::from_f32(0.5)]);
/// ```
pub fn from_f64_vec<T: RefElement>(xs: &[f64]) -> Vec<T> {
    xs.iter().map(|&x| T::from_f64(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        for x in [0.0f32, -0.0, 1.0, 3.5, -1e-3, f32::MAX, f32::MIN_POSITIVE] {
            assert_eq!(<f32 as RefElement>::from_f64(RefElement::to_f64(x)), x);
        }
        let h = f16::from_f32(0.1);
        assert_eq!(<f16 as RefElement>::from_f64(RefElement::to_f64(h)), h);
        let b = bf16::from_f32(0.1);
        assert_eq!(<bf16 as RefElement>::from_f64(RefElement::to_f64(b)), b);
    }

    #[test]
    fn overflow_underflow_and_subnormals() {
        assert_eq!(<f16 as RefElement>::from_f64(1e300), f16::INFINITY);
        assert_eq!(<bf16 as RefElement>::from_f64(-1e300), bf16::NEG_INFINITY);
        assert_eq!(<f16 as RefElement>::from_f64(f64::INFINITY), f16::INFINITY);
        // f16 max is 65504; the halfway point to the next binade step is 65520.
        assert_eq!(<f16 as RefElement>::from_f64(65519.99).to_f64(), 65504.0);
        // f16 smallest subnormal is 2^-24: 2^-25 is a tie (to 0), just above rounds up.
        assert_eq!(<f16 as RefElement>::from_f64(2f64.powi(-25)).to_f64(), 0.0);
        assert_eq!(
            <f16 as RefElement>::from_f64(2f64.powi(-25) * (1.0 + 2f64.powi(-40))).to_f64(),
            2f64.powi(-24)
        );
        // Far below every subnormal: signed zero.
        let z = <bf16 as RefElement>::from_f64(-1e-300);
        assert_eq!(z.to_f64(), 0.0);
        assert!(z.is_sign_negative());
        // bf16 smallest subnormal is 2^-133.
        assert_eq!(
            <bf16 as RefElement>::from_f64(2f64.powi(-134) * (1.0 + 2f64.powi(-45))).to_f64(),
            2f64.powi(-133)
        );
    }

    #[test]
    fn rounds_to_nearest_even() {
        // f16 spacing at 1.0 is 2^-10: 1 + 2^-11 is a tie, rounds to 1 (even); slightly above
        // rounds up.
        let tie = 1.0 + 2f64.powi(-11);
        assert_eq!(<f16 as RefElement>::from_f64(tie).to_f64(), 1.0);
        let above = tie + 2f64.powi(-30);
        assert_eq!(
            <f16 as RefElement>::from_f64(above).to_f64(),
            1.0 + 2f64.powi(-10)
        );
        // bf16 spacing at 1.0 is 2^-7.
        let above = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        assert_eq!(
            <bf16 as RefElement>::from_f64(above).to_f64(),
            1.0 + 2f64.powi(-7)
        );
        // Just below a tie rounds down, the tie itself to even.
        let below = 1.0 + 2f64.powi(-8) - 2f64.powi(-40);
        assert_eq!(<bf16 as RefElement>::from_f64(below).to_f64(), 1.0);
        let tie = 1.0 + 3.0 * 2f64.powi(-8);
        assert_eq!(
            <bf16 as RefElement>::from_f64(tie).to_f64(),
            1.0 + 2.0 * 2f64.powi(-7)
        );
        // Negative values mirror positive ones.
        assert_eq!(
            <f16 as RefElement>::from_f64(-(1.0 + 2f64.powi(-11) + 2f64.powi(-30))).to_f64(),
            -(1.0 + 2f64.powi(-10))
        );
        assert!(<bf16 as RefElement>::from_f64(f64::NAN).is_nan());
        assert!(<f16 as RefElement>::from_f64(f64::NAN).is_nan());
        assert_eq!(
            <f32 as RefElement>::from_f64(f64::NEG_INFINITY),
            f32::NEG_INFINITY
        );
    }
}
