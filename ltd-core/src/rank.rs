//! Which kept tokens a process of a parallel job samples, decided with no communication.
//!
//! A job of `dp x tp x pp` processes has, per process, a data-parallel rank (which shard of the
//! global batch it holds), a tensor-parallel rank (which slice of each layer's weights) and a
//! pipeline rank (which layers). The token sampler's key depends on the run seed and the
//! **data-parallel rank only** ([`ParallelRank::sampler_seed`]):
//!
//! - Ranks of one tensor-parallel group hold the same sequences and must drop the same tokens (the
//!   gathered activations are split by channel across them): same data-parallel rank, same key,
//!   same indices.
//! - Pipeline stages of one data-parallel rank agree too: every stage samples all Random-LTD layers
//!   from the same key and keeps the rows of its own layers.
//! - Data-parallel ranks hold different sequences and draw independent kept sets, so `N` ranks of
//!   batch `b` sample like one process of batch `N * b` (every sequence of the global batch gets
//!   an independent uniform subset).
//!
//! Data-parallel rank 0 uses the seed itself, so a one-process run and rank 0 of an `N`-process
//! run sample alike. Upstream (DeepSpeed's Random-LTD) draws from the device's global torch RNG,
//! which Megatron seeds alike on every data-parallel rank unless `--data-parallel-random-init` is
//! given: there the data-parallel ranks drop the *same* positions of their different sequences
//! (`docs/upstream-semantics.md` §6, "Multiple GPUs"). A caller that wants that behaviour passes
//! data-parallel rank 0 on every process.

use crate::TokenSampler;

/// A process's coordinates in a data x tensor x pipeline parallel job, for the sampler.
///
/// Only [`data`](Self::data) changes the sampler's key; the other two are carried so a caller
/// can pass its full position and read, in one place, that they do not matter.
///
/// ```
/// use ltd_core::{ParallelRank, TokenSampler};
/// // Two tensor-parallel ranks of data-parallel rank 1 drop the same tokens ...
/// let tp0 = ParallelRank { data: 1, tensor: 0, pipeline: 0 };
/// let tp1 = ParallelRank { data: 1, tensor: 1, pipeline: 0 };
/// let a = TokenSampler::for_rank(1234, &tp0).sample(7, 2, 4, 64, 16)?;
/// assert_eq!(a, TokenSampler::for_rank(1234, &tp1).sample(7, 2, 4, 64, 16)?);
/// // ... data-parallel rank 0 drops others, and is the one-process sampler.
/// let dp0 = TokenSampler::for_rank(1234, &ParallelRank::default()).sample(7, 2, 4, 64, 16)?;
/// assert_ne!(a, dp0);
/// assert_eq!(dp0, TokenSampler::new(1234).sample(7, 2, 4, 64, 16)?);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ParallelRank {
    /// Data-parallel rank: which shard of the global batch this process holds.
    pub data: u64,
    /// Tensor-parallel (model-parallel) rank; does not change the sampled tokens.
    pub tensor: u64,
    /// Pipeline rank; does not change the sampled tokens.
    pub pipeline: u64,
}

impl ParallelRank {
    /// Data-parallel rank `data` of a job with no tensor or pipeline parallelism.
    ///
    /// ```
    /// assert_eq!(ltd_core::ParallelRank::data_parallel(3).data, 3);
    /// ```
    pub fn data_parallel(data: u64) -> ParallelRank {
        ParallelRank {
            data,
            ..ParallelRank::default()
        }
    }

    /// The sampler seed of this process for run seed `seed`: `seed ^ fmix64(data)`, MurmurHash3's
    /// 64-bit finalizer of the data-parallel rank.
    ///
    /// `fmix64` is a bijection with `fmix64(0) = 0`, so for one run seed distinct data-parallel
    /// ranks always get distinct keys, rank 0 gets `seed` itself, and neighbouring run seeds
    /// (1234 and 1235) do not hand each other's keys to neighbouring ranks.
    ///
    /// ```
    /// use ltd_core::ParallelRank;
    /// assert_eq!(ParallelRank::data_parallel(0).sampler_seed(42), 42);
    /// assert_ne!(ParallelRank::data_parallel(1).sampler_seed(42), 42);
    /// let tp = ParallelRank { data: 1, tensor: 5, pipeline: 2 };
    /// assert_eq!(tp.sampler_seed(42), ParallelRank::data_parallel(1).sampler_seed(42));
    /// ```
    pub fn sampler_seed(&self, seed: u64) -> u64 {
        seed ^ fmix64(self.data)
    }
}

/// MurmurHash3's 64-bit finalizer: xor-shifts and odd multiplications, each invertible.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl TokenSampler {
    /// The sampler of the process at `rank` in a run with seed `seed`
    /// (`TokenSampler::new(rank.sampler_seed(seed))`; see [`ParallelRank`]).
    ///
    /// ```
    /// use ltd_core::{ParallelRank, TokenSampler};
    /// let s0 = TokenSampler::for_rank(9, &ParallelRank::data_parallel(0));
    /// let s1 = TokenSampler::for_rank(9, &ParallelRank::data_parallel(1));
    /// assert_eq!(s0, TokenSampler::new(9));
    /// assert_ne!(s0.sample(0, 1, 1, 1024, 8)?, s1.sample(0, 1, 1, 1024, 8)?);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn for_rank(seed: u64, rank: &ParallelRank) -> TokenSampler {
        TokenSampler::new(rank.sampler_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmix64_is_injective_on_ranks_and_fixes_zero() {
        assert_eq!(fmix64(0), 0);
        let mut seen: Vec<u64> = (0..4096).map(fmix64).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4096);
    }
}
