//! The oracle (the same step in f64 from `ltd-reference`) and the row-by-row comparison.

use super::Ctx;
use super::context::{ReferenceBackend, ref_dims};
use crate::block::{self, Weights};
use crate::error::Result;

/// The oracle: the same step in f64 from `ltd-reference` and the f64 instance of the block.
pub(super) struct Oracle {
    pub(super) y: Vec<f64>,
    pub(super) grad_h: Vec<f64>,
    pub(super) grad_w: Weights<f64>,
}

pub(super) fn oracle(ctx: &Ctx, idx_all: &[i32]) -> Result<Oracle> {
    let (b, s, r) = (ctx.batch, ctx.seq, ctx.reserved);
    ltd_reference::check_sampled_indices(idx_all, ctx.layers, b, r, s)?;
    let idx = &idx_all[ctx.ltd_id * b * r..(ctx.ltd_id + 1) * b * r];
    let dims = ref_dims(ctx);
    let part_dims = ltd_reference::Hidden { seq: r, ..dims };
    let h: Vec<f64> = ctx.h.iter().map(|&v| f64::from(v)).collect();
    let gy: Vec<f64> = ctx.gy.iter().map(|&v| f64::from(v)).collect();
    let w64: Weights<f64> = ctx.weights.cast();
    let bdims = ctx.dims_for(r);
    let rows_of = |data: &[f64], d: ltd_reference::Hidden| -> Vec<f64> {
        let mut rows = Vec::with_capacity(data.len());
        for bb in 0..d.batch {
            for ss in 0..d.seq {
                let o = d.offset(bb, ss, 0);
                rows.extend_from_slice(&data[o..o + d.channels]);
            }
        }
        rows
    };
    let unrows = |rows: &[f64], d: ltd_reference::Hidden| -> Vec<f64> {
        let mut data = vec![0.0; rows.len()];
        for bb in 0..d.batch {
            for ss in 0..d.seq {
                let o = d.offset(bb, ss, 0);
                let src = (bb * d.seq + ss) * d.channels;
                data[o..o + d.channels].copy_from_slice(&rows[src..src + d.channels]);
            }
        }
        data
    };
    let mut attn = ReferenceBackend {
        layout: ctx.attn.layout(r)?,
        dims: ltd_reference::AttnDims {
            batch: b,
            heads: bdims.heads,
            seq: r,
            head_dim: bdims.head_dim(),
        },
        causal: ctx.causal,
    };
    let part = ltd_reference::gather(&h, dims, idx, r)?;
    let (out_rows, acts, _) = block::forward(&w64, bdims, &rows_of(&part, part_dims), &mut attn)?;
    let y = ltd_reference::scatter(&h, dims, &unrows(&out_rows, part_dims), idx, r)?;
    let (g_pass, g_part) = ltd_reference::scatter_backward(&gy, dims, idx, r)?;
    let (grads, _) = block::backward(&w64, bdims, &acts, &rows_of(&g_part, part_dims), &mut attn)?;
    let grad_h =
        ltd_reference::gather_backward(&g_pass, dims, &unrows(&grads.dx, part_dims), idx, r)?;
    Ok(Oracle {
        y,
        grad_h,
        grad_w: grads.weights,
    })
}

/// Row-by-row comparison of a full `[B, S, C]` result with the oracle.
pub(super) struct RowCheck {
    pub(super) max_err: f64,
    pub(super) kept_rows: usize,
    pub(super) dropped_rows: usize,
    pub(super) dropped_mismatch: Option<(usize, usize)>,
    pub(super) worst: (usize, usize),
}

pub(super) fn check_rows(
    ctx: &Ctx,
    ours: &[f32],
    oracle: &[f64],
    dropped_want: &[f32],
    idx: &[i32],
) -> RowCheck {
    let (b, s, c, r) = (ctx.batch, ctx.seq, ctx.channels, ctx.reserved);
    let dims = ref_dims(ctx);
    let mut chk = RowCheck {
        max_err: 0.0,
        kept_rows: 0,
        dropped_rows: 0,
        dropped_mismatch: None,
        worst: (0, 0),
    };
    for bb in 0..b {
        let kept = &idx[bb * r..(bb + 1) * r];
        for ss in 0..s {
            let o = dims.offset(bb, ss, 0);
            let is_kept = kept.binary_search(&(ss as i32)).is_ok();
            if is_kept {
                chk.kept_rows += 1;
                for e in 0..c {
                    let (a, w) = (f64::from(ours[o + e]), oracle[o + e]);
                    let err = (a - w).abs() / (1.0 + w.abs());
                    // NaN must fail too.
                    if err.is_nan() || err > chk.max_err {
                        chk.max_err = if err.is_nan() { f64::INFINITY } else { err };
                        chk.worst = (bb, ss);
                    }
                }
            } else {
                chk.dropped_rows += 1;
                let same = (0..c).all(|e| {
                    ours[o + e].to_bits() == dropped_want[o + e].to_bits()
                        && oracle[o + e] == f64::from(dropped_want[o + e])
                });
                if !same && chk.dropped_mismatch.is_none() {
                    chk.dropped_mismatch = Some((bb, ss));
                }
            }
        }
    }
    chk
}

pub(super) fn weight_error(ours: &Weights<f32>, oracle: &Weights<f64>) -> (f64, &'static str) {
    let mut worst = (0.0f64, "Wq");
    for ((name, a), (_, w)) in ours.named().into_iter().zip(oracle.named()) {
        let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(w)
            .map(|(&x, &y)| (f64::from(x) - y).abs() / scale)
            .fold(
                0.0f64,
                |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
            );
        if err > worst.0 || err.is_nan() {
            worst = (err, name);
        }
    }
    worst
}

pub(super) fn ok(pass: bool) -> &'static str {
    if pass { "ok" } else { "FAILED" }
}
