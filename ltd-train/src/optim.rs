//! AdamW over candle `Var`s whose state (moments and step count) can be saved and restored.
//!
//! candle-nn's `AdamW` keeps its moments and step counter private, so a checkpoint could not
//! restore them and a resumed run would diverge. This optimizer performs the same update as
//! candle-nn 0.11's `AdamW::step`, operation for operation (decoupled weight decay on every
//! parameter, bias-corrected moments), and exposes its state.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::params::Params;

/// AdamW hyper-parameters (DeepSpeed `optimizer.params`: `lr`, `betas`, `eps`, `weight_decay`).
///
/// ```
/// let p = ltd_train::AdamWParams::default();
/// assert_eq!((p.beta1, p.beta2), (0.9, 0.999));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    /// Peak learning rate (the schedule scales it per step).
    pub lr: f64,
    /// `betas[0]`.
    pub beta1: f64,
    /// `betas[1]`.
    pub beta2: f64,
    /// `eps`.
    pub eps: f64,
    /// `weight_decay` (decoupled).
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

/// The optimizer.
///
/// ```
/// use candle_core::Device;
/// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
///
/// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &Device::Cpu)?;
/// let opt = AdamW::new(model.params(), AdamWParams::default())?;
/// assert_eq!(opt.step_count(), 0);
/// assert_eq!(opt.state_tensors().len(), 2 * model.params().iter().count());
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: u64,
    params: AdamWParams,
}

impl AdamW {
    /// Zero moments for every parameter of `params`.
    ///
    /// # Errors
    /// Invalid hyper-parameters (each names the DeepSpeed key), or an allocation failure.
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// assert!(AdamW::new(model.params(), AdamWParams { eps: 0.0, ..Default::default() }).is_err());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn new(params: &Params, hyper: AdamWParams) -> Result<Self> {
        validate(&hyper)?;
        let slots = params
            .iter()
            .map(|(name, var)| {
                Ok(Slot {
                    name: name.to_owned(),
                    var: var.clone(),
                    m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            step_t: 0,
            params: hyper,
        })
    }

    /// Steps taken so far (the bias-correction exponent).
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// assert_eq!(opt.step_count(), 0);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn step_count(&self) -> u64 {
        self.step_t
    }

    /// The hyper-parameters.
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// assert_eq!(opt.params().weight_decay, 0.01);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn params(&self) -> &AdamWParams {
        &self.params
    }

    /// One update with learning rate `lr`, the gradients multiplied by `grad_scale` first
    /// (gradient clipping; 1 leaves them untouched).
    ///
    /// # Errors
    /// Tensor errors.
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// let ids = candle_core::Tensor::new(&[[1u32, 2]], &candle_core::Device::Cpu)?;
    /// let grads = model.forward(&ids, &[])?.0.sqr()?.mean_all()?.backward()?;
    /// opt.step(&grads, 1e-3, 1.0)?;
    /// assert_eq!(opt.step_count(), 1);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step_t += 1;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.params;
        let exponent = i32::try_from(self.step_t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - beta1.powi(exponent));
        let scale_v = 1f64 / (1f64 - beta2.powi(exponent));
        for slot in &self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = if grad_scale == 1.0 {
                g.clone()
            } else {
                (g * grad_scale)?
            };
            let next_m = ((slot.m.as_tensor() * beta1)? + (&g * (1.0 - beta1))?)?;
            let next_v = ((slot.v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let decayed = (slot.var.as_tensor() * (1f64 - lr * weight_decay))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + eps)?)?;
            let next = (decayed - (adjusted * lr)?)?;
            slot.m.set(&next_m)?;
            slot.v.set(&next_v)?;
            slot.var.set(&next)?;
        }
        Ok(())
    }

    /// The moments as named tensors: `m.<parameter>` and `v.<parameter>`.
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// assert!(opt.state_tensors().iter().any(|(n, _)| n == "m.wte"));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("m.{}", s.name), s.m.as_tensor().clone()),
                    (format!("v.{}", s.name), s.v.as_tensor().clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments (every `m.*`/`v.*` tensor, same shapes, nothing extra) and the step
    /// count. On error nothing is changed. `source` names the file in errors.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the missing, extra or mis-shaped tensor.
    ///
    /// ```
    /// use ltd_train::{AdamW, AdamWParams, Gpt, GptConfig};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &candle_core::Device::Cpu)?;
    /// let mut opt = AdamW::new(model.params(), AdamWParams::default())?;
    /// // Copies: a Var cannot be set from its own storage.
    /// let saved: std::collections::HashMap<_, _> =
    ///     opt.state_tensors().into_iter().map(|(n, t)| (n, t.copy().unwrap())).collect();
    /// opt.load_state(&saved, 7, std::path::Path::new("optimizer.safetensors"))?;
    /// assert_eq!(opt.step_count(), 7);
    /// assert!(opt.load_state(&Default::default(), 7, std::path::Path::new("o")).is_err());
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        step_t: u64,
        source: &std::path::Path,
    ) -> Result<()> {
        let mut staged = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            for (key, var) in [
                (format!("m.{}", slot.name), &slot.m),
                (format!("v.{}", slot.name), &slot.v),
            ] {
                let t = tensors.get(&key).ok_or_else(|| {
                    TrainError::checkpoint(source, format!("tensor {key} is missing"))
                })?;
                if t.dims() != var.dims() || t.dtype() != var.dtype() {
                    return Err(TrainError::checkpoint(
                        source,
                        format!(
                            "tensor {key} is {:?} {:?}; expected {:?} {:?}",
                            t.dtype(),
                            t.dims(),
                            var.dtype(),
                            var.dims()
                        ),
                    ));
                }
                staged.push((var, t));
            }
        }
        if tensors.len() != staged.len() {
            let mut extra: Vec<&String> = tensors
                .keys()
                .filter(|k| {
                    !self
                        .slots
                        .iter()
                        .any(|s| **k == format!("m.{}", s.name) || **k == format!("v.{}", s.name))
                })
                .collect();
            extra.sort();
            return Err(TrainError::checkpoint(
                source,
                format!("unexpected tensors {extra:?} (a checkpoint of another model?)"),
            ));
        }
        for (var, t) in staged {
            var.set(&t.to_device(var.device())?)?;
        }
        self.step_t = step_t;
        Ok(())
    }
}

fn validate(p: &AdamWParams) -> Result<()> {
    let checks: [(&str, f64, bool, &str); 5] = [
        (
            "optimizer.params.lr",
            p.lr,
            p.lr.is_finite() && p.lr >= 0.0,
            "a finite rate >= 0",
        ),
        (
            "optimizer.params.betas[0]",
            p.beta1,
            (0.0..1.0).contains(&p.beta1),
            "in [0, 1)",
        ),
        (
            "optimizer.params.betas[1]",
            p.beta2,
            (0.0..1.0).contains(&p.beta2),
            "in [0, 1)",
        ),
        (
            "optimizer.params.eps",
            p.eps,
            p.eps.is_finite() && p.eps > 0.0,
            "a finite number > 0",
        ),
        (
            "optimizer.params.weight_decay",
            p.weight_decay,
            p.weight_decay.is_finite() && p.weight_decay >= 0.0,
            "a finite number >= 0",
        ),
    ];
    for (key, value, ok, expected) in checks {
        if !ok {
            return Err(TrainError::Config {
                source_name: "optimizer".to_owned(),
                message: format!("{key}: {value}; expected {expected}"),
            });
        }
    }
    Ok(())
}

/// The global L2 norm of the gradients of `params` (those that have one).
///
/// # Errors
/// Tensor errors.
///
/// ```
/// use candle_core::Device;
/// use ltd_train::{Gpt, GptConfig, grad_norm};
/// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..Default::default() }, 0, &Device::Cpu)?;
/// let ids = candle_core::Tensor::new(&[[1u32, 2]], &Device::Cpu)?;
/// let grads = model.forward(&ids, &[])?.0.sqr()?.mean_all()?.backward()?;
/// assert!(grad_norm(model.params(), &grads)? > 0.0);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub fn grad_norm(params: &Params, grads: &GradStore) -> Result<f64> {
    let mut total = 0f64;
    for (_, var) in params.iter() {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    Ok(total.sqrt())
}
