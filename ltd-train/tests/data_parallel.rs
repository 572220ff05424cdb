//! Data-parallel training on the CPU: `N` ranks are threads that exchange gradients through an
//! in-memory reducer (test-only; real jobs use NCCL). The key equivalence: `N` ranks of batch `b`
//! make the same parameter update as one process of batch `N * b`, step after step; ranks stay
//! identical; a checkpoint written by rank 0 resumes on any number of ranks.

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use candle_core::{Device, Tensor};
use ltd_train::{
    Corpus, DataParallel, Dataset, GradientReducer, Overrides, StepRecord, TrainConfig, TrainError,
    Trainer, Variant, drive,
};
use serde_json::json;

/// The rendezvous of one simulated job: a slot per rank and a barrier.
struct Hub {
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

/// One rank's end of a [`Hub`]: every rank computes the same mean, summing in rank order.
struct MemoryReducer {
    place: DataParallel,
    hub: Arc<Hub>,
}

impl MemoryReducer {
    fn job(world: usize) -> Vec<MemoryReducer> {
        let hub = Arc::new(Hub {
            slots: Mutex::new(vec![Vec::new(); world]),
            barrier: Barrier::new(world),
        });
        (0..world)
            .map(|rank| MemoryReducer {
                place: DataParallel::new(rank, world).unwrap(),
                hub: Arc::clone(&hub),
            })
            .collect()
    }
}

impl GradientReducer for MemoryReducer {
    fn place(&self) -> DataParallel {
        self.place
    }

    fn all_reduce_mean(&mut self, values: &Tensor) -> ltd_train::Result<Tensor> {
        let mine = values.to_vec1::<f32>()?;
        self.hub.slots.lock().unwrap()[self.place.rank()] = mine;
        self.hub.barrier.wait();
        let mean: Vec<f32> = {
            let slots = self.hub.slots.lock().unwrap();
            let n = slots.len() as f32;
            (0..slots[0].len())
                .map(|i| slots.iter().map(|s| s[i]).sum::<f32>() / n)
                .collect()
        };
        // Nobody overwrites its slot before every rank has read them all.
        self.hub.barrier.wait();
        Ok(Tensor::from_vec(mean, values.dims(), values.device())?)
    }
}

/// 3 layers (Random-LTD on layer 1), a Fixed sparse layout, global batch 8, 4 steps.
fn config() -> TrainConfig {
    let ds = json!({
        "train_batch_size": 8,
        "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "weight_decay": 0.1}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 2, "warmup_max_lr": 0.01}},
        "gradient_clipping": 1.0,
        "sparse_attention": {"mode": "fixed", "block": 16, "num_local_blocks": 1, "num_global_blocks": 1,
                             "attention": "unidirectional"},
        "data_efficiency": {"seed": 7, "data_routing": {"random_ltd": {
            "enabled": true, "total_layer_num": 3, "random_ltd_layer_num": 1, "random_ltd_layer_id": [1],
            "model_mask_name": null, "model_type": "decoder", "hidden_state_order": "batch_seq_dim",
            "random_ltd_schedule": {"min_value": 16, "max_value": 32, "schedule_type": "fixed_linear",
                "schedule_config": {"require_steps": 4, "seq_per_step": 8}}}}}
    });
    let overrides = Overrides {
        layers: Some(3),
        width: Some(16),
        heads: Some(2),
        seq_len: Some(32),
        steps: Some(4),
        eval_every: Some(2),
        eval_windows: Some(4),
        ..Default::default()
    };
    TrainConfig::from_value(ds, "test config", &overrides).unwrap()
}

fn data(cfg: &TrainConfig) -> Dataset {
    let corpus = Corpus::from_text("slice", &ltd_train::EMBEDDED_CORPUS[..40_000]).unwrap();
    Dataset::new(&corpus, cfg.model.seq_len, cfg.val_fraction, cfg.seed).unwrap()
}

/// What one rank ends with: its log and its weights.
struct RankResult {
    history: Vec<StepRecord>,
    weights: Vec<(String, Vec<f32>)>,
}

fn weights(run: &Trainer) -> Vec<(String, Vec<f32>)> {
    run.model()
        .params()
        .iter()
        .map(|(n, v)| {
            let flat = v.as_tensor().flatten_all().unwrap();
            (n.to_owned(), flat.to_vec1::<f32>().unwrap())
        })
        .collect()
}

/// Runs a job of `world` ranks (threads); `start` builds (or resumes) each rank's run. With
/// `stop` = `(steps, dir)` the job stops after `steps` steps and rank 0 saves a checkpoint to `dir`.
fn run_job(
    world: usize,
    stop: Option<(u64, &Path)>,
    start: impl Fn() -> Trainer + Send + Sync + 'static,
) -> Vec<RankResult> {
    let start = Arc::new(start);
    let handles: Vec<_> = MemoryReducer::job(world)
        .into_iter()
        .map(|reducer| {
            let start = Arc::clone(&start);
            let stop = stop.map(|(steps, dir)| (steps, dir.to_path_buf()));
            thread::spawn(move || {
                let mut run = start().with_data_parallel(Box::new(reducer)).unwrap();
                match stop {
                    None => drive(&mut run, None, |_| {}).unwrap(),
                    Some((steps, dir)) => {
                        for _ in 0..steps {
                            run.step().unwrap();
                        }
                        // drive() saves on rank 0 only; here by hand, as the CLI's leader does.
                        if run.data_parallel().is_leader() {
                            run.save(&dir).unwrap();
                        }
                    }
                }
                RankResult {
                    history: run.history().to_vec(),
                    weights: weights(&run),
                }
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn fresh(variant: Variant) -> impl Fn() -> Trainer + Send + Sync + 'static {
    move || {
        let cfg = config();
        Trainer::new(&cfg, variant, &data(&cfg), &Device::Cpu).unwrap()
    }
}

fn max_weight_difference(a: &RankResult, b: &RankResult) -> f32 {
    a.weights
        .iter()
        .zip(&b.weights)
        .flat_map(|((na, wa), (nb, wb))| {
            assert_eq!(na, nb);
            wa.iter().zip(wb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_close_runs(got: &RankResult, want: &RankResult, what: &str) {
    let diff = max_weight_difference(got, want);
    assert!(diff < 2e-5, "{what}: weights differ by {diff}");
    for (g, w) in got.history.iter().zip(&want.history) {
        assert!(
            (g.train_loss - w.train_loss).abs() < 1e-5,
            "{what} step {}: loss {} vs {}",
            g.step,
            g.train_loss,
            w.train_loss
        );
        assert_eq!(
            (g.layer_tokens, g.reserved_length, g.lr.to_bits()),
            (w.layer_tokens, w.reserved_length, w.lr.to_bits()),
            "{what} step {}",
            g.step
        );
    }
}

#[test]
fn n_ranks_of_batch_b_update_like_one_process_of_batch_n_b() {
    for variant in [Variant::BASELINE, Variant::SPARSE] {
        let one = run_job(1, None, fresh(variant)).remove(0);
        let worlds: &[usize] = if variant.sparse { &[2] } else { &[2, 4] };
        for &world in worlds {
            let ranks = run_job(world, None, fresh(variant));
            let what = format!("{} on {world} ranks", variant.name());
            assert_close_runs(&ranks[0], &one, &what);
            // The leader evaluates; the others do not.
            assert!(ranks[0].history.last().unwrap().val_loss.is_some());
            assert!(
                ranks[1..]
                    .iter()
                    .all(|r| r.history.iter().all(|s| s.val_loss.is_none()))
            );
        }
    }
}

#[test]
fn a_collective_of_one_rank_is_the_plain_run_bit_for_bit() {
    // A one-rank reducer that is not SingleProcess runs the whole path (flatten, collective,
    // split): nothing changes, bit for bit, for every variant.
    for variant in [Variant::BASELINE, Variant::RANDOM_LTD, Variant::SPARSE] {
        let through_reducer = run_job(1, None, fresh(variant)).remove(0);
        let mut plain = fresh(variant)();
        drive(&mut plain, None, |_| {}).unwrap();
        assert_eq!(
            through_reducer.weights,
            weights(&plain),
            "{}",
            variant.name()
        );
        let bits =
            |h: &[StepRecord]| -> Vec<u64> { h.iter().map(|r| r.train_loss.to_bits()).collect() };
        assert_eq!(bits(&through_reducer.history), bits(plain.history()));
    }
}

#[test]
fn ranks_stay_identical_and_random_ltd_ranks_keep_their_own_tokens() {
    let ranks = run_job(2, None, fresh(Variant::RANDOM_LTD));
    // Every rank applied the same mean gradient to the same weights.
    assert_eq!(ranks[0].weights, ranks[1].weights);
    let one = run_job(1, None, fresh(Variant::RANDOM_LTD)).remove(0);
    // Rank 1 dropped other tokens than rows 4..8 of the one-process batch did: not the same
    // update, but the same token budget.
    assert!(max_weight_difference(&ranks[0], &one) > 1e-6);
    let last = |r: &RankResult| r.history.last().unwrap().layer_tokens;
    assert_eq!(last(&ranks[0]), last(&one));
    let cfg = config();
    let predicted = ltd_scheduler::RandomLtdScheduler::new(cfg.random_ltd.as_ref().unwrap())
        .unwrap()
        .total_layer_tokens(cfg.steps)
        .unwrap();
    assert_eq!(last(&ranks[0]), predicted);
}

#[test]
fn a_checkpoint_resumes_on_any_number_of_ranks() {
    let dir = std::env::temp_dir().join(format!("ltd-train-dp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let variant = Variant::SPARSE;
    let whole = run_job(2, None, fresh(variant));
    run_job(2, Some((2, &dir)), fresh(variant));
    for world in [1, 2, 4] {
        let resume_dir = dir.clone();
        let cfg = config();
        let d = data(&cfg);
        let resumed = run_job(world, None, move || {
            Trainer::resume(&cfg, variant, &d, &Device::Cpu, &resume_dir).unwrap()
        });
        assert_eq!(resumed[0].history.len(), 4);
        assert_close_runs(&resumed[0], &whole[0], &format!("resumed on {world} ranks"));
        // The restored part of the log is the saved one, bit for bit (wall-clock times aside).
        let losses = |h: &[StepRecord]| -> Vec<(u64, Option<u64>)> {
            h[..2]
                .iter()
                .map(|r| (r.train_loss.to_bits(), r.val_loss.map(f64::to_bits)))
                .collect()
        };
        assert_eq!(losses(&resumed[0].history), losses(&whole[0].history));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_worlds_are_refused_with_the_values() {
    let err = DataParallel::new(2, 2).unwrap_err();
    assert!(
        err.to_string().contains("--rank 2 of --world-size 2"),
        "{err}"
    );
    assert!(DataParallel::new(0, 0).is_err());
    let cfg = config();
    let run = Trainer::new(&cfg, Variant::BASELINE, &data(&cfg), &Device::Cpu).unwrap();
    let mut reducers = MemoryReducer::job(3);
    let err = run
        .with_data_parallel(Box::new(reducers.remove(0)))
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::Parallel { .. }));
    assert!(
        err.to_string()
            .contains("train_batch_size (--batch) 8 over --world-size 3"),
        "{err}"
    );
}
