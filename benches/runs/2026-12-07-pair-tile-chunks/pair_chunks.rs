//! Extra chunk work of 128-row query tiles whose two 64-row halves share one chunk list (the
//! union of both halves' 64-key chunks), on gpu_sparse_attn's bench layouts.
use ltd_sparse_attn::{BSLongformerConfig, BigBirdConfig, FixedConfig, Layout};

fn chunks(l: &Layout, h: usize, qt: usize) -> Vec<usize> {
    // 64-row query tile qt, 64-key chunk c: active if any covered block tile is.
    let b = l.block();
    let nb = l.num_blocks();
    let ntiles = nb * b / 64;
    let mut out = Vec::new();
    for c in 0..ntiles {
        let rows = (qt * 64 / b)..=((qt * 64 + 63) / b);
        let cols = (c * 64 / b)..=((c * 64 + 63) / b);
        if rows
            .clone()
            .any(|r| cols.clone().any(|cc| l.is_active(h, r, cc)))
        {
            out.push(c);
        }
    }
    out
}

fn main() {
    let heads = 16;
    for seq in [4096usize, 16384] {
        let mut ls: Vec<(String, Layout)> = Vec::new();
        let mut f64b = FixedConfig::new(heads);
        f64b.block = 64;
        f64b.num_local_blocks = 4;
        ls.push(("fixed_b64".into(), f64b.make_layout(seq).unwrap()));
        for block in [64, 128] {
            let mut bb = BigBirdConfig::new(heads);
            bb.block = block;
            bb.num_random_blocks = 1;
            bb.seed = 1;
            ls.push((format!("bigbird_b{block}"), bb.make_layout(seq).unwrap()));
        }
        let mut bsl = BSLongformerConfig::new(heads);
        bsl.block = 64;
        ls.push(("bslongformer_b64".into(), bsl.make_layout(seq).unwrap()));
        for (name, l) in &ls {
            let ntiles = l.num_blocks() * l.block() / 64;
            let (mut own, mut merged) = (0usize, 0usize);
            for h in 0..heads {
                for p in 0..ntiles / 2 {
                    let a = chunks(l, h, 2 * p);
                    let b = chunks(l, h, 2 * p + 1);
                    let mut u = a.clone();
                    u.extend(&b);
                    u.sort();
                    u.dedup();
                    own += a.len() + b.len();
                    merged += 2 * u.len();
                }
            }
            println!("{name:18} S {seq:5}: own chunk products {own:7}, merged {merged:7}, extra {:.3}x, K/V tile loads per 64 rows {:.3}x of now",
                merged as f64 / own as f64, (merged / 2) as f64 / own as f64);
        }
    }
}
