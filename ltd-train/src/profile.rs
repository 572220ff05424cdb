//! Opt-in timing of where a training step's time goes (`LTD_TRAIN_PROFILE=1`): each phase
//! (embedding, a block's layer norm + projections, attention with its casts, MLP, head,
//! backward, gradient norm, optimizer) waits for the device and adds its wall time to a process
//! total. The waits serialise host and device, so a profiled step is slower than a plain one;
//! the shares are what the profile is for. Off (the default), every call is one branch.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use candle_core::Device;

use crate::Result;

/// Whether `LTD_TRAIN_PROFILE` is set to something other than `0` or empty.
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("LTD_TRAIN_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

fn totals() -> &'static Mutex<BTreeMap<&'static str, (f64, u64)>> {
    static TOTALS: OnceLock<Mutex<BTreeMap<&'static str, (f64, u64)>>> = OnceLock::new();
    TOTALS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Times consecutive phases on one device (a no-op unless [`enabled`]).
pub(crate) struct Phases<'a> {
    device: &'a Device,
    last: Option<Instant>,
}

impl<'a> Phases<'a> {
    /// Starts timing after the device has finished what was queued before.
    pub(crate) fn start(device: &'a Device) -> Result<Self> {
        if !enabled() {
            return Ok(Phases { device, last: None });
        }
        device.synchronize()?;
        Ok(Phases {
            device,
            last: Some(Instant::now()),
        })
    }

    /// Ends the phase `name` (waiting for the device) and starts the next one.
    pub(crate) fn end(&mut self, name: &'static str) -> Result<()> {
        let Some(last) = self.last else {
            return Ok(());
        };
        self.device.synchronize()?;
        let now = Instant::now();
        let mut t = totals().lock().unwrap_or_else(|p| p.into_inner());
        let e = t.entry(name).or_insert((0.0, 0));
        e.0 += (now - last).as_secs_f64();
        e.1 += 1;
        self.last = Some(now);
        Ok(())
    }
}

/// The phase totals since the last call (seconds, times entered), and resets them; empty unless
/// `LTD_TRAIN_PROFILE` is set.
///
/// ```
/// // Without LTD_TRAIN_PROFILE nothing is recorded.
/// assert!(ltd_train::take_profile().is_empty() || std::env::var("LTD_TRAIN_PROFILE").is_ok());
/// ```
pub fn take_profile() -> Vec<(&'static str, f64, u64)> {
    let mut t = totals().lock().unwrap_or_else(|p| p.into_inner());
    std::mem::take(&mut *t)
        .into_iter()
        .map(|(k, (s, n))| (k, s, n))
        .collect()
}
