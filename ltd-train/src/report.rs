//! Run logs as CSV, a loop that checkpoints as it goes, and the comparison of runs.

use std::path::Path;

use crate::error::Result;
use crate::trainer::{StepRecord, Trainer};

/// The CSV header of [`csv`].
///
/// ```
/// assert!(ltd_train::CSV_HEADER.starts_with("step,train_loss,val_loss,layer_tokens"));
/// ```
pub const CSV_HEADER: &str =
    "step,train_loss,val_loss,layer_tokens,wall_clock_s,lr,reserved_length";

/// A run's log as CSV (one row per step; `val_loss` empty where not evaluated).
///
/// ```
/// let rows = [ltd_train::StepRecord { step: 1, train_loss: 5.5, val_loss: Some(5.4), layer_tokens: 10, wall_clock_s: 0.25, lr: 1e-3, reserved_length: 64 }];
/// let text = ltd_train::csv(&rows);
/// assert_eq!(text.lines().nth(1), Some("1,5.5,5.4,10,0.25,0.001,64"));
/// ```
pub fn csv(records: &[StepRecord]) -> String {
    let mut out = String::with_capacity(64 * (records.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in records {
        let val = r.val_loss.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.step, r.train_loss, val, r.layer_tokens, r.wall_clock_s, r.lr, r.reserved_length
        ));
    }
    out
}

/// Where and how often [`drive`] writes checkpoints.
///
/// ```
/// let s = ltd_train::SaveEvery { dir: std::path::Path::new("ck"), every: 50 };
/// assert_eq!(s.every, 50);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SaveEvery<'a> {
    /// The checkpoint directory.
    pub dir: &'a Path,
    /// Steps between checkpoints (the last step is always saved).
    pub every: u64,
}

/// Runs `run` to its last step, calling `on_step` after each, and saving a checkpoint every
/// `save.every` steps and after the last (on rank 0 only in a data-parallel job).
///
/// # Errors
/// The first step or save error.
///
/// ```
/// # use candle_core::Device;
/// # use ltd_train::*;
/// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
/// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
/// let mut run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
/// let mut seen = 0;
/// drive(&mut run, None, |_| seen += 1)?;
/// assert_eq!(seen, 2);
/// let result = RunResult::of(&run).unwrap();
/// assert_eq!(result.layer_tokens, 2 * 3 * 2 * 16);
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub fn drive(
    run: &mut Trainer,
    save: Option<SaveEvery<'_>>,
    mut on_step: impl FnMut(&StepRecord),
) -> Result<()> {
    while !run.is_done() {
        let record = run.step()?;
        on_step(&record);
        // Every rank holds the same state: rank 0 writes it.
        if let Some(s) = save
            && run.data_parallel().is_leader()
            && (run.is_done() || (s.every > 0 && record.step.is_multiple_of(s.every)))
        {
            run.save(s.dir)?;
        }
    }
    Ok(())
}

/// The outcome of one run, for the closing summary.
///
/// ```
/// let r = ltd_train::RunResult { name: "baseline".into(), val_loss: 2.0, layer_tokens: 100, wall_clock_s: 10.0 };
/// assert_eq!(r.name, "baseline");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// The variant's name.
    pub name: String,
    /// Final validation loss (all validation windows).
    pub val_loss: f64,
    /// Layer-tokens consumed.
    pub layer_tokens: u64,
    /// Training seconds.
    pub wall_clock_s: f64,
}

impl RunResult {
    /// The result of a finished run; `None` before its final evaluation.
    ///
    /// ```
    /// # use candle_core::Device;
    /// # use ltd_train::*;
    /// # let cfg = TrainConfig::embedded(&Overrides { layers: Some(3), width: Some(16), heads: Some(2), seq_len: Some(16), batch: Some(2), steps: Some(2), ..Default::default() })?;
    /// # let data = Dataset::new(&Corpus::from_text("t", &EMBEDDED_CORPUS[..20_000])?, 16, 0.1, cfg.seed)?;
    /// let run = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu)?;
    /// assert!(RunResult::of(&run).is_none()); // no step yet
    /// # Ok::<(), ltd_train::TrainError>(())
    /// ```
    pub fn of(run: &Trainer) -> Option<Self> {
        let last = run.history().last()?;
        Some(RunResult {
            name: run.variant().name().to_owned(),
            val_loss: last.val_loss?,
            layer_tokens: last.layer_tokens,
            wall_clock_s: last.wall_clock_s,
        })
    }

    /// Per cent fewer layer-tokens than `baseline`, per cent less wall-clock, and the relative
    /// validation-loss change in per cent (positive: worse).
    ///
    /// ```
    /// use ltd_train::RunResult;
    /// let base = RunResult { name: "baseline".into(), val_loss: 2.0, layer_tokens: 100, wall_clock_s: 10.0 };
    /// let ltd = RunResult { name: "random-ltd".into(), val_loss: 2.02, layer_tokens: 70, wall_clock_s: 8.0 };
    /// let (tokens, wall, loss) = ltd.against(&base);
    /// assert!((tokens - 30.0).abs() < 1e-9 && (wall - 20.0).abs() < 1e-9 && (loss - 1.0).abs() < 1e-9);
    /// ```
    pub fn against(&self, baseline: &RunResult) -> (f64, f64, f64) {
        let pct = |a: f64, b: f64| if b == 0.0 { 0.0 } else { 100.0 * (b - a) / b };
        (
            pct(self.layer_tokens as f64, baseline.layer_tokens as f64),
            pct(self.wall_clock_s, baseline.wall_clock_s),
            -pct(self.val_loss, baseline.val_loss),
        )
    }
}
