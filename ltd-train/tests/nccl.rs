//! The NCCL path on one GPU (`--features nccl`; every test needs a device and libnccl.so.2 on
//! the loader's path). A collective of one rank runs the whole path (flatten, `ncclAllReduce`
//! on candle's stream, split) and must leave training unchanged; two ranks on one GPU are probed
//! and the outcome printed (NCCL wants one GPU per rank).
#![cfg(feature = "nccl")]

use std::sync::mpsc;
use std::time::Duration;

use candle_core::{Device, Tensor};
use ltd_train::{
    Corpus, DataParallel, Dataset, GradientReducer, NcclId, NcclReducer, Overrides, TrainConfig,
    Trainer, Variant, drive,
};
use serde_json::json;

fn gpu() -> Device {
    Device::new_cuda(0).expect("gpu_* tests need a CUDA device")
}

fn one_rank(device: &Device) -> NcclReducer {
    NcclReducer::new(device, DataParallel::SINGLE, NcclId::create().unwrap()).unwrap()
}

#[test]
fn gpu_nccl_mean_of_one_rank_is_the_input() {
    let dev = gpu();
    let mut reducer = one_rank(&dev);
    let x = Tensor::randn(0f32, 1., 4099, &dev).unwrap();
    // Offset views (the op must read from the view's start, not the buffer's) of every length
    // remainder: the training buffer (gradients, then the loss) has any length.
    for len in [4000, 4001, 4002, 4003, 1, 4095] {
        let view = x.narrow(0, 3, len).unwrap();
        let mean = reducer.all_reduce_mean(&view).unwrap();
        assert_eq!(
            mean.to_vec1::<f32>().unwrap(),
            view.to_vec1::<f32>().unwrap(),
            "length {len}"
        );
    }
}

fn config() -> TrainConfig {
    let ds = json!({
        "train_batch_size": 8,
        "gradient_clipping": 1.0,
        "sparse_attention": {"mode": "bigbird", "block": 16, "num_random_blocks": 1,
                             "num_sliding_window_blocks": 3, "num_global_blocks": 1},
        "data_efficiency": {"seed": 7, "data_routing": {"random_ltd": {
            "enabled": true, "total_layer_num": 3, "random_ltd_layer_num": 1, "random_ltd_layer_id": [1],
            "model_mask_name": null, "model_type": "decoder", "hidden_state_order": "batch_seq_dim",
            "random_ltd_schedule": {"min_value": 64, "max_value": 128, "schedule_type": "fixed_linear",
                "schedule_config": {"require_steps": 4, "seq_per_step": 16}}}}}
    });
    let overrides = Overrides {
        layers: Some(3),
        width: Some(128),
        heads: Some(2),
        seq_len: Some(128),
        steps: Some(6),
        eval_every: Some(3),
        eval_windows: Some(4),
        ..Default::default()
    };
    TrainConfig::from_value(ds, "test config", &overrides).unwrap()
}

fn weights(run: &Trainer) -> Vec<Vec<f32>> {
    run.model()
        .params()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn gpu_nccl_one_rank_trains_like_the_plain_run() {
    let dev = gpu();
    let cfg = config();
    let corpus = Corpus::from_text("slice", &ltd_train::EMBEDDED_CORPUS[..60_000]).unwrap();
    let data = Dataset::new(&corpus, cfg.model.seq_len, cfg.val_fraction, cfg.seed).unwrap();
    let reducer = one_rank(&dev);
    let train = |variant: Variant, reducer: Option<&NcclReducer>| {
        let mut run = Trainer::new(&cfg, variant, &data, &dev).unwrap();
        if let Some(r) = reducer {
            run = run.with_data_parallel(Box::new(r.clone())).unwrap();
        }
        drive(&mut run, None, |_| {}).unwrap();
        let losses: Vec<f64> = run.history().iter().map(|r| r.train_loss).collect();
        (weights(&run), losses)
    };
    for variant in [
        Variant::BASELINE,
        Variant::RANDOM_LTD,
        Variant {
            random_ltd: true,
            sparse: true,
        },
    ] {
        let plain = train(variant, None);
        // Run-to-run noise of the plain run (atomics in a backward kernel would show here).
        let noise = max_difference(&plain, &train(variant, None));
        let nccl = train(variant, Some(&reducer));
        let through_nccl = max_difference(&plain, &nccl);
        println!(
            "{}: NCCL world of one against the plain run: {through_nccl:e} (plain against itself: {noise:e}); \
             first losses {:?} against {:?}",
            variant.name(),
            &nccl.1[..3],
            &plain.1[..3]
        );
        assert!(
            through_nccl <= noise + 1e-6,
            "{}: {through_nccl} > {noise}",
            variant.name()
        );
    }
}

/// The largest difference between two runs' weights and losses.
fn max_difference(a: &(Vec<Vec<f32>>, Vec<f64>), b: &(Vec<Vec<f32>>, Vec<f64>)) -> f64 {
    let w = a.0.iter().flatten().zip(b.0.iter().flatten());
    let l = a.1.iter().zip(&b.1);
    w.map(|(x, y)| f64::from((x - y).abs()))
        .chain(l.map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn gpu_nccl_two_ranks_on_one_gpu_probe() {
    // Two ranks (threads) of one job on GPU 0. NCCL documents one GPU per rank; whatever it
    // does, it must either refuse with an error or average correctly, and never hang the suite.
    let id = NcclId::create().unwrap();
    let (tx, rx) = mpsc::channel();
    for rank in 0..2 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let result = (|| {
                let dev = Device::new_cuda(0)?;
                let mut r = NcclReducer::new(&dev, DataParallel::new(rank, 2)?, id)?;
                let v = Tensor::new(&[rank as f32 + 1.0; 3], &dev)?;
                let mean = r.all_reduce_mean(&v)?.to_vec1::<f32>()?;
                Ok::<_, ltd_train::TrainError>(mean)
            })();
            let _ = tx.send((rank, result.map_err(|e| e.to_string())));
        });
    }
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                println!("two ranks on one GPU: no answer within 60 s (NCCL waits; not supported)");
                return;
            }
        }
    }
    for (rank, outcome) in outcomes {
        match outcome {
            Ok(mean) => {
                assert_eq!(mean, [1.5; 3], "rank {rank}");
                println!("two ranks on one GPU: rank {rank} averaged correctly");
            }
            Err(e) => println!("two ranks on one GPU: rank {rank} refused: {e}"),
        }
    }
}
