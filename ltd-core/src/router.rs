//! The Random-LTD layer wrapper: a small [`Layer`] trait and the [`TokenDropRouter`] that runs
//! selected layers on the kept tokens only (upstream's `RandomLayerTokenDrop`, upstream-semantics.md §1.7).
//!
//! Differences from upstream, all deliberate:
//! - layers are selected by their exact model layer index (not a substring of a module name);
//! - indices are sampled once per step for all LTD layers, keyed by the step, and stored, so a
//!   recomputation (activation checkpointing) or another pipeline stage gets the same indices
//!   without restoring any RNG state;
//! - the layer is told the true positions of its tokens ([`TokenPositions`]), for RoPE / ALiBi;
//! - decoder masks are gathered at the kept positions (or stay causal with no tensor);
//! - the output is written by the fused out-of-place [`route`](crate::route), with no full clone.

use crate::{
    CoreError, DecoderMask, Element, GatheredDecoderMask, HiddenOrder, HiddenTensor, HiddenView,
    IndexView, MaskElement, MaskTensor, MaskView, Result, SampledIndices, TokenSampler,
    gather_tensor, route_backward_to_hidden, route_backward_to_layer, route_tensor,
};

/// The true sequence positions of the tokens a layer sees.
///
/// ```
/// use ltd_core::{IndexView, TokenPositions};
/// let all = TokenPositions::All { seq: 4 };
/// assert_eq!(all.position(0, 3), Some(3));
/// let kept = TokenPositions::Kept(IndexView::new(&[1, 5, 0, 2], 2, 2)?);
/// assert_eq!(kept.position(0, 1), Some(5));
/// assert_eq!(kept.len(), 2);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum TokenPositions<'a> {
    /// Every position `0..seq` (the layer sees the full sequence).
    All {
        /// The sequence length.
        seq: usize,
    },
    /// The kept positions `[B, r]` of each batch entry, ascending.
    Kept(IndexView<'a>),
}

impl TokenPositions<'_> {
    /// The true position of token `k` of batch entry `b`, or `None` out of range.
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenPositions::All { seq: 2 }.position(7, 1), Some(1));
    /// assert_eq!(ltd_core::TokenPositions::All { seq: 2 }.position(0, 2), None);
    /// ```
    pub fn position(&self, b: usize, k: usize) -> Option<usize> {
        match self {
            TokenPositions::All { seq } => (k < *seq).then_some(k),
            TokenPositions::Kept(idx) => idx
                .row(b)
                .and_then(|row| row.get(k))
                .and_then(|&p| usize::try_from(p).ok()),
        }
    }

    /// Tokens per batch entry the layer sees (`S` or `r`).
    ///
    /// ```
    /// assert_eq!(ltd_core::TokenPositions::All { seq: 9 }.len(), 9);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self {
            TokenPositions::All { seq } => *seq,
            TokenPositions::Kept(idx) => idx.reserved(),
        }
    }
}

/// The attention mask handed to a layer.
///
/// ```
/// use ltd_core::LayerMask;
/// let m: LayerMask<'_, bool> = LayerMask::Causal;
/// assert!(matches!(m, LayerMask::Causal));
/// ```
#[derive(Clone, Copy, Debug)]
pub enum LayerMask<'a, M> {
    /// No mask.
    None,
    /// Causal attention over the tokens the layer sees (they are in ascending position order).
    Causal,
    /// A `[B, 1, n, n]` or `[B, 1, 1, n]` mask over the tokens the layer sees (`n` = `S` or `r`).
    Tensor(MaskView<'a, M>),
}

/// What a layer's forward and backward receive.
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenView, LayerInput, LayerMask, TokenPositions};
/// let h = [0.0f32; 8];
/// let input: LayerInput<'_, f32, bool> = LayerInput {
///     hidden: HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 4, 2)?,
///     positions: TokenPositions::All { seq: 4 },
///     mask: LayerMask::None,
///     layer_index: 3,
/// };
/// assert_eq!(input.positions.len(), input.hidden.layout().seq());
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LayerInput<'a, T, M> {
    /// The tokens: `[B, n, C]` or `[S, B, C]`-ordered `[n, B, C]`, `n` = `r` when dropping, else `S`.
    pub hidden: HiddenView<'a, T>,
    /// Their true positions in the full sequence.
    pub positions: TokenPositions<'a>,
    /// The attention mask over them.
    pub mask: LayerMask<'a, M>,
    /// The model layer index the router was called with.
    pub layer_index: usize,
}

/// A layer's result: the hidden states (routed back when tokens were dropped) and any further
/// tuple-like outputs (`extra`, e.g. attention probabilities or a KV cache), returned as they are.
///
/// ```
/// use ltd_core::{HiddenOrder, HiddenTensor, LayerOutput};
/// let out = LayerOutput { hidden: HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1, 2, 2)?, extra: "presents" };
/// assert_eq!(out.extra, "presents");
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOutput<T, E> {
    /// The first output: hidden states of the same shape and order as the layer's input.
    pub hidden: HiddenTensor<T>,
    /// The other outputs, untouched by the router (at length `r` when tokens were dropped).
    pub extra: E,
}

/// A layer the router can wrap: forward and backward on the tokens it is given.
///
/// `backward` gets the same input as `forward` and the gradient of the loss with respect to
/// the layer's hidden output, and returns the gradient with respect to its hidden input (same
/// shape); parameter gradients are the layer's own business.
///
/// ```
/// use ltd_core::{HiddenTensor, HiddenView, Layer, LayerInput, LayerOutput, Result};
/// /// y = 2 x, token by token.
/// struct Double;
/// impl Layer<f32> for Double {
///     type Extra = ();
///     type Error = ltd_core::CoreError;
///     fn forward(&mut self, input: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, ()>> {
///         Ok(LayerOutput { hidden: scaled(input.hidden, 2.0)?, extra: () })
///     }
///     fn backward(&mut self, _input: LayerInput<'_, f32, bool>, grad: HiddenView<'_, f32>) -> Result<HiddenTensor<f32>> {
///         scaled(grad, 2.0)
///     }
/// }
/// fn scaled(x: HiddenView<'_, f32>, a: f32) -> Result<HiddenTensor<f32>> {
///     let l = x.layout();
///     let mut out = HiddenTensor::zeros(l.order(), l.batch(), l.seq(), l.channels())?;
///     let c = l.channels();
///     for b in 0..l.batch() {
///         for s in 0..l.seq() {
///             let o = out.layout().offset(b, s);
///             for (d, v) in out.as_mut_slice()[o..o + c].iter_mut().zip(x.row(b, s).unwrap()) {
///                 *d = a * v;
///             }
///         }
///     }
///     Ok(out)
/// }
/// # let _ = Double;
/// ```
pub trait Layer<T: Element, M: MaskElement = bool> {
    /// Further outputs besides the hidden states (use `()` for none).
    type Extra;
    /// The layer's error type; the router wraps it in [`CoreError::Layer`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs the layer on `input.hidden`.
    ///
    /// # Errors
    /// The layer's own.
    fn forward(
        &mut self,
        input: LayerInput<'_, T, M>,
    ) -> Result<LayerOutput<T, Self::Extra>, Self::Error>;

    /// The gradient with respect to `input.hidden` given `grad_output`, the gradient with respect
    /// to the hidden output of `forward(input)`.
    ///
    /// # Errors
    /// The layer's own.
    fn backward(
        &mut self,
        input: LayerInput<'_, T, M>,
        grad_output: HiddenView<'_, T>,
    ) -> Result<HiddenTensor<T>, Self::Error>;
}

/// Whether the model is a decoder (GPT-style, causal) or an encoder (BERT-style).
///
/// ```
/// assert_ne!(ltd_core::ModelKind::Decoder, ltd_core::ModelKind::Encoder);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// `gpt` sampling: accepts a causal flag or any mask tensor, gathered at the kept positions.
    Decoder,
    /// `bert` sampling: accepts a `[B,1,S,S]` or `[B,1,1,S]` mask tensor (or none).
    Encoder,
}

/// The mask the model passes to every layer (the router gathers it for the kept tokens).
///
/// ```
/// use ltd_core::ModelMask;
/// let m: ModelMask<'_, f32> = ModelMask::Causal;
/// assert!(matches!(m, ModelMask::Causal));
/// ```
#[derive(Clone, Copy, Debug)]
pub enum ModelMask<'a, M> {
    /// No mask.
    None,
    /// Pure causal attention (decoders only): handed on as [`LayerMask::Causal`], nothing gathered.
    Causal,
    /// A `[B, 1, S, S]` or `[B, 1, 1, S]` mask tensor.
    Tensor(MaskView<'a, M>),
}

/// The router's settings.
///
/// ```
/// use ltd_core::{HiddenOrder, ModelKind, RouterConfig};
/// let cfg = RouterConfig { seed: 42, ltd_layers: (1..23).collect(), order: HiddenOrder::SeqBatch, kind: ModelKind::Decoder };
/// assert_eq!(cfg.ltd_layers.len(), 22);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Seed of the token sampler.
    pub seed: u64,
    /// The model layer indices that drop tokens (distinct; any order). Compact LTD id = rank.
    pub ltd_layers: Vec<usize>,
    /// Hidden-state order of the model.
    pub order: HiddenOrder,
    /// Decoder or encoder (which masks are accepted and produced).
    pub kind: ModelKind,
}

#[derive(Clone, Debug)]
enum StepMasks<M> {
    None,
    Causal,
    Tensor(MaskTensor<M>),
}

/// Which model mask a step's masks were gathered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaskKey {
    None,
    Causal,
    /// The fingerprint of the mask tensor's shape and contents.
    Tensor(u64),
}

impl MaskKey {
    fn of<M: MaskElement>(mask: &ModelMask<'_, M>) -> Self {
        match mask {
            ModelMask::None => MaskKey::None,
            ModelMask::Causal => MaskKey::Causal,
            ModelMask::Tensor(m) => MaskKey::Tensor(m.fingerprint()),
        }
    }
}

/// The indices (and gathered masks) of one step.
#[derive(Clone, Debug)]
struct StepSample<M> {
    step: u64,
    batch: usize,
    seq: usize,
    reserved: usize,
    indices: SampledIndices,
    masks: StepMasks<M>,
    mask_key: MaskKey,
}

/// Runs the selected layers of a model on a random sorted subset of `r` tokens per row and writes
/// their outputs back (dropped tokens pass unchanged); every other call is a plain pass-through.
///
/// Call [`TokenDropRouter::forward`] for every layer (selected or not) with the step number, the
/// reserved length `r` of that step (from the scheduler) and the model's mask. The first
/// dropping call of a step samples the indices of all LTD layers at once and gathers their
/// masks; later calls of the same step (other layers, recomputation, backward) reuse them. Every
/// call compares its mask with the one the step's masks were gathered from (by shape and
/// contents): a different mask at the same step (another micro-batch under gradient
/// accumulation) is gathered anew at the same kept positions, never silently replaced by the
/// first one.
///
/// Pass-through (the layer sees all `S` tokens, the router only forwards its result) happens in
/// eval mode, for layers not in `ltd_layers`, and when `r >= S`.
///
/// ```
/// use ltd_core::*;
/// struct AddPosition; // y[b, k, :] = x[b, k, :] + true position of token k
/// impl Layer<f32> for AddPosition {
///     type Extra = usize; // how many tokens it saw
///     type Error = CoreError;
///     fn forward(&mut self, input: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, usize>> {
///         let l = *input.hidden.layout();
///         let mut out = HiddenTensor::zeros(l.order(), l.batch(), l.seq(), l.channels())?;
///         for b in 0..l.batch() {
///             for k in 0..l.seq() {
///                 let p = input.positions.position(b, k).unwrap() as f32;
///                 let o = out.layout().offset(b, k);
///                 for (d, x) in out.as_mut_slice()[o..o + l.channels()].iter_mut().zip(input.hidden.row(b, k).unwrap()) {
///                     *d = x + p;
///                 }
///             }
///         }
///         Ok(LayerOutput { hidden: out, extra: l.seq() })
///     }
///     fn backward(&mut self, _: LayerInput<'_, f32, bool>, g: HiddenView<'_, f32>) -> Result<HiddenTensor<f32>> {
///         let l = g.layout();
///         HiddenTensor::from_vec((0..l.batch()).flat_map(|b| (0..l.seq()).flat_map(move |s| g.row(b, s).unwrap().to_vec())).collect(), l.order(), l.batch(), l.seq(), l.channels())
///     }
/// }
/// let cfg = RouterConfig { seed: 7, ltd_layers: vec![1], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
/// let mut router = TokenDropRouter::<bool>::new(cfg)?;
/// let h = vec![0.0f32; 2 * 8]; // B = 2, S = 8, C = 1
/// let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, 2, 8, 1)?;
/// let y = router.forward(1, 0, 3, &mut AddPosition, hidden, ModelMask::Causal)?;
/// assert_eq!(y.extra, 3); // the layer saw r = 3 tokens
/// let idx = router.sampled_indices().unwrap().layer(0)?;
/// for b in 0..2 {
///     for s in 0..8 {
///         let kept = idx.row(b).unwrap().contains(&(s as i32));
///         assert_eq!(y.hidden.view().row(b, s).unwrap()[0], if kept { s as f32 } else { 0.0 });
///     }
/// }
/// // Layer 0 is not an LTD layer: it sees all 8 tokens.
/// assert_eq!(router.forward(0, 0, 3, &mut AddPosition, hidden, ModelMask::Causal)?.extra, 8);
/// # Ok::<(), ltd_core::CoreError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TokenDropRouter<M: MaskElement = bool> {
    sampler: TokenSampler,
    ltd_layers: Vec<usize>,
    order: HiddenOrder,
    kind: ModelKind,
    training: bool,
    current: Option<StepSample<M>>,
}

impl<M: MaskElement> TokenDropRouter<M> {
    /// A router in training mode.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] when `ltd_layers` is empty or repeats a layer.
    ///
    /// ```
    /// use ltd_core::{HiddenOrder, ModelKind, RouterConfig, TokenDropRouter};
    /// let cfg = RouterConfig { seed: 0, ltd_layers: vec![2, 1], order: HiddenOrder::BatchSeq, kind: ModelKind::Encoder };
    /// let router = TokenDropRouter::<u8>::new(cfg.clone())?;
    /// assert_eq!(router.ltd_id(2), Some(1));
    /// assert!(TokenDropRouter::<u8>::new(RouterConfig { ltd_layers: vec![1, 1], ..cfg }).is_err());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn new(config: RouterConfig) -> Result<Self> {
        let mut layers = config.ltd_layers.clone();
        layers.sort_unstable();
        if layers.is_empty() {
            return Err(CoreError::InvalidArgument {
                what: "ltd_layers",
                got: "an empty list".into(),
                expected: "at least one model layer index".into(),
            });
        }
        if let Some(w) = layers.windows(2).find(|w| w[0] == w[1]) {
            return Err(CoreError::InvalidArgument {
                what: "ltd_layers",
                got: format!("{:?} (layer {} twice)", config.ltd_layers, w[0]),
                expected: "distinct model layer indices".into(),
            });
        }
        Ok(TokenDropRouter {
            sampler: TokenSampler::new(config.seed),
            ltd_layers: layers,
            order: config.order,
            kind: config.kind,
            training: true,
            current: None,
        })
    }

    /// Switches between training (dropping) and eval (pass-through) mode.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, RouterConfig, TokenDropRouter};
    /// # let cfg = RouterConfig { seed: 0, ltd_layers: vec![1], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// let mut router = TokenDropRouter::<bool>::new(cfg)?;
    /// router.set_training(false);
    /// assert!(!router.is_training());
    /// assert!(!router.drops_tokens(1, 16, 8));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// `true` in training mode.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, RouterConfig, TokenDropRouter};
    /// # let cfg = RouterConfig { seed: 0, ltd_layers: vec![1], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// assert!(TokenDropRouter::<bool>::new(cfg)?.is_training());
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The compact LTD id (the layer's rank among `ltd_layers`, the first index of the sampled
    /// `[L, B, r]` indices) of model layer `layer_index`, or `None` if it does not drop tokens.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, RouterConfig, TokenDropRouter};
    /// let cfg = RouterConfig { seed: 0, ltd_layers: vec![1, 10], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// let router = TokenDropRouter::<bool>::new(cfg)?;
    /// assert_eq!((router.ltd_id(10), router.ltd_id(0)), (Some(1), None));
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn ltd_id(&self, layer_index: usize) -> Option<usize> {
        self.ltd_layers.binary_search(&layer_index).ok()
    }

    /// `true` when a call for `layer_index` with sequence length `seq` and reserved length
    /// `reserved` would drop tokens (training, an LTD layer, and `reserved < seq`).
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, RouterConfig, TokenDropRouter};
    /// # let cfg = RouterConfig { seed: 0, ltd_layers: vec![1], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// let router = TokenDropRouter::<bool>::new(cfg)?;
    /// assert!(router.drops_tokens(1, 16, 8));
    /// assert!(!router.drops_tokens(1, 16, 16)); // r >= S: pass-through
    /// assert!(!router.drops_tokens(0, 16, 8)); // not an LTD layer
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn drops_tokens(&self, layer_index: usize, seq: usize, reserved: usize) -> bool {
        self.training && reserved < seq && self.ltd_id(layer_index).is_some()
    }

    /// The indices of the most recently sampled step (`[L, B, r]`, `L` = number of LTD layers).
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, ModelMask, RouterConfig, TokenDropRouter};
    /// # let cfg = RouterConfig { seed: 0, ltd_layers: vec![1, 2], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// let mut router = TokenDropRouter::<bool>::new(cfg)?;
    /// assert!(router.sampled_indices().is_none());
    /// router.prepare_step(5, 2, 16, 4, ModelMask::Causal)?;
    /// assert_eq!(router.sampled_indices().unwrap().layers(), 2);
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn sampled_indices(&self) -> Option<&SampledIndices> {
        self.current.as_ref().map(|c| &c.indices)
    }

    /// Samples the indices of all LTD layers for `step` (and gathers their masks), unless this
    /// step with these sizes and this mask (same shape and contents) is already sampled. [`TokenDropRouter::forward`] calls it; calling it
    /// first is optional.
    ///
    /// # Errors
    /// As [`TokenSampler::sample_decoder`] / [`TokenSampler::sample_encoder`];
    /// [`CoreError::InvalidArgument`] for a causal mask on an encoder.
    ///
    /// ```
    /// # use ltd_core::{HiddenOrder, ModelKind, ModelMask, RouterConfig, TokenDropRouter};
    /// # let cfg = RouterConfig { seed: 0, ltd_layers: vec![1], order: HiddenOrder::BatchSeq, kind: ModelKind::Encoder };
    /// let mut router = TokenDropRouter::<bool>::new(cfg)?;
    /// assert!(router.prepare_step(0, 2, 8, 4, ModelMask::Causal).is_err()); // encoders are not causal
    /// router.prepare_step(0, 2, 8, 4, ModelMask::None)?;
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    pub fn prepare_step(
        &mut self,
        step: u64,
        batch: usize,
        seq: usize,
        reserved: usize,
        mask: ModelMask<'_, M>,
    ) -> Result<()> {
        let mask_key = MaskKey::of(&mask);
        if let Some(c) = &self.current
            && (c.step, c.batch, c.seq, c.reserved) == (step, batch, seq, reserved)
            && c.mask_key == mask_key
        {
            return Ok(());
        }
        let layers = self.ltd_layers.len();
        let (indices, masks) = match (self.kind, mask) {
            (_, ModelMask::None) => (
                self.sampler.sample(step, layers, batch, seq, reserved)?,
                StepMasks::None,
            ),
            (ModelKind::Decoder, ModelMask::Causal) => (
                self.sampler.sample(step, layers, batch, seq, reserved)?,
                StepMasks::Causal,
            ),
            (ModelKind::Encoder, ModelMask::Causal) => {
                return Err(CoreError::InvalidArgument {
                    what: "mask",
                    got: "ModelMask::Causal for an encoder".into(),
                    expected: "ModelMask::None or ModelMask::Tensor (encoders attend both ways)"
                        .into(),
                });
            }
            (ModelKind::Decoder, ModelMask::Tensor(m)) => {
                let (idx, g) = self.sampler.sample_decoder(
                    step,
                    layers,
                    batch,
                    seq,
                    reserved,
                    &DecoderMask::Tensor(m),
                )?;
                let GatheredDecoderMask::Tensor(t) = g else {
                    unreachable!("a mask tensor gathers to a tensor")
                };
                (idx, StepMasks::Tensor(t))
            }
            (ModelKind::Encoder, ModelMask::Tensor(m)) => {
                let (idx, t) = self
                    .sampler
                    .sample_encoder(step, layers, batch, seq, reserved, &m)?;
                (idx, StepMasks::Tensor(t))
            }
        };
        self.current = Some(StepSample {
            step,
            batch,
            seq,
            reserved,
            indices,
            masks,
            mask_key,
        });
        Ok(())
    }

    fn check_order<T: Element>(
        &self,
        what: &'static str,
        hidden: &HiddenView<'_, T>,
    ) -> Result<()> {
        let l = hidden.layout();
        if l.order() != self.order {
            return Err(CoreError::ShapeMismatch {
                what,
                got: l.shape().to_vec(),
                expected: format!(
                    "{} (the router's order {:?})",
                    self.order.describe(l.batch(), "S", l.seq(), l.channels()),
                    self.order
                ),
            });
        }
        Ok(())
    }

    fn full_input<'a, T: Element>(
        layer_index: usize,
        hidden: HiddenView<'a, T>,
        mask: ModelMask<'a, M>,
    ) -> LayerInput<'a, T, M> {
        let mask = match mask {
            ModelMask::None => LayerMask::None,
            ModelMask::Causal => LayerMask::Causal,
            ModelMask::Tensor(m) => LayerMask::Tensor(m),
        };
        LayerInput {
            hidden,
            positions: TokenPositions::All {
                seq: hidden.layout().seq(),
            },
            mask,
            layer_index,
        }
    }

    /// The kept indices and the mask of LTD layer `id` of the current step.
    fn kept(&self, id: usize) -> Result<(IndexView<'_>, LayerMask<'_, M>)> {
        let c = self
            .current
            .as_ref()
            .ok_or_else(|| CoreError::InvalidArgument {
                what: "router state",
                got: "no sampled step".into(),
                expected: "prepare_step to have run".into(),
            })?;
        let idx = c.indices.layer(id)?;
        let mask = match &c.masks {
            StepMasks::None => LayerMask::None,
            StepMasks::Causal => LayerMask::Causal,
            StepMasks::Tensor(t) => LayerMask::Tensor(t.layer(id)?),
        };
        Ok((idx, mask))
    }

    /// Runs model layer `layer_index` for `step`: on the `reserved` kept tokens of each row when
    /// it drops tokens (see [`TokenDropRouter::drops_tokens`]), routing the layer's hidden output
    /// back into a copy of `hidden` at the kept positions; on all tokens otherwise.
    ///
    /// # Errors
    /// [`CoreError::ShapeMismatch`] when `hidden` is not in the router's order or the layer's
    /// hidden output does not have its input's shape; sampling and mask errors as
    /// [`TokenDropRouter::prepare_step`]; [`CoreError::Layer`] when the layer fails.
    ///
    /// ```
    /// # use ltd_core::*;
    /// struct Identity;
    /// impl Layer<f32> for Identity {
    ///     type Extra = ();
    ///     type Error = CoreError;
    ///     fn forward(&mut self, i: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, ()>> {
    ///         let l = i.hidden.layout();
    ///         let mut out = HiddenTensor::zeros(l.order(), l.batch(), l.seq(), l.channels())?;
    ///         for b in 0..l.batch() { for s in 0..l.seq() {
    ///             let o = out.layout().offset(b, s);
    ///             out.as_mut_slice()[o..o + l.channels()].copy_from_slice(i.hidden.row(b, s).unwrap());
    ///         } }
    ///         Ok(LayerOutput { hidden: out, extra: () })
    ///     }
    ///     fn backward(&mut self, i: LayerInput<'_, f32, bool>, g: HiddenView<'_, f32>) -> Result<HiddenTensor<f32>> {
    ///         Ok(self.forward(LayerInput { hidden: g, ..i })?.hidden)
    ///     }
    /// }
    /// let cfg = RouterConfig { seed: 1, ltd_layers: vec![0], order: HiddenOrder::SeqBatch, kind: ModelKind::Decoder };
    /// let mut router = TokenDropRouter::<bool>::new(cfg)?;
    /// let h: Vec<f32> = (0..12).map(|x| x as f32).collect(); // [S=6, B=2, C=1]
    /// let hidden = HiddenView::new(&h, HiddenOrder::SeqBatch, 2, 6, 1)?;
    /// let y = router.forward(0, 3, 2, &mut Identity, hidden, ModelMask::None)?;
    /// assert_eq!(y.hidden.as_slice(), &h[..]); // an identity layer routes back to the input
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn forward<T: Element, L: Layer<T, M>>(
        &mut self,
        layer_index: usize,
        step: u64,
        reserved: usize,
        layer: &mut L,
        hidden: HiddenView<'_, T>,
        mask: ModelMask<'_, M>,
    ) -> Result<LayerOutput<T, L::Extra>> {
        self.check_order("hidden states", &hidden)?;
        let l = *hidden.layout();
        let wrap = |source: L::Error| CoreError::Layer {
            layer_index,
            during: "forward",
            source: Box::new(source),
        };
        let Some(id) = self
            .ltd_id(layer_index)
            .filter(|_| self.drops_tokens(layer_index, l.seq(), reserved))
        else {
            return layer
                .forward(Self::full_input(layer_index, hidden, mask))
                .map_err(wrap);
        };
        self.prepare_step(step, l.batch(), l.seq(), reserved, mask)?;
        let (idx, layer_mask) = self.kept(id)?;
        let part = gather_tensor(&hidden, &idx)?;
        let out = layer
            .forward(LayerInput {
                hidden: part.view(),
                positions: TokenPositions::Kept(idx),
                mask: layer_mask,
                layer_index,
            })
            .map_err(wrap)?;
        let y = route_tensor(&hidden, &out.hidden.view(), &idx)?;
        Ok(LayerOutput {
            hidden: y,
            extra: out.extra,
        })
    }

    /// The backward of [`TokenDropRouter::forward`] with the same arguments plus `grad_output`
    /// (the gradient with respect to the routed hidden output): returns the gradient with respect
    /// to `hidden`. When dropping, that is `grad_output` at dropped rows and the layer's backward
    /// of `gather(grad_output)` at kept rows (upstream-semantics.md §1.4 "net effect"); otherwise the layer's
    /// backward on all tokens.
    ///
    /// # Errors
    /// As [`TokenDropRouter::forward`], plus [`CoreError::ShapeMismatch`] when `grad_output` does
    /// not have the shape of `hidden`.
    ///
    /// ```
    /// # use ltd_core::*;
    /// # struct Identity;
    /// # impl Layer<f32> for Identity {
    /// #     type Extra = ();
    /// #     type Error = CoreError;
    /// #     fn forward(&mut self, i: LayerInput<'_, f32, bool>) -> Result<LayerOutput<f32, ()>> {
    /// #         let l = i.hidden.layout();
    /// #         let mut out = HiddenTensor::zeros(l.order(), l.batch(), l.seq(), l.channels())?;
    /// #         for b in 0..l.batch() { for s in 0..l.seq() {
    /// #             let o = out.layout().offset(b, s);
    /// #             out.as_mut_slice()[o..o + l.channels()].copy_from_slice(i.hidden.row(b, s).unwrap());
    /// #         } }
    /// #         Ok(LayerOutput { hidden: out, extra: () })
    /// #     }
    /// #     fn backward(&mut self, i: LayerInput<'_, f32, bool>, g: HiddenView<'_, f32>) -> Result<HiddenTensor<f32>> {
    /// #         Ok(self.forward(LayerInput { hidden: g, ..i })?.hidden)
    /// #     }
    /// # }
    /// let cfg = RouterConfig { seed: 1, ltd_layers: vec![0], order: HiddenOrder::BatchSeq, kind: ModelKind::Decoder };
    /// let mut router = TokenDropRouter::<bool>::new(cfg)?;
    /// let h = vec![0.5f32; 8];
    /// let g = vec![1.0f32; 8];
    /// let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, 1, 8, 1)?;
    /// let grad_y = HiddenView::new(&g, HiddenOrder::BatchSeq, 1, 8, 1)?;
    /// let gh = router.backward(0, 0, 4, &mut Identity, hidden, ModelMask::Causal, grad_y)?;
    /// assert_eq!(gh.as_slice(), &g[..]); // identity layer: the gradient passes unchanged
    /// # Ok::<(), ltd_core::CoreError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Element, L: Layer<T, M>>(
        &mut self,
        layer_index: usize,
        step: u64,
        reserved: usize,
        layer: &mut L,
        hidden: HiddenView<'_, T>,
        mask: ModelMask<'_, M>,
        grad_output: HiddenView<'_, T>,
    ) -> Result<HiddenTensor<T>> {
        self.check_order("hidden states", &hidden)?;
        let l = *hidden.layout();
        let g = grad_output.layout();
        if (g.order(), g.batch(), g.seq(), g.channels())
            != (l.order(), l.batch(), l.seq(), l.channels())
        {
            return Err(CoreError::ShapeMismatch {
                what: "gradient of the output",
                got: g.shape().to_vec(),
                expected: l.order().describe(l.batch(), "S", l.seq(), l.channels()),
            });
        }
        let wrap = |source: L::Error| CoreError::Layer {
            layer_index,
            during: "backward",
            source: Box::new(source),
        };
        let Some(id) = self
            .ltd_id(layer_index)
            .filter(|_| self.drops_tokens(layer_index, l.seq(), reserved))
        else {
            return layer
                .backward(Self::full_input(layer_index, hidden, mask), grad_output)
                .map_err(wrap);
        };
        self.prepare_step(step, l.batch(), l.seq(), reserved, mask)?;
        let (idx, layer_mask) = self.kept(id)?;
        let part = gather_tensor(&hidden, &idx)?;
        let mut grad_layer_out = crate::alloc::hidden_zeros(
            "layer output gradient",
            l.order(),
            l.batch(),
            reserved,
            l.channels(),
        )?;
        route_backward_to_layer(&grad_output, &idx, &mut grad_layer_out.view_mut())?;
        let input = LayerInput {
            hidden: part.view(),
            positions: TokenPositions::Kept(idx),
            mask: layer_mask,
            layer_index,
        };
        let grad_layer_in = layer.backward(input, grad_layer_out.view()).map_err(wrap)?;
        let mut grad_hidden = crate::alloc::hidden_zeros(
            "hidden-state gradient",
            l.order(),
            l.batch(),
            l.seq(),
            l.channels(),
        )?;
        route_backward_to_hidden(
            &grad_output,
            &grad_layer_in.view(),
            &idx,
            &mut grad_hidden.view_mut(),
        )?;
        Ok(grad_hidden)
    }
}
