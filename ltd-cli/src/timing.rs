//! Wall-clock timing helpers shared by `demo` and `bench`.

use std::time::{Duration, Instant};

/// Runs `f` once and returns its result and the elapsed time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// How long to measure one case.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Untimed calls first.
    pub warmup: usize,
    /// At least this many timed calls.
    pub min_iters: usize,
    /// At most this many timed calls.
    pub max_iters: usize,
    /// Stop adding calls once this much time is spent (after `min_iters`).
    pub time: Duration,
}

impl Budget {
    /// A budget for `--quick` runs (a few seconds in total over all cases).
    pub const QUICK: Budget = Budget {
        warmup: 1,
        min_iters: 3,
        max_iters: 50,
        time: Duration::from_millis(60),
    };
    /// A budget for full runs.
    pub const FULL: Budget = Budget {
        warmup: 2,
        min_iters: 5,
        max_iters: 200,
        time: Duration::from_millis(700),
    };
}

/// The median time of one call of `f` in microseconds, each call timed on its own.
///
/// # Errors
/// The first error `f` returns.
pub fn median_us<E>(budget: Budget, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..budget.warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(budget.min_iters);
    let start = Instant::now();
    while samples.len() < budget.min_iters
        || (samples.len() < budget.max_iters && start.elapsed() < budget.time)
    {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Median times in microseconds of several calls measured in turn (one call of each per round),
/// so slow drifts of the machine (other processes, frequency) affect all of them alike and their
/// ratios stay meaningful.
///
/// # Errors
/// The first error a call returns.
pub fn interleaved_medians_us<E>(
    budget: Budget,
    fs: &mut [&mut dyn FnMut() -> Result<(), E>],
) -> Result<Vec<f64>, E> {
    for _ in 0..budget.warmup {
        for f in fs.iter_mut() {
            f()?;
        }
    }
    let mut samples = vec![Vec::new(); fs.len()];
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < budget.min_iters || (rounds < budget.max_iters && start.elapsed() < budget.time)
    {
        for (f, s) in fs.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            f()?;
            s.push(t.elapsed().as_secs_f64() * 1e6);
        }
        rounds += 1;
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect())
}

/// A duration as milliseconds with 3 decimals, e.g. `1.234 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_runs_at_least_min_iters() {
        let mut calls = 0;
        let budget = Budget {
            warmup: 2,
            min_iters: 3,
            max_iters: 3,
            time: Duration::ZERO,
        };
        let t = median_us::<()>(budget, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 5);
        assert!(t >= 0.0);
        assert_eq!(ms(Duration::from_micros(1500)), "1.500 ms");
        let (mut a, mut b) = (0, 0);
        let t = interleaved_medians_us::<()>(
            budget,
            &mut [
                &mut || {
                    a += 1;
                    Ok(())
                },
                &mut || {
                    b += 1;
                    Ok(())
                },
            ],
        )
        .unwrap();
        assert_eq!((t.len(), a, b), (2, 5, 5));
    }
}
