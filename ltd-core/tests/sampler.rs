//! The keyed-ChaCha samplers: exact algorithm (checked against `rand_chacha` directly, not
//! through our block function), validity (`ltd_reference::check_sampled_indices`), sizes with no
//! limit on S or r, uniformity, determinism, and the decoder/encoder mask outputs.

use ltd_core::*;
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The definition of `docs/design.md` ("Exactness contracts"), written with `rand_chacha`: keys
/// are the words of stream `l*B+b`, keep the r smallest `(key, i)` pairs, sort ascending.
fn oracle_row(seed: u64, step: u64, stream: u64, seq: usize, r: usize) -> Vec<i32> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&step.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(bytes);
    rng.set_stream(stream);
    rng.set_word_pos(0);
    let mut pairs: Vec<(u32, usize)> = (0..seq).map(|i| (rng.next_u32(), i)).collect();
    pairs.sort_unstable();
    let mut kept: Vec<i32> = pairs[..r].iter().map(|&(_, i)| i as i32).collect();
    kept.sort_unstable();
    kept
}

fn check_against_oracle(seed: u64, step: u64, layers: usize, batch: usize, seq: usize, r: usize) {
    let idx = TokenSampler::new(seed)
        .sample(step, layers, batch, seq, r)
        .unwrap();
    ltd_reference::check_sampled_indices(idx.as_slice(), layers, batch, r, seq).unwrap();
    for l in 0..layers {
        for b in 0..batch {
            let want = oracle_row(seed, step, (l * batch + b) as u64, seq, r);
            assert_eq!(
                idx.layer(l).unwrap().row(b).unwrap(),
                &want[..],
                "seed {seed} step {step} S {seq} r {r} row ({l},{b})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn samples_are_valid_and_exactly_the_keyed_chacha_definition(
        seed in any::<u64>(),
        step in any::<u64>(),
        layers in 1usize..4,
        batch in 1usize..4,
        seq in 1usize..300,
        r_frac in 0.0f64..=1.0,
    ) {
        let r = 1 + ((seq - 1) as f64 * r_frac).round() as usize;
        check_against_oracle(seed, step, layers, batch, seq, r);
    }
}

/// The sizes of upstream-semantics.md §3.3 (upstream's sort stopped at 2048).
#[test]
fn parity_sizes() {
    for seq in [1usize, 7, 2048, 2049, 5000] {
        for r in [1usize, 511, 512, 513, 2048] {
            if r <= seq {
                check_against_oracle(3, 17, 1, 2, seq, r);
            }
        }
        check_against_oracle(3, 17, 1, 1, seq, seq); // r = S
    }
}

#[test]
fn long_sequences_have_no_limit() {
    let seq = 131_072;
    for r in [1, 65_536, seq - 1, seq] {
        check_against_oracle(11, 2, 1, 1, seq, r);
    }
}

#[test]
fn same_step_same_indices_other_step_other_indices() {
    let s = TokenSampler::new(5);
    let a = s.sample(9, 4, 3, 64, 20).unwrap();
    assert_eq!(a, s.sample(9, 4, 3, 64, 20).unwrap());
    assert_ne!(a, s.sample(10, 4, 3, 64, 20).unwrap());
    assert_ne!(a, TokenSampler::new(6).sample(9, 4, 3, 64, 20).unwrap());
    // Row (l, b) uses stream l*B + b: it does not depend on how many layers are sampled.
    let fewer = s.sample(9, 2, 3, 64, 20).unwrap();
    assert_eq!(fewer.as_slice(), &a.as_slice()[..2 * 3 * 20]);
    // Serial (one row) and parallel calls agree.
    let big = s.sample(1, 8, 8, 2048, 1024).unwrap();
    let one = s.sample(1, 1, 1, 2048, 1024).unwrap();
    assert_eq!(one.as_slice(), big.layer(0).unwrap().row(0).unwrap());
    let mut into = vec![0; 8 * 8 * 1024];
    s.sample_into(1, 8, 8, 2048, 1024, &mut into).unwrap();
    assert_eq!(into, big.as_slice());
}

/// Each position is kept with probability r/S. Over N = 20 000 independent rows (50 layers x 40
/// rows x 10 steps, all distinct ChaCha streams or keys), the count of each position is
/// Binomial(N, p = 5/16): mean 6250, sigma = sqrt(N p (1-p)) = 65.5. The test allows 5 sigma
/// (328). Under the normal approximation a 5-sigma deviation has two-sided probability 5.7e-7 per
/// position, so a correct sampler fails this test for a given seed with probability below
/// 16 x 5.7e-7 < 1e-5 (union bound).
#[test]
fn every_position_is_kept_with_frequency_r_over_s() {
    let (layers, batch, seq, r) = (50, 40, 16, 5);
    let mut counts = [0u64; 16];
    let mut rows = 0u64;
    for step in 0..10 {
        let idx = TokenSampler::new(2024)
            .sample(step, layers, batch, seq, r)
            .unwrap();
        for &p in idx.as_slice() {
            counts[p as usize] += 1;
        }
        rows += (layers * batch) as u64;
    }
    let n = rows as f64;
    let p = r as f64 / seq as f64;
    let (mean, sigma) = (n * p, (n * p * (1.0 - p)).sqrt());
    for (i, &c) in counts.iter().enumerate() {
        assert!(
            (c as f64 - mean).abs() <= 5.0 * sigma,
            "position {i}: {c} kept, expected {mean} +- {}",
            5.0 * sigma
        );
    }
}

/// All C(5,2) = 10 subsets equally likely: Pearson chi-square over N = 20 000 rows with 9 degrees
/// of freedom; the bound 50 has tail probability 1.1e-7 for a uniform sampler.
#[test]
fn every_subset_is_equally_likely() {
    let (seq, r) = (5, 2);
    let mut counts = std::collections::HashMap::<(i32, i32), u64>::new();
    let mut n = 0u64;
    for step in 0..10 {
        let idx = TokenSampler::new(77).sample(step, 40, 50, seq, r).unwrap();
        for row in idx.as_slice().chunks(2) {
            *counts.entry((row[0], row[1])).or_default() += 1;
            n += 1;
        }
    }
    assert_eq!(counts.len(), 10);
    let expected = n as f64 / 10.0;
    let chi2: f64 = counts
        .values()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 50.0, "chi-square {chi2} over 9 degrees of freedom");
}

#[test]
fn decoder_and_encoder_sampling_return_the_gathered_masks() {
    let (layers, batch, seq, r) = (3, 2, 12, 5);
    let sampler = TokenSampler::new(8);
    let full: Vec<f32> = (0..batch * seq * seq).map(|x| x as f32).collect();
    let kpm: Vec<u8> = (0..batch * seq).map(|x| (x % 3) as u8).collect();
    let full_view = MaskView::new(&full, batch, seq, seq).unwrap();
    let kpm_view = MaskView::new(&kpm, batch, 1, seq).unwrap();

    let (idx, masks) = sampler
        .sample_decoder::<f32>(4, layers, batch, seq, r, &DecoderMask::Causal)
        .unwrap();
    assert_eq!(idx, sampler.sample(4, layers, batch, seq, r).unwrap());
    assert_eq!(masks, GatheredDecoderMask::Causal);

    let (idx, masks) = sampler
        .sample_decoder(4, layers, batch, seq, r, &DecoderMask::Tensor(full_view))
        .unwrap();
    assert_eq!(
        masks,
        GatheredDecoderMask::Tensor(gather_masks(&full_view, &idx.view()).unwrap())
    );

    let (idx2, masks) = sampler
        .sample_encoder(4, layers, batch, seq, r, &full_view)
        .unwrap();
    assert_eq!(idx, idx2);
    assert_eq!(masks.shape(), [layers, batch, 1, r, r]);
    let want = ltd_reference::encoder_mask_gather(
        &full,
        ltd_reference::EncoderMaskForm::Full,
        idx.as_slice(),
        layers,
        batch,
        r,
        seq,
    )
    .unwrap();
    assert_eq!(masks.as_slice(), &want[..]);

    let (_, masks) = sampler
        .sample_encoder(4, layers, batch, seq, r, &kpm_view)
        .unwrap();
    assert_eq!(masks.shape(), [layers, batch, 1, 1, r]);
    let want = ltd_reference::encoder_mask_gather(
        &kpm,
        ltd_reference::EncoderMaskForm::KeyPadding,
        idx.as_slice(),
        layers,
        batch,
        r,
        seq,
    )
    .unwrap();
    assert_eq!(masks.as_slice(), &want[..]);
}
