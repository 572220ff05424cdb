//! The Random-LTD layer wrapper for candle: [`RandomLtd`] (the schedule, the sampler and the
//! indices of the current step, shared by all layers) and [`RandomLayerTokenDrop`] (one wrapped
//! layer), with upstream's semantics (spec §1.7) and its limitations fixed:
//! - layers are selected by their exact model layer index (not a substring of a module name);
//! - the indices of all LTD layers are sampled once per step, keyed by the seed and the step,
//!   and kept, so a recomputation (activation checkpointing) or a pipeline stage without layer 0
//!   gets the same indices with no RNG state to restore;
//! - decoder masks are gathered at the kept positions (causal + padding + document masks stay
//!   right), or stay a causal flag ([`MaskArg::Causal`]) with nothing gathered; encoder masks
//!   may be `[B, 1, S, S]` or the broadcast `[B, 1, 1, S]` form;
//! - the layer is told the kept positions ([`LayerContext::positions`]) for RoPE / ALiBi;
//! - the output is written by the fused [`route`](crate::route), no clone of the hidden states.
//!
//! Pass-through (the layer sees all `S` tokens) in eval mode, for layers not in the config's
//! `random_ltd_layer_id`, and when `r >= S`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Tensor};
use half::{bf16, f16};
use ltd_core::{HiddenOrder, MaskElement, MaskView, ModelKind, TokenSampler, gather_masks};
use ltd_scheduler::{
    DataEfficiencyConfig, HiddenStateOrder, ModelType, RandomLtdConfig, RandomLtdScheduler,
};

use crate::attention::lock;
use crate::check::{describe_device, same_device, supported_device};
use crate::cpu::cpu_storage;
use crate::tokens::{bsc, gather_tokens, route};
use crate::{LtdCandleError, Result};

/// The attention mask a model passes to a wrapped layer.
///
/// ```
/// let m = ltd_candle::MaskArg::Causal;
/// assert!(matches!(m, ltd_candle::MaskArg::Causal));
/// ```
#[derive(Clone, Copy, Debug)]
pub enum MaskArg<'a> {
    /// No mask (upstream's `model_mask_name: null`).
    None,
    /// Pure causal attention (decoders): the layer keeps a causal flag, nothing is gathered.
    Causal,
    /// A `[B, 1, S, S]` or `[B, 1, 1, S]` mask (u8, f32, f16 or bf16, any convention),
    /// gathered at the kept positions: `[B, 1, r, r]` / `[B, 1, 1, r]`.
    Tensor(&'a Tensor),
}

/// The mask a wrapped layer receives.
///
/// ```
/// let m = ltd_candle::LayerMask::Causal;
/// assert!(matches!(m, ltd_candle::LayerMask::Causal));
/// ```
#[derive(Clone, Debug)]
pub enum LayerMask {
    /// No mask.
    None,
    /// Causal attention over the tokens the layer sees (ascending positions).
    Causal,
    /// A mask over the tokens the layer sees: `[B, 1, n, n]` or `[B, 1, 1, n]`.
    Tensor(Tensor),
}

/// What a wrapped layer's closure receives besides its input tokens.
///
/// ```
/// let ctx = ltd_candle::LayerContext { layer_index: 3, mask: ltd_candle::LayerMask::None, positions: None };
/// assert!(!ctx.drops_tokens());
/// ```
#[derive(Clone, Debug)]
pub struct LayerContext {
    /// The model layer index of the wrapped layer.
    pub layer_index: usize,
    /// The mask over the tokens the layer sees.
    pub mask: LayerMask,
    /// The true positions `[B, r]` (U32) of the kept tokens when the layer runs on a subset;
    /// `None` when it sees every position `0..S` in order.
    pub positions: Option<Tensor>,
}

impl LayerContext {
    /// `true` when the layer runs on a subset of the tokens.
    ///
    /// ```
    /// let ctx = ltd_candle::LayerContext { layer_index: 0, mask: ltd_candle::LayerMask::Causal, positions: None };
    /// assert!(!ctx.drops_tokens());
    /// ```
    pub fn drops_tokens(&self) -> bool {
        self.positions.is_some()
    }
}

/// The indices (and gathered masks) of one step.
#[derive(Clone, Debug)]
struct StepSample {
    key: SampleKey,
    /// U32 `[L, B, r]`.
    indices: Tensor,
    masks: StepMasks,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SampleKey {
    step: u64,
    batch: usize,
    seq: usize,
    reserved: usize,
    device: String,
}

#[derive(Clone, Debug)]
enum StepMasks {
    None,
    Causal,
    /// `[L, B, 1, rows, r]`.
    Tensor(Tensor),
}

#[derive(Debug, Default)]
struct StepState {
    /// `(step, r)` of the current step.
    current: Option<(u64, usize)>,
    sample: Option<StepSample>,
}

/// Random-LTD for one model: the reserved-length scheduler (from DeepSpeed's
/// `data_efficiency.data_routing.random_ltd` config), the token sampler and the indices of the
/// current step, shared by every wrapped layer (hold it in an `Arc`).
///
/// Per training step: [`begin_step`](Self::begin_step) (upstream's `update_seq`, which the
/// DeepSpeed engine calls on every forward), then the model's forward through the wrapped
/// layers, then `backward()`.
///
/// ```
/// use candle_core::{Device, Module, Tensor, Var};
/// use ltd_candle::RandomLtd;
/// let json = r#"{"train_batch_size": 2, "data_efficiency": {"data_routing": {"random_ltd": {
///   "enabled": true, "total_layer_num": 3, "random_ltd_layer_num": 1, "random_ltd_layer_id": [1],
///   "model_mask_name": null, "model_type": "decoder", "hidden_state_order": "batch_seq_dim",
///   "random_ltd_schedule": {"min_value": 4, "max_value": 16, "schedule_type": "fixed_linear",
///     "schedule_config": {"require_steps": 100, "seq_per_step": 4}}}}}}"#;
/// let ltd = RandomLtd::from_deepspeed_json(json, 1234)?;
/// // Layer 1 drops tokens; the "layer" here doubles its input.
/// let layer = ltd.wrap(1, candle_core::Tensor::new(2f32, &Device::Cpu)?)?;
/// let r = ltd.begin_step(0)?; // r = 4 of S = 16 at step 0
/// let h = Var::from_tensor(&Tensor::ones((2, 16, 8), candle_core::DType::F32, &Device::Cpu)?)?;
/// let y = layer.forward_with(&h, ltd_candle::MaskArg::None, |w, x, ctx| {
///     assert_eq!(x.dims(), &[2, r, 8]);
///     assert!(ctx.drops_tokens());
///     Ok(x.broadcast_mul(w)?)
/// })?;
/// let doubled = y.sum_all()?.to_scalar::<f32>()?;
/// assert_eq!(doubled, (2 * 16 * 8 + 2 * 4 * 8) as f32); // 4 of 16 rows doubled, per row of B
/// ltd.set_training(false); // eval: every layer sees all tokens
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
#[derive(Debug)]
pub struct RandomLtd {
    sampler: TokenSampler,
    /// Sorted model layer indices that drop tokens (compact id = rank).
    layers: Vec<usize>,
    total_layers: usize,
    order: HiddenOrder,
    kind: ModelKind,
    mask_name: Option<String>,
    scheduler: Mutex<RandomLtdScheduler>,
    training: AtomicBool,
    state: Mutex<StepState>,
}

impl RandomLtd {
    /// Random-LTD from a validated config (with `global_batch_size` set, as DeepSpeed injects it)
    /// and the sampler's seed, in training mode.
    ///
    /// # Errors
    /// [`LtdCandleError::Scheduler`] for an invalid config or a missing `global_batch_size`.
    ///
    /// ```
    /// let cfg = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().with_global_batch_size(8).unwrap();
    /// let ltd = ltd_candle::RandomLtd::new(&cfg, 7)?;
    /// assert_eq!(ltd.layer_ids().len(), 22);
    /// assert_eq!(ltd.ltd_id(1), Some(0)); // exact layer indices: 1 is compact id 0
    /// assert_eq!(ltd.ltd_id(0), None);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn new(config: &RandomLtdConfig, seed: u64) -> Result<Arc<RandomLtd>> {
        let scheduler = RandomLtdScheduler::new(config)?;
        Ok(Arc::new(RandomLtd {
            sampler: TokenSampler::new(seed),
            layers: config.sorted_layer_ids(),
            total_layers: config.total_layer_num,
            order: match config.hidden_state_order {
                HiddenStateOrder::BatchSeqDim => HiddenOrder::BatchSeq,
                HiddenStateOrder::SeqBatchDim => HiddenOrder::SeqBatch,
            },
            kind: match config.model_type {
                ModelType::Decoder => ModelKind::Decoder,
                ModelType::Encoder => ModelKind::Encoder,
            },
            mask_name: config.model_mask_name.clone(),
            scheduler: Mutex::new(scheduler),
            training: AtomicBool::new(true),
            state: Mutex::new(StepState::default()),
        }))
    }

    /// Random-LTD from a whole DeepSpeed config file's text (`train_batch_size` becomes the
    /// global batch size, as the engine injects it).
    ///
    /// # Errors
    /// [`LtdCandleError::Scheduler`] for a bad config; [`LtdCandleError::State`] when random-LTD
    /// is not enabled in it.
    ///
    /// ```
    /// assert!(ltd_candle::RandomLtd::from_deepspeed_json("{}", 0).is_err()); // not enabled
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.order(), ltd_core::HiddenOrder::SeqBatch);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn from_deepspeed_json(text: &str, seed: u64) -> Result<Arc<RandomLtd>> {
        let Some(config) = DataEfficiencyConfig::from_deepspeed_json(text)?.random_ltd else {
            return Err(LtdCandleError::State(
                "data_efficiency.data_routing.random_ltd.enabled is not true in this config".into(),
            ));
        };
        RandomLtd::new(&config, seed)
    }

    /// Starts training step `step`: updates the scheduler (upstream's `update_seq`) and returns
    /// the reserved length `r` of this step. Steps must not go backwards.
    ///
    /// # Errors
    /// [`LtdCandleError::Scheduler`] when `step` is below the last one.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.begin_step(0)?, 128);
    /// assert_eq!(ltd.begin_step(100_000)?, 1088);
    /// assert!(ltd.begin_step(5).is_err());
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn begin_step(&self, step: u64) -> Result<usize> {
        let r = lock(&self.scheduler).update_seq(step)?;
        let r = usize::try_from(r).map_err(|_| {
            LtdCandleError::State(format!("reserved length {r} does not fit usize"))
        })?;
        lock(&self.state).current = Some((step, r));
        Ok(r)
    }

    /// Switches between training (dropping) and eval (pass-through) mode.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// ltd.set_training(false);
    /// assert!(!ltd.is_training());
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    /// `true` in training mode (the default).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert!(ltd.is_training());
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// `(step, r)` of the current step, or `None` before the first [`begin_step`](Self::begin_step).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.current_step(), None);
    /// ltd.begin_step(3)?;
    /// assert_eq!(ltd.current_step(), Some((3, 128)));
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn current_step(&self) -> Option<(u64, usize)> {
        lock(&self.state).current
    }

    /// The model layer indices that drop tokens, ascending.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.layer_ids().first(), Some(&1));
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn layer_ids(&self) -> &[usize] {
        &self.layers
    }

    /// The compact LTD id (first index of the sampled `[L, B, r]` indices) of model layer
    /// `layer_index`, or `None` if it does not drop tokens.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!((ltd.ltd_id(10), ltd.ltd_id(23)), (Some(9), None));
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn ltd_id(&self, layer_index: usize) -> Option<usize> {
        self.layers.binary_search(&layer_index).ok()
    }

    /// The hidden-state order of the model (`hidden_state_order`).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.order(), ltd_core::HiddenOrder::SeqBatch);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn order(&self) -> HiddenOrder {
        self.order
    }

    /// Decoder or encoder (`model_type`).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.kind(), ltd_core::ModelKind::Decoder);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The config's `model_mask_name` (the keyword upstream reads the mask from; here the
    /// caller passes the mask itself, so it is informational).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.mask_name(), Some("attention_mask"));
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn mask_name(&self) -> Option<&str> {
        self.mask_name.as_deref()
    }

    /// Runs `f` on the scheduler (state dict, consumed layer-tokens, LR schedule).
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// ltd.begin_step(0)?;
    /// assert!(ltd.with_scheduler(|s| s.consumed_layer_tokens()) > 0);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn with_scheduler<R>(&self, f: impl FnOnce(&mut RandomLtdScheduler) -> R) -> R {
        f(&mut lock(&self.scheduler))
    }

    /// The U32 `[L, B, r]` indices of the most recently sampled step, if any.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert!(ltd.sampled_indices().is_none());
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn sampled_indices(&self) -> Option<Tensor> {
        lock(&self.state).sample.as_ref().map(|s| s.indices.clone())
    }

    /// Wraps model layer `layer_index` (wrap every layer of the model, as upstream's
    /// `convert_to_random_ltd` does: the ones not in `random_ltd_layer_id` pass through).
    ///
    /// # Errors
    /// [`LtdCandleError::State`] when `layer_index` is not below `total_layer_num`.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert!(ltd.wrap(23, ()).is_ok());
    /// assert!(ltd.wrap(24, ()).is_err()); // 24 layers: 0..=23
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn wrap<M>(
        self: &Arc<Self>,
        layer_index: usize,
        layer: M,
    ) -> Result<RandomLayerTokenDrop<M>> {
        if layer_index >= self.total_layers {
            return Err(LtdCandleError::State(format!(
                "layer index {layer_index} is out of range: expected below total_layer_num = {}",
                self.total_layers
            )));
        }
        Ok(RandomLayerTokenDrop {
            ltd: self.clone(),
            layer_index,
            layer,
        })
    }

    /// The sample of step `key.step` (sampled now if this step, size or device is new).
    fn sample(&self, key: SampleKey, device: &Device, mask: MaskArg<'_>) -> Result<StepSample> {
        let mut state = lock(&self.state);
        if let Some(s) = &state.sample
            && s.key == key
        {
            return Ok(s.clone());
        }
        let layers = self.layers.len();
        let indices = crate::tokens::sample_token_indices(
            self.sampler.seed(),
            key.step,
            layers,
            key.batch,
            key.seq,
            key.reserved,
            device,
        )?;
        let masks = match (self.kind, mask) {
            (_, MaskArg::None) => StepMasks::None,
            (ModelKind::Decoder, MaskArg::Causal) => StepMasks::Causal,
            (ModelKind::Encoder, MaskArg::Causal) => {
                return Err(LtdCandleError::State(
                    "MaskArg::Causal was given to an encoder; expected MaskArg::None or a mask \
                     tensor (encoders attend both ways)"
                        .into(),
                ));
            }
            (_, MaskArg::Tensor(m)) => StepMasks::Tensor(gather_step_masks(m, &indices, &key)?),
        };
        let sample = StepSample {
            key,
            indices,
            masks,
        };
        state.sample = Some(sample.clone());
        Ok(sample)
    }
}

/// Gathers a `[B, 1, S, S]` / `[B, 1, 1, S]` mask for every LTD layer: `[L, B, 1, rows, r]`.
fn gather_step_masks(mask: &Tensor, indices: &Tensor, key: &SampleKey) -> Result<Tensor> {
    let (b, s) = (key.batch, key.seq);
    let dims = mask.dims();
    if dims.len() != 4
        || dims[0] != b
        || dims[1] != 1
        || dims[3] != s
        || (dims[2] != s && dims[2] != 1)
    {
        return Err(LtdCandleError::Shape {
            what: "mask",
            got: dims.to_vec(),
            expected: format!("[B={b}, 1, S={s}, S={s}] or [B={b}, 1, 1, S={s}]"),
        });
    }
    same_device("mask", mask, indices.device(), "the hidden states")?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = mask.device() {
        return crate::cuda::gather_masks(dev, mask, indices, key.reserved);
    }
    match mask.dtype() {
        DType::U8 => gather_masks_cpu::<u8>(mask, indices, key),
        DType::F32 => gather_masks_cpu::<f32>(mask, indices, key),
        DType::F16 => gather_masks_cpu::<f16>(mask, indices, key),
        DType::BF16 => gather_masks_cpu::<bf16>(mask, indices, key),
        d => Err(LtdCandleError::Unsupported {
            what: "mask",
            got: format!("dtype {d:?}"),
            expected: "u8, f32, f16 or bf16".into(),
        }),
    }
}

fn gather_masks_cpu<M: MaskElement + candle_core::WithDType>(
    mask: &Tensor,
    indices: &Tensor,
    key: &SampleKey,
) -> Result<Tensor> {
    // Columns must be contiguous for a strided view; anything else is copied once.
    let mask = if mask.stride()[3] == 1 || key.seq == 1 {
        mask.clone()
    } else {
        mask.contiguous()?
    };
    let (st, l) = mask.storage_and_layout();
    let data = cpu_storage("mask", &st)?.as_slice::<M>()?;
    let dims = l.dims();
    let strides = l.stride();
    let view = MaskView::strided(
        &data[l.start_offset()..],
        dims[0],
        dims[2],
        dims[3],
        strides[0],
        strides[2],
    )?;
    let host: Vec<i32> = indices
        .flatten_all()?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|x| x as i32)
        .collect();
    let layers = indices.dims()[0];
    let idx = ltd_core::LayerIndicesView::new(&host, layers, key.batch, key.reserved)?;
    let gathered = gather_masks(&view, &idx)?;
    let [l, b, one, rows, r] = gathered.shape();
    Ok(Tensor::from_vec(
        gathered.into_vec(),
        (l, b, one, rows, r),
        &Device::Cpu,
    )?)
}

/// One model layer wrapped for Random-LTD (made by [`RandomLtd::wrap`]). As a candle
/// [`Module`] it wraps any module that takes the hidden states alone; with
/// [`forward_with`](Self::forward_with) the layer is a closure that also receives the mask and
/// the kept positions.
///
/// ```
/// use candle_core::{DType, Device, Module, Tensor};
/// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
/// let layer = ltd.wrap(5, candle_nn::Linear::new(Tensor::eye(8, DType::F32, &Device::Cpu)?, None))?;
/// ltd.begin_step(0)?; // r = 128
/// let h = Tensor::randn(0f32, 1.0, (300, 2, 8), &Device::Cpu)?; // [S, B, C] (seq_batch_dim)
/// let y = layer.forward(&h)?; // an identity layer: the output is the input
/// assert_eq!(y.sub(&h)?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
/// # Ok::<(), ltd_candle::LtdCandleError>(())
/// ```
#[derive(Debug)]
pub struct RandomLayerTokenDrop<M> {
    ltd: Arc<RandomLtd>,
    layer_index: usize,
    layer: M,
}

impl<M> RandomLayerTokenDrop<M> {
    /// The wrapped layer.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(*ltd.wrap(2, 42u8)?.inner(), 42);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn inner(&self) -> &M {
        &self.layer
    }

    /// The model layer index.
    ///
    /// ```
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// assert_eq!(ltd.wrap(2, ())?.layer_index(), 2);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn layer_index(&self) -> usize {
        self.layer_index
    }

    /// Runs the layer through `f(layer, tokens, context)`: on the `r` kept tokens of each row
    /// when dropping (training, an LTD layer, `r < S`), routing its output back into the hidden
    /// states with autograd; on all tokens otherwise (with `mask` handed on as it is). `f` must
    /// return a tensor of its input's shape.
    ///
    /// The first dropping call of a step samples the indices of every LTD layer (and gathers
    /// the mask for each); later calls of the step, recomputations included, reuse them. The
    /// mask is read at that first call: pass the same mask to every layer of a step.
    ///
    /// # Errors
    /// [`LtdCandleError::State`] for a training call before any
    /// [`RandomLtd::begin_step`], or `MaskArg::Causal` on an encoder; shape, dtype and device
    /// errors of the hidden states, the mask and `f`'s result; `f`'s own error.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use ltd_candle::{LayerMask, MaskArg};
    /// let ltd = ltd_candle::RandomLtd::from_deepspeed_json(ltd_scheduler::GPT3_1_3B_EXAMPLE, 0)?;
    /// let layer = ltd.wrap(1, ())?;
    /// ltd.begin_step(0)?;
    /// let h = Tensor::zeros((200, 1, 4), candle_core::DType::F32, &Device::Cpu)?;
    /// let y = layer.forward_with(&h, MaskArg::Causal, |_, x, ctx| {
    ///     assert!(matches!(ctx.mask, LayerMask::Causal));
    ///     let pos = ctx.positions.as_ref().unwrap(); // [B=1, r=128] true positions
    ///     assert_eq!(pos.dims(), &[1, 128]);
    ///     Ok(x.clone())
    /// })?;
    /// assert_eq!(y.dims(), &[200, 1, 4]);
    /// # Ok::<(), ltd_candle::LtdCandleError>(())
    /// ```
    pub fn forward_with<F>(&self, h: &Tensor, mask: MaskArg<'_>, f: F) -> Result<Tensor>
    where
        F: FnOnce(&M, &Tensor, &LayerContext) -> candle_core::Result<Tensor>,
    {
        let ltd = &self.ltd;
        let order = ltd.order;
        crate::check::rank("hidden states", h, 3, crate::tokens::order_name(order))?;
        supported_device("hidden states", h.device())?;
        let (b, s, _) = bsc(h.dims(), order);
        let id = ltd.ltd_id(self.layer_index);
        let current = ltd.current_step();
        let dropping = match (id, current) {
            (Some(id), Some((step, r))) if ltd.is_training() && r < s => Some((id, step, r)),
            (Some(_), None) if ltd.is_training() => {
                return Err(LtdCandleError::State(format!(
                    "layer {} ran in training mode before any RandomLtd::begin_step",
                    self.layer_index
                )));
            }
            _ => None,
        };
        let Some((id, step, r)) = dropping else {
            let ctx = LayerContext {
                layer_index: self.layer_index,
                mask: match mask {
                    MaskArg::None => LayerMask::None,
                    MaskArg::Causal => LayerMask::Causal,
                    MaskArg::Tensor(t) => LayerMask::Tensor(t.clone()),
                },
                positions: None,
            };
            return Ok(f(&self.layer, h, &ctx)?);
        };
        let key = SampleKey {
            step,
            batch: b,
            seq: s,
            reserved: r,
            device: describe_device(h.device()),
        };
        let sample = ltd.sample(key, h.device(), mask)?;
        let idx = sample.indices.get(id)?;
        let part = gather_tokens(h, &idx, order)?;
        let ctx = LayerContext {
            layer_index: self.layer_index,
            mask: match &sample.masks {
                StepMasks::None => LayerMask::None,
                StepMasks::Causal => LayerMask::Causal,
                StepMasks::Tensor(t) => LayerMask::Tensor(t.get(id)?),
            },
            positions: Some(idx.clone()),
        };
        let out = f(&self.layer, &part, &ctx)?;
        if out.dims() != part.dims() {
            return Err(LtdCandleError::Shape {
                what: "layer output",
                got: out.dims().to_vec(),
                expected: format!("{:?} (the shape of the layer's input)", part.dims()),
            });
        }
        route(h, &out, &idx, order)
    }
}

impl<M: Module> Module for RandomLayerTokenDrop<M> {
    fn forward(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_with(h, MaskArg::None, |m, x, _| m.forward(x))?)
    }
}
