//! The training loop of one run: data, model, optimizer, Random-LTD scheduler and sampler, with
//! per-step records and periodic validation.

use std::time::Instant;

use candle_core::{Device, Tensor};
use ltd_scheduler::{DecayType, LayerTokenLrConfig, RandomLtdScheduler, WarmupType};
use serde::{Deserialize, Serialize};

use crate::attention::AttentionKind;
use crate::config::TrainConfig;
use crate::corpus::{Dataset, TokenBatch};
use crate::error::{Result, TrainError};
use crate::lr::{LrSchedule, Warmup};
use crate::model::{ForwardTrace, Gpt, VOCAB};
use crate::optim::{AdamW, grad_norm};
use crate::parallel::{GradientReducer, SingleProcess, reduce_gradients};
use crate::profile::Phases;
use crate::routing::KeptTokens;

/// Which kind of run: the baseline, Random-LTD, sparse attention, or both.
///
/// ```
/// let v = ltd_train::Variant::RANDOM_LTD;
/// assert_eq!(v.name(), "random-ltd");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Drop tokens in the configured layers.
    pub random_ltd: bool,
    /// Use the config's `sparse_attention` layout.
    pub sparse: bool,
}

impl Variant {
    /// Full model, dense attention.
    ///
    /// ```
    /// assert_eq!(ltd_train::Variant::BASELINE.name(), "baseline");
    /// ```
    pub const BASELINE: Variant = Variant {
        random_ltd: false,
        sparse: false,
    };
    /// Random-LTD, dense attention.
    ///
    /// ```
    /// assert_eq!(ltd_train::Variant::RANDOM_LTD.name(), "random-ltd");
    /// ```
    pub const RANDOM_LTD: Variant = Variant {
        random_ltd: true,
        sparse: false,
    };
    /// Full model, sparse attention.
    ///
    /// ```
    /// assert_eq!(ltd_train::Variant::SPARSE.name(), "sparse");
    /// ```
    pub const SPARSE: Variant = Variant {
        random_ltd: false,
        sparse: true,
    };

    /// `baseline`, `random-ltd`, `sparse` or `sparse-random-ltd` (file and directory names).
    ///
    /// ```
    /// assert_eq!(ltd_train::Variant { random_ltd: true, sparse: true }.name(), "sparse-random-ltd");
    /// ```
    pub fn name(&self) -> &'static str {
        match (self.random_ltd, self.sparse) {
            (false, false) => "baseline",
            (true, false) => "random-ltd",
            (false, true) => "sparse",
            (true, true) => "sparse-random-ltd",
        }
    }
}

/// One row of a run's log (one optimizer step).
///
/// ```
/// let r = ltd_train::StepRecord { step: 1, train_loss: 5.5, val_loss: None, layer_tokens: 10, wall_clock_s: 0.1, lr: 1e-3, reserved_length: 128 };
/// assert_eq!(r.step, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Steps completed (1 for the first).
    pub step: u64,
    /// Training loss of this step's batch (mean cross-entropy, nats per byte); in a
    /// data-parallel job, of the global batch (the mean over the ranks).
    pub train_loss: f64,
    /// Validation loss after this step, when evaluated (by rank 0 only in a data-parallel job).
    pub val_loss: Option<f64>,
    /// Layer-tokens consumed so far (token rows through a block, summed over blocks and steps;
    /// over all ranks in a data-parallel job).
    pub layer_tokens: u64,
    /// Training seconds so far (forward, backward and update; not evaluation or checkpoints).
    pub wall_clock_s: f64,
    /// The learning rate used at this step.
    pub lr: f64,
    /// Tokens each Random-LTD layer kept (the sequence length when none are dropped).
    pub reserved_length: u64,
}

/// One training run. Build it with [`Trainer::new`] (or resume it from a checkpoint with
/// [`Trainer::resume`]), then call [`Trainer::step`] until [`Trainer::is_done`].
///
/// ```no_run
/// use candle_core::Device;
/// use ltd_train::{Corpus, Dataset, TrainConfig, Trainer, Variant};
///
/// let cfg = TrainConfig::embedded(&Default::default())?;
/// let data = Dataset::new(&Corpus::embedded(), cfg.model.seq_len, cfg.val_fraction, cfg.seed)?;
/// let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu)?;
/// while !run.is_done() {
///     let record = run.step()?;
///     println!("step {} loss {:.3}", record.step, record.train_loss);
/// }
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub struct Trainer {
    pub(crate) config: TrainConfig,
    pub(crate) variant: Variant,
    pub(crate) data: Dataset,
    pub(crate) model: Gpt,
    pub(crate) optimizer: AdamW,
    pub(crate) scheduler: Option<RandomLtdScheduler>,
    ltd_layers: Vec<usize>,
    pub(crate) step: u64,
    pub(crate) layer_tokens: u64,
    pub(crate) wall_clock_s: f64,
    pub(crate) history: Vec<StepRecord>,
    /// The gradient all-reduce of a data-parallel job ([`SingleProcess`] for one process).
    pub(crate) reducer: Box<dyn GradientReducer>,
}

impl Trainer {
    /// Checks that `config` can run `variant` (a `sparse_attention` section for a sparse run,
    /// Random-LTD enabled for a Random-LTD run) without building anything, so that a caller
    /// running several variants can refuse at once instead of after the first run.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the missing section.
    ///
    /// ```
    /// use ltd_train::{TrainConfig, Trainer, Variant};
    /// let config = TrainConfig::embedded(&Default::default())?;
    /// assert!(Trainer::check_variant(&config, Variant::RANDOM_LTD).is_ok());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn check_variant(config: &TrainConfig, variant: Variant) -> Result<()> {
        let err = |message: String| TrainError::Config {
            source_name: config.source_name.clone(),
            message,
        };
        if variant.sparse && config.sparse.is_none() {
            return Err(err(
                "--sparse: the config has no sparse_attention section".to_owned()
            ));
        }
        if variant.random_ltd && config.random_ltd.is_none() {
            let why = if config.model.layers < 3 {
                format!(
                    " (--layers {} leaves no layer between the first and the last to drop tokens in; expected 3 or more)",
                    config.model.layers
                )
            } else {
                String::new()
            };
            return Err(err(format!(
                "{}.enabled: Random-LTD is not enabled in this config{why}",
                ltd_scheduler::RANDOM_LTD_KEY_PATH
            )));
        }
        Ok(())
    }

    /// A fresh run of `variant`.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the variant needs a section the config lacks (Random-LTD
    /// without `random_ltd`, sparse without `sparse_attention`), a data set whose sequence
    /// length differs from the model's, or an invalid model or optimizer.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu)?;
    /// assert_eq!((run.steps_done(), run.variant().name()), (0, "random-ltd"));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn new(
        config: &TrainConfig,
        variant: Variant,
        data: &Dataset,
        device: &Device,
    ) -> Result<Self> {
        let err = |message: String| TrainError::Config {
            source_name: config.source_name.clone(),
            message,
        };
        if data.seq_len() != config.model.seq_len {
            return Err(err(format!(
                "the data set's windows are {} tokens; expected --seq-len {}",
                data.seq_len(),
                config.model.seq_len
            )));
        }
        Trainer::check_variant(config, variant)?;
        let attention = match (&config.sparse, variant.sparse) {
            (Some(layout), true) => AttentionKind::Sparse(layout.clone()),
            _ => AttentionKind::Dense,
        };
        let (scheduler, ltd_layers) = match (&config.random_ltd, variant.random_ltd) {
            (Some(ltd), true) => {
                let mut ltd = ltd.clone();
                if config.layer_token_lr && ltd.layer_token_lr_schedule.is_none() {
                    ltd.layer_token_lr_schedule = Some(layer_token_lr_for(config, &ltd)?);
                }
                (Some(RandomLtdScheduler::new(&ltd)?), ltd.sorted_layer_ids())
            }
            _ => (None, Vec::new()),
        };
        let model = Gpt::with_attention(&config.model, attention, config.seed, device)?;
        let optimizer = AdamW::new(model.params(), config.optimizer)?;
        Ok(Trainer {
            config: config.clone(),
            variant,
            data: data.clone(),
            model,
            optimizer,
            scheduler,
            ltd_layers,
            step: 0,
            layer_tokens: 0,
            wall_clock_s: 0.0,
            history: Vec::new(),
            reducer: Box::new(SingleProcess),
        })
    }

    /// The variant.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// assert_eq!(Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?.variant(), Variant::BASELINE);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The configuration.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// assert_eq!(Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?.config().model.layers, 3);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// assert_eq!(Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?.model().config().width, 16);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn model(&self) -> &Gpt {
        &self.model
    }

    /// Steps completed.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let mut run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// run.step()?;
    /// assert_eq!(run.steps_done(), 1);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// Whether every configured step has run.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let mut run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// while !run.is_done() { run.step()?; }
    /// assert_eq!(run.steps_done(), cfg.steps);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn is_done(&self) -> bool {
        self.step >= self.config.steps
    }

    /// Every record so far (including those restored from a checkpoint).
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let mut run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// run.step()?;
    /// assert_eq!(run.history()[0].step, 1);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn history(&self) -> &[StepRecord] {
        &self.history
    }

    /// Layer-tokens consumed so far, counted from the forward passes.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let mut run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// run.step()?;
    /// assert_eq!(run.layer_tokens(), 3 * 2 * 16); // layers x batch x sequence
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn layer_tokens(&self) -> u64 {
        self.layer_tokens
    }

    /// The Random-LTD scheduler, for Random-LTD runs.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// assert!(Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu)?.scheduler().is_some());
    /// assert!(Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?.scheduler().is_none());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn scheduler(&self) -> Option<&RandomLtdScheduler> {
        self.scheduler.as_ref()
    }

    fn ids(&self, batch: &TokenBatch) -> Result<(Tensor, Tensor)> {
        let dev = self.model.device();
        let shape = (batch.batch, batch.seq_len);
        Ok((
            Tensor::from_slice(&batch.inputs, shape, dev)?,
            Tensor::from_slice(&batch.targets, batch.batch * batch.seq_len, dev)?,
        ))
    }

    /// The kept tokens of every block for this step (`None` for full blocks), and `r`.
    fn routing(&mut self, batch: usize) -> Result<(Vec<Option<KeptTokens>>, u64)> {
        let seq = self.config.model.seq_len;
        let Some(scheduler) = self.scheduler.as_mut() else {
            return Ok((Vec::new(), seq as u64));
        };
        let r = scheduler.update_seq(self.step)?;
        if r >= seq as u64 {
            return Ok((Vec::new(), seq as u64));
        }
        let r = r as usize;
        let n = self.ltd_layers.len();
        // Data-parallel ranks keep independent tokens; rank 0 is the one-process sampler.
        let seed = self
            .reducer
            .place()
            .sampler_rank()
            .sampler_seed(self.config.seed);
        let sampled = ltd_candle::sample_token_indices(
            seed,
            self.step,
            n,
            batch,
            seq,
            r,
            self.model.device(),
        )?;
        let mut kept = vec![None; self.config.model.layers];
        for (compact, &layer) in self.ltd_layers.iter().enumerate() {
            kept[layer] = Some(KeptTokens::from_sampled(sampled.get(compact)?, seq)?);
        }
        Ok((kept, r as u64))
    }

    fn loss(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        kept: &[Option<KeptTokens>],
    ) -> Result<(Tensor, ForwardTrace)> {
        let (logits, trace) = self.model.forward(ids, kept)?;
        let mut phases = Phases::start(self.model.device())?;
        let (b, s, _) = logits.dims3()?;
        let loss = candle_nn::loss::cross_entropy(&logits.reshape((b * s, VOCAB))?, targets)?;
        phases.end("loss")?;
        Ok((loss, trace))
    }

    /// Runs the next step (forward, backward, AdamW update) and evaluates when due.
    ///
    /// # Errors
    /// [`TrainError::Config`] when every step has run; tensor and scheduler errors.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu)?;
    /// let first = run.step()?;
    /// assert!(first.train_loss > 5.0 && first.reserved_length < 16);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn step(&mut self) -> Result<StepRecord> {
        if self.is_done() {
            return Err(TrainError::Config {
                source_name: self.config.source_name.clone(),
                message: format!("--steps {}: every step has run", self.config.steps),
            });
        }
        let start = Instant::now();
        let place = self.reducer.place();
        let batch = self.data.train_shard(self.step, self.config.batch, place)?;
        let (ids, targets) = self.ids(&batch)?;
        let (kept, r) = self.routing(batch.batch)?;
        let (loss, trace) = self.loss(&ids, &targets, &kept)?;
        let mut phases = Phases::start(self.model.device())?;
        let mut grads = loss.backward()?;
        phases.end("backward")?;
        let mean_loss = reduce_gradients(
            self.reducer.as_mut(),
            self.model.params(),
            &mut grads,
            &loss,
        )?;
        if mean_loss.is_some() {
            phases.end("all-reduce")?;
        }
        let lr = match self
            .scheduler
            .as_ref()
            .and_then(RandomLtdScheduler::current_lr)
        {
            Some(lr) => lr,
            None => self.config.lr_schedule.lr_at(self.step),
        };
        let scale = match self.config.gradient_clipping {
            Some(max) => {
                let norm = grad_norm(self.model.params(), &grads)?;
                if norm > max { max / (norm + 1e-6) } else { 1.0 }
            }
            None => 1.0,
        };
        phases.end("gradient norm")?;
        self.optimizer.step(&grads, lr, scale)?;
        phases.end("optimizer")?;
        let train_loss = f64::from(mean_loss.unwrap_or(loss).to_scalar::<f32>()?);
        self.wall_clock_s += start.elapsed().as_secs_f64();
        self.step += 1;
        // Every rank runs the same r on the same number of rows: the job's count is N times ours.
        self.layer_tokens += trace.layer_tokens * place.world_size() as u64;
        let evaluate = place.is_leader()
            && (self.is_done()
                || (self.config.eval_every > 0
                    && self.step.is_multiple_of(self.config.eval_every)));
        let val_loss = if evaluate {
            let windows = if self.is_done() {
                0
            } else {
                self.config.eval_windows
            };
            Some(self.evaluate(windows)?)
        } else {
            None
        };
        let record = StepRecord {
            step: self.step,
            train_loss,
            val_loss,
            layer_tokens: self.layer_tokens,
            wall_clock_s: self.wall_clock_s,
            lr,
            reserved_length: r,
        };
        self.history.push(record.clone());
        Ok(record)
    }

    /// Mean validation loss (no token dropping) over the first `windows` validation windows
    /// (0: all), weighted by tokens.
    ///
    /// # Errors
    /// Tensor errors.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// assert!((run.evaluate(4)? - 256f64.ln()).abs() < 0.5); // untrained: about uniform
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn evaluate(&self, windows: usize) -> Result<f64> {
        let mut total = 0f64;
        let mut rows = 0usize;
        for batch in self.data.val_batches(windows, self.config.batch) {
            let (ids, targets) = self.ids(&batch)?;
            let (loss, _) = self.loss(&ids, &targets, &[])?;
            total += f64::from(loss.to_scalar::<f32>()?) * batch.batch as f64;
            rows += batch.batch;
        }
        Ok(total / rows.max(1) as f64)
    }
}

/// The LayerToken schedule that matches the step schedule: the same peak, warmup over the
/// layer-tokens the warmup steps consume, cosine decay to the step schedule's floor over the
/// run's layer-tokens.
fn layer_token_lr_for(
    config: &TrainConfig,
    ltd: &ltd_scheduler::RandomLtdConfig,
) -> Result<LayerTokenLrConfig> {
    let probe = RandomLtdScheduler::new(ltd)?;
    let total_layer_tokens = probe.total_layer_tokens(config.steps)?;
    let (warmup_steps, warmup_type, peak_lr, min_lr) = match config.lr_schedule {
        LrSchedule::WarmupCosine {
            lr,
            warmup_num_steps,
            cos_min_ratio,
            warmup_type,
            ..
        } => (
            warmup_num_steps,
            warmup_type,
            lr,
            lr * cos_min_ratio.clamp(0.0, 1.0),
        ),
        LrSchedule::WarmupDecay {
            warmup_num_steps,
            warmup_type,
            warmup_max_lr,
            ..
        } => (warmup_num_steps, warmup_type, warmup_max_lr, 0.0),
        LrSchedule::Warmup {
            warmup_num_steps,
            warmup_type,
            warmup_max_lr,
            ..
        } => (warmup_num_steps, warmup_type, warmup_max_lr, warmup_max_lr),
    };
    let warmup_layer_tokens = probe.total_layer_tokens(warmup_steps.min(config.steps))?;
    Ok(LayerTokenLrConfig {
        total_layer_tokens: total_layer_tokens.max(1),
        warmup_layer_tokens: warmup_layer_tokens.min(total_layer_tokens),
        warmup_type: match warmup_type {
            Warmup::Linear => WarmupType::Linear,
            Warmup::Log => WarmupType::Log,
        },
        decay_type: DecayType::Cosine,
        peak_lr,
        min_lr: min_lr.min(peak_lr),
    })
}
