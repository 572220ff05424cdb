//! GPU block-sparse matmul forward (feature `cuda`): `sdd`, `dsd` and `dds` in bf16 on Fixed
//! layouts of block 16 and 64 at S 4096, H 16, D 64 (batch 4, so B·S = 16384 as in
//! `gpu_sparse_attn`). Effective TFLOP/s count the active tiles only:
//! `2 · batch · nnz · block² · D / t` (nnz over all heads), the same work for all three modes.
//! Each mode is timed untransposed and with the flags attention uses (`sdd(false, true)` for
//! Q·Kᵀ, `dsd(true, false)` for Pᵀ·dO, `dds(false, true)`).

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("gpu_sparse_matmul: built without `--features cuda`; nothing to measure");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = gpu::run() {
        println!("gpu_sparse_matmul: {e}");
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use half::bf16;
    use ltd_core::CudaDevice;
    use ltd_sparse_attn::cuda_matmul::{CudaMatMulLayout, matmul_forward_cuda};
    use ltd_sparse_attn::{BlockSparseMatMul, FixedConfig, Layout};

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    fn layouts(seq: usize, heads: usize) -> Res<Vec<(String, Layout)>> {
        let mut b16 = FixedConfig::new(heads);
        b16.block = 16;
        b16.num_local_blocks = 16;
        let mut b64 = FixedConfig::new(heads);
        b64.block = 64;
        b64.num_local_blocks = 4;
        Ok(vec![
            ("fixed_b16".to_string(), b16.make_layout(seq)?),
            ("fixed_b64".to_string(), b64.make_layout(seq)?),
        ])
    }

    pub fn run() -> Res<()> {
        let dev = CudaDevice::new(0)?;
        println!("gpu_sparse_matmul on {dev}");
        let (seq, heads, d, batch) = (4096usize, 16usize, 64usize, 4usize);
        println!(
            "\n{:<10} {:>5} {:>4} {:>3} {:>3} {:>8} {:>8} {:>14} {:>10} {:>9}",
            "layout", "S", "H", "D", "B", "density", "nnz", "op", "fwd us", "TFLOP/s"
        );
        for (name, layout) in layouts(seq, heads)? {
            let gl = CudaMatMulLayout::new(&dev, &layout)?;
            let ops = [
                ("sdd(f,f)", BlockSparseMatMul::sdd(false, false)),
                ("sdd(f,t)", BlockSparseMatMul::sdd(false, true)),
                ("dsd(f,f)", BlockSparseMatMul::dsd(false, false)),
                ("dsd(t,f)", BlockSparseMatMul::dsd(true, false)),
                ("dds(f,f)", BlockSparseMatMul::dds(false, false)),
                ("dds(f,t)", BlockSparseMatMul::dds(false, true)),
            ];
            for (label, op) in ops {
                let (la, lb, lc) = op.operand_lens(&layout, batch, d);
                let fill = |n: usize| -> Vec<bf16> {
                    (0..n)
                        .map(|i| bf16::from_f32(((i * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0))
                        .collect()
                };
                let a = dev.upload(&fill(la))?;
                let b = dev.upload(&fill(lb))?;
                let mut c = dev.upload(&vec![bf16::ZERO; lc])?;
                let us = dev.median_time_us(3, 10, 7, || {
                    matmul_forward_cuda(&dev, &gl, op, batch, d, &a, &b, &mut c)
                })?;
                let block = layout.block() as f64;
                let flops = 2.0 * batch as f64 * layout.nnz() as f64 * block * block * d as f64;
                println!(
                    "{:<10} {:>5} {:>4} {:>3} {:>3} {:>8.3} {:>8} {:>14} {:>10.1} {:>9.1}",
                    name,
                    seq,
                    heads,
                    d,
                    batch,
                    layout.density(),
                    layout.nnz(),
                    label,
                    us,
                    flops / us / 1e6
                );
            }
        }
        Ok(())
    }
}
