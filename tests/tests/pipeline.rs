//! Cross-crate checks: one DeepSpeed config feeds both parsers; a Random-LTD-routed layer that
//! runs the fused block-sparse attention on the kept tokens equals an oracle that computes the
//! same model row by row from the kept positions (ltd-reference attention, no gather/route ops).

use ltd_core::{HiddenOrder, HiddenTensor, HiddenView, TokenSampler, route_tensor};
use ltd_reference as reference;
use ltd_scheduler::{DataEfficiencyConfig, RandomLtdScheduler};
use ltd_sparse_attn::{
    AttentionInputs, AttentionOptions, AttentionShape, attention_forward, parse_sparse_attention,
};

/// A whole DeepSpeed config: both of our sections plus sections that belong to others.
const CONFIG: &str = r#"{
  "train_batch_size": 8,
  "train_micro_batch_size_per_gpu": 2,
  "optimizer": {"type": "Adam", "params": {"lr": 1e-4}},
  "fp16": {"enabled": true},
  "sparse_attention": {"mode": "fixed", "block": 16, "num_local_blocks": 2, "num_global_blocks": 1,
                       "attention": "unidirectional"},
  "data_efficiency": {
    "enabled": true,
    "data_routing": {
      "enabled": true,
      "random_ltd": {
        "enabled": true,
        "total_layer_num": 4,
        "random_ltd_layer_num": 2,
        "random_ltd_layer_id": [1, 2],
        "model_mask_name": null,
        "model_type": "decoder",
        "hidden_state_order": "batch_seq_dim",
        "random_ltd_schedule": {
          "min_value": 32, "max_value": 96, "schedule_type": "fixed_linear",
          "schedule_config": {"require_steps": 100, "seq_per_step": 8}
        }
      }
    }
  }
}"#;

#[test]
fn one_deepspeed_file_feeds_both_parsers() {
    let de = DataEfficiencyConfig::from_deepspeed_json(CONFIG).expect("random-LTD section parses");
    let ltd = de.random_ltd.expect("enabled");
    assert_eq!(ltd.global_batch_size, Some(8));
    let mut sched = RandomLtdScheduler::new(&ltd).unwrap();
    assert_eq!(sched.update_seq(50).unwrap(), 64); // 32 + 0.5 * 64, a multiple of 8
    let sparse = parse_sparse_attention(CONFIG, 2).expect("sparse_attention section parses");
    assert_eq!(sparse.block(), 16);
    assert_eq!(sparse.num_heads(), 2);
}

/// `[B, n, H*D]` rows (BatchSeq) to `[B, H, n, D]`.
fn split_heads(rows: &[f32], b: usize, n: usize, h: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0; b * h * n * d];
    for bi in 0..b {
        for t in 0..n {
            for hi in 0..h {
                for di in 0..d {
                    out[((bi * h + hi) * n + t) * d + di] =
                        rows[(bi * n + t) * h * d + hi * d + di];
                }
            }
        }
    }
    out
}

/// The inverse of [`split_heads`].
fn merge_heads(x: &[f32], b: usize, n: usize, h: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0; b * n * h * d];
    for bi in 0..b {
        for t in 0..n {
            for hi in 0..h {
                for di in 0..d {
                    out[(bi * n + t) * h * d + hi * d + di] = x[((bi * h + hi) * n + t) * d + di];
                }
            }
        }
    }
    out
}

#[test]
fn routed_sparse_attention_matches_row_by_row_oracle() {
    let (b, s, heads, d) = (2usize, 90usize, 2usize, 8usize);
    let c = heads * d;
    let de = DataEfficiencyConfig::from_deepspeed_json(CONFIG).unwrap();
    let mut sched = RandomLtdScheduler::new(&de.random_ltd.unwrap()).unwrap();
    let r = sched.update_seq(20).unwrap() as usize; // 32 + 0.2 * 64 = 44.8 -> 40
    assert_eq!(r, 40);
    let sparse = parse_sparse_attention(CONFIG, heads).unwrap();
    let layout = sparse.make_layout(r).unwrap(); // built for the kept length, not a crop

    let h: Vec<f32> = (0..b * s * c)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
        .collect();
    let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, b, s, c).unwrap();
    let idx = TokenSampler::new(11).sample(20, 1, b, s, r).unwrap();
    let layer_idx = idx.layer(0).unwrap();

    // Our pipeline: gather, sparse attention (q = k = v = the kept rows), route.
    let part = ltd_core::gather_tensor(&hidden, &layer_idx).unwrap();
    let qkv = split_heads(part.as_slice(), b, r, heads, d);
    let shape = AttentionShape {
        batch: b,
        heads,
        seq_len: r,
        head_dim: d,
    };
    let mut out = vec![f32::NAN; shape.qkv_len()];
    let mut lse = vec![f32::NAN; shape.lse_len()];
    let opts = AttentionOptions::<f32> {
        causal: true,
        ..AttentionOptions::new()
    };
    attention_forward(
        &layout,
        shape,
        &AttentionInputs {
            q: &qkv,
            k: &qkv,
            v: &qkv,
        },
        &opts,
        &mut out,
        &mut lse,
    )
    .unwrap();
    let layer_out = HiddenTensor::from_vec(
        merge_heads(&out, b, r, heads, d),
        HiddenOrder::BatchSeq,
        b,
        r,
        c,
    )
    .unwrap();
    let y = route_tensor(&hidden, &layer_out.view(), &layer_idx).unwrap();

    // Oracle: per batch row, read the kept rows of h by position, run the reference attention
    // restricted to the layout, write results at those positions; other rows stay h.
    let mut y_ref = h.clone();
    let nb = layout.num_blocks();
    for bi in 0..b {
        let kept = &idx.as_slice()[bi * r..(bi + 1) * r];
        let rows: Vec<f32> = kept
            .iter()
            .flat_map(|&p| h[(bi * s + p as usize) * c..][..c].to_vec())
            .collect();
        let x = split_heads(&rows, 1, r, heads, d);
        let mut ropts = reference::AttentionOptions::new(1.0 / (d as f64).sqrt());
        ropts.causal = true;
        ropts.layout = Some(reference::Layout::new(
            layout.mask(),
            heads,
            nb,
            nb,
            layout.block(),
        ));
        let dims = reference::AttnDims {
            batch: 1,
            heads,
            seq: r,
            head_dim: d,
        };
        let o = reference::attention_forward(&x, &x, &x, dims, &ropts).unwrap();
        let o = merge_heads(&o.out, 1, r, heads, d);
        for (k, &p) in kept.iter().enumerate() {
            y_ref[(bi * s + p as usize) * c..][..c].copy_from_slice(&o[k * c..(k + 1) * c]);
        }
    }
    let worst = y
        .as_slice()
        .iter()
        .zip(&y_ref)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "max |ours - oracle| = {worst}");
    // Dropped rows are bit-identical to the input.
    let kept0: std::collections::HashSet<i32> = idx.as_slice()[..r].iter().copied().collect();
    for p in (0..s).filter(|p| !kept0.contains(&(*p as i32))) {
        assert_eq!(&y.as_slice()[p * c..(p + 1) * c], &h[p * c..(p + 1) * c]);
    }
}
