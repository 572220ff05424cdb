//! The two enums of the random-LTD section: `model_type` and `hidden_state_order`.

/// Which sampler and mask handling the model needs (`model_type`).
///
/// ```
/// assert_eq!(ltd_scheduler::ModelType::Decoder.name(), "decoder");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// `"encoder"` (BERT-like): bidirectional attention, the mask is gathered per kept position.
    Encoder,
    /// `"decoder"` (GPT-like): causal attention.
    Decoder,
}

impl ModelType {
    /// The names accepted in JSON.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::ModelType::NAMES, &["encoder", "decoder"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["encoder", "decoder"];

    /// The JSON name.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::ModelType::Encoder.name(), "encoder");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ModelType::Encoder => "encoder",
            ModelType::Decoder => "decoder",
        }
    }
}

/// The layout of the hidden states (`hidden_state_order`).
///
/// ```
/// assert_eq!(ltd_scheduler::HiddenStateOrder::SeqBatchDim.name(), "seq_batch_dim");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenStateOrder {
    /// `"batch_seq_dim"`: `[B, S, C]`.
    BatchSeqDim,
    /// `"seq_batch_dim"`: `[S, B, C]` (Megatron).
    SeqBatchDim,
}

impl HiddenStateOrder {
    /// The names accepted in JSON.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::HiddenStateOrder::NAMES, &["batch_seq_dim", "seq_batch_dim"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["batch_seq_dim", "seq_batch_dim"];

    /// The JSON name.
    ///
    /// ```
    /// assert_eq!(ltd_scheduler::HiddenStateOrder::BatchSeqDim.name(), "batch_seq_dim");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            HiddenStateOrder::BatchSeqDim => "batch_seq_dim",
            HiddenStateOrder::SeqBatchDim => "seq_batch_dim",
        }
    }
}
