//! The model's trainable parameters: named candle `Var`s in a fixed (sorted) order, initialised
//! from the run seed so that a run is reproducible on the CPU.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use rand_core::Rng;

use crate::corpus::seeded_rng;
use crate::error::Result;

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
    /// Every element this value (layer-norm weights 1, biases 0).
    Constant(f32),
}

const TAG_INIT: u64 = 0x494e_4954; // "INIT"

/// Named parameters, sorted by name (the checkpoint and optimizer order).
///
/// ```
/// use ltd_train::{GptConfig, Gpt};
/// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..GptConfig::default() }, 0, &candle_core::Device::Cpu)?;
/// assert!(model.params().names().any(|n| n == "wte"));
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

impl Params {
    /// Creates parameter `name` of `shape`; parameter `k` (in creation order) draws its normal
    /// values from its own ChaCha8 stream, so adding a parameter does not change the others.
    pub(crate) fn create(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Constant(c) => vec![c; n],
            Init::Normal(std) => {
                let mut rng = seeded_rng(seed, TAG_INIT, self.vars.len() as u64);
                let mut out = Vec::with_capacity(n + 1);
                while out.len() < n {
                    // Box-Muller on two uniforms in (0, 1].
                    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    let radius = (-2.0 * u1.ln()).sqrt() * std;
                    let angle = std::f64::consts::TAU * u2;
                    out.push((radius * angle.cos()) as f32);
                    out.push((radius * angle.sin()) as f32);
                }
                out.truncate(n);
                out
            }
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
        let tensor = var.as_tensor().clone();
        self.vars.insert(name.to_owned(), var);
        Ok(tensor)
    }

    /// Parameter names in sorted order.
    ///
    /// ```
    /// use ltd_train::{GptConfig, Gpt};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..GptConfig::default() }, 0, &candle_core::Device::Cpu)?;
    /// let names: Vec<&str> = model.params().names().collect();
    /// assert!(names.windows(2).all(|w| w[0] < w[1]));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// `(name, var)` pairs in sorted order.
    ///
    /// ```
    /// use ltd_train::{GptConfig, Gpt};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..GptConfig::default() }, 0, &candle_core::Device::Cpu)?;
    /// let total: usize = model.params().iter().map(|(_, v)| v.elem_count()).sum();
    /// assert!(total > 0);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The parameter called `name`.
    ///
    /// ```
    /// use ltd_train::{GptConfig, Gpt};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..GptConfig::default() }, 0, &candle_core::Device::Cpu)?;
    /// assert_eq!(model.params().get("wte").unwrap().dims(), [256, 16]);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// The number of scalar parameters.
    ///
    /// ```
    /// use ltd_train::{GptConfig, Gpt};
    /// let model = Gpt::new(&GptConfig { layers: 1, width: 16, heads: 2, seq_len: 8, ..GptConfig::default() }, 0, &candle_core::Device::Cpu)?;
    /// assert!(model.params().count() > 256 * 16);
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }
}
