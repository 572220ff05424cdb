//! The argument types of the fused attention: shapes, masks, options, inputs and gradients.

use ltd_core::Accumulator;

/// Sizes of the `[B, H, L, D]` query, key, value and output tensors.
///
/// ```
/// let s = ltd_sparse_attn::AttentionShape { batch: 2, heads: 4, seq_len: 100, head_dim: 32 };
/// assert_eq!(s.qkv_len(), 2 * 4 * 100 * 32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionShape {
    /// Batch `B`.
    pub batch: usize,
    /// Heads `H` (must equal the layout's).
    pub heads: usize,
    /// Sequence length `L` (any value; padded to whole blocks internally).
    pub seq_len: usize,
    /// Head dimension `D` (at least 1).
    pub head_dim: usize,
}

impl AttentionShape {
    /// Elements of one `[B, H, L, D]` tensor.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 1, heads: 1, seq_len: 3, head_dim: 2 };
    /// assert_eq!(s.qkv_len(), 6);
    /// ```
    pub fn qkv_len(&self) -> usize {
        self.lse_len().saturating_mul(self.head_dim)
    }

    /// Elements of the `[B, H, L]` logsumexp.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 2, heads: 3, seq_len: 5, head_dim: 8 };
    /// assert_eq!(s.lse_len(), 30);
    /// ```
    pub fn lse_len(&self) -> usize {
        self.batch
            .saturating_mul(self.heads)
            .saturating_mul(self.seq_len)
    }

    /// Elements of a `[B, H, L, L]` bias.
    ///
    /// ```
    /// let s = ltd_sparse_attn::AttentionShape { batch: 1, heads: 2, seq_len: 5, head_dim: 8 };
    /// assert_eq!(s.bias_len(), 50);
    /// ```
    pub fn bias_len(&self) -> usize {
        self.lse_len().saturating_mul(self.seq_len)
    }
}

/// A key-padding mask over `[B, L]`.
///
/// ```
/// use ltd_sparse_attn::KeyPaddingMask;
/// let keep = [true, true, false];
/// let m = KeyPaddingMask::Keep(&keep);
/// assert_eq!(m.len(), 3);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum KeyPaddingMask<'a> {
    /// Added to the scores (`0` keeps a key, `-inf` drops it; upstream's `add` mode, as BERT's
    /// extended mask).
    Additive(&'a [f32]),
    /// `true` keeps the key (a real token), `false` drops it (padding).
    Keep(&'a [bool]),
}

impl KeyPaddingMask<'_> {
    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::KeyPaddingMask::Additive(&[0.0; 4]).len(), 4);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            KeyPaddingMask::Additive(m) => m.len(),
            KeyPaddingMask::Keep(m) => m.len(),
        }
    }

    /// Whether the mask is empty.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::KeyPaddingMask::Keep(&[]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mask as additive terms (`0` keeps a key, `-inf` drops it), widened to `A`.
    pub(crate) fn additive<A: Accumulator>(&self) -> Vec<A> {
        match self {
            KeyPaddingMask::Additive(m) => m.iter().map(|&x| A::from_f32(x)).collect(),
            KeyPaddingMask::Keep(m) => m
                .iter()
                .map(|&k| if k { A::ZERO } else { A::neg_infinity() })
                .collect(),
        }
    }
}

/// Options of one attention call.
///
/// ```
/// use ltd_sparse_attn::AttentionOptions;
/// let o = AttentionOptions::<f32> { causal: true, ..AttentionOptions::new() };
/// assert!(o.scale.is_none() && o.bias.is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttentionOptions<'a, T> {
    /// Score scale; `None` means `1 / sqrt(D)`, computed in the accumulator type (`f64` for
    /// `f64` inputs, which widen a given scale exactly).
    pub scale: Option<f32>,
    /// Token-level causality: query `i` sees keys `j <= i` only (on top of the layout).
    pub causal: bool,
    /// Key-padding mask `[B, L]`.
    pub key_padding_mask: Option<KeyPaddingMask<'a>>,
    /// Additive bias `[B, H, L, L]` (for example a relative-position bias), added after scaling;
    /// [`attention_backward`](crate::attention_backward) can return its gradient.
    pub bias: Option<&'a [T]>,
}

impl<T> AttentionOptions<'_, T> {
    /// Default scale, not causal, no mask, no bias.
    ///
    /// ```
    /// assert!(!ltd_sparse_attn::AttentionOptions::<f32>::new().causal);
    /// ```
    pub fn new() -> Self {
        AttentionOptions {
            scale: None,
            causal: false,
            key_padding_mask: None,
            bias: None,
        }
    }
}

impl<T> Default for AttentionOptions<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The `[B, H, L, D]` inputs of attention. All three share one element type, so a dtype
/// mismatch between them (or with the bias and the outputs) cannot be expressed:
///
/// ```
/// let (q, k, v) = (vec![0.0f32; 4], vec![0.0f32; 4], vec![0.0f32; 4]);
/// let x = ltd_sparse_attn::AttentionInputs { q: &q, k: &k, v: &v };
/// assert_eq!(x.q.len(), 4);
/// ```
///
/// ```compile_fail
/// let (q, k) = (vec![0.0f32; 4], vec![half::f16::ZERO; 4]);
/// let x = ltd_sparse_attn::AttentionInputs { q: &q, k: &k, v: &q }; // f16 keys, f32 queries
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a, T> {
    /// Queries `[B, H, L, D]`.
    pub q: &'a [T],
    /// Keys `[B, H, L, D]`.
    pub k: &'a [T],
    /// Values `[B, H, L, D]`.
    pub v: &'a [T],
}

/// Gradient outputs of [`attention_backward`](crate::attention_backward); every element is
/// written.
///
/// ```
/// let (mut a, mut b, mut c) = (vec![0.0f32; 1], vec![0.0f32; 1], vec![0.0f32; 1]);
/// let g = ltd_sparse_attn::AttentionGrads { dq: &mut a, dk: &mut b, dv: &mut c, dbias: None };
/// assert!(g.dbias.is_none());
/// ```
#[derive(Debug)]
pub struct AttentionGrads<'a, T> {
    /// dL/dq `[B, H, L, D]`.
    pub dq: &'a mut [T],
    /// dL/dk `[B, H, L, D]`.
    pub dk: &'a mut [T],
    /// dL/dv `[B, H, L, D]`.
    pub dv: &'a mut [T],
    /// dL/dbias `[B, H, L, L]` (zero outside the active, unmasked entries), if wanted.
    pub dbias: Option<&'a mut [T]>,
}
