//! The ChaCha8 block function, written once in plain Rust as the mirror of the GPU sampler kernel.
//!
//! The sampler's keys are the output words of ChaCha8 with random access by word position, exactly
//! as `rand_chacha::ChaCha8Rng` produces them after `from_seed`, `set_stream` and `set_word_pos`
//! (`docs/design.md`, "Exactness contracts"). The state of block `n` of stream `t` is
//!
//! ```text
//! word  0..4   "expa" "nd 3" "2-by" "te k"   (the constants)
//! word  4..12  the 8 little-endian u32 words of the 32-byte seed
//! word 12..14  n (64-bit block counter, low word first)
//! word 14..16  t (64-bit stream, low word first)
//! ```
//!
//! and its output is the state after 8 rounds (4 double rounds) plus the input state, word by
//! word. Word `i` of the stream is word `i % 16` of block `i / 16`.

/// The four ChaCha constant words, `"expand 32-byte k"` read as little-endian `u32`s.
///
/// ```
/// assert_eq!(ltd_core::chacha::CONSTANTS[0].to_le_bytes(), *b"expa");
/// ```
pub const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// Words per ChaCha block.
///
/// ```
/// assert_eq!(ltd_core::chacha::BLOCK_WORDS, 16);
/// ```
pub const BLOCK_WORDS: usize = 16;

/// Double rounds of ChaCha8 (8 rounds).
const DOUBLE_ROUNDS: usize = 4;

/// The 8 key words of a 32-byte seed (little-endian).
///
/// ```
/// let mut seed = [0u8; 32];
/// seed[4] = 1;
/// assert_eq!(ltd_core::chacha::key_words(&seed)[1], 1);
/// ```
pub fn key_words(seed: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([
            seed[4 * i],
            seed[4 * i + 1],
            seed[4 * i + 2],
            seed[4 * i + 3],
        ])
    })
}

/// The sampler's 32-byte ChaCha seed for `(seed, step)`:
/// `seed.to_le_bytes() ++ step.to_le_bytes() ++ [0; 16]` (`docs/design.md`, "Exactness contracts").
///
/// ```
/// let s = ltd_core::chacha::sampler_seed(1, 2);
/// assert_eq!(s[0], 1);
/// assert_eq!(s[8], 2);
/// assert!(s[16..].iter().all(|&b| b == 0));
/// ```
pub fn sampler_seed(seed: u64, step: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..16].copy_from_slice(&step.to_le_bytes());
    out
}

/// The sampler's key words for `(seed, step)`: [`key_words`] of [`sampler_seed`].
///
/// ```
/// let k = ltd_core::chacha::sampler_key(0x0000_0002_0000_0001, 3);
/// assert_eq!(&k[..3], &[1, 2, 3]);
/// ```
pub fn sampler_key(seed: u64, step: u64) -> [u32; 8] {
    key_words(&sampler_seed(seed, step))
}

#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// The input state of block `block` of stream `stream` under `key`.
fn input_state(key: &[u32; 8], block: u64, stream: u64) -> [u32; 16] {
    let mut s = [0u32; 16];
    s[..4].copy_from_slice(&CONSTANTS);
    s[4..12].copy_from_slice(key);
    s[12] = block as u32;
    s[13] = (block >> 32) as u32;
    s[14] = stream as u32;
    s[15] = (stream >> 32) as u32;
    s
}

/// One ChaCha8 block: the 16 output words of block `block` (the 64-bit counter) of stream
/// `stream` under the 8 key words `key`.
///
/// ```
/// use ltd_core::chacha::{chacha8_block, sampler_key};
/// let key = sampler_key(42, 0);
/// let b = chacha8_block(&key, 0, 5);
/// assert_eq!(b[3], ltd_core::chacha::chacha8_word(&key, 5, 3));
/// ```
pub fn chacha8_block(key: &[u32; 8], block: u64, stream: u64) -> [u32; 16] {
    let input = input_state(key, block, stream);
    let mut x = input;
    for _ in 0..DOUBLE_ROUNDS {
        // Column round.
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        // Diagonal round.
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    std::array::from_fn(|i| x[i].wrapping_add(input[i]))
}

/// Word `word_pos` of stream `stream` under `key`: word `word_pos % 16` of block `word_pos / 16`
/// (what `ChaCha8Rng::set_stream(stream); set_word_pos(word_pos); next_u32()` returns).
///
/// ```
/// let key = ltd_core::chacha::sampler_key(1, 1);
/// let w = ltd_core::chacha::chacha8_word(&key, 0, 17);
/// assert_eq!(w, ltd_core::chacha::chacha8_block(&key, 1, 0)[1]);
/// ```
pub fn chacha8_word(key: &[u32; 8], stream: u64, word_pos: u64) -> u32 {
    chacha8_block(key, word_pos / BLOCK_WORDS as u64, stream)
        [(word_pos % BLOCK_WORDS as u64) as usize]
}

/// Blocks computed side by side in [`fill_words`] (lanes of the same arithmetic, so the compiler
/// vectorises them).
const LANES: usize = 16;

#[inline(always)]
#[allow(clippy::needless_range_loop)] // lane loops, written for the vectoriser
fn quarter_round_lanes(x: &mut [[u32; LANES]; 16], a: usize, b: usize, c: usize, d: usize) {
    for l in 0..LANES {
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(16);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(12);
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(8);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(7);
    }
}

/// `LANES` consecutive blocks starting at `first_block`, written word-major into `out`
/// (`out[16 * lane + word]`).
#[allow(clippy::needless_range_loop)]
fn blocks_lanes(
    key: &[u32; 8],
    first_block: u64,
    stream: u64,
    out: &mut [u32; LANES * BLOCK_WORDS],
) {
    let mut input = [[0u32; LANES]; 16];
    for (w, c) in CONSTANTS.iter().enumerate() {
        input[w] = [*c; LANES];
    }
    for (w, k) in key.iter().enumerate() {
        input[4 + w] = [*k; LANES];
    }
    for l in 0..LANES {
        let block = first_block.wrapping_add(l as u64);
        input[12][l] = block as u32;
        input[13][l] = (block >> 32) as u32;
    }
    input[14] = [stream as u32; LANES];
    input[15] = [(stream >> 32) as u32; LANES];
    let mut x = input;
    for _ in 0..DOUBLE_ROUNDS {
        quarter_round_lanes(&mut x, 0, 4, 8, 12);
        quarter_round_lanes(&mut x, 1, 5, 9, 13);
        quarter_round_lanes(&mut x, 2, 6, 10, 14);
        quarter_round_lanes(&mut x, 3, 7, 11, 15);
        quarter_round_lanes(&mut x, 0, 5, 10, 15);
        quarter_round_lanes(&mut x, 1, 6, 11, 12);
        quarter_round_lanes(&mut x, 2, 7, 8, 13);
        quarter_round_lanes(&mut x, 3, 4, 9, 14);
    }
    for w in 0..16 {
        for l in 0..LANES {
            out[BLOCK_WORDS * l + w] = x[w][l].wrapping_add(input[w][l]);
        }
    }
}

/// Fills `out` with words `0..out.len()` of stream `stream` under `key`: the same values as
/// [`chacha8_word`] for each position, computed several blocks at a time.
///
/// ```
/// use ltd_core::chacha::{chacha8_word, fill_words, sampler_key};
/// let key = sampler_key(9, 4);
/// let mut w = vec![0u32; 300];
/// fill_words(&key, 11, &mut w);
/// assert!((0..300).all(|i| w[i] == chacha8_word(&key, 11, i as u64)));
/// ```
pub fn fill_words(key: &[u32; 8], stream: u64, out: &mut [u32]) {
    let mut buf = [0u32; LANES * BLOCK_WORDS];
    for (n, chunk) in out.chunks_mut(LANES * BLOCK_WORDS).enumerate() {
        blocks_lanes(key, (n * LANES) as u64, stream, &mut buf);
        chunk.copy_from_slice(&buf[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    fn splitmix(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn block_function_matches_rand_chacha_word_for_word() {
        let mut st = 1u64;
        let positions: Vec<u64> = vec![
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            63,
            64,
            65,
            1023,
            1024,
            131_071,
            131_072,
            (1 << 32) * 16 - 1,
            (1 << 32) * 16,
            (1 << 32) * 16 + 5,
            u64::MAX / 2,
            u64::MAX - 16,
            u64::MAX,
        ];
        for case in 0..60 {
            let (seed, step) = if case < 4 {
                (case, case * 3)
            } else {
                (splitmix(&mut st), splitmix(&mut st))
            };
            let stream = match case % 4 {
                0 => 0,
                1 => case,
                2 => splitmix(&mut st),
                _ => u64::MAX,
            };
            let key = sampler_key(seed, step);
            let mut rng = ChaCha8Rng::from_seed(sampler_seed(seed, step));
            rng.set_stream(stream);
            for &pos in positions
                .iter()
                .chain(&[splitmix(&mut st), splitmix(&mut st) % 100_000])
            {
                rng.set_word_pos(u128::from(pos));
                // Read 40 consecutive words from `pos` to cross block boundaries.
                for k in 0..40u64 {
                    let p = pos.wrapping_add(k);
                    let ours = chacha8_word(&key, stream, p);
                    let theirs = rng.next_u32();
                    if p < pos {
                        // Wrapped past 2^64 words: rand_chacha keeps a 68-bit position, we do not go there.
                        break;
                    }
                    assert_eq!(
                        ours, theirs,
                        "seed {seed} step {step} stream {stream} word {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn sequential_stream_matches_fill_words() {
        for (seed, step, stream) in [(0u64, 0u64, 0u64), (5, 7, 3), (u64::MAX, 1, 12345)] {
            let key = sampler_key(seed, step);
            let mut rng = ChaCha8Rng::from_seed(sampler_seed(seed, step));
            rng.set_stream(stream);
            let mut w = vec![0u32; 1000];
            fill_words(&key, stream, &mut w);
            for (i, &x) in w.iter().enumerate() {
                assert_eq!(x, rng.next_u32(), "word {i}");
            }
        }
    }
}
