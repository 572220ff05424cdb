//! Run-time-typed entry points: hidden-state views whose dtype is a value ([`DType`]), for callers
//! (a CLI, a framework binding) that only know the dtype at run time. Mixing dtypes is a
//! [`CoreError::DTypeMismatch`]; everything else is as the typed ops.

use half::{bf16, f16};

use crate::{CoreError, DType, HiddenView, HiddenViewMut, IndexView, Result};

/// A read-only hidden-state view of any supported dtype.
///
/// ```
/// use ltd_core::{AnyHiddenView, DType, HiddenOrder, HiddenView};
/// let data = [half::bf16::ONE; 4];
/// let v: AnyHiddenView<'_> = HiddenView::new(&data, HiddenOrder::BatchSeq, 1, 2, 2)?.into();
/// assert_eq!(v.dtype(), DType::BF16);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum AnyHiddenView<'a> {
    /// `f32` elements.
    F32(HiddenView<'a, f32>),
    /// `f16` elements.
    F16(HiddenView<'a, f16>),
    /// `bf16` elements.
    BF16(HiddenView<'a, bf16>),
}

/// A mutable hidden-state view of any supported dtype.
///
/// ```
/// use ltd_core::{AnyHiddenViewMut, DType, HiddenOrder, HiddenViewMut};
/// let mut data = [0.0f32; 4];
/// let v: AnyHiddenViewMut<'_> = HiddenViewMut::new(&mut data, HiddenOrder::BatchSeq, 1, 2, 2)?.into();
/// assert_eq!(v.dtype(), DType::F32);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Debug)]
pub enum AnyHiddenViewMut<'a> {
    /// `f32` elements.
    F32(HiddenViewMut<'a, f32>),
    /// `f16` elements.
    F16(HiddenViewMut<'a, f16>),
    /// `bf16` elements.
    BF16(HiddenViewMut<'a, bf16>),
}

impl AnyHiddenView<'_> {
    /// The element type.
    ///
    /// ```
    /// # use ltd_core::{AnyHiddenView, DType, HiddenOrder, HiddenView};
    /// let d = [0.0f32; 2];
    /// assert_eq!(AnyHiddenView::from(HiddenView::new(&d, HiddenOrder::BatchSeq, 1, 1, 2)?).dtype(), DType::F32);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn dtype(&self) -> DType {
        match self {
            AnyHiddenView::F32(_) => DType::F32,
            AnyHiddenView::F16(_) => DType::F16,
            AnyHiddenView::BF16(_) => DType::BF16,
        }
    }
}

impl AnyHiddenViewMut<'_> {
    /// The element type.
    ///
    /// ```
    /// # use ltd_core::{AnyHiddenViewMut, DType, HiddenOrder, HiddenViewMut};
    /// let mut d = [half::f16::ZERO; 2];
    /// assert_eq!(AnyHiddenViewMut::from(HiddenViewMut::new(&mut d, HiddenOrder::BatchSeq, 1, 1, 2)?).dtype(), DType::F16);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn dtype(&self) -> DType {
        match self {
            AnyHiddenViewMut::F32(_) => DType::F32,
            AnyHiddenViewMut::F16(_) => DType::F16,
            AnyHiddenViewMut::BF16(_) => DType::BF16,
        }
    }
}

macro_rules! from_views {
    ($($t:ty => $v:ident),*) => {$(
        impl<'a> From<HiddenView<'a, $t>> for AnyHiddenView<'a> {
            fn from(v: HiddenView<'a, $t>) -> Self {
                AnyHiddenView::$v(v)
            }
        }
        impl<'a> From<HiddenViewMut<'a, $t>> for AnyHiddenViewMut<'a> {
            fn from(v: HiddenViewMut<'a, $t>) -> Self {
                AnyHiddenViewMut::$v(v)
            }
        }
    )*};
}
from_views!(f32 => F32, f16 => F16, bf16 => BF16);

fn mismatch(what: &'static str, got: DType, expected: DType) -> CoreError {
    CoreError::DTypeMismatch {
        what,
        got,
        expected,
    }
}

/// [`gather`](crate::gather) with run-time dtypes.
///
/// # Errors
/// [`CoreError::DTypeMismatch`] when `out` is not of the dtype of `hidden`; otherwise as
/// [`gather`](crate::gather).
///
/// ```
/// use ltd_core::{CoreError, HiddenOrder, HiddenView, HiddenViewMut, IndexView, gather_any};
/// let h = [1.0f32, 2.0, 3.0];
/// let idx = [2];
/// let mut out = [half::f16::ZERO; 1];
/// let err = gather_any(
///     HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
///     &IndexView::new(&idx, 1, 1)?,
///     HiddenViewMut::new(&mut out, HiddenOrder::BatchSeq, 1, 1, 1)?.into(),
/// ).unwrap_err();
/// assert!(matches!(err, CoreError::DTypeMismatch { .. }));
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_any(
    hidden: AnyHiddenView<'_>,
    idx: &IndexView<'_>,
    out: AnyHiddenViewMut<'_>,
) -> Result<()> {
    match (hidden, out) {
        (AnyHiddenView::F32(h), AnyHiddenViewMut::F32(mut o)) => crate::gather(&h, idx, &mut o),
        (AnyHiddenView::F16(h), AnyHiddenViewMut::F16(mut o)) => crate::gather(&h, idx, &mut o),
        (AnyHiddenView::BF16(h), AnyHiddenViewMut::BF16(mut o)) => crate::gather(&h, idx, &mut o),
        (h, o) => Err(mismatch("output", o.dtype(), h.dtype())),
    }
}

/// [`route`](crate::route) (= out-of-place [`scatter`](crate::scatter)) with run-time dtypes.
///
/// # Errors
/// [`CoreError::DTypeMismatch`] when `layer_out` or `out` is not of the dtype of `hidden`;
/// otherwise as [`route`](crate::route).
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, route_any};
/// let h = [1.0f32, 2.0, 3.0];
/// let part = [9.0f32];
/// let mut y = [f32::NAN; 3];
/// route_any(
///     HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
///     HiddenView::new(&part, HiddenOrder::BatchSeq, 1, 1, 1)?.into(),
///     &IndexView::new(&[0], 1, 1)?,
///     HiddenViewMut::new(&mut y, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
/// )?;
/// assert_eq!(y, [9.0, 2.0, 3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn route_any(
    hidden: AnyHiddenView<'_>,
    layer_out: AnyHiddenView<'_>,
    idx: &IndexView<'_>,
    out: AnyHiddenViewMut<'_>,
) -> Result<()> {
    match (hidden, layer_out, out) {
        (AnyHiddenView::F32(h), AnyHiddenView::F32(p), AnyHiddenViewMut::F32(mut o)) => {
            crate::route(&h, &p, idx, &mut o)
        }
        (AnyHiddenView::F16(h), AnyHiddenView::F16(p), AnyHiddenViewMut::F16(mut o)) => {
            crate::route(&h, &p, idx, &mut o)
        }
        (AnyHiddenView::BF16(h), AnyHiddenView::BF16(p), AnyHiddenViewMut::BF16(mut o)) => {
            crate::route(&h, &p, idx, &mut o)
        }
        (h, p, o) => Err(if p.dtype() != h.dtype() {
            mismatch("layer output", p.dtype(), h.dtype())
        } else {
            mismatch("output", o.dtype(), h.dtype())
        }),
    }
}

/// [`scatter_backward`](crate::scatter_backward) (= [`route_backward_to_layer`](crate::route_backward_to_layer))
/// with run-time dtypes.
///
/// # Errors
/// [`CoreError::DTypeMismatch`] when `grad_part` is not of the dtype of `grad_out`; otherwise as
/// [`scatter_backward`](crate::scatter_backward).
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, scatter_backward_any};
/// let g = [1.0f32, 2.0, 3.0];
/// let mut gp = [f32::NAN; 1];
/// scatter_backward_any(
///     HiddenView::new(&g, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
///     &IndexView::new(&[2], 1, 1)?,
///     HiddenViewMut::new(&mut gp, HiddenOrder::BatchSeq, 1, 1, 1)?.into(),
/// )?;
/// assert_eq!(gp, [3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn scatter_backward_any(
    grad_out: AnyHiddenView<'_>,
    idx: &IndexView<'_>,
    grad_part: AnyHiddenViewMut<'_>,
) -> Result<()> {
    match (grad_out, grad_part) {
        (AnyHiddenView::F32(g), AnyHiddenViewMut::F32(mut o)) => {
            crate::scatter_backward(&g, idx, &mut o)
        }
        (AnyHiddenView::F16(g), AnyHiddenViewMut::F16(mut o)) => {
            crate::scatter_backward(&g, idx, &mut o)
        }
        (AnyHiddenView::BF16(g), AnyHiddenViewMut::BF16(mut o)) => {
            crate::scatter_backward(&g, idx, &mut o)
        }
        (g, o) => Err(mismatch("gradient of the part", o.dtype(), g.dtype())),
    }
}

/// [`gather_backward`](crate::gather_backward) (= [`route_backward_to_hidden`](crate::route_backward_to_hidden))
/// with run-time dtypes.
///
/// # Errors
/// [`CoreError::DTypeMismatch`] when `grad_part` or `grad_hidden` is not of the dtype of
/// `grad_pass`; otherwise as [`gather_backward`](crate::gather_backward).
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, HiddenViewMut, IndexView, gather_backward_any};
/// let gpass = [1.0f32, 2.0, 3.0];
/// let gpart = [7.0f32];
/// let mut gh = [f32::NAN; 3];
/// gather_backward_any(
///     HiddenView::new(&gpass, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
///     HiddenView::new(&gpart, HiddenOrder::BatchSeq, 1, 1, 1)?.into(),
///     &IndexView::new(&[1], 1, 1)?,
///     HiddenViewMut::new(&mut gh, HiddenOrder::BatchSeq, 1, 3, 1)?.into(),
/// )?;
/// assert_eq!(gh, [1.0, 7.0, 3.0]);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
pub fn gather_backward_any(
    grad_pass: AnyHiddenView<'_>,
    grad_part: AnyHiddenView<'_>,
    idx: &IndexView<'_>,
    grad_hidden: AnyHiddenViewMut<'_>,
) -> Result<()> {
    match (grad_pass, grad_part, grad_hidden) {
        (AnyHiddenView::F32(a), AnyHiddenView::F32(p), AnyHiddenViewMut::F32(mut o)) => {
            crate::gather_backward(&a, &p, idx, &mut o)
        }
        (AnyHiddenView::F16(a), AnyHiddenView::F16(p), AnyHiddenViewMut::F16(mut o)) => {
            crate::gather_backward(&a, &p, idx, &mut o)
        }
        (AnyHiddenView::BF16(a), AnyHiddenView::BF16(p), AnyHiddenViewMut::BF16(mut o)) => {
            crate::gather_backward(&a, &p, idx, &mut o)
        }
        (a, p, o) => Err(if p.dtype() != a.dtype() {
            mismatch("gradient of the part", p.dtype(), a.dtype())
        } else {
            mismatch("gradient of the hidden states", o.dtype(), a.dtype())
        }),
    }
}
