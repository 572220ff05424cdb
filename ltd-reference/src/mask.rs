//! Attention-mask gathers for Random-LTD (upstream-semantics.md §1.5, with the decoder fix of
//! `docs/design.md`, "ltd-core").
//!
//! Masks only move, so these are generic over any `T: Copy` (additive float masks, `bool`,
//! `u8`, ...).

use crate::error::{Result, check_len, check_reserved, nonzero};
use crate::indices::{Rules, check_indices};

/// Decoder mask gather: `mask [B, 1, S, S]`, `idx [B, r]` → `[B, 1, r, r]` with
/// `out[b, 0, i, j] = mask[b, 0, idx[b, i], idx[b, j]]`.
///
/// The mask is gathered at the kept positions (so causal, padding and document masks stay right),
/// **not** upstream's top-left `[:r, :r]` slice. Indices must be in `[0, S)`; they may repeat.
///
/// ```
/// use ltd_reference::decoder_mask_gather;
/// // A causal 3x3 mask (1 = may attend), keep positions 0 and 2.
/// let mask = [1u8, 0, 0,
///             1, 1, 0,
///             1, 1, 1];
/// assert_eq!(decoder_mask_gather(&mask, &[0, 2], 1, 2, 3)?, vec![1, 0, 1, 1]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn decoder_mask_gather<T: Copy>(
    mask: &[T],
    idx: &[i32],
    batch: usize,
    r: usize,
    seq: usize,
) -> Result<Vec<T>> {
    nonzero("batch", batch)?;
    nonzero("seq", seq)?;
    check_reserved(r, seq)?;
    check_len("mask", mask, &[batch, 1, seq, seq])?;
    check_indices("idx", idx, None, batch, r, seq, Rules::InRange)?;
    let mut out = Vec::with_capacity(batch * r * r);
    for b in 0..batch {
        for i in 0..r {
            for j in 0..r {
                let qi = idx[b * r + i] as usize;
                let kj = idx[b * r + j] as usize;
                out.push(mask[(b * seq + qi) * seq + kj]);
            }
        }
    }
    Ok(out)
}

/// The two mask forms an encoder (BERT-style) layer uses.
///
/// ```
/// use ltd_reference::EncoderMaskForm;
/// assert_ne!(EncoderMaskForm::Full, EncoderMaskForm::KeyPadding);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncoderMaskForm {
    /// `[B, 1, S, S]`, gathered to `[L, B, 1, r, r]`.
    Full,
    /// Broadcast key-padding `[B, 1, 1, S]`, gathered to `[L, B, 1, 1, r]`.
    KeyPadding,
}

/// Encoder mask gather for all LTD layers at once, `idx [L, B, r]`:
/// - [`EncoderMaskForm::Full`]: `mask [B,1,S,S]` → `[L,B,1,r,r]`,
///   `out[l,b,0,i,j] = mask[b,0,idx[l,b,i],idx[l,b,j]]`;
/// - [`EncoderMaskForm::KeyPadding`]: `mask [B,1,1,S]` → `[L,B,1,1,r]`,
///   `out[l,b,0,0,j] = mask[b,0,0,idx[l,b,j]]`.
///
/// Indices must be in `[0, S)`; they may repeat.
///
/// ```
/// use ltd_reference::{encoder_mask_gather, EncoderMaskForm};
/// // Key padding over S = 4 (0 = keep, -inf = padded), L = 2 layers, B = 1, r = 2.
/// let kpm = [0.0f32, 0.0, f32::NEG_INFINITY, 0.0];
/// let idx = [0, 2, 1, 3];
/// let out = encoder_mask_gather(&kpm, EncoderMaskForm::KeyPadding, &idx, 2, 1, 2, 4)?;
/// assert_eq!(out, vec![0.0, f32::NEG_INFINITY, 0.0, 0.0]);
/// # Ok::<(), ltd_reference::RefError>(())
/// ```
pub fn encoder_mask_gather<T: Copy>(
    mask: &[T],
    form: EncoderMaskForm,
    idx: &[i32],
    layers: usize,
    batch: usize,
    r: usize,
    seq: usize,
) -> Result<Vec<T>> {
    nonzero("layers", layers)?;
    nonzero("batch", batch)?;
    nonzero("seq", seq)?;
    check_reserved(r, seq)?;
    check_indices("idx", idx, Some(layers), batch, r, seq, Rules::InRange)?;
    let mut out = Vec::new();
    match form {
        EncoderMaskForm::Full => {
            check_len("mask", mask, &[batch, 1, seq, seq])?;
            for l in 0..layers {
                for b in 0..batch {
                    let row = &idx[(l * batch + b) * r..(l * batch + b + 1) * r];
                    for &qi in row {
                        for &kj in row {
                            out.push(mask[(b * seq + qi as usize) * seq + kj as usize]);
                        }
                    }
                }
            }
        }
        EncoderMaskForm::KeyPadding => {
            check_len("mask", mask, &[batch, 1, 1, seq])?;
            for l in 0..layers {
                for b in 0..batch {
                    let row = &idx[(l * batch + b) * r..(l * batch + b + 1) * r];
                    for &kj in row {
                        out.push(mask[b * seq + kj as usize]);
                    }
                }
            }
        }
    }
    Ok(out)
}
