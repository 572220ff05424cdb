//! The keyed-ChaCha token sampler (`docs/design.md`, "Exactness contracts"), shared by the decoder
//! (`gpt`) and encoder (`bert`) variants, which differ only in the masks they return.
//!
//! For seed `s`, step `t` and row `(l, b)` of `[L, B]`: `key[i]` is word `i` of ChaCha8 stream
//! `l * B + b` under the 32-byte seed `s.to_le_bytes() ++ t.to_le_bytes() ++ [0; 16]`
//! ([`chacha`](crate::chacha)). The row keeps the `r` positions with the smallest `(key[i], i)`
//! pairs, sorted ascending. That is a uniformly random `r`-subset (up to 32-bit key ties, broken
//! by position), a pure function of `(s, t, l, b, S, r)`: re-sampling in a recomputation, on
//! another pipeline stage or on the GPU gives the same indices bit for bit.

use rayon::prelude::*;

use crate::chacha::{fill_words, sampler_key};
use crate::check::{nonzero, reserved_in_range};
use crate::{
    CoreError, DecoderMask, GatheredDecoderMask, MaskElement, MaskTensor, MaskView,
    PARALLEL_MIN_ELEMENTS, Result, SampledIndices, gather_decoder_masks, gather_masks,
};

/// The largest sequence length the samplers accept: positions are `i32`.
///
/// ```
/// assert_eq!(ltd_core::MAX_SEQ_LEN, 1usize << 31);
/// ```
pub const MAX_SEQ_LEN: usize = 1 << 31;

/// Scratch buffers one thread reuses across rows.
struct RowScratch {
    keys: Vec<u32>,
    packed: Vec<u64>,
}

impl RowScratch {
    const WHAT: &'static str = "sampler scratch (one key per position)";

    /// Room for one row's keys of a length-`seq` sequence, allocated checked.
    fn try_new(seq: usize) -> Result<Self> {
        let mut keys = crate::try_with_capacity(Self::WHAT, seq)?;
        keys.resize(seq, 0);
        // About seq / 256 pairs fall in the selected bucket; extend grows it past that if needed.
        let packed = crate::try_with_capacity(Self::WHAT, seq / 128 + 16)?;
        Ok(RowScratch { keys, packed })
    }

    /// The error of a worker whose scratch could not be allocated.
    fn failed(seq: usize) -> CoreError {
        CoreError::AllocationFailed {
            what: Self::WHAT,
            bytes: seq as u128 * size_of::<u32>() as u128,
            reason: "the allocator refused it".into(),
        }
    }
}

/// Samples one row: the `out.len()` positions of `0..seq` with the smallest `(key, position)`.
fn sample_row(key: &[u32; 8], stream: u64, seq: usize, out: &mut [i32], scratch: &mut RowScratch) {
    let r = out.len();
    if r == seq {
        for (i, o) in out.iter_mut().enumerate() {
            *o = i as i32;
        }
        return;
    }
    debug_assert_eq!(scratch.keys.len(), seq);
    fill_words(key, stream, &mut scratch.keys);
    // Radix select, as the GPU kernel does: a histogram of the top 8 key bits finds the bucket that
    // holds the r-th smallest key; only that bucket's (key, position) pairs (about S / 256) are
    // selected exactly. A pair is one u64 (key high, position < 2^31 low), so u64 order is the pair
    // order and all pairs are distinct.
    let mut hist = [0usize; 256];
    for &k in &scratch.keys {
        hist[(k >> 24) as usize] += 1;
    }
    let (mut below, mut bucket) = (0usize, 0usize);
    for (b, &count) in hist.iter().enumerate() {
        if below + count >= r {
            bucket = b;
            break;
        }
        below += count;
    }
    scratch.packed.clear();
    scratch.packed.extend(
        scratch
            .keys
            .iter()
            .enumerate()
            .filter(|&(_, &k)| (k >> 24) as usize == bucket)
            .map(|(i, &k)| (u64::from(k) << 32) | i as u64),
    );
    // 1 <= r - below <= the bucket's count, by the choice of the bucket.
    let (_, &mut threshold, _) = scratch.packed.select_nth_unstable(r - below - 1);
    // Exactly r pairs are <= the r-th smallest; scanning positions in order writes them sorted.
    // Branch-free: every position is written at the next free slot, which only advances for a
    // kept one (a dropped position's write is overwritten by the next kept one).
    let mut n = 0;
    for (i, &k) in scratch.keys.iter().enumerate() {
        if n == r {
            break;
        }
        out[n] = i as i32;
        n += usize::from((u64::from(k) << 32) | i as u64 <= threshold);
    }
    debug_assert_eq!(n, r);
}

/// The token sampler: a seed, and indices that are a pure function of `(seed, step, layer, row)`.
///
/// ```
/// use ltd_core::TokenSampler;
/// let sampler = TokenSampler::new(1234);
/// // 2 LTD layers, batch 4, sequence 16, keep 6 per row.
/// let a = sampler.sample(10, 2, 4, 16, 6)?;
/// let b = sampler.sample(10, 2, 4, 16, 6)?; // a recomputation: same step, same indices
/// assert_eq!(a, b);
/// assert_ne!(a, sampler.sample(11, 2, 4, 16, 6)?);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenSampler {
    seed: u64,
}

impl TokenSampler {
    /// A sampler with the given seed.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(5).seed(), 5);
    /// ```
    pub fn new(seed: u64) -> TokenSampler {
        TokenSampler { seed }
    }

    /// The seed.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenSampler::new(9).seed(), 9);
    /// ```
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn check(layers: usize, batch: usize, seq: usize, reserved: usize) -> Result<usize> {
        nonzero("L (layers)", layers)?;
        nonzero("B (batch)", batch)?;
        nonzero("S (sequence length)", seq)?;
        if seq > MAX_SEQ_LEN {
            return Err(CoreError::InvalidSize {
                what: "S (sequence length)",
                got: seq,
                expected: format!("at most {MAX_SEQ_LEN} (positions are i32)"),
            });
        }
        reserved_in_range(reserved, seq)?;
        layers
            .checked_mul(batch)
            .and_then(|x| x.checked_mul(reserved))
            .ok_or(CoreError::SizeOverflow {
                what: "sampled indices",
            })
    }

    /// Samples `[layers, batch, reserved]` sorted positions in `[0, seq)` for `step` into `out`
    /// (contiguous, exactly `layers * batch * reserved` elements). Rows run in parallel when the
    /// call is large.
    ///
    /// # Errors
    /// [`CoreError::InvalidSize`] for `L`, `B` or `S` = 0, `r = 0`, `r > S` or
    /// `S > MAX_SEQ_LEN`; [`CoreError::ShapeMismatch`] for a wrong `out` length.
    ///
    /// ```
    /// let mut idx = [0i32; 6];
    /// ltd_core::TokenSampler::new(1).sample_into(0, 1, 2, 10, 3, &mut idx)?;
    /// assert!(idx.chunks(3).all(|row| row[0] < row[1] && row[1] < row[2] && row[2] < 10));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn sample_into(
        &self,
        step: u64,
        layers: usize,
        batch: usize,
        seq: usize,
        reserved: usize,
        out: &mut [i32],
    ) -> Result<()> {
        let needed = TokenSampler::check(layers, batch, seq, reserved)?;
        if out.len() != needed {
            return Err(CoreError::ShapeMismatch {
                what: "sampler output",
                got: vec![out.len()],
                expected: format!("{needed} elements ([L={layers}, B={batch}, r={reserved}])"),
            });
        }
        let key = sampler_key(self.seed, step);
        let work = |scratch: &mut RowScratch, (row, dst): (usize, &mut [i32])| {
            sample_row(&key, row as u64, seq, dst, scratch);
        };
        let parallel =
            layers * batch > 1 && (layers * batch).saturating_mul(seq) >= PARALLEL_MIN_ELEMENTS / 4;
        let threads = if parallel {
            rayon::current_num_threads()
        } else {
            1
        };
        // Every worker holds a full row of keys (none when every position is kept): check them
        // all together before any starts.
        let scratch_len = if reserved == seq { 0 } else { seq };
        crate::check_allocation(
            RowScratch::WHAT,
            scratch_len as u128 * threads as u128,
            size_of::<u32>(),
        )?;
        if parallel {
            out.par_chunks_mut(reserved).enumerate().try_for_each_init(
                || RowScratch::try_new(scratch_len).ok(),
                |scratch, x| {
                    let scratch = scratch
                        .as_mut()
                        .ok_or_else(|| RowScratch::failed(scratch_len))?;
                    work(scratch, x);
                    Ok(())
                },
            )
        } else {
            let mut scratch = RowScratch::try_new(scratch_len)?;
            out.chunks_mut(reserved)
                .enumerate()
                .for_each(|x| work(&mut scratch, x));
            Ok(())
        }
    }

    /// Samples `[layers, batch, reserved]` sorted positions in `[0, seq)` for `step`.
    ///
    /// Row `(l, b)` uses ChaCha8 stream `l * batch + b`, so the indices of a row depend on the
    /// batch size but not on how many layers are sampled.
    ///
    /// # Errors
    /// As [`TokenSampler::sample_into`].
    ///
    /// ```
    /// let idx = ltd_core::TokenSampler::new(1).sample(3, 1, 1, 131_072, 4)?;
    /// assert_eq!(idx.as_slice().len(), 4);
    /// assert!(ltd_core::TokenSampler::new(1).sample(3, 1, 1, 8, 9).is_err()); // r > S
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn sample(
        &self,
        step: u64,
        layers: usize,
        batch: usize,
        seq: usize,
        reserved: usize,
    ) -> Result<SampledIndices> {
        let len = TokenSampler::check(layers, batch, seq, reserved)?;
        let mut data = crate::try_vec("sampled indices", len, 0i32)?;
        self.sample_into(step, layers, batch, seq, reserved, &mut data)?;
        Ok(SampledIndices {
            data,
            layers,
            batch,
            reserved,
            seq,
        })
    }

    /// Decoder (`gpt`) sampling: the indices, and the decoder masks at the kept positions
    /// (`Causal` stays causal with no tensor; a mask tensor becomes `[L, B, 1, r, r]`, or
    /// `[L, B, 1, 1, r]` from `[B, 1, 1, S]`).
    ///
    /// # Errors
    /// As [`TokenSampler::sample`]; for a mask tensor also as [`gather_masks`](crate::gather_masks)
    /// (e.g. a mask whose batch or `S` differs).
    ///
    /// ```
    /// use ltd_core::{DecoderMask, GatheredDecoderMask, MaskView, TokenSampler};
    /// // Causal + padding mask, B = 1, S = 4 (true = may attend); the last position is padding.
    /// let mut mask = [false; 16];
    /// for i in 0..4 { for j in 0..=i { mask[i * 4 + j] = j < 3; } }
    /// let (idx, masks) = TokenSampler::new(0).sample_decoder(0, 2, 1, 4, 2, &DecoderMask::Tensor(MaskView::new(&mask, 1, 4, 4)?))?;
    /// let GatheredDecoderMask::Tensor(t) = masks else { unreachable!() };
    /// assert_eq!(t.shape(), [2, 1, 1, 2, 2]);
    /// assert_eq!(idx.layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn sample_decoder<M: MaskElement>(
        &self,
        step: u64,
        layers: usize,
        batch: usize,
        seq: usize,
        reserved: usize,
        mask: &DecoderMask<'_, M>,
    ) -> Result<(SampledIndices, GatheredDecoderMask<M>)> {
        if let DecoderMask::Tensor(m) = mask {
            check_mask_seq(m, seq)?;
        }
        let idx = self.sample(step, layers, batch, seq, reserved)?;
        let masks = gather_decoder_masks(mask, &idx.view())?;
        Ok((idx, masks))
    }

    /// Encoder (`bert`) sampling: the indices, and the mask gathered for every layer in one call
    /// (`[B, 1, S, S]` → `[L, B, 1, r, r]`, `[B, 1, 1, S]` → `[L, B, 1, 1, r]`).
    ///
    /// # Errors
    /// As [`TokenSampler::sample`] and [`gather_masks`](crate::gather_masks).
    ///
    /// ```
    /// use ltd_core::{MaskView, TokenSampler};
    /// let kpm = [1u8, 1, 1, 0, 1, 1, 0, 0]; // [B=2, 1, 1, S=4]
    /// let (idx, masks) = TokenSampler::new(0).sample_encoder(5, 3, 2, 4, 3, &MaskView::new(&kpm, 2, 1, 4)?)?;
    /// assert_eq!(masks.shape(), [3, 2, 1, 1, 3]);
    /// assert_eq!(idx.reserved(), 3);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn sample_encoder<M: MaskElement>(
        &self,
        step: u64,
        layers: usize,
        batch: usize,
        seq: usize,
        reserved: usize,
        mask: &MaskView<'_, M>,
    ) -> Result<(SampledIndices, MaskTensor<M>)> {
        check_mask_seq(mask, seq)?;
        let idx = self.sample(step, layers, batch, seq, reserved)?;
        let masks = gather_masks(mask, &idx.view())?;
        Ok((idx, masks))
    }
}

/// The mask's key dimension must be the sampled sequence length.
fn check_mask_seq<M: MaskElement>(mask: &MaskView<'_, M>, seq: usize) -> Result<()> {
    if mask.cols() != seq || (mask.rows() != seq && mask.rows() != 1) {
        return Err(CoreError::ShapeMismatch {
            what: "mask",
            got: mask.shape().to_vec(),
            expected: format!("[B, 1, S={seq}, S={seq}] or [B, 1, 1, S={seq}]"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chacha::chacha8_word;

    /// The definition, written the slow way: sort all (key, i) pairs.
    fn sample_row_by_sorting(seed: u64, step: u64, stream: u64, seq: usize, r: usize) -> Vec<i32> {
        let key = sampler_key(seed, step);
        let mut pairs: Vec<(u32, usize)> = (0..seq)
            .map(|i| (chacha8_word(&key, stream, i as u64), i))
            .collect();
        pairs.sort();
        let mut kept: Vec<i32> = pairs[..r].iter().map(|&(_, i)| i as i32).collect();
        kept.sort();
        kept
    }

    #[test]
    fn rows_match_the_definition() {
        for (seq, r) in [
            (1, 1),
            (2, 1),
            (7, 3),
            (16, 15),
            (100, 37),
            (513, 512),
            (2048, 1024),
            (3000, 1),
        ] {
            let (layers, batch) = (2, 3);
            let idx = TokenSampler::new(77)
                .sample(5, layers, batch, seq, r)
                .unwrap();
            for l in 0..layers {
                for b in 0..batch {
                    let want = sample_row_by_sorting(77, 5, (l * batch + b) as u64, seq, r);
                    assert_eq!(
                        idx.layer(l).unwrap().row(b).unwrap(),
                        &want[..],
                        "S {seq} r {r} row ({l},{b})"
                    );
                }
            }
        }
    }
}
