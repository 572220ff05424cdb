//! Step-indexed learning-rate schedules with the formulas of DeepSpeed's `WarmupLR`,
//! `WarmupDecayLR` and `WarmupCosineLR` (`scheduler` section of the DeepSpeed JSON). Training
//! step `t` (0-based) uses DeepSpeed's value at `last_batch_iteration = t`.

use serde::{Deserialize, Serialize};

/// How the rate rises during warmup (DeepSpeed `warmup_type`).
///
/// ```
/// assert_eq!(ltd_train::Warmup::Log.name(), "log");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Warmup {
    /// `gamma = t / warmup_num_steps`.
    Linear,
    /// `gamma = ln(t + 1) / ln(warmup_num_steps)` (DeepSpeed's default).
    Log,
}

impl Warmup {
    /// The JSON name.
    ///
    /// ```
    /// assert_eq!(ltd_train::Warmup::Linear.name(), "linear");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Warmup::Linear => "linear",
            Warmup::Log => "log",
        }
    }

    /// The warmup fraction at step `t` of `warmup_steps` (at least 2, as DeepSpeed clamps it).
    fn gamma(&self, t: u64, warmup_steps: u64) -> f64 {
        match self {
            Warmup::Linear => t as f64 / warmup_steps as f64,
            Warmup::Log => ((t + 1) as f64).ln() / (warmup_steps as f64).ln(),
        }
    }
}

/// A learning-rate schedule over optimizer steps.
///
/// ```
/// use ltd_train::{LrSchedule, Warmup};
///
/// let s = LrSchedule::WarmupCosine {
///     lr: 1e-3, warmup_min_ratio: 0.0, warmup_num_steps: 10, cos_min_ratio: 0.1,
///     total_num_steps: 110, warmup_type: Warmup::Linear,
/// };
/// assert_eq!(s.lr_at(0), 0.0);
/// assert!((s.lr_at(5) - 5e-4).abs() < 1e-12);
/// assert!((s.lr_at(109) - 1e-4).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LrSchedule {
    /// `WarmupLR`: from `warmup_min_lr` to `warmup_max_lr`, then constant.
    Warmup {
        /// `warmup_min_lr`.
        warmup_min_lr: f64,
        /// `warmup_max_lr`.
        warmup_max_lr: f64,
        /// `warmup_num_steps` (DeepSpeed uses at least 2).
        warmup_num_steps: u64,
        /// `warmup_type`.
        warmup_type: Warmup,
    },
    /// `WarmupDecayLR`: warmup as `WarmupLR`, then linear decay to 0 at `total_num_steps`.
    WarmupDecay {
        /// `warmup_min_lr`.
        warmup_min_lr: f64,
        /// `warmup_max_lr`.
        warmup_max_lr: f64,
        /// `warmup_num_steps` (DeepSpeed uses at least 2).
        warmup_num_steps: u64,
        /// `total_num_steps`.
        total_num_steps: u64,
        /// `warmup_type`.
        warmup_type: Warmup,
    },
    /// `WarmupCosineLR`: the optimizer's `lr` times a ratio that warms up from
    /// `warmup_min_ratio` to 1, then follows a cosine down to `cos_min_ratio` at
    /// `total_num_steps`.
    WarmupCosine {
        /// The optimizer's `lr` (the peak).
        lr: f64,
        /// `warmup_min_ratio`.
        warmup_min_ratio: f64,
        /// `warmup_num_steps` (DeepSpeed uses at least 2).
        warmup_num_steps: u64,
        /// `cos_min_ratio`.
        cos_min_ratio: f64,
        /// `total_num_steps`.
        total_num_steps: u64,
        /// `warmup_type`.
        warmup_type: Warmup,
    },
}

impl LrSchedule {
    /// The learning rate of training step `t`.
    ///
    /// ```
    /// use ltd_train::{LrSchedule, Warmup};
    /// let s = LrSchedule::WarmupDecay {
    ///     warmup_min_lr: 0.0, warmup_max_lr: 1.0, warmup_num_steps: 4, total_num_steps: 12,
    ///     warmup_type: Warmup::Linear,
    /// };
    /// assert_eq!([s.lr_at(2), s.lr_at(4), s.lr_at(8), s.lr_at(12)], [0.5, 1.0, 0.5, 0.0]);
    /// ```
    pub fn lr_at(&self, t: u64) -> f64 {
        match *self {
            LrSchedule::Warmup {
                warmup_min_lr,
                warmup_max_lr,
                warmup_num_steps,
                warmup_type,
            } => {
                let w = warmup_num_steps.max(2);
                let gamma = if t < w { warmup_type.gamma(t, w) } else { 1.0 };
                warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma
            }
            LrSchedule::WarmupDecay {
                warmup_min_lr,
                warmup_max_lr,
                warmup_num_steps,
                total_num_steps,
                warmup_type,
            } => {
                let w = warmup_num_steps.max(2);
                let gamma = if t < w {
                    warmup_type.gamma(t, w)
                } else {
                    let span = (total_num_steps.saturating_sub(w) as f64).max(1.0);
                    ((total_num_steps as f64 - t as f64) / span).max(0.0)
                };
                warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma
            }
            LrSchedule::WarmupCosine {
                lr,
                warmup_min_ratio,
                warmup_num_steps,
                cos_min_ratio,
                total_num_steps,
                warmup_type,
            } => {
                let w = warmup_num_steps.max(2);
                if t < w {
                    let gamma = warmup_type.gamma(t, w);
                    return lr * (warmup_min_ratio + gamma * (1.0 - warmup_min_ratio));
                }
                let done = (t - w + 1) as f64;
                let span = (total_num_steps.saturating_sub(w) as f64).max(1.0);
                let cosine = (1.0 + (std::f64::consts::PI * (done / span).min(1.0)).cos()) / 2.0;
                lr * (cos_min_ratio + (1.0 - cos_min_ratio) * cosine).max(0.0)
            }
        }
    }

    /// The DeepSpeed name of the schedule (`scheduler.type`).
    ///
    /// ```
    /// use ltd_train::{LrSchedule, Warmup};
    /// let s = LrSchedule::Warmup { warmup_min_lr: 0.0, warmup_max_lr: 1e-3, warmup_num_steps: 10, warmup_type: Warmup::Log };
    /// assert_eq!(s.name(), "WarmupLR");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            LrSchedule::Warmup { .. } => "WarmupLR",
            LrSchedule::WarmupDecay { .. } => "WarmupDecayLR",
            LrSchedule::WarmupCosine { .. } => "WarmupCosineLR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_warmup_matches_deepspeed_formula() {
        let s = LrSchedule::Warmup {
            warmup_min_lr: 0.0,
            warmup_max_lr: 1.0,
            warmup_num_steps: 100,
            warmup_type: Warmup::Log,
        };
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(9) - 10f64.ln() / 100f64.ln()).abs() < 1e-15);
        assert_eq!(s.lr_at(100), 1.0);
        assert_eq!(s.lr_at(10_000), 1.0);
    }

    #[test]
    fn cosine_reaches_its_floor_and_stays() {
        let s = LrSchedule::WarmupCosine {
            lr: 2.0,
            warmup_min_ratio: 0.1,
            warmup_num_steps: 10,
            cos_min_ratio: 0.05,
            total_num_steps: 100,
            warmup_type: Warmup::Linear,
        };
        assert!((s.lr_at(0) - 0.2).abs() < 1e-12);
        assert!((s.lr_at(99) - 0.1).abs() < 1e-9);
        assert!((s.lr_at(500) - 0.1).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for t in 10..100 {
            assert!(s.lr_at(t) <= last);
            last = s.lr_at(t);
        }
    }
}
