//! Extra chunk work of 128-row query tiles whose two 64-row halves share one chunk list (the
//! union of both halves' 64-key chunks), on gpu_sparse_attn's bench layouts, from the kernels'
//! own tables (`plan::CoarseTables`).
use ltd_sparse_attn::plan::CoarseTables;
use ltd_sparse_attn::{BSLongformerConfig, BigBirdConfig, FixedConfig, Layout};

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
            let t = CoarseTables::new(l);
            assert_eq!(t.num_qtiles % 2, 0, "{name}: an odd number of query tiles");
            let chunks = |row: usize| &t.cols[t.row_ptr[row] as usize..t.row_ptr[row + 1] as usize];
            let (mut own, mut union) = (0usize, 0usize);
            for pair in 0..heads * t.num_qtiles / 2 {
                let (a, b) = (chunks(2 * pair), chunks(2 * pair + 1));
                let mut u = [a, b].concat();
                u.sort_unstable();
                u.dedup();
                own += a.len() + b.len();
                union += u.len();
            }
            // Each union chunk is multiplied by both halves and copied once for both.
            println!(
                "{name:18} S {seq:5}: own chunk products {own:7}, shared-list products {:7} ({:.3}x)",
                2 * union,
                2.0 * union as f64 / own as f64
            );
        }
    }
}
