//! Checkpoints: `model.safetensors` (weights), `optimizer.safetensors` (AdamW moments),
//! `state.json` (step, optimizer step count, Random-LTD scheduler state, data position, the
//! configuration fingerprint, the log so far, and the size and hash of both tensor files).
//!
//! Each file is written atomically and `state.json` last, so an interrupted save leaves either
//! the previous checkpoint or tensor files that no longer match `state.json`, which resuming
//! reports. Resuming reads only: a bad checkpoint leaves the directory as it was.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ltd_scheduler::RandomLtdState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::TrainConfig;
use crate::corpus::Dataset;
use crate::error::{Result, TrainError};
use crate::fsutil::{fnv64, temp_sibling, write_atomic};
use crate::trainer::{StepRecord, Trainer, Variant};

/// Weights file name.
///
/// ```
/// assert_eq!(ltd_train::MODEL_FILE, "model.safetensors");
/// ```
pub const MODEL_FILE: &str = "model.safetensors";
/// AdamW moments file name.
///
/// ```
/// assert_eq!(ltd_train::OPTIMIZER_FILE, "optimizer.safetensors");
/// ```
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// State file name.
///
/// ```
/// assert_eq!(ltd_train::STATE_FILE, "state.json");
/// ```
pub const STATE_FILE: &str = "state.json";
const FORMAT: &str = "ltd-train checkpoint 1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    bytes: u64,
    fnv64: String,
}

impl FileStamp {
    fn of(bytes: &[u8]) -> Self {
        FileStamp {
            bytes: bytes.len() as u64,
            fnv64: format!("{:016x}", fnv64(bytes)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataPosition {
    /// The next step's batch is `train_batch(next_step, batch)`.
    next_step: u64,
    train_windows: usize,
    val_windows: usize,
    corpus_fnv64: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: String,
    variant: Variant,
    steps_done: u64,
    optimizer_steps: u64,
    layer_tokens: u64,
    wall_clock_s: f64,
    random_ltd: Option<RandomLtdState>,
    data: DataPosition,
    config: Value,
    model_file: FileStamp,
    optimizer_file: FileStamp,
    history: Vec<StepRecord>,
}

/// Serializes named tensors through a temporary file (candle writes safetensors to a path).
fn safetensors_bytes(tensors: HashMap<String, Tensor>, target: &Path) -> Result<Vec<u8>> {
    let tmp = temp_sibling(&target.with_extension("ser"));
    let result = candle_core::safetensors::save(&tensors, &tmp)
        .map_err(TrainError::from)
        .and_then(|()| std::fs::read(&tmp).map_err(|e| TrainError::io(&tmp, e)));
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The first key path where two JSON values differ, with both values.
fn first_difference(
    path: &str,
    saved: &Value,
    current: &Value,
) -> Option<(String, String, String)> {
    match (saved, current) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(
                    &sub,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (a, b) if a == b => None,
        (a, b) => Some((path.to_owned(), a.to_string(), b.to_string())),
    }
}

impl Trainer {
    /// Writes a checkpoint of the run into `dir` (created if needed), replacing one there.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the file that could not be written.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let dir = std::env::temp_dir().join(format!("ltd-doc-save-{}", std::process::id()));
    /// let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu)?;
    /// run.step()?;
    /// run.save(&dir)?;
    /// let resumed = Trainer::resume(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu, &dir)?;
    /// assert_eq!(resumed.steps_done(), 1);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let weights: HashMap<String, Tensor> = self
            .model
            .params()
            .iter()
            .map(|(n, v)| (n.to_owned(), v.as_tensor().clone()))
            .collect();
        let model_path = dir.join(MODEL_FILE);
        let model_bytes = safetensors_bytes(weights, &model_path)?;
        let moments: HashMap<String, Tensor> = self.optimizer.state_tensors().into_iter().collect();
        let optimizer_path = dir.join(OPTIMIZER_FILE);
        let optimizer_bytes = safetensors_bytes(moments, &optimizer_path)?;
        let state = State {
            format: FORMAT.to_owned(),
            variant: self.variant,
            steps_done: self.step,
            optimizer_steps: self.optimizer.step_count(),
            layer_tokens: self.layer_tokens,
            wall_clock_s: self.wall_clock_s,
            random_ltd: self.scheduler.as_ref().map(|s| s.state_dict()),
            data: DataPosition {
                next_step: self.step,
                train_windows: self.data.train_windows(),
                val_windows: self.data.val_windows(),
                corpus_fnv64: format!("{:016x}", self.data.fingerprint()),
            },
            config: self.config.fingerprint(),
            model_file: FileStamp::of(&model_bytes),
            optimizer_file: FileStamp::of(&optimizer_bytes),
            history: self.history.clone(),
        };
        let state_json = serde_json::to_vec_pretty(&state).map_err(|e| {
            TrainError::checkpoint(&dir.join(STATE_FILE), format!("cannot serialize: {e}"))
        })?;
        write_atomic(&model_path, &model_bytes)?;
        write_atomic(&optimizer_path, &optimizer_bytes)?;
        write_atomic(&dir.join(STATE_FILE), &state_json)
    }

    /// Continues a run from the checkpoint in `dir`: the same `config`, `variant` and data as
    /// the run that wrote it, or an error that names the file and the difference.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when `dir` or a file is missing, unreadable, truncated, from
    /// an interrupted save, or from another configuration, variant or corpus.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let missing = std::env::temp_dir().join("ltd-doc-no-such-checkpoint");
    /// let err = Trainer::resume(&cfg, Variant::BASELINE, &data, &Device::Cpu, &missing).err().unwrap();
    /// assert!(err.to_string().contains("no such directory"));
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn resume(
        config: &TrainConfig,
        variant: Variant,
        data: &Dataset,
        device: &Device,
        dir: &Path,
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(TrainError::checkpoint(dir, "no such directory"));
        }
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read(&state_path).map_err(|e| {
            TrainError::checkpoint(
                &state_path,
                format!("cannot read ({e}); is this a checkpoint directory written by --save?"),
            )
        })?;
        let state: State = serde_json::from_slice(&text).map_err(|e| {
            TrainError::checkpoint(&state_path, format!("not a valid checkpoint state: {e}"))
        })?;
        if state.format != FORMAT {
            return Err(TrainError::checkpoint(
                &state_path,
                format!("format {:?}; expected {FORMAT:?}", state.format),
            ));
        }
        if state.variant != variant {
            return Err(TrainError::checkpoint(
                &state_path,
                format!(
                    "written by the {} run; this is the {} run",
                    state.variant.name(),
                    variant.name()
                ),
            ));
        }
        if let Some((key, saved, now)) = first_difference("", &state.config, &config.fingerprint())
        {
            return Err(TrainError::checkpoint(
                &state_path,
                format!(
                    "written with another configuration: {key} was {saved}, this run has {now}"
                ),
            ));
        }
        let corpus = format!("{:016x}", data.fingerprint());
        if state.data.corpus_fnv64 != corpus
            || state.data.train_windows != data.train_windows()
            || state.data.val_windows != data.val_windows()
        {
            return Err(TrainError::checkpoint(
                &state_path,
                "written for another training text (--data) or split",
            ));
        }
        let mut run = Trainer::new(config, variant, data, device)?;
        let weights = read_tensors(&dir.join(MODEL_FILE), &state.model_file, device)?;
        run.load_weights(&weights, &dir.join(MODEL_FILE))?;
        let moments = read_tensors(&dir.join(OPTIMIZER_FILE), &state.optimizer_file, device)?;
        run.optimizer
            .load_state(&moments, state.optimizer_steps, &dir.join(OPTIMIZER_FILE))?;
        match (run.scheduler.as_mut(), state.random_ltd) {
            (Some(s), Some(saved)) => s
                .load_state_dict(saved)
                .map_err(|e| TrainError::checkpoint(&state_path, format!("random_ltd: {e}")))?,
            (None, None) => {}
            _ => {
                return Err(TrainError::checkpoint(
                    &state_path,
                    "random_ltd state does not match the variant",
                ));
            }
        }
        if state.data.next_step != state.steps_done
            || state.history.len() as u64 != state.steps_done
        {
            return Err(TrainError::checkpoint(
                &state_path,
                "inconsistent step counters",
            ));
        }
        run.step = state.steps_done;
        run.layer_tokens = state.layer_tokens;
        run.wall_clock_s = state.wall_clock_s;
        run.history = state.history;
        Ok(run)
    }

    fn load_weights(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let params = self.model.params();
        for (name, var) in params.iter() {
            let t = tensors
                .get(name)
                .ok_or_else(|| TrainError::checkpoint(path, format!("tensor {name} is missing")))?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(TrainError::checkpoint(
                    path,
                    format!(
                        "tensor {name} is {:?} {:?}; expected {:?} {:?}",
                        t.dtype(),
                        t.dims(),
                        var.dtype(),
                        var.dims()
                    ),
                ));
            }
        }
        if let Some(extra) = tensors.keys().find(|k| params.get(k).is_none()) {
            return Err(TrainError::checkpoint(
                path,
                format!("unexpected tensor {extra} (a checkpoint of another model?)"),
            ));
        }
        for (name, var) in params.iter() {
            var.set(&tensors[name])?;
        }
        Ok(())
    }
}

fn read_tensors(
    path: &Path,
    stamp: &FileStamp,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot read: {e}")))?;
    if FileStamp::of(&bytes) != *stamp {
        return Err(TrainError::checkpoint(
            path,
            format!(
                "{} bytes, hash {:016x}; state.json expects {} bytes, hash {}: the file is truncated, replaced, or its save was interrupted",
                bytes.len(),
                fnv64(&bytes),
                stamp.bytes,
                stamp.fnv64
            ),
        ));
    }
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| TrainError::checkpoint(path, format!("not a valid safetensors file: {e}")))
}
