//! The LayerToken learning-rate schedule (random-LTD paper; never shipped by DeepSpeed): warmup and
//! decay indexed by consumed layer-tokens instead of steps.

use crate::config::paths;
use crate::error::{Result, SchedulerError};

/// How the learning rate rises during warmup (`layer_token_lr_schedule.warmup_type`). The names
/// are those of DeepSpeed's `WarmupLR` (`"linear"`, `"log"`).
///
/// ```
/// assert_eq!(ltd_scheduler::WarmupType::Log.name(), "log");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupType {
    /// `"linear"`: `lr = peak_lr · x / W`.
    Linear,
    /// `"log"`: `lr = peak_lr · ln(1 + x) / ln(1 + W)`. (DeepSpeed's `WarmupLR` divides by
    /// `ln(W)` and so reaches 1 one unit early; `ln(1 + W)` makes the curve end exactly at `W`.)
    Log,
}

impl WarmupType {
    /// The names accepted in JSON.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::WarmupType::NAMES, &["linear", "log"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["linear", "log"];

    /// The JSON name.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::WarmupType::Linear.name(), "linear");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            WarmupType::Linear => "linear",
            WarmupType::Log => "log",
        }
    }
}

/// How the learning rate falls after warmup (`layer_token_lr_schedule.decay_type`, our key).
///
/// ```
/// assert_eq!(ltd_scheduler::DecayType::Cosine.name(), "cosine");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecayType {
    /// `"linear"`: `lr = min_lr + (peak_lr − min_lr)·(1 − p)`.
    Linear,
    /// `"cosine"`: `lr = min_lr + (peak_lr − min_lr)·(1 + cos(π·p))/2`.
    Cosine,
}

impl DecayType {
    /// The names accepted in JSON.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::DecayType::NAMES, &["linear", "cosine"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["linear", "cosine"];

    /// The JSON name.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::DecayType::Linear.name(), "linear");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            DecayType::Linear => "linear",
            DecayType::Cosine => "cosine",
        }
    }
}

/// The `random_ltd.layer_token_lr_schedule` section when `enabled` is true.
///
/// JSON keys (under `data_efficiency.data_routing.random_ltd.layer_token_lr_schedule`):
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `enabled` | bool | false | upstream raises when true; we run the schedule |
/// | `total_layer_tokens` | int > 0 | required | end of the decay (`L`) |
/// | `warmup_layer_tokens` | int <= total | 0 | end of the warmup (`W`) |
/// | `warmup_type` | `"linear"` or `"log"` | `"linear"` | upstream key, values of DeepSpeed `WarmupLR` |
/// | `decay_type` | `"linear"` or `"cosine"` | `"cosine"` | ours |
/// | `peak_lr` | number >= 0 | required | ours: the rate at the end of warmup |
/// | `min_lr` | number in [0, peak_lr] | 0.0 | ours: the floor reached at `L` and kept after |
///
/// [`RandomLtdScheduler::total_layer_tokens`](crate::RandomLtdScheduler::total_layer_tokens) gives
/// the `total_layer_tokens` of a run of N steps.
///
/// ```
/// use ltd_scheduler::{DecayType, LayerTokenLrConfig, WarmupType};
///
/// let config = LayerTokenLrConfig {
///     total_layer_tokens: 1_000_000,
///     warmup_layer_tokens: 10_000,
///     warmup_type: WarmupType::Linear,
///     decay_type: DecayType::Cosine,
///     peak_lr: 2e-4,
///     min_lr: 1e-5,
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTokenLrConfig {
    /// `total_layer_tokens`: layer-tokens at which the decay ends. > 0.
    pub total_layer_tokens: u64,
    /// `warmup_layer_tokens`: layer-tokens at which the warmup ends. <= `total_layer_tokens`.
    pub warmup_layer_tokens: u64,
    /// `warmup_type`.
    pub warmup_type: WarmupType,
    /// `decay_type`.
    pub decay_type: DecayType,
    /// `peak_lr`: the learning rate at the end of warmup. Finite, >= 0.
    pub peak_lr: f64,
    /// `min_lr`: the learning-rate floor. Finite, in `[0, peak_lr]`.
    pub min_lr: f64,
}

impl LayerTokenLrConfig {
    /// Checks `total_layer_tokens > 0`, `warmup_layer_tokens <= total_layer_tokens`, finite
    /// non-negative rates and `min_lr <= peak_lr`. Errors name the key path.
    ///
    /// ```
    /// use ltd_scheduler::{DecayType, LayerTokenLrConfig, SchedulerError, WarmupType};
    ///
    /// let config = LayerTokenLrConfig {
    ///     total_layer_tokens: 100,
    ///     warmup_layer_tokens: 200,
    ///     warmup_type: WarmupType::Linear,
    ///     decay_type: DecayType::Linear,
    ///     peak_lr: 1.0,
    ///     min_lr: 0.0,
    /// };
    /// assert!(matches!(config.validate(), Err(SchedulerError::WarmupExceedsTotal { .. })));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.total_layer_tokens == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::lr("total_layer_tokens"),
                found: "0".into(),
            });
        }
        if self.warmup_layer_tokens > self.total_layer_tokens {
            return Err(SchedulerError::WarmupExceedsTotal {
                path: paths::lr("warmup_layer_tokens"),
                warmup_layer_tokens: self.warmup_layer_tokens,
                total_layer_tokens: self.total_layer_tokens,
            });
        }
        for (key, value) in [("peak_lr", self.peak_lr), ("min_lr", self.min_lr)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SchedulerError::InvalidLearningRate {
                    path: paths::lr(key),
                    found: value,
                });
            }
        }
        if self.min_lr > self.peak_lr {
            return Err(SchedulerError::MinLrAbovePeak {
                path: paths::lr("min_lr"),
                min_lr: self.min_lr,
                peak_lr: self.peak_lr,
            });
        }
        Ok(())
    }
}

/// A validated LayerToken learning-rate schedule: the pure function `consumed layer-tokens -> lr`.
///
/// With `x` the consumed layer-tokens, `W` = `warmup_layer_tokens`, `L` = `total_layer_tokens`:
/// - `x < W`: warmup from 0 to `peak_lr` (Megatron style, from 0), linear or log;
/// - `W <= x < L`: decay from `peak_lr` to `min_lr` with progress `p = (x − W)/(L − W)`;
/// - `x >= L`: `min_lr`.
///
/// ```
/// use ltd_scheduler::{DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, WarmupType};
///
/// let schedule = LayerTokenLrSchedule::new(LayerTokenLrConfig {
///     total_layer_tokens: 1_100,
///     warmup_layer_tokens: 100,
///     warmup_type: WarmupType::Linear,
///     decay_type: DecayType::Linear,
///     peak_lr: 1.0,
///     min_lr: 0.1,
/// })?;
/// assert_eq!(schedule.lr_at(0), 0.0);
/// assert_eq!(schedule.lr_at(50), 0.5);
/// assert_eq!(schedule.lr_at(100), 1.0);
/// assert!((schedule.lr_at(600) - 0.55).abs() < 1e-12);
/// assert_eq!(schedule.lr_at(1_100), 0.1);
/// assert_eq!(schedule.lr_at(u64::MAX), 0.1);
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTokenLrSchedule {
    config: LayerTokenLrConfig,
}

impl LayerTokenLrSchedule {
    /// Validates `config` (see [`LayerTokenLrConfig::validate`]) and builds the schedule.
    ///
    /// ```
    /// use ltd_scheduler::{DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, WarmupType};
    ///
    /// let bad = LayerTokenLrConfig {
    ///     total_layer_tokens: 0,
    ///     warmup_layer_tokens: 0,
    ///     warmup_type: WarmupType::Linear,
    ///     decay_type: DecayType::Cosine,
    ///     peak_lr: 1e-3,
    ///     min_lr: 0.0,
    /// };
    /// assert!(LayerTokenLrSchedule::new(bad).is_err());
    /// ```
    pub fn new(config: LayerTokenLrConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration this schedule was built from.
    ///
    /// ```
    /// use ltd_scheduler::{DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, WarmupType};
    ///
    /// let config = LayerTokenLrConfig {
    ///     total_layer_tokens: 10,
    ///     warmup_layer_tokens: 0,
    ///     warmup_type: WarmupType::Linear,
    ///     decay_type: DecayType::Cosine,
    ///     peak_lr: 1e-3,
    ///     min_lr: 0.0,
    /// };
    /// assert_eq!(LayerTokenLrSchedule::new(config)?.config(), &config);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn config(&self) -> &LayerTokenLrConfig {
        &self.config
    }

    /// The learning rate after `consumed_layer_tokens` layer-tokens (see the type's documentation).
    ///
    /// ```
    /// use ltd_scheduler::{DecayType, LayerTokenLrConfig, LayerTokenLrSchedule, WarmupType};
    ///
    /// let schedule = LayerTokenLrSchedule::new(LayerTokenLrConfig {
    ///     total_layer_tokens: 200,
    ///     warmup_layer_tokens: 0,
    ///     warmup_type: WarmupType::Linear,
    ///     decay_type: DecayType::Cosine,
    ///     peak_lr: 2.0,
    ///     min_lr: 0.0,
    /// })?;
    /// assert_eq!(schedule.lr_at(0), 2.0);
    /// assert!((schedule.lr_at(100) - 1.0).abs() < 1e-12);
    /// assert_eq!(schedule.lr_at(200), 0.0);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn lr_at(&self, consumed_layer_tokens: u64) -> f64 {
        let LayerTokenLrConfig {
            total_layer_tokens: total,
            warmup_layer_tokens: warmup,
            warmup_type,
            decay_type,
            peak_lr,
            min_lr,
        } = self.config;
        let x = consumed_layer_tokens;
        if x >= total {
            return min_lr;
        }
        if x < warmup {
            let fraction = match warmup_type {
                WarmupType::Linear => x as f64 / warmup as f64,
                WarmupType::Log => (x as f64).ln_1p() / (warmup as f64).ln_1p(),
            };
            return peak_lr * fraction;
        }
        // W <= x < L, so L - W > 0.
        let progress = (x - warmup) as f64 / (total - warmup) as f64;
        let remaining = match decay_type {
            DecayType::Linear => 1.0 - progress,
            DecayType::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        min_lr + (peak_lr - min_lr) * remaining
    }
}
