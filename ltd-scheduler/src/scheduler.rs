//! The stateful random-LTD scheduler: reserved length per step, layer-token accounting,
//! checkpoint state.

use serde::{Deserialize, Serialize};

use crate::config::{RandomLtdConfig, paths};
use crate::error::{Result, SchedulerError};
use crate::lr::LayerTokenLrSchedule;
use crate::schedule::ReservedLengthSchedule;

/// The scheduler's checkpoint state, with upstream's five `state_dict()` keys. Serializes to the
/// same JSON object upstream's dict would (`current_steps` is -1 before the first step).
///
/// ```
/// use ltd_scheduler::RandomLtdState;
///
/// let state = RandomLtdState {
///     consumed_layer_tokens: 0,
///     current_steps: -1,
///     current_value: 128,
///     min_value: 128,
///     max_value: 2048,
/// };
/// let json = state.to_json();
/// assert_eq!(
///     json,
///     r#"{"consumed_layer_tokens":0,"current_steps":-1,"current_value":128,"min_value":128,"max_value":2048}"#
/// );
/// assert_eq!(RandomLtdState::from_json(&json)?, state);
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomLtdState {
    /// `consumed_layer_tokens`: layer-tokens counted so far.
    pub consumed_layer_tokens: u64,
    /// `current_steps`: the last step counted, -1 before the first.
    pub current_steps: i64,
    /// `current_value`: the current reserved length `r`.
    pub current_value: u64,
    /// `min_value`: the schedule's `min_value`.
    pub min_value: u64,
    /// `max_value`: the schedule's `max_value`.
    pub max_value: u64,
}

impl RandomLtdState {
    /// The state as a JSON object with upstream's key names.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert!(scheduler.state_dict().to_json().contains("\"current_steps\":-1"));
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn to_json(&self) -> String {
        // Serializing five integers cannot fail; fall back to a hand-built object to avoid a panic
        // path all the same.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"consumed_layer_tokens\":{},\"current_steps\":{},\"current_value\":{},\"min_value\":{},\"max_value\":{}}}",
                self.consumed_layer_tokens,
                self.current_steps,
                self.current_value,
                self.min_value,
                self.max_value
            )
        })
    }

    /// Parses a state from JSON. All five keys are required and no others are accepted. Values are
    /// checked against a configuration by [`RandomLtdScheduler::load_state_dict`].
    ///
    /// ```
    /// use ltd_scheduler::{RandomLtdState, SchedulerError};
    ///
    /// let err = RandomLtdState::from_json(r#"{"current_steps": 3}"#).unwrap_err();
    /// assert!(matches!(err, SchedulerError::InvalidState { .. }));
    /// ```
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|error| SchedulerError::InvalidState {
            message: error.to_string(),
        })
    }
}

/// Megatron-DeepSpeed's averaged sequence length for token accounting and FLOPs:
/// `(S·(L_tot − L_ltd) + r·L_ltd) / L_tot` (integer division) when `r < S`, else `S`.
///
/// Errors: `total_layer_num == 0`, or `random_ltd_layer_num > total_layer_num`.
///
/// ```
/// use ltd_scheduler::megatron_effective_seq_len;
///
/// // 24 layers, 22 of them at r = 1024, the other 2 at S = 2048.
/// assert_eq!(megatron_effective_seq_len(2048, 1024, 24, 22)?, (2048 * 2 + 1024 * 22) / 24);
/// assert_eq!(megatron_effective_seq_len(512, 1024, 24, 22)?, 512); // r >= S: no dropping
/// assert!(megatron_effective_seq_len(2048, 1024, 24, 25).is_err());
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
pub fn megatron_effective_seq_len(
    seq_len: u64,
    reserved_length: u64,
    total_layer_num: usize,
    random_ltd_layer_num: usize,
) -> Result<u64> {
    if total_layer_num == 0 {
        return Err(SchedulerError::InvalidArgument {
            name: "total_layer_num",
            found: "0".into(),
            expected: "a positive layer count",
        });
    }
    if random_ltd_layer_num > total_layer_num {
        return Err(SchedulerError::InvalidArgument {
            name: "random_ltd_layer_num",
            found: format!("{random_ltd_layer_num} (total_layer_num {total_layer_num})"),
            expected: "at most total_layer_num",
        });
    }
    if reserved_length >= seq_len {
        return Ok(seq_len);
    }
    let total = total_layer_num as u128;
    let ltd = random_ltd_layer_num as u128;
    let weighted = u128::from(seq_len) * (total - ltd) + u128::from(reserved_length) * ltd;
    // The average of values <= seq_len is <= seq_len, so it fits in u64.
    Ok(u64::try_from(weighted / total).unwrap_or(seq_len))
}

/// DeepSpeed's `RandomLTDScheduler`, with the floor fix, validation and non-mutating budget
/// helpers.
///
/// Call [`update_seq`](Self::update_seq) with the global step at every micro-batch (DeepSpeed does
/// it in the engine's forward); read the reserved length `r` with
/// [`current_value`](Self::current_value).
///
/// ```
/// use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler};
///
/// let mut scheduler = RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example())?;
/// for step in 0..3 {
///     for _micro_batch in 0..4 {
///         let r = scheduler.update_seq(step)?;
///         assert_eq!(r, 128);
///     }
/// }
/// // Counted once per step: G · (r·L_ltd + max·(L_tot − L_ltd)) each.
/// assert_eq!(scheduler.consumed_layer_tokens(), 3 * 512 * (128 * 22 + 2048 * 2));
/// # Ok::<(), ltd_scheduler::SchedulerError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RandomLtdScheduler {
    schedule: ReservedLengthSchedule,
    lr_schedule: Option<LayerTokenLrSchedule>,
    total_layer_num: usize,
    random_ltd_layer_num: usize,
    global_batch_size: u64,
    /// `G · max · (L_tot − L_ltd)`, the per-step tokens of the full-length layers.
    full_layer_tokens_per_step: u64,
    /// `G · L_ltd`, multiplied by `r` for the per-step tokens of the LTD layers.
    ltd_tokens_per_unit_length: u64,
    state: RandomLtdState,
}

impl RandomLtdScheduler {
    /// Validates `config` and builds a scheduler in its initial state (`current_value = min_value`,
    /// not yet aligned, as upstream; `consumed_layer_tokens = 0`; `current_steps = -1`).
    ///
    /// Needs `config.global_batch_size`. Unlike upstream, an enabled `layer_token_lr_schedule` is
    /// supported (see [`current_lr`](Self::current_lr)). Errors when a step's layer-token count
    /// `G · max · L_tot` would overflow `u64`.
    ///
    /// ```
    /// use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler, SchedulerError};
    ///
    /// let mut config = RandomLtdConfig::gpt3_1_3b_example();
    /// config.global_batch_size = None;
    /// let err = RandomLtdScheduler::new(&config).unwrap_err();
    /// assert!(matches!(err, SchedulerError::MissingGlobalBatchSize { .. }));
    /// let scheduler = RandomLtdScheduler::new(&config.with_global_batch_size(256)?)?;
    /// assert_eq!(scheduler.current_value(), 128);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn new(config: &RandomLtdConfig) -> Result<Self> {
        config.validate()?;
        let Some(global_batch_size) = config.global_batch_size else {
            return Err(SchedulerError::MissingGlobalBatchSize {
                path: paths::random_ltd("global_batch_size"),
            });
        };
        let schedule = ReservedLengthSchedule::new(config.schedule)?;
        let lr_schedule = config
            .layer_token_lr_schedule
            .map(LayerTokenLrSchedule::new)
            .transpose()?;
        let max_value = config.schedule.max_value;
        let overflow = SchedulerError::Overflow {
            what: "layer-tokens per step (global_batch_size * max_value * total_layer_num)",
        };
        // The largest per-step count; every smaller one then fits too.
        u64::try_from(config.total_layer_num)
            .ok()
            .and_then(|layers| {
                global_batch_size
                    .checked_mul(max_value)?
                    .checked_mul(layers)
            })
            .ok_or(overflow.clone())?;
        let full_layers = (config.total_layer_num - config.random_ltd_layer_num) as u64;
        let full_layer_tokens_per_step = global_batch_size * max_value * full_layers;
        let ltd_tokens_per_unit_length = global_batch_size * config.random_ltd_layer_num as u64;
        Ok(Self {
            schedule,
            lr_schedule,
            total_layer_num: config.total_layer_num,
            random_ltd_layer_num: config.random_ltd_layer_num,
            global_batch_size,
            full_layer_tokens_per_step,
            ltd_tokens_per_unit_length,
            state: Self::initial_state(&schedule),
        })
    }

    fn initial_state(schedule: &ReservedLengthSchedule) -> RandomLtdState {
        let config = schedule.config();
        RandomLtdState {
            consumed_layer_tokens: 0,
            current_steps: -1,
            current_value: config.min_value,
            min_value: config.min_value,
            max_value: config.max_value,
        }
    }

    /// Upstream's `update_seq(global_steps)`, run at every micro-batch:
    /// 1. if `r < max_value`, `r = max(r, value_at(step))` (monotone, frozen once at max);
    /// 2. if `step` differs from the last counted step, add
    ///    `G · (r·L_ltd + max_value·(L_tot − L_ltd))` to `consumed_layer_tokens` and remember
    ///    `step`. Further calls with the same step (micro-batches) count nothing.
    ///
    /// Returns the new `r`. Errors, leaving the state unchanged: a step below the last counted
    /// one (upstream would count it again and could lower `r`), a step above `i64::MAX`, or a
    /// `consumed_layer_tokens` overflow.
    ///
    /// ```
    /// use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler, SchedulerError};
    ///
    /// let mut scheduler = RandomLtdScheduler::new(&RandomLtdConfig::gpt3_1_3b_example())?;
    /// assert_eq!(scheduler.update_seq(100_000)?, 1088);
    /// assert!(matches!(scheduler.update_seq(5), Err(SchedulerError::StepWentBackwards { .. })));
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    #[inline]
    pub fn update_seq(&mut self, step: u64) -> Result<u64> {
        let last = self.state.current_steps;
        let is_new_step = last < 0 || step != last as u64;
        if is_new_step && last >= 0 && step < last as u64 {
            return Err(SchedulerError::StepWentBackwards {
                step,
                current_steps: last,
            });
        }
        let mut value = self.state.current_value;
        if value < self.state.max_value {
            value = value.max(self.schedule.value_at(step));
        }
        if is_new_step {
            let Ok(step_i64) = i64::try_from(step) else {
                return Err(SchedulerError::InvalidArgument {
                    name: "step",
                    found: step.to_string(),
                    expected: "at most i64::MAX (the state stores steps as a signed integer)",
                });
            };
            // value <= max_value, so this cannot overflow (checked in `new`).
            let step_tokens =
                self.ltd_tokens_per_unit_length * value + self.full_layer_tokens_per_step;
            let Some(consumed) = self.state.consumed_layer_tokens.checked_add(step_tokens) else {
                return Err(SchedulerError::Overflow {
                    what: "consumed_layer_tokens",
                });
            };
            self.state.consumed_layer_tokens = consumed;
            self.state.current_steps = step_i64;
        }
        self.state.current_value = value;
        Ok(value)
    }

    /// The current reserved length `r` (upstream `get_current_seq`). Before the first
    /// `update_seq` it is `min_value`, not yet aligned to `seq_per_step` (as upstream).
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert_eq!(scheduler.current_value(), 128);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn current_value(&self) -> u64 {
        self.state.current_value
    }

    /// Layer-tokens counted so far.
    ///
    /// ```
    /// let mut scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// scheduler.update_seq(0)?;
    /// assert_eq!(scheduler.consumed_layer_tokens(), 512 * (128 * 22 + 2048 * 2));
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn consumed_layer_tokens(&self) -> u64 {
        self.state.consumed_layer_tokens
    }

    /// The last step counted, -1 before the first.
    ///
    /// ```
    /// let mut scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert_eq!(scheduler.current_steps(), -1);
    /// scheduler.update_seq(7)?;
    /// assert_eq!(scheduler.current_steps(), 7);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn current_steps(&self) -> i64 {
        self.state.current_steps
    }

    /// The reserved-length schedule (a pure function of the step).
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert_eq!(scheduler.schedule().first_step_at_max(), Some(200_000));
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn schedule(&self) -> &ReservedLengthSchedule {
        &self.schedule
    }

    /// The reserved length at `step` from a fresh start, without touching the state.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert_eq!(scheduler.reserved_length_at(150_000), 1568);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn reserved_length_at(&self, step: u64) -> u64 {
        self.schedule.value_at(step)
    }

    /// Megatron's averaged sequence length for a batch of length `seq_len` at the current `r`
    /// (see [`megatron_effective_seq_len`]).
    ///
    /// ```
    /// let mut scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// scheduler.update_seq(0)?; // r = 128
    /// assert_eq!(scheduler.effective_seq_len(2048)?, (2048 * 2 + 128 * 22) / 24);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn effective_seq_len(&self, seq_len: u64) -> Result<u64> {
        megatron_effective_seq_len(
            seq_len,
            self.state.current_value,
            self.total_layer_num,
            self.random_ltd_layer_num,
        )
    }

    /// Layer-tokens of the first `steps` steps (0..steps) of a fresh run: what upstream's
    /// `get_total_layer_tokens(steps)` returns on a fresh scheduler, without mutating anything.
    /// Sums per run of equal `r`, so it costs about `2·log2(run length)` schedule evaluations per
    /// distinct value, not one per step.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// let total = scheduler.total_layer_tokens(200_000)?;
    /// assert_eq!(scheduler.current_steps(), -1); // untouched
    /// assert!(total < scheduler.baseline_layer_tokens(200_000)?);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn total_layer_tokens(&self, steps: u64) -> Result<u64> {
        let total = self.total_layer_tokens_within(steps, u128::from(u64::MAX))?;
        u64::try_from(total).map_err(|_| SchedulerError::Overflow {
            what: "total layer-tokens",
        })
    }

    /// The total of [`total_layer_tokens`](Self::total_layer_tokens) in `u128`; stops with
    /// [`SchedulerError::Overflow`] as soon as the running sum passes `limit`.
    fn total_layer_tokens_within(&self, steps: u64, limit: u128) -> Result<u128> {
        let overflow = SchedulerError::Overflow {
            what: "total layer-tokens",
        };
        let full = u128::from(self.full_layer_tokens_per_step) * u128::from(steps);
        let room = limit.checked_sub(full).ok_or(overflow)?;
        // ltd_tokens_per_unit_length = G · L_ltd >= 1 for a validated config.
        let per_unit = u128::from(self.ltd_tokens_per_unit_length.max(1));
        let sum_of_values = self.schedule.sum_of_values(steps, room / per_unit)?;
        Ok(per_unit * sum_of_values + full)
    }

    /// Layer-tokens of `steps` steps without random-LTD: `steps · G · max_value · L_tot`.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert_eq!(scheduler.baseline_layer_tokens(10)?, 10 * 512 * 2048 * 24);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn baseline_layer_tokens(&self, steps: u64) -> Result<u64> {
        let per_step = u128::from(self.global_batch_size)
            * u128::from(self.state.max_value)
            * self.total_layer_num as u128;
        u64::try_from(per_step * u128::from(steps)).map_err(|_| SchedulerError::Overflow {
            what: "baseline layer-tokens",
        })
    }

    /// The fraction of baseline layer-tokens saved over the first `steps` steps:
    /// `1 − total / baseline`, in `[0, 1)`. Errors for `steps == 0`.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// let saving = scheduler.layer_token_saving(1)?;
    /// assert_eq!(saving, 1.0 - (128.0 * 22.0 + 2048.0 * 2.0) / (2048.0 * 24.0));
    /// assert!(scheduler.layer_token_saving(0).is_err());
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn layer_token_saving(&self, steps: u64) -> Result<f64> {
        if steps == 0 {
            return Err(SchedulerError::InvalidArgument {
                name: "steps",
                found: "0".into(),
                expected: "at least 1 step (the saving of an empty run is undefined)",
            });
        }
        let per_step_baseline = u128::from(self.global_batch_size)
            * u128::from(self.state.max_value)
            * self.total_layer_num as u128;
        let baseline = per_step_baseline * u128::from(steps);
        // The total is at most the baseline, so it bounds the sum.
        let total = self.total_layer_tokens_within(steps, baseline)?;
        Ok((baseline - total) as f64 / baseline as f64)
    }

    /// The LayerToken learning-rate schedule, when `layer_token_lr_schedule.enabled`.
    ///
    /// ```
    /// let scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// assert!(scheduler.lr_schedule().is_none());
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn lr_schedule(&self) -> Option<&LayerTokenLrSchedule> {
        self.lr_schedule.as_ref()
    }

    /// The learning rate at the current `consumed_layer_tokens`, when the LayerToken LR schedule is
    /// enabled. After `update_seq(t)` the count includes step `t`'s tokens, so step 0 already has
    /// a non-zero warmup rate.
    ///
    /// ```
    /// use ltd_scheduler::{DecayType, LayerTokenLrConfig, RandomLtdConfig, RandomLtdScheduler, WarmupType};
    ///
    /// let mut config = RandomLtdConfig::gpt3_1_3b_example();
    /// let scheduler = RandomLtdScheduler::new(&config)?;
    /// let total = scheduler.total_layer_tokens(200_000)?;
    /// config.layer_token_lr_schedule = Some(LayerTokenLrConfig {
    ///     total_layer_tokens: total,
    ///     warmup_layer_tokens: total / 100,
    ///     warmup_type: WarmupType::Linear,
    ///     decay_type: DecayType::Cosine,
    ///     peak_lr: 2e-4,
    ///     min_lr: 2e-5,
    /// });
    /// let mut scheduler = RandomLtdScheduler::new(&config)?;
    /// assert_eq!(scheduler.current_lr(), Some(0.0));
    /// scheduler.update_seq(0)?;
    /// assert!(scheduler.current_lr().unwrap() > 0.0);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn current_lr(&self) -> Option<f64> {
        self.lr_schedule
            .as_ref()
            .map(|lr| lr.lr_at(self.state.consumed_layer_tokens))
    }

    /// A copy of the checkpoint state (upstream `state_dict()`).
    ///
    /// ```
    /// let mut scheduler = ltd_scheduler::RandomLtdScheduler::new(
    ///     &ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example(),
    /// )?;
    /// scheduler.update_seq(50_000)?;
    /// assert_eq!(scheduler.state_dict().current_value, 608);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn state_dict(&self) -> RandomLtdState {
        self.state
    }

    /// Restores a checkpoint state (upstream `load_state_dict`), after checking it against this
    /// scheduler's configuration: `min_value` and `max_value` equal the configuration's,
    /// `current_value` within `[min_value, max_value]`, `current_steps >= -1`, and no consumed
    /// tokens when `current_steps == -1`. On error the state is unchanged.
    ///
    /// ```
    /// use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler, RandomLtdState};
    ///
    /// let config = RandomLtdConfig::gpt3_1_3b_example();
    /// let mut trained = RandomLtdScheduler::new(&config)?;
    /// trained.update_seq(100_000)?;
    /// let saved = trained.state_dict().to_json();
    ///
    /// let mut resumed = RandomLtdScheduler::new(&config)?;
    /// resumed.load_state_dict(RandomLtdState::from_json(&saved)?)?;
    /// assert_eq!(resumed, trained);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn load_state_dict(&mut self, state: RandomLtdState) -> Result<()> {
        let config = self.schedule.config();
        for (key, found, expected) in [
            ("min_value", state.min_value, config.min_value),
            ("max_value", state.max_value, config.max_value),
        ] {
            if found != expected {
                return Err(SchedulerError::StateMismatch {
                    key,
                    found,
                    expected,
                });
            }
        }
        if !(config.min_value..=config.max_value).contains(&state.current_value) {
            return Err(SchedulerError::StateValueOutOfRange {
                found: state.current_value,
                min_value: config.min_value,
                max_value: config.max_value,
            });
        }
        if state.current_steps < -1 {
            return Err(SchedulerError::StateStepsBelowMinusOne {
                found: state.current_steps,
            });
        }
        if state.current_steps == -1 && state.consumed_layer_tokens != 0 {
            return Err(SchedulerError::StateTokensBeforeFirstStep {
                found: state.consumed_layer_tokens,
            });
        }
        self.state = state;
        Ok(())
    }

    /// Back to the initial state (upstream `reset_to_init`).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// let mut scheduler = ltd_scheduler::RandomLtdScheduler::new(&config)?;
    /// scheduler.update_seq(10)?;
    /// scheduler.reset();
    /// assert_eq!(scheduler, ltd_scheduler::RandomLtdScheduler::new(&config)?);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn reset(&mut self) {
        self.state = Self::initial_state(&self.schedule);
    }

    /// `total_layer_num` (`L_tot`).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// assert_eq!(ltd_scheduler::RandomLtdScheduler::new(&config)?.total_layer_num(), 24);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn total_layer_num(&self) -> usize {
        self.total_layer_num
    }

    /// `random_ltd_layer_num` (`L_ltd`).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// assert_eq!(ltd_scheduler::RandomLtdScheduler::new(&config)?.random_ltd_layer_num(), 22);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn random_ltd_layer_num(&self) -> usize {
        self.random_ltd_layer_num
    }

    /// `global_batch_size` (`G`).
    ///
    /// ```
    /// let config = ltd_scheduler::RandomLtdConfig::gpt3_1_3b_example();
    /// assert_eq!(ltd_scheduler::RandomLtdScheduler::new(&config)?.global_batch_size(), 512);
    /// # Ok::<(), ltd_scheduler::SchedulerError>(())
    /// ```
    pub fn global_batch_size(&self) -> u64 {
        self.global_batch_size
    }
}
