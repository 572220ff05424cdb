//! The reserved-length schedule: how many tokens `r` each random-LTD layer keeps at a step.

use crate::config::paths;
use crate::error::{Result, SchedulerError};

/// How the reserved length grows from `min_value` to `max_value` (DeepSpeed's `schedule_type`).
///
/// ```
/// use ltd_scheduler::ScheduleType;
///
/// assert_eq!(ScheduleType::FixedLinear.name(), "fixed_linear");
/// assert_eq!(ScheduleType::FixedRoot { root_degree: 2.0 }.name(), "fixed_root");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleType {
    /// `"fixed_linear"`: `floor((t/T)·(max−min) + min)`, the only type upstream accepts.
    FixedLinear,
    /// `"fixed_root"` (our addition; upstream has the code path but refuses the name):
    /// `floor((t/T)^(1/root_degree)·(max−min) + min)`, with `root_degree` from
    /// `schedule_config.root_degree`. A degree of 1 is exactly `FixedLinear`, bit for bit; a degree
    /// above 1 grows fast early and slowly late.
    FixedRoot {
        /// The root degree, a finite number greater than 0.
        root_degree: f64,
    },
}

impl ScheduleType {
    /// The names accepted in JSON for `schedule_type`.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::ScheduleType::NAMES, &["fixed_linear", "fixed_root"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["fixed_linear", "fixed_root"];

    /// The JSON name of this schedule type.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::ScheduleType::FixedLinear.name(), "fixed_linear");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleType::FixedLinear => "fixed_linear",
            ScheduleType::FixedRoot { .. } => "fixed_root",
        }
    }
}

/// The `random_ltd_schedule` section: the parameters of the reserved-length schedule.
///
/// Fields are public so a schedule can be built without JSON; [`validate`](Self::validate) (also
/// run by [`ReservedLengthSchedule::new`]) checks them.
///
/// ```
/// use ltd_scheduler::{ReservedLengthScheduleConfig, ScheduleType};
///
/// let config = ReservedLengthScheduleConfig {
///     min_value: 128,
///     max_value: 2048,
///     schedule_type: ScheduleType::FixedLinear,
///     require_steps: 200_000,
///     seq_per_step: 16,
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReservedLengthScheduleConfig {
    /// `min_value`: the reserved length at step 0 (before alignment to `seq_per_step`). > 0.
    pub min_value: u64,
    /// `max_value`: the final reserved length, usually the full sequence length. >= `min_value`.
    pub max_value: u64,
    /// `schedule_type` (and, for `fixed_root`, `schedule_config.root_degree`).
    pub schedule_type: ScheduleType,
    /// `schedule_config.require_steps` (`T`): steps until the formula reaches `max_value`. > 0.
    pub require_steps: u64,
    /// `schedule_config.seq_per_step` (`k`): the reserved length is a multiple of it (except for
    /// `max_value` itself when `max_value` is not a multiple). > 0.
    pub seq_per_step: u64,
}

impl ReservedLengthScheduleConfig {
    /// Checks `min_value > 0`, `min_value <= max_value`, `require_steps > 0`, `seq_per_step > 0`
    /// and, for `fixed_root`, a finite `root_degree > 0`. Errors name the key path.
    ///
    /// ```
    /// use ltd_scheduler::{ReservedLengthScheduleConfig, ScheduleType, SchedulerError};
    ///
    /// let config = ReservedLengthScheduleConfig {
    ///     min_value: 128,
    ///     max_value: 2048,
    ///     schedule_type: ScheduleType::FixedLinear,
    ///     require_steps: 0,
    ///     seq_per_step: 16,
    /// };
    /// let err = config.validate().unwrap_err();
    /// assert!(matches!(err, SchedulerError::NotPositive { .. }));
    /// assert!(err.to_string().ends_with("schedule_config.require_steps: 0 must be greater than 0"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.min_value == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::schedule("min_value"),
                found: "0".into(),
            });
        }
        if self.min_value > self.max_value {
            return Err(SchedulerError::MinGreaterThanMax {
                path: paths::schedule("min_value"),
                min_value: self.min_value,
                max_value: self.max_value,
            });
        }
        if self.require_steps == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::schedule_config("require_steps"),
                found: "0".into(),
            });
        }
        if self.seq_per_step == 0 {
            return Err(SchedulerError::NotPositive {
                path: paths::schedule_config("seq_per_step"),
                found: "0".into(),
            });
        }
        if let ScheduleType::FixedRoot { root_degree } = self.schedule_type
            && !(root_degree.is_finite() && root_degree > 0.0)
        {
            return Err(SchedulerError::NotPositive {
                path: paths::schedule_config("root_degree"),
                found: root_degree.to_string(),
            });
        }
        Ok(())
    }
}

/// A validated reserved-length schedule: the pure function `step -> r`.
///
/// `value_at(t)` is upstream's `get_value(t)` (upstream-semantics.md §1.9) with the later
/// revision's floor fix:
///
/// ```text
/// x = t as f64 / T as f64                     (fixed_root: x = x.powf(1.0 / degree))
/// v = floor(x * (max - min) as f64 + min as f64)
/// v = v - v % k                               round down to a multiple of k
/// v = max(v, ceil(min / k) * k)               floor fix: never below the first multiple >= min
/// v = min(v, max)                             clamp
/// ```
///
/// evaluated in `f64` in exactly upstream's order (exact rational arithmetic gives different values
/// at some steps). Consequences:
/// - every value is a multiple of `k`, except `max` itself when `max % k != 0`;
/// - every value is at least `min(ceil(min/k)·k, max)` (so at least `min`);
/// - values never decrease with `t`;
/// - when `max % k == 0` the value reaches `max` at `t = T`; when it is not, the rounded-down value
///   stays below `max` until `floor(...)` passes the next multiple of `k`, so `max` is reached
///   later than `T` (see [`first_step_at_max`](Self::first_step_at_max)).
///
/// ```
/// use ltd_scheduler::{ReservedLengthSchedule, ReservedLengthScheduleConfig, ScheduleType};
///
/// let schedule = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
///     min_value: 128,
///     max_value: 2048,
///     schedule_type: ScheduleType::FixedLinear,
///     require_steps: 200_000,
///     seq_per_step: 16,
/// })?;
/// let table: Vec<u64> = [0, 1000, 50_000, 100_000, 150_000, 199_999, 200_000]
///     .iter()
///     .map(|&t| schedule.value_at(t))
///     .collect();
/// assert_eq!(table, [128, 128, 608, 1088, 1568, 2032, 2048]);
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReservedLengthSchedule {
    config: ReservedLengthScheduleConfig,
    aligned_min: u64,
    span: f64,
    min_f64: f64,
    require_steps_f64: f64,
    inverse_degree: Option<f64>,
}

impl ReservedLengthSchedule {
    /// Validates `config` (see [`ReservedLengthScheduleConfig::validate`]) and builds the schedule.
    ///
    /// ```
    /// use ltd_scheduler::{ReservedLengthSchedule, ReservedLengthScheduleConfig, ScheduleType};
    ///
    /// let bad = ReservedLengthScheduleConfig {
    ///     min_value: 4096,
    ///     max_value: 2048,
    ///     schedule_type: ScheduleType::FixedLinear,
    ///     require_steps: 100,
    ///     seq_per_step: 16,
    /// };
    /// assert!(ReservedLengthSchedule::new(bad).is_err());
    /// ```
    pub fn new(config: ReservedLengthScheduleConfig) -> Result<Self> {
        config.validate()?;
        let k = config.seq_per_step;
        // ceil(min / k) * k without overflow: min <= u64::MAX, so compute via the remainder.
        let aligned_min = match config.min_value % k {
            0 => config.min_value,
            rem => config.min_value.saturating_add(k - rem),
        };
        let inverse_degree = match config.schedule_type {
            ScheduleType::FixedLinear => None,
            // Degree 1 takes the linear path, so it is bit-identical to fixed_linear whatever the
            // platform's pow does (x.powf(1.0) is x on IEEE pow anyway).
            ScheduleType::FixedRoot { root_degree: 1.0 } => None,
            ScheduleType::FixedRoot { root_degree } => Some(1.0 / root_degree),
        };
        Ok(Self {
            config,
            aligned_min,
            // Upstream: `(max - min)` is a Python int, converted to float by the multiplication.
            span: (config.max_value - config.min_value) as f64,
            min_f64: config.min_value as f64,
            require_steps_f64: config.require_steps as f64,
            inverse_degree,
        })
    }

    /// The configuration this schedule was built from.
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().schedule;
    /// let schedule = ltd_scheduler::ReservedLengthSchedule::new(config)?;
    /// assert_eq!(schedule.config().max_value, 2048);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn config(&self) -> &ReservedLengthScheduleConfig {
        &self.config
    }

    /// The floor of the schedule: the first multiple of `seq_per_step` at or above `min_value`
    /// (values are never below `min(aligned_min, max_value)`).
    ///
    /// ```
    /// use ltd_scheduler::{ReservedLengthSchedule, ReservedLengthScheduleConfig, ScheduleType};
    ///
    /// let schedule = ReservedLengthSchedule::new(ReservedLengthScheduleConfig {
    ///     min_value: 10,
    ///     max_value: 64,
    ///     schedule_type: ScheduleType::FixedLinear,
    ///     require_steps: 100,
    ///     seq_per_step: 8,
    /// })?;
    /// assert_eq!(schedule.aligned_min(), 16);
    /// assert_eq!(schedule.value_at(0), 16); // upstream master gives 8, below min_value
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn aligned_min(&self) -> u64 {
        self.aligned_min
    }

    /// The reserved length at `step` (see the type's documentation for the formula).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().schedule;
    /// let schedule = ltd_scheduler::ReservedLengthSchedule::new(config)?;
    /// assert_eq!(schedule.value_at(50_000), 608);
    /// assert_eq!(schedule.value_at(u64::MAX), 2048);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    #[inline]
    pub fn value_at(&self, step: u64) -> u64 {
        let mut fraction = step as f64 / self.require_steps_f64;
        if let Some(inverse_degree) = self.inverse_degree {
            fraction = fraction.powf(inverse_degree);
        }
        // Float-to-int `as` saturates, so a huge step gives u64::MAX, then the clamp gives max.
        let floored = (fraction * self.span + self.min_f64).floor() as u64;
        let rounded_down = floored - floored % self.config.seq_per_step;
        rounded_down
            .max(self.aligned_min)
            .min(self.config.max_value)
    }

    /// The first step whose value is `max_value`, or `None` if no step up to `u64::MAX` reaches it
    /// (possible only when `max_value` is not a multiple of `seq_per_step` and `require_steps` is
    /// close to `u64::MAX`).
    ///
    /// ```
    /// use ltd_scheduler::{ReservedLengthSchedule, ReservedLengthScheduleConfig, ScheduleType};
    ///
    /// let config = ReservedLengthScheduleConfig {
    ///     min_value: 128,
    ///     max_value: 2048,
    ///     schedule_type: ScheduleType::FixedLinear,
    ///     require_steps: 200_000,
    ///     seq_per_step: 16,
    /// };
    /// let schedule = ReservedLengthSchedule::new(config)?;
    /// assert_eq!(schedule.first_step_at_max(), Some(200_000));
    ///
    /// // max not a multiple of k: reached only once floor(...) passes 2048 + 16 - 1.
    /// let late = ReservedLengthSchedule::new(ReservedLengthScheduleConfig { max_value: 2050, ..config })?;
    /// assert!(late.first_step_at_max().unwrap() > 200_000);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn first_step_at_max(&self) -> Option<u64> {
        let max = self.config.max_value;
        if self.value_at(u64::MAX) != max {
            return None;
        }
        Some(self.first_step_above_in(0, u64::MAX, |value| value >= max))
    }

    /// The smallest `s` in `[from, to)` with `reached(value_at(s))`, or `to` if none; `reached` must
    /// be monotone along the (monotone) schedule. Gallops then bisects, so a run of equal values
    /// of length `n` costs about `2·log2(n)` evaluations.
    pub(crate) fn first_step_above_in(
        &self,
        from: u64,
        to: u64,
        reached: impl Fn(u64) -> bool,
    ) -> u64 {
        self.first_step_above_near(from, to, from, reached)
    }

    /// As [`first_step_above_in`](Self::first_step_above_in), galloping out from `hint` (a guess
    /// of the answer): costs about `2·log2(|answer − hint| + 1)` evaluations.
    fn first_step_above_near(
        &self,
        from: u64,
        to: u64,
        hint: u64,
        reached: impl Fn(u64) -> bool,
    ) -> u64 {
        if from >= to || reached(self.value_at(from)) {
            return from.min(to);
        }
        // Invariant: !reached(value_at(low)); the answer is in (low, high].
        let mut low = from;
        let probe = hint.clamp(from.saturating_add(1), to);
        let mut high = if probe < to && !reached(self.value_at(probe)) {
            low = probe;
            self.gallop_up(&mut low, to, &reached)
        } else {
            // The answer is in (from, probe]: gallop down from probe for a tighter low end.
            let mut stride: u64 = 1;
            let mut high = probe;
            loop {
                let down = high.saturating_sub(stride).max(low);
                if down == low {
                    break high;
                }
                if reached(self.value_at(down)) {
                    high = down;
                    stride = stride.saturating_mul(2);
                } else {
                    low = down;
                    break high;
                }
            }
        };
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if reached(self.value_at(mid)) {
                high = mid;
            } else {
                low = mid;
            }
        }
        high
    }

    /// Doubles a stride up from `*low` (not reached) until a reached step or `to`; leaves `*low`
    /// at the last step not reached and returns the first bound found.
    fn gallop_up(&self, low: &mut u64, to: u64, reached: &impl Fn(u64) -> bool) -> u64 {
        let mut stride: u64 = 1;
        loop {
            let probe = low.saturating_add(stride).min(to);
            if probe >= to {
                return to;
            }
            if reached(self.value_at(probe)) {
                return probe;
            }
            *low = probe;
            stride = stride.saturating_mul(2);
        }
    }

    /// Where the formula first reaches `target` (before rounding), as a guess for the search:
    /// inverts `x · span + min` (and the root).
    fn step_guess(&self, target: u64) -> u64 {
        if self.span <= 0.0 {
            return 0;
        }
        let mut fraction = (target as f64 - self.min_f64) / self.span;
        if let ScheduleType::FixedRoot { root_degree } = self.config.schedule_type {
            fraction = fraction.max(0.0).powf(root_degree);
        }
        // Float-to-int `as` saturates (NaN gives 0), so any guess is a valid step.
        (fraction * self.require_steps_f64).ceil() as u64
    }

    /// An upper bound on the number of distinct values in steps `0..steps`: the multiples of
    /// `seq_per_step` between the first and the last value, plus `max_value` itself when it is
    /// reached and not a multiple, and never more than `steps`. O(1).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example().schedule;
    /// let schedule = ltd_scheduler::ReservedLengthSchedule::new(config)?;
    /// assert_eq!(schedule.distinct_values(200_001), 121); // 128, 144, ..., 2048
    /// assert_eq!(schedule.distinct_values(1), 1);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn distinct_values(&self, steps: u64) -> u64 {
        if steps == 0 {
            return 0;
        }
        let (first, last) = (self.value_at(0), self.value_at(steps - 1));
        let k = self.config.seq_per_step;
        let (low, high) = (first.div_ceil(k), last / k);
        let multiples = if high >= low { high - low + 1 } else { 0 };
        (multiples + u64::from(last % k != 0)).min(steps)
    }

    /// Sum of `value_at(t)` for `t` in `0..steps`, summed per run of equal values (each run's end
    /// found by a search started at the formula's own guess, a few evaluations per value).
    ///
    /// Bounded: errors before any work when the steps hold more than
    /// [`MAX_SUMMED_VALUES`](Self::MAX_SUMMED_VALUES) distinct values, and as soon as the running
    /// sum passes `limit` (the caller's overflow bound), not at the end.
    pub(crate) fn sum_of_values(&self, steps: u64, limit: u128) -> Result<u128> {
        let distinct = self.distinct_values(steps);
        if distinct > Self::MAX_SUMMED_VALUES {
            return Err(SchedulerError::ScheduleTooLong {
                steps,
                distinct_values: distinct,
                limit: Self::MAX_SUMMED_VALUES,
            });
        }
        let max = self.config.max_value;
        let k = self.config.seq_per_step;
        let mut sum: u128 = 0;
        let mut step = 0;
        while step < steps {
            let value = self.value_at(step);
            let end = if value >= max {
                steps
            } else {
                let next = value.saturating_add(k - value % k).min(max);
                let hint = self.step_guess(next);
                self.first_step_above_near(step, steps, hint, |v| v > value)
            };
            sum += u128::from(end - step) * u128::from(value);
            if sum > limit {
                return Err(SchedulerError::Overflow {
                    what: "total layer-tokens",
                });
            }
            step = end;
        }
        Ok(sum)
    }

    /// The most distinct reserved lengths a layer-token sum walks (about a second of work);
    /// longer schedules are an error rather than a hang.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::ReservedLengthSchedule::MAX_SUMMED_VALUES, 1 << 22);
    /// ```
    pub const MAX_SUMMED_VALUES: u64 = 1 << 22;
}
