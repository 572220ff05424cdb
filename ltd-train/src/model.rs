//! A decoder-only byte-level GPT in candle: token embedding, rotary positions, pre-LN blocks
//! (causal attention, GELU MLP), final layer norm and an output head tied to the embedding.
//! Random-LTD layers run on the kept tokens only, with their true positions.

use candle_core::{D, Device, Module, Tensor};
use candle_nn::{Embedding, Linear};
use serde::{Deserialize, Serialize};

use crate::attention::{AttentionKind, CausalAttention};
use crate::error::{Result, TrainError};
use crate::params::{Init, Params};
use crate::profile::Phases;
use crate::rotary::{Rotary, RotaryAt};
use crate::routing::{KeptTokens, gather_tokens, route};

/// Byte-level vocabulary.
///
/// ```
/// assert_eq!(ltd_train::VOCAB, 256);
/// ```
pub const VOCAB: usize = 256;

/// The model's shape.
///
/// ```
/// let c = ltd_train::GptConfig::default();
/// assert_eq!(c.width % c.heads, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size `C`.
    pub width: usize,
    /// Attention heads (`C / heads` must be even, for the rotary embedding).
    pub heads: usize,
    /// The longest sequence (the rotary table's length).
    pub seq_len: usize,
    /// MLP hidden size as a multiple of `C`.
    pub mlp_ratio: usize,
    /// Rotary base.
    pub rope_base: f64,
}

impl Default for GptConfig {
    fn default() -> Self {
        GptConfig {
            layers: 4,
            width: 128,
            heads: 4,
            seq_len: 128,
            mlp_ratio: 4,
            rope_base: 10_000.0,
        }
    }
}

impl GptConfig {
    /// Checks positive sizes and an even head dimension; errors name the flag.
    ///
    /// ```
    /// let bad = ltd_train::GptConfig { width: 30, heads: 4, ..Default::default() };
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(TrainError::Config {
                source_name: "arguments".to_owned(),
                message,
            })
        };
        for (flag, v) in [
            ("--layers", self.layers),
            ("--width", self.width),
            ("--heads", self.heads),
            ("--seq-len", self.seq_len),
            ("mlp_ratio", self.mlp_ratio),
        ] {
            if v == 0 {
                return bad(format!("{flag}: 0; expected a positive number"));
            }
        }
        if !self.width.is_multiple_of(self.heads) || !(self.width / self.heads).is_multiple_of(2) {
            return bad(format!(
                "--width {} / --heads {}: expected the width to be a multiple of the heads with an even head dimension (rotary embedding)",
                self.width, self.heads
            ));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return bad(format!(
                "rope_base: {}; expected a finite number above 1",
                self.rope_base
            ));
        }
        Ok(())
    }

    /// Head dimension `C / heads`.
    ///
    /// ```
    /// assert_eq!(ltd_train::GptConfig { width: 64, heads: 4, ..Default::default() }.head_dim(), 16);
    /// ```
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

/// What a forward pass did, for accounting and tests.
///
/// ```
/// let t = ltd_train::ForwardTrace::default();
/// assert_eq!(t.layer_tokens, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ForwardTrace {
    /// Token rows that went through a block, summed over blocks (`Σ_l B · T_l`).
    pub layer_tokens: u64,
    /// The positions given to each block's rotary embedding: `[B, r]` for a Random-LTD layer
    /// that dropped tokens, `[1, S]` (`0..S`) for a full layer.
    pub rotary_positions: Vec<Tensor>,
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    fc_out: Linear,
    heads: usize,
}

impl Block {
    fn new(p: &mut Params, i: usize, cfg: &GptConfig, seed: u64, dev: &Device) -> Result<Self> {
        let c = cfg.width;
        let hidden = c * cfg.mlp_ratio;
        let std = 0.02;
        // GPT-2: residual projections scaled down by sqrt(2 · layers).
        let std_out = std / (2.0 * cfg.layers as f64).sqrt();
        let mut linear = |name: &str, out: usize, inp: usize, s: f64| -> Result<Linear> {
            let w = p.create(
                &format!("blocks.{i:02}.{name}.weight"),
                &[out, inp],
                Init::Normal(s),
                seed,
                dev,
            )?;
            let b = p.create(
                &format!("blocks.{i:02}.{name}.bias"),
                &[out],
                Init::Constant(0.0),
                seed,
                dev,
            )?;
            Ok(Linear::new(w, Some(b)))
        };
        let qkv = linear("attn.qkv", 3 * c, c, std)?;
        let proj = linear("attn.proj", c, c, std_out)?;
        let fc = linear("mlp.fc", hidden, c, std)?;
        let fc_out = linear("mlp.proj", c, hidden, std_out)?;
        Ok(Block {
            ln1: layer_norm(p, &format!("blocks.{i:02}.ln1"), c, seed, dev)?,
            qkv,
            proj,
            ln2: layer_norm(p, &format!("blocks.{i:02}.ln2"), c, seed, dev)?,
            fc,
            fc_out,
            heads: cfg.heads,
        })
    }

    /// `x + attn(ln1(x)) ` then `+ mlp(ln2(·))`, on `x: [B, T, C]` whose token `t` of row `b`
    /// sits at the position `at` describes.
    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        at: &RotaryAt,
        attn: &CausalAttention,
    ) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let d = c / self.heads;
        let mut phases = Phases::start(x.device())?;
        let qkv = self.qkv.forward(&self.ln1.forward(x)?)?;
        phases.end("block: ln1 + qkv")?;
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(D::Minus1, i * c, c)?
                .reshape((b, t, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = rotary.apply(&split(0)?, at)?;
        let k = rotary.apply(&split(1)?, at)?;
        let v = split(2)?;
        phases.end("block: split heads + rotary")?;
        let y = attn.forward(&q, &k, &v)?;
        phases.end("block: attention")?;
        let y = y.transpose(1, 2)?.reshape((b, t, c))?;
        let x = (x + self.proj.forward(&y)?)?;
        phases.end("block: merge heads + proj")?;
        let m = self.fc.forward(&self.ln2.forward(&x)?)?.gelu()?;
        let out = (&x + self.fc_out.forward(&m)?)?;
        phases.end("block: ln2 + mlp")?;
        Ok(out)
    }
}

/// Layer norm built from differentiable tensor ops. (candle-nn's `LayerNorm` takes a fused
/// path without a backward pass for contiguous inputs, so no gradient would reach the
/// parameters before it.)
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm_slow(
            x,
            &self.weight,
            &self.bias,
            1e-5,
        )?)
    }
}

fn layer_norm(p: &mut Params, name: &str, c: usize, seed: u64, dev: &Device) -> Result<LayerNorm> {
    let weight = p.create(
        &format!("{name}.weight"),
        &[c],
        Init::Constant(1.0),
        seed,
        dev,
    )?;
    let bias = p.create(
        &format!("{name}.bias"),
        &[c],
        Init::Constant(0.0),
        seed,
        dev,
    )?;
    Ok(LayerNorm { weight, bias })
}

/// The GPT.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ltd_train::{Gpt, GptConfig};
///
/// let cfg = GptConfig { layers: 2, width: 32, heads: 2, seq_len: 16, ..GptConfig::default() };
/// let model = Gpt::new(&cfg, 7, &Device::Cpu)?;
/// let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu)?;
/// let (logits, trace) = model.forward(&ids, &[])?;
/// assert_eq!(logits.dims(), [1, 4, 256]);
/// assert_eq!(trace.layer_tokens, 2 * 4);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub struct Gpt {
    config: GptConfig,
    params: Params,
    wte: Tensor,
    embedding: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    rotary: Rotary,
    attention: CausalAttention,
    device: Device,
}

impl Gpt {
    /// A model with dense causal attention, parameters drawn from `seed`.
    ///
    /// # Errors
    /// [`GptConfig::validate`]'s.
    ///
    /// ```
    /// let cfg = ltd_train::GptConfig { layers: 2, width: 16, heads: 2, seq_len: 8, ..Default::default() };
    /// let model = ltd_train::Gpt::new(&cfg, 0, &candle_core::Device::Cpu)?;
    /// assert_eq!(model.config().layers, 2);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn new(config: &GptConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::with_attention(config, AttentionKind::Dense, seed, device)
    }

    /// A model whose blocks use `attention` (dense or a sparse layout).
    ///
    /// # Errors
    /// [`GptConfig::validate`]'s, or a layout whose head count differs from the model's.
    ///
    /// ```
    /// let cfg = ltd_train::GptConfig { layers: 1, width: 32, heads: 2, seq_len: 64, ..Default::default() };
    /// let layout = ltd_sparse_attn::parse_sparse_attention(r#"{"mode": "fixed"}"#, 4)?;
    /// let err = ltd_train::Gpt::with_attention(&cfg, ltd_train::AttentionKind::Sparse(layout), 0, &candle_core::Device::Cpu);
    /// assert!(err.is_err());
    /// # Ok::<(), ltd_sparse_attn::SparseAttnError>(())
    /// ```
    pub fn with_attention(
        config: &GptConfig,
        attention: AttentionKind,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut params = Params::default();
        let wte = params.create(
            "wte",
            &[VOCAB, config.width],
            Init::Normal(0.02),
            seed,
            device,
        )?;
        let blocks = (0..config.layers)
            .map(|i| Block::new(&mut params, i, config, seed, device))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = layer_norm(&mut params, "ln_f", config.width, seed, device)?;
        Ok(Gpt {
            config: *config,
            embedding: Embedding::new(wte.clone(), config.width),
            wte,
            blocks,
            ln_f,
            rotary: Rotary::new(config.seq_len, config.head_dim(), config.rope_base, device)?,
            attention: CausalAttention::new(attention, config.heads, device)?,
            params,
            device: device.clone(),
        })
    }

    /// The shape.
    ///
    /// ```
    /// let cfg = ltd_train::GptConfig { layers: 2, width: 16, heads: 2, seq_len: 8, ..Default::default() };
    /// let model = ltd_train::Gpt::new(&cfg, 0, &candle_core::Device::Cpu)?;
    /// assert_eq!(model.config().heads, 2);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The trainable parameters.
    ///
    /// ```
    /// let cfg = ltd_train::GptConfig { layers: 2, width: 16, heads: 2, seq_len: 8, ..Default::default() };
    /// let model = ltd_train::Gpt::new(&cfg, 0, &candle_core::Device::Cpu)?;
    /// assert!(model.params().get("blocks.01.attn.qkv.weight").is_some());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The device the parameters live on.
    ///
    /// ```
    /// let cfg = ltd_train::GptConfig { layers: 2, width: 16, heads: 2, seq_len: 8, ..Default::default() };
    /// let model = ltd_train::Gpt::new(&cfg, 0, &candle_core::Device::Cpu)?;
    /// assert!(model.device().is_cpu());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[B, S, 256]` for token ids `[B, S]` (u32). `kept[l]`, when given and `Some`,
    /// makes block `l` a Random-LTD layer for this call: it runs on the kept tokens (with their
    /// true positions) and the other tokens skip it. `kept` is empty or has one entry per block.
    ///
    /// # Errors
    /// A sequence longer than the rotary table, a `kept` of the wrong length or shape.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let cfg = ltd_train::GptConfig { layers: 3, width: 16, heads: 2, seq_len: 8, ..Default::default() };
    /// let model = ltd_train::Gpt::new(&cfg, 0, &Device::Cpu)?;
    /// let ids = Tensor::zeros((1, 8), candle_core::DType::U32, &Device::Cpu)?;
    /// let kept = ltd_train::KeptTokens::new(&[1, 4, 6], 1, 8, 3, &Device::Cpu)?;
    /// let (logits, trace) = model.forward(&ids, &[None, Some(kept), None])?;
    /// assert_eq!((logits.dims(), trace.layer_tokens), (&[1usize, 8, 256][..], 8 + 3 + 8));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn forward(
        &self,
        ids: &Tensor,
        kept: &[Option<KeptTokens>],
    ) -> Result<(Tensor, ForwardTrace)> {
        let (b, s) = ids.dims2()?;
        if !kept.is_empty() && kept.len() != self.blocks.len() {
            return Err(TrainError::Candle(candle_core::Error::Msg(format!(
                "{} routing entries; expected 0 or one per block ({})",
                kept.len(),
                self.blocks.len()
            ))));
        }
        let full_at = self.rotary.at_range(s)?;
        let full_positions = Tensor::arange(0u32, s as u32, &self.device)?.reshape((1, s))?;
        let mut trace = ForwardTrace::default();
        let mut phases = Phases::start(&self.device)?;
        let mut h = self.embedding.forward(ids)?;
        phases.end("embedding")?;
        for (l, block) in self.blocks.iter().enumerate() {
            match kept.get(l).and_then(Option::as_ref) {
                Some(k) => {
                    let mut phases = Phases::start(&self.device)?;
                    let at = self.rotary.at_positions(k.positions())?;
                    let part = gather_tokens(&h, k)?;
                    phases.end("random-ltd: gather")?;
                    let out = block.forward(&part, &self.rotary, &at, &self.attention)?;
                    let mut phases = Phases::start(&self.device)?;
                    h = route(&h, &out, k)?;
                    phases.end("random-ltd: route")?;
                    trace.layer_tokens += (b * k.kept()) as u64;
                    trace.rotary_positions.push(k.positions().clone());
                }
                None => {
                    h = block.forward(&h, &self.rotary, &full_at, &self.attention)?;
                    trace.layer_tokens += (b * s) as u64;
                    trace.rotary_positions.push(full_positions.clone());
                }
            }
        }
        let mut phases = Phases::start(&self.device)?;
        let h = self.ln_f.forward(&h)?;
        let logits = h
            .reshape((b * s, self.config.width))?
            .matmul(&self.wte.t()?)?
            .reshape((b, s, VOCAB))?;
        phases.end("head")?;
        Ok((logits, trace))
    }
}
