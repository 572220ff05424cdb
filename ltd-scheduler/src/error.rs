//! The crate's one error type.

/// Everything that can go wrong in `ltd-scheduler`: bad configuration values (each message starts
/// with the JSON key path of the offending value), bad checkpoint state, bad call arguments and
/// arithmetic overflow.
///
/// Every message says what was found and what was expected.
///
/// ```
/// use ltd_scheduler::{RandomLtdConfig, SchedulerError};
///
/// let mut config = RandomLtdConfig::gpt3_1_3b_example();
/// config.schedule.min_value = 4096;
/// let err = config.validate().unwrap_err();
/// assert!(matches!(err, SchedulerError::MinGreaterThanMax { .. }));
/// assert_eq!(
///     err.to_string(),
///     "data_efficiency.data_routing.random_ltd.random_ltd_schedule.min_value: \
///      4096 is greater than max_value 2048"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The text is not valid JSON.
    #[error("invalid JSON: {message}")]
    InvalidJson {
        /// serde_json's description, with line and column.
        message: String,
    },

    /// A required key is absent.
    #[error("{path}: missing required key")]
    MissingKey {
        /// Key path of the missing key.
        path: String,
    },

    /// An object holds keys this crate does not know (a typo must not silently disable a feature).
    #[error("{path}: unknown key(s) {unknown:?}; expected only {expected:?}")]
    UnknownKeys {
        /// Key path of the object holding the unknown keys.
        path: String,
        /// The unknown keys, in the order they appear.
        unknown: Vec<String>,
        /// The keys allowed in that object.
        expected: Vec<&'static str>,
    },

    /// A value has the wrong JSON type (or is negative / fractional where an unsigned integer is
    /// needed).
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Key path of the value.
        path: String,
        /// What was expected, e.g. "a non-negative integer".
        expected: &'static str,
        /// The value found, as JSON text.
        found: String,
    },

    /// A string is not one of the accepted names.
    #[error("{path}: unknown value {found:?}; expected one of {expected:?}")]
    UnknownVariant {
        /// Key path of the value.
        path: String,
        /// The string found.
        found: String,
        /// The accepted strings.
        expected: &'static [&'static str],
    },

    /// `min_value` is greater than `max_value`.
    #[error("{path}: {min_value} is greater than max_value {max_value}")]
    MinGreaterThanMax {
        /// Key path of `min_value`.
        path: String,
        /// The minimum found.
        min_value: u64,
        /// The maximum it must not exceed.
        max_value: u64,
    },

    /// A value that must be greater than zero is zero (or, for a real number, not a finite positive
    /// number).
    #[error("{path}: {found} must be greater than 0")]
    NotPositive {
        /// Key path of the value.
        path: String,
        /// The value found.
        found: String,
    },

    /// A random-LTD layer id is not a layer of the model.
    #[error(
        "{path}: layer id {layer_id} is out of range; expected less than total_layer_num {total_layer_num}"
    )]
    LayerIdOutOfRange {
        /// Key path of the id (with its list index).
        path: String,
        /// The id found.
        layer_id: usize,
        /// The number of layers of the model.
        total_layer_num: usize,
    },

    /// A random-LTD layer id is listed twice.
    #[error("{path}: layer id {layer_id} is listed more than once; expected distinct ids")]
    DuplicateLayerId {
        /// Key path of the second occurrence (with its list index).
        path: String,
        /// The repeated id.
        layer_id: usize,
    },

    /// `random_ltd_layer_num` disagrees with the length of `random_ltd_layer_id`.
    #[error(
        "{path}: {random_ltd_layer_num} does not equal the number of ids in random_ltd_layer_id ({id_count})"
    )]
    LayerCountMismatch {
        /// Key path of `random_ltd_layer_num`.
        path: String,
        /// The count found.
        random_ltd_layer_num: usize,
        /// The number of ids listed.
        id_count: usize,
    },

    /// `model_type` is `encoder` but `model_mask_name` is null: the encoder path gathers the
    /// attention mask, so it needs one (upstream asserts on it at the first step).
    #[error(
        "{path}: null, but model_type \"encoder\" needs the name of the attention-mask argument"
    )]
    EncoderNeedsMask {
        /// Key path of `model_mask_name`.
        path: String,
    },

    /// `schedule_config.root_degree` is given with a schedule type that does not read it.
    #[error(
        "{path}: only read by schedule_type \"fixed_root\", but schedule_type is {schedule_type:?}"
    )]
    RootDegreeNotApplicable {
        /// Key path of `root_degree`.
        path: String,
        /// The schedule type in use.
        schedule_type: &'static str,
    },

    /// A batch size given inside the random_ltd section disagrees with the top-level one that
    /// DeepSpeed would inject over it.
    #[error(
        "{path}: {value} conflicts with {top_level_key} {top_level_value} (DeepSpeed overwrites the section's value with it); remove one or make them equal"
    )]
    ConflictingBatchSize {
        /// Key path of the in-section value.
        path: String,
        /// The in-section value.
        value: u64,
        /// The top-level key (`train_batch_size` or `train_micro_batch_size_per_gpu`).
        top_level_key: &'static str,
        /// The top-level value.
        top_level_value: u64,
    },

    /// The scheduler needs the global batch size for token accounting and none was given.
    #[error(
        "{path}: not set; expected train_batch_size in the DeepSpeed config, global_batch_size in the random_ltd section, or RandomLtdConfig::with_global_batch_size"
    )]
    MissingGlobalBatchSize {
        /// Key path of `global_batch_size`.
        path: String,
    },

    /// `warmup_layer_tokens` is greater than `total_layer_tokens`.
    #[error(
        "{path}: {warmup_layer_tokens} is greater than total_layer_tokens {total_layer_tokens}"
    )]
    WarmupExceedsTotal {
        /// Key path of `warmup_layer_tokens`.
        path: String,
        /// The warmup length found.
        warmup_layer_tokens: u64,
        /// The total it must not exceed.
        total_layer_tokens: u64,
    },

    /// A learning rate is negative, NaN or infinite.
    #[error("{path}: {found} is not a finite number >= 0")]
    InvalidLearningRate {
        /// Key path of the learning rate.
        path: String,
        /// The value found.
        found: f64,
    },

    /// `min_lr` is greater than `peak_lr`.
    #[error("{path}: {min_lr} is greater than peak_lr {peak_lr}")]
    MinLrAbovePeak {
        /// Key path of `min_lr`.
        path: String,
        /// The floor found.
        min_lr: f64,
        /// The peak it must not exceed.
        peak_lr: f64,
    },

    /// A checkpoint state value differs from the configuration it is loaded into.
    #[error("state {key}: {found} does not match the configuration's {expected}")]
    StateMismatch {
        /// The state key (`min_value` or `max_value`).
        key: &'static str,
        /// The state's value.
        found: u64,
        /// The configuration's value.
        expected: u64,
    },

    /// A checkpoint's `current_value` is outside `[min_value, max_value]`.
    #[error(
        "state current_value: {found} is outside [min_value {min_value}, max_value {max_value}]"
    )]
    StateValueOutOfRange {
        /// The state's `current_value`.
        found: u64,
        /// The configured minimum.
        min_value: u64,
        /// The configured maximum.
        max_value: u64,
    },

    /// A checkpoint's `current_steps` is below -1 (-1 means "no step taken yet").
    #[error("state current_steps: {found} is less than -1 (the value before the first step)")]
    StateStepsBelowMinusOne {
        /// The state's `current_steps`.
        found: i64,
    },

    /// A checkpoint says no step was taken (`current_steps == -1`) but has consumed tokens.
    #[error(
        "state consumed_layer_tokens: {found} with current_steps -1 (no step taken); expected 0"
    )]
    StateTokensBeforeFirstStep {
        /// The state's `consumed_layer_tokens`.
        found: u64,
    },

    /// A checkpoint's JSON text is not a valid state dict.
    #[error("state: {message}")]
    InvalidState {
        /// serde_json's description.
        message: String,
    },

    /// `update_seq` was called with a step before the last one.
    #[error(
        "update_seq: step {step} is before the last step {current_steps}; expected steps that never decrease (call reset to start over)"
    )]
    StepWentBackwards {
        /// The step passed.
        step: u64,
        /// The last step counted.
        current_steps: i64,
    },

    /// A function argument is out of its domain.
    #[error("{name}: {found}; expected {expected}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The value found.
        found: String,
        /// What is accepted.
        expected: &'static str,
    },

    /// A layer-token sum would walk more distinct reserved lengths than the bound on its work.
    #[error(
        "summing the layer-tokens of {steps} steps would walk {distinct_values} distinct reserved lengths; expected at most {limit} (use a larger seq_per_step or fewer steps)"
    )]
    ScheduleTooLong {
        /// The steps asked for.
        steps: u64,
        /// Distinct reserved lengths in those steps (an upper bound).
        distinct_values: u64,
        /// The most that are summed.
        limit: u64,
    },

    /// A layer-token count does not fit in a `u64`.
    #[error("{what} overflows u64 (maximum {max})", max = u64::MAX)]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
}

/// Shorthand for `Result<T, SchedulerError>`.
///
/// ```
/// fn check(steps: u64) -> ltd_scheduler::Result<u64> {
///     Ok(steps)
/// }
/// assert_eq!(check(3).unwrap(), 3);
/// ```
pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;
