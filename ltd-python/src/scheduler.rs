//! `ltd._ltd.Scheduler`: DeepSpeed's `RandomLTDScheduler` arithmetic (`ltd_scheduler`) for the
//! Python wrapper `ltd.torch.RandomLTDScheduler`, which adds the per-step state dict
//! (`sample_idx`, `attention_mask`) upstream keeps on the scheduler.

use ltd_scheduler::{RandomLtdConfig, RandomLtdScheduler, RandomLtdState};
use pyo3::prelude::*;

use crate::error::BindingError;

/// The reserved-length schedule and layer-token count of one `random_ltd` config section.
///
/// ```text
/// >>> s = ltd._ltd.Scheduler(json.dumps(section), 8)
/// >>> s.update_seq(0)
/// 128
/// ```
#[pyclass(name = "Scheduler", module = "ltd._ltd")]
pub struct PyScheduler {
    inner: RandomLtdScheduler,
    config: RandomLtdConfig,
}

#[pymethods]
impl PyScheduler {
    /// From the `data_efficiency.data_routing.random_ltd` section (JSON; `enabled` must be
    /// true) and the global batch size, which DeepSpeed's engine injects from
    /// `train_batch_size` when the section has none.
    #[new]
    #[pyo3(signature = (section, global_batch_size=None))]
    fn new(section: &str, global_batch_size: Option<u64>) -> PyResult<Self> {
        let parsed = RandomLtdConfig::from_section_json(section).map_err(BindingError::from)?;
        let Some(mut config) = parsed else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "data_efficiency.data_routing.random_ltd.enabled: false; expected true for a scheduler",
            ));
        };
        if let Some(g) = global_batch_size {
            config = config
                .with_global_batch_size(g)
                .map_err(BindingError::from)?;
        }
        let inner = RandomLtdScheduler::new(&config).map_err(BindingError::from)?;
        Ok(PyScheduler { inner, config })
    }

    /// Advances to global step `step` (DeepSpeed's `update_seq`); returns the reserved length.
    fn update_seq(&mut self, step: u64) -> PyResult<u64> {
        Ok(self.inner.update_seq(step).map_err(BindingError::from)?)
    }

    /// The current reserved length `r`.
    fn current_value(&self) -> u64 {
        self.inner.current_value()
    }

    /// Layer-tokens consumed so far.
    fn consumed_layer_tokens(&self) -> u64 {
        self.inner.consumed_layer_tokens()
    }

    /// The last step counted (-1 before the first).
    fn current_steps(&self) -> i64 {
        self.inner.current_steps()
    }

    /// The model indices of the token-dropping layers, ascending.
    fn layer_ids(&self) -> Vec<usize> {
        self.config.sorted_layer_ids()
    }

    /// `(total_layer_num, random_ltd_layer_num)`.
    fn layer_counts(&self) -> (usize, usize) {
        (
            self.config.total_layer_num,
            self.config.random_ltd_layer_num,
        )
    }

    /// The persistent state as JSON (upstream's five keys).
    fn state_dict(&self) -> String {
        self.inner.state_dict().to_json()
    }

    /// Restores [`state_dict`](Self::state_dict)'s JSON.
    fn load_state_dict(&mut self, state: &str) -> PyResult<()> {
        let state = RandomLtdState::from_json(state).map_err(BindingError::from)?;
        self.inner
            .load_state_dict(state)
            .map_err(BindingError::from)?;
        Ok(())
    }
}
