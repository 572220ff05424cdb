//! Score modifiers shared by the dense attention and the block-sparse softmax: [`MaskMode`],
//! [`Mask`], and the order in which scale, bias and masks apply (upstream-semantics.md §2.7).

/// How a mask's values enter the scores.
///
/// ```
/// use ltd_reference::MaskMode;
/// assert_eq!(MaskMode::Add.term(-2.5), -2.5);
/// assert_eq!(MaskMode::Mul.term(0.0), f64::NEG_INFINITY);
/// assert_eq!(MaskMode::Mul.term(1.0), 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskMode {
    /// Add the value itself (e.g. `0` / `-inf` or any additive bias).
    Add,
    /// Add `-inf` where the value is 0, else 0 (a 0/1 keep-mask).
    Mul,
}

impl MaskMode {
    /// The term a mask value `v` adds to a score.
    ///
    /// ```
    /// use ltd_reference::MaskMode;
    /// assert_eq!(MaskMode::Mul.term(0.3), 0.0);
    /// ```
    pub fn term(self, v: f64) -> f64 {
        match self {
            MaskMode::Add => v,
            MaskMode::Mul => {
                if v == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            }
        }
    }
}

/// A mask tensor with its mode. Its shape depends on where it is used (key padding `[B, L]`,
/// attention mask `[L, L]`).
///
/// ```
/// use ltd_reference::{Mask, MaskMode};
/// let kpm = [1.0f32, 1.0, 0.0];
/// let mask = Mask { values: &kpm, mode: MaskMode::Mul };
/// assert_eq!(mask.values.len(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mask<'a, T> {
    /// The values, row-major.
    pub values: &'a [T],
    /// How they apply.
    pub mode: MaskMode,
}

/// The f64 versions of scale, bias and masks, already validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Modifiers<'a> {
    pub scale: f64,
    /// `[B, H, L, L]`.
    pub bias: Option<&'a [f64]>,
    /// `[B, L]`.
    pub key_padding: Option<(&'a [f64], MaskMode)>,
    /// `[L, L]`.
    pub attn_mask: Option<(&'a [f64], MaskMode)>,
}

impl Modifiers<'_> {
    /// The score of query `i`, key `j` in (batch `b`, head `h`) for a raw dot product `x`, in
    /// upstream-semantics.md §2.7 order: scale, then bias, then key padding, then attention mask. `heads` and
    /// `seq` give the tensor shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        x: f64,
        b: usize,
        h: usize,
        i: usize,
        j: usize,
        heads: usize,
        seq: usize,
    ) -> f64 {
        let mut s = x * self.scale;
        if let Some(bias) = self.bias {
            s += bias[((b * heads + h) * seq + i) * seq + j];
        }
        if let Some((kpm, mode)) = self.key_padding {
            s += mode.term(kpm[b * seq + j]);
        }
        if let Some((am, mode)) = self.attn_mask {
            s += mode.term(am[i * seq + j]);
        }
        s
    }
}

/// Softmax of one row in f64. Entries equal to `-inf` get probability 0. If every entry is
/// `-inf` (or the row is empty) the result is all zeros and the logsumexp is `-inf` (our
/// convention; upstream gives NaN). If any entry is NaN or `+inf` every probability and the
/// logsumexp are NaN (as `torch.softmax`). Returns `(p, logsumexp)`.
pub(crate) fn softmax_row(s: &[f64]) -> (Vec<f64>, f64) {
    // f64::max skips NaN, so a poisoned row must be caught before the maximum.
    if s.iter().any(|x| x.is_nan() || *x == f64::INFINITY) {
        return (vec![f64::NAN; s.len()], f64::NAN);
    }
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return (vec![0.0; s.len()], f64::NEG_INFINITY);
    }
    let e: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    (e.iter().map(|&x| x / sum).collect(), m + sum.ln())
}
