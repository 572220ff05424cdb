//! Data-parallel training: one process (one device) per rank, each on its own shard of every
//! global batch, gradients averaged across ranks after backward and before the optimizer step.
//!
//! - `train_batch_size` (`--batch`) stays the **global** batch, as in DeepSpeed: each of `N`
//!   ranks runs `batch / N` rows of it ([`Dataset::train_shard`](crate::Dataset::train_shard)), so
//!   the config, the Random-LTD scheduler's layer-token counting, the learning-rate schedule and
//!   the checkpoint are the same whatever `N` is.
//! - Model initialisation and the batch order depend on the run seed and step only: every rank
//!   starts from the same weights with no broadcast. Random-LTD samples with the rank's key
//!   ([`ltd_core::ParallelRank`]): ranks keep independent tokens, as one process does across the
//!   rows of its batch (`docs/upstream-semantics.md` §6, "Multiple GPUs").
//! - After backward, every gradient (and the loss, for the log) goes through one
//!   [`GradientReducer::all_reduce_mean`] of a flat buffer. Every rank then holds the same mean
//!   gradient, so gradient clipping and the AdamW update are identical on every rank: weights and
//!   optimizer state stay equal with no further communication, and a checkpoint written by rank
//!   0 resumes on any number of ranks.
//! - Rank 0 (the leader) evaluates, writes reports and checkpoints.
//!
//! [`SingleProcess`] is the world of one (the ordinary run); with the `nccl` feature,
//! [`NcclReducer`] all-reduces on the GPU through NCCL (cudarc's bindings) on candle's stream.

#[cfg(feature = "nccl")]
mod nccl;

#[cfg(feature = "nccl")]
pub use nccl::{NcclId, NcclReducer};

use candle_core::Tensor;
use candle_core::backprop::GradStore;

use crate::error::{Result, TrainError};
use crate::params::Params;

/// This process's place in a data-parallel job: its rank and the number of ranks.
///
/// ```
/// use ltd_train::DataParallel;
/// let place = DataParallel::new(1, 4)?;
/// assert_eq!((place.rank(), place.world_size(), place.is_leader()), (1, 4, false));
/// assert_eq!(place.per_rank_batch(32)?, 8);
/// assert!(place.per_rank_batch(30).is_err()); // 4 ranks cannot split 30 rows evenly
/// assert!(DataParallel::new(4, 4).is_err());
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataParallel {
    rank: usize,
    world_size: usize,
}

impl DataParallel {
    /// One process: rank 0 of 1.
    ///
    /// ```
    /// assert!(ltd_train::DataParallel::SINGLE.is_leader());
    /// ```
    pub const SINGLE: DataParallel = DataParallel {
        rank: 0,
        world_size: 1,
    };

    /// Rank `rank` of `world_size`.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] for a world size of 0 or a rank not below it.
    ///
    /// ```
    /// assert!(ltd_train::DataParallel::new(0, 0).is_err());
    /// ```
    pub fn new(rank: usize, world_size: usize) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(TrainError::Parallel {
                message: format!(
                    "--rank {rank} of --world-size {world_size}; expected a world size of 1 or more and a rank below it"
                ),
            });
        }
        Ok(DataParallel { rank, world_size })
    }

    /// This process's rank (0 is the leader).
    ///
    /// ```
    /// assert_eq!(ltd_train::DataParallel::new(2, 3)?.rank(), 2);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    ///
    /// ```
    /// assert_eq!(ltd_train::DataParallel::new(2, 3)?.world_size(), 3);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Whether this is rank 0, which evaluates and writes reports and checkpoints.
    ///
    /// ```
    /// assert!(ltd_train::DataParallel::new(0, 2)?.is_leader());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// The rows of a `global_batch`-row batch that each rank runs.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the world size does not divide `global_batch`.
    ///
    /// ```
    /// assert_eq!(ltd_train::DataParallel::new(0, 2)?.per_rank_batch(8)?, 4);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn per_rank_batch(&self, global_batch: usize) -> Result<usize> {
        if global_batch == 0 || !global_batch.is_multiple_of(self.world_size) {
            return Err(TrainError::Parallel {
                message: format!(
                    "train_batch_size (--batch) {global_batch} over --world-size {}; expected a positive multiple of the world size (it is the global batch)",
                    self.world_size
                ),
            });
        }
        Ok(global_batch / self.world_size)
    }

    /// The sampler coordinates of this process: data-parallel rank [`rank`](Self::rank).
    ///
    /// ```
    /// let place = ltd_train::DataParallel::new(1, 2)?;
    /// assert_eq!(place.sampler_rank(), ltd_core::ParallelRank::data_parallel(1));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn sampler_rank(&self) -> ltd_core::ParallelRank {
        ltd_core::ParallelRank::data_parallel(self.rank as u64)
    }
}

/// The collective data-parallel training needs: the element-wise mean of one flat `f32` vector
/// over all ranks. Every rank calls it at the same point of every step, with a vector of the same
/// length, and must get back the same values on every rank.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_train::{GradientReducer, SingleProcess};
/// let v = Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?;
/// let mean = SingleProcess.all_reduce_mean(&v)?; // one rank: the mean is the vector itself
/// assert_eq!(mean.to_vec1::<f32>()?, [1., 2., 3.]);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub trait GradientReducer {
    /// This process's place in the job.
    fn place(&self) -> DataParallel;

    /// The mean over all ranks of `values` (a contiguous 1-D `f32` tensor on the run's device).
    ///
    /// # Errors
    /// A failed collective ([`TrainError::Parallel`]) or tensor errors.
    fn all_reduce_mean(&mut self, values: &Tensor) -> Result<Tensor>;

    /// Whether [`all_reduce_mean`](Self::all_reduce_mean) surely returns its input, so the
    /// trainer may skip it (and the flattening around it). `false` unless overridden: a real
    /// collective of one rank still runs, which tests the whole path on one device.
    fn is_identity(&self) -> bool {
        false
    }
}

/// The world of one process: the mean is the vector itself.
///
/// ```
/// use ltd_train::{GradientReducer, SingleProcess};
/// assert_eq!(SingleProcess.place().world_size(), 1);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl GradientReducer for SingleProcess {
    fn place(&self) -> DataParallel {
        DataParallel::SINGLE
    }

    fn all_reduce_mean(&mut self, values: &Tensor) -> Result<Tensor> {
        Ok(values.clone())
    }

    fn is_identity(&self) -> bool {
        true
    }
}

/// Replaces every gradient in `grads` by its mean over the ranks, and returns the mean loss (a
/// scalar tensor, read after the optimizer step so the device is not waited for here); `None`
/// (nothing done) for an identity reducer ([`SingleProcess`]).
///
/// The gradients of `params` that exist (in the parameters' fixed order) and the loss are
/// concatenated into one buffer for one collective. Which parameters have a gradient depends
/// on the model and the variant only, so the buffer has the same layout on every rank.
pub(crate) fn reduce_gradients(
    reducer: &mut dyn GradientReducer,
    params: &Params,
    grads: &mut GradStore,
    loss: &Tensor,
) -> Result<Option<Tensor>> {
    if reducer.is_identity() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut present = Vec::new();
    for (_, var) in params.iter() {
        if let Some(g) = grads.get(var.as_tensor()) {
            parts.push(g.flatten_all()?);
            present.push(var.as_tensor().clone());
        }
    }
    parts.push(loss.flatten_all()?);
    let flat = Tensor::cat(&parts, 0)?.contiguous()?;
    let mean = reducer.all_reduce_mean(&flat)?;
    if mean.dims() != flat.dims() {
        return Err(TrainError::Parallel {
            message: format!(
                "the all-reduce returned {:?} elements; expected {:?}",
                mean.dims(),
                flat.dims()
            ),
        });
    }
    let mut offset = 0;
    for var in &present {
        let n = var.elem_count();
        grads.insert(var, mean.narrow(0, offset, n)?.reshape(var.shape())?);
        offset += n;
    }
    Ok(Some(mean.narrow(0, offset, 1)?.squeeze(0)?))
}

impl crate::Trainer {
    /// Makes this run one rank of a data-parallel job: from now on it trains on its shard of
    /// each global batch, samples Random-LTD tokens with its rank's key, averages gradients
    /// through `reducer`, and evaluates only on rank 0. Works on a fresh run and on one resumed
    /// from a checkpoint (every rank resumes from the same one).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the world size does not divide `train_batch_size`.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?
    ///     .with_data_parallel(Box::new(SingleProcess))?;
    /// assert_eq!(run.data_parallel(), DataParallel::SINGLE);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn with_data_parallel(mut self, reducer: Box<dyn GradientReducer>) -> Result<Self> {
        reducer.place().per_rank_batch(self.config.batch)?;
        self.reducer = reducer;
        Ok(self)
    }

    /// This run's place in its data-parallel job ([`DataParallel::SINGLE`] unless set by
    /// [`with_data_parallel`](Self::with_data_parallel)).
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// assert!(Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?.data_parallel().is_leader());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn data_parallel(&self) -> DataParallel {
        self.reducer.place()
    }
}
