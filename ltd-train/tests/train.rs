//! Training end to end on a small slice of the embedded corpus: the loss falls, Random-LTD
//! consumes exactly the layer-tokens its scheduler predicts, kept tokens are rotated by their
//! true positions, and a resumed run repeats an uninterrupted one bit for bit.

use candle_core::{DType, Device, Tensor};
use ltd_scheduler::RandomLtdScheduler;
use ltd_train::{
    Corpus, Dataset, Gpt, GptConfig, KeptTokens, Overrides, Rotary, StepRecord, TrainConfig,
    Trainer, Variant, gather_tokens,
};
use serde_json::json;

/// A 2-layer model with Random-LTD on layer 1 (r from 8 to 32 over 20 steps), 30 steps.
fn small_config() -> TrainConfig {
    let ds = json!({
        "train_batch_size": 4,
        "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "weight_decay": 0.1}},
        "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 30, "warmup_num_steps": 3, "cos_min_ratio": 0.1, "warmup_type": "linear"}},
        "gradient_clipping": 1.0,
        "data_efficiency": {"seed": 7, "data_routing": {"random_ltd": {
            "enabled": true, "total_layer_num": 2, "random_ltd_layer_num": 1, "random_ltd_layer_id": [1],
            "model_mask_name": null, "model_type": "decoder", "hidden_state_order": "batch_seq_dim",
            "random_ltd_schedule": {"min_value": 8, "max_value": 32, "schedule_type": "fixed_linear",
                "schedule_config": {"require_steps": 20, "seq_per_step": 8}}}}}
    });
    let overrides = Overrides {
        layers: Some(2),
        width: Some(32),
        heads: Some(2),
        seq_len: Some(32),
        eval_every: Some(10),
        eval_windows: Some(8),
        ..Default::default()
    };
    TrainConfig::from_value(ds, "test config", &overrides).unwrap()
}

fn small_data(cfg: &TrainConfig) -> Dataset {
    let slice = &ltd_train::EMBEDDED_CORPUS[..40_000];
    let corpus = Corpus::from_text("slice", slice).unwrap();
    Dataset::new(&corpus, cfg.model.seq_len, cfg.val_fraction, cfg.seed).unwrap()
}

fn run_all(run: &mut Trainer) -> Vec<StepRecord> {
    while !run.is_done() {
        run.step().unwrap();
    }
    run.history().to_vec()
}

fn mean_loss(records: &[StepRecord]) -> f64 {
    records.iter().map(|r| r.train_loss).sum::<f64>() / records.len() as f64
}

#[test]
fn two_layer_model_loss_decreases_in_30_steps() {
    let cfg = small_config();
    let data = small_data(&cfg);
    for variant in [Variant::BASELINE, Variant::RANDOM_LTD] {
        let mut run = Trainer::new(&cfg, variant, &data, &Device::Cpu).unwrap();
        let h = run_all(&mut run);
        assert_eq!(h.len(), 30);
        let (first, last) = (mean_loss(&h[..5]), mean_loss(&h[25..]));
        // Uniform bytes start at ln 256 = 5.55; byte frequencies alone are worth about 2 nats.
        assert!(first > 5.0, "{variant:?}: first steps' loss {first}");
        eprintln!(
            "{variant:?}: {first} -> {last}, val {:?}",
            h.last().unwrap().val_loss
        );
        assert!(last < first - 1.5, "{variant:?}: loss {first} -> {last}");
        let val = h.last().unwrap().val_loss.unwrap();
        assert!(val < 4.0, "{variant:?}: final validation loss {val}");
    }
}

#[test]
fn random_ltd_consumes_exactly_the_predicted_layer_tokens() {
    let cfg = small_config();
    let data = small_data(&cfg);
    let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu).unwrap();
    let h = run_all(&mut run);
    // The scheduler's prediction, from a fresh scheduler that never saw the run.
    let fresh = RandomLtdScheduler::new(cfg.random_ltd.as_ref().unwrap()).unwrap();
    let predicted = fresh.total_layer_tokens(30).unwrap();
    assert_eq!(run.layer_tokens(), predicted);
    assert_eq!(h.last().unwrap().layer_tokens, predicted);
    // And by hand: layer 0 always sees 32 tokens, layer 1 sees r_t, 4 sequences a step.
    let by_hand: u64 = h.iter().map(|r| 4 * (32 + r.reserved_length)).sum();
    assert_eq!(by_hand, predicted);
    assert_eq!(h[0].reserved_length, 8);
    assert_eq!(h[29].reserved_length, 32);
    // The baseline consumes every token in every layer.
    let mut base = Trainer::new(&cfg, Variant::BASELINE, &data, &Device::Cpu).unwrap();
    run_all(&mut base);
    assert_eq!(base.layer_tokens(), 30 * 4 * 32 * 2);
    assert!(run.layer_tokens() < base.layer_tokens());
}

#[test]
fn rotary_sees_the_kept_tokens_true_positions() {
    let dev = Device::Cpu;
    let (b, h, s, d) = (2, 2, 12, 8);
    let rotary = Rotary::new(s, d, 10_000.0, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (b, h, s, d), &dev).unwrap();
    let kept_rows = [1, 4, 5, 11, 0, 2, 7, 9];
    let kept = KeptTokens::new(&kept_rows, b, s, 4, &dev).unwrap();
    // Rotating the full sequence and then gathering equals gathering and rotating with the
    // kept positions ...
    let full = rotary.apply(&x, &rotary.at_range(s).unwrap()).unwrap();
    let per_head = |t: &Tensor| -> Tensor {
        // [B, H, T, D] -> gather over T per head via [B, T, H*D].
        let (bb, hh, tt, dd) = t.dims4().unwrap();
        t.transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((bb, tt, hh * dd))
            .unwrap()
    };
    let expected = gather_tokens(&per_head(&full), &kept).unwrap();
    let gathered_x = gather_tokens(&per_head(&x), &kept).unwrap();
    let gathered_x = gathered_x
        .reshape((b, 4, h, d))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    let rotated = rotary
        .apply(&gathered_x, &rotary.at_positions(kept.positions()).unwrap())
        .unwrap();
    let diff = (per_head(&rotated) - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    // ... and differs from rotating with the compressed positions 0..r (what upstream does).
    let compressed = rotary
        .apply(&gathered_x, &rotary.at_range(4).unwrap())
        .unwrap();
    let off = (per_head(&compressed) - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(off.to_scalar::<f32>().unwrap() > 1e-2);

    // The model hands each Random-LTD block the kept positions, the others 0..S.
    let cfg = GptConfig {
        layers: 3,
        width: 16,
        heads: 2,
        seq_len: s,
        ..GptConfig::default()
    };
    let model = Gpt::new(&cfg, 1, &dev).unwrap();
    let ids = Tensor::zeros((b, s), DType::U32, &dev).unwrap();
    let (_, trace) = model
        .forward(&ids, &[None, Some(kept.clone()), None])
        .unwrap();
    let positions: Vec<Vec<Vec<u32>>> = trace
        .rotary_positions
        .iter()
        .map(|p| p.to_vec2::<u32>().unwrap())
        .collect();
    let all: Vec<u32> = (0..s as u32).collect();
    assert_eq!(positions[0], vec![all.clone()]);
    assert_eq!(positions[1], [[1, 4, 5, 11], [0, 2, 7, 9]]);
    assert_eq!(positions[2], [all]);
    assert_eq!(trace.layer_tokens, (b * s + b * 4 + b * s) as u64);
}

#[test]
fn resumed_run_repeats_the_uninterrupted_run_exactly() {
    let cfg = small_config();
    let data = small_data(&cfg);
    let dir = std::env::temp_dir().join(format!("ltd-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for variant in [Variant::RANDOM_LTD, Variant::BASELINE] {
        let mut whole = Trainer::new(&cfg, variant, &data, &Device::Cpu).unwrap();
        let expected = run_all(&mut whole);

        let mut first = Trainer::new(&cfg, variant, &data, &Device::Cpu).unwrap();
        for _ in 0..10 {
            first.step().unwrap();
        }
        first.save(&dir).unwrap();
        drop(first);
        let mut resumed = Trainer::resume(&cfg, variant, &data, &Device::Cpu, &dir).unwrap();
        assert_eq!(resumed.steps_done(), 10);
        let got = run_all(&mut resumed);
        assert_eq!(got.len(), 30);
        for (a, b) in expected.iter().zip(&got).skip(10) {
            assert_eq!(
                a.train_loss.to_bits(),
                b.train_loss.to_bits(),
                "{variant:?} step {}",
                a.step
            );
            assert_eq!(
                a.val_loss.map(f64::to_bits),
                b.val_loss.map(f64::to_bits),
                "step {}",
                a.step
            );
            assert_eq!(
                (a.layer_tokens, a.lr.to_bits(), a.reserved_length),
                (b.layer_tokens, b.lr.to_bits(), b.reserved_length)
            );
        }
        // The restored log covers steps 1..10 too.
        assert_eq!(
            got[..10].iter().map(|r| r.train_loss).collect::<Vec<_>>(),
            expected[..10]
                .iter()
                .map(|r| r.train_loss)
                .collect::<Vec<_>>()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_errors_name_the_file_and_change_nothing() {
    let cfg = small_config();
    let data = small_data(&cfg);
    let dir = std::env::temp_dir().join(format!("ltd-train-bad-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu).unwrap();
    run.step().unwrap();
    run.save(&dir).unwrap();
    let snapshot = |d: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };

    // Another configuration.
    let mut other = cfg.clone();
    other.model.width = 16;
    let before = snapshot(&dir);
    let err = Trainer::resume(&other, Variant::RANDOM_LTD, &data, &Device::Cpu, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("state.json") && err.contains("model.width"),
        "{err}"
    );
    // Another variant.
    let err = Trainer::resume(&cfg, Variant::BASELINE, &data, &Device::Cpu, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("random-ltd run"), "{err}");
    assert_eq!(snapshot(&dir), before);

    // A truncated weights file.
    let model = dir.join(ltd_train::MODEL_FILE);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let before = snapshot(&dir);
    let err = Trainer::resume(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before);

    // A missing state file, and a missing directory.
    std::fs::remove_file(dir.join(ltd_train::STATE_FILE)).unwrap();
    let err = Trainer::resume(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("state.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = Trainer::resume(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu, &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no such directory"), "{err}");
}

#[test]
fn layer_token_lr_follows_consumed_layer_tokens() {
    let mut cfg = small_config();
    cfg.layer_token_lr = true;
    let data = small_data(&cfg);
    let mut run = Trainer::new(&cfg, Variant::RANDOM_LTD, &data, &Device::Cpu).unwrap();
    let h = run_all(&mut run);
    let schedule = *run.scheduler().unwrap().lr_schedule().unwrap();
    // Each step's rate is the schedule at the layer-tokens counted through that step.
    for r in &h {
        assert_eq!(
            r.lr.to_bits(),
            schedule.lr_at(r.layer_tokens).to_bits(),
            "step {}",
            r.step
        );
    }
    // Peak 0.01 after warmup, floor 0.01 * cos_min_ratio 0.1 once every layer-token is consumed.
    let config = schedule.config();
    assert!((config.peak_lr - 0.01).abs() < 1e-12 && (config.min_lr - 0.001).abs() < 1e-12);
    assert_eq!(config.total_layer_tokens, run.layer_tokens());
    assert!((h[29].lr - 0.001).abs() < 1e-12);
    // Early steps keep fewer tokens, so by mid-run less of the decay is done than by steps.
    let by_steps: Vec<f64> = (0..30).map(|t| cfg.lr_schedule.lr_at(t)).collect();
    assert!(
        h[14].lr > by_steps[14] + 1e-4,
        "{} vs {}",
        h[14].lr,
        by_steps[14]
    );
}

#[test]
fn every_parameter_gets_a_gradient() {
    // A fused op without a backward pass (candle-nn's LayerNorm fast path is one) would cut the
    // graph and leave the parameters before it untrained.
    let cfg = GptConfig {
        layers: 3,
        width: 16,
        heads: 2,
        seq_len: 12,
        ..GptConfig::default()
    };
    let dev = Device::Cpu;
    let model = Gpt::new(&cfg, 3, &dev).unwrap();
    let ids = Tensor::new(&[[5u32, 9, 1, 200, 7, 7, 3, 0, 12, 40, 41, 42]], &dev).unwrap();
    let kept = KeptTokens::new(&[0, 3, 4, 8, 11], 1, 12, 5, &dev).unwrap();
    let (logits, _) = model.forward(&ids, &[None, Some(kept), None]).unwrap();
    let targets = Tensor::new(&[9u32, 1, 200, 7, 7, 3, 0, 12, 40, 41, 42, 43], &dev).unwrap();
    let loss =
        candle_nn::loss::cross_entropy(&logits.reshape((12, 256)).unwrap(), &targets).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in model.params().iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{name}: gradient norm {norm}"
        );
    }
}
