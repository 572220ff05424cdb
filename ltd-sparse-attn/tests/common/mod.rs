//! Helpers shared by the property tests: seeded data, random layouts, dtype tolerances.
#![allow(dead_code)]

use half::{bf16, f16};
use ltd_core::Element;
use ltd_reference::RefElement;
use ltd_sparse_attn::{
    BSLongformerConfig, BigBirdConfig, DenseConfig, Direction, FixedConfig, Layout, MaskMode,
    VariableConfig,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// An element type both crates accept.
pub trait TestElement: Element + RefElement {
    /// (rtol, atol) of upstream-semantics.md §3.1 (bf16 per the issue).
    const TOL: (f32, f32);
}
impl TestElement for f32 {
    const TOL: (f32, f32) = (5e-4, 5e-5);
}
impl TestElement for f16 {
    const TOL: (f32, f32) = (3e-2, 2e-3);
}
impl TestElement for bf16 {
    const TOL: (f32, f32) = (5e-2, 1e-2);
}

/// Seeded test data.
pub struct Data(ChaCha8Rng);

impl Data {
    pub fn new(seed: u64) -> Self {
        Data(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in `[lo, hi)`, rounded to `T`.
    pub fn vec<T: Element>(&mut self, n: usize, lo: f32, hi: f32) -> Vec<T> {
        (0..n)
            .map(|_| T::from_f32_lossy(lo + (hi - lo) * self.unit()))
            .collect()
    }

    /// Uniform in `[lo, hi)` with every bit of an `f64` mantissa random.
    pub fn vec_f64(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n)
            .map(|_| lo + (hi - lo) * ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64))
            .collect()
    }

    /// `true` with probability `p`.
    pub fn coin(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// A random `[H, nb, nb]` mask with the given density.
    pub fn mask(&mut self, heads: usize, nb: usize, density: f32) -> Vec<u8> {
        (0..heads * nb * nb)
            .map(|_| self.coin(density) as u8)
            .collect()
    }

    /// A random layout.
    pub fn layout(&mut self, heads: usize, nb: usize, block: usize, density: f32) -> Layout {
        Layout::from_mask(heads, nb, block, self.mask(heads, nb, density)).expect("valid layout")
    }
}

/// The reference's view of our layout.
pub fn ref_layout(l: &Layout) -> ltd_reference::Layout<'_> {
    ltd_reference::Layout::square(l.mask(), l.num_heads(), l.num_blocks(), l.block())
}

/// `m` as the reference's mask mode.
pub fn mode_ref(m: MaskMode) -> ltd_reference::MaskMode {
    match m {
        MaskMode::Add => ltd_reference::MaskMode::Add,
        MaskMode::Mul => ltd_reference::MaskMode::Mul,
    }
}

/// `n` mask values, each made by `from_f32`: in add mode a mix of 0, -inf and small negatives; in
/// mul mode 0/1.
pub fn mask_values<T>(
    data: &mut Data,
    n: usize,
    mode: MaskMode,
    from_f32: impl Fn(f32) -> T,
) -> Vec<T> {
    (0..n)
        .map(|_| {
            let u = data.unit();
            from_f32(match mode {
                MaskMode::Add if u < 0.3 => f32::NEG_INFINITY,
                MaskMode::Add if u < 0.6 => -0.5 * u,
                MaskMode::Add => 0.0,
                MaskMode::Mul => (u >= 0.3) as u8 as f32,
            })
        })
        .collect()
}

/// A buffer full of NaN, so an unwritten element fails the comparison.
pub fn poisoned<T: Element>(n: usize) -> Vec<T> {
    vec![T::from_f32_lossy(f32::NAN); n]
}

/// Checks `got` against `want` elementwise with `T`'s tolerance; panics naming the first bad
/// element. Equal infinities (and `-inf`) match.
pub fn assert_close<T: TestElement>(what: &str, got: &[T], want: &[T]) {
    let (rtol, atol) = T::TOL;
    assert_close_f32(what, &widen(got), &widen(want), rtol, atol);
}

pub fn widen<T: Element>(x: &[T]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

pub fn assert_close_f32(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{what}[{i}]: got {g}, want {w} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Runs `$body` with `$t` bound to f32, f16 or bf16 according to `$which` (0, 1, 2).
#[macro_export]
macro_rules! for_dtype {
    ($which:expr, $t:ident => $body:expr) => {
        match $which {
            0 => {
                type $t = f32;
                $body
            }
            1 => {
                type $t = half::f16;
                $body
            }
            _ => {
                type $t = half::bf16;
                $body
            }
        }
    };
}

/// What `ltd-reference` (f64) gives for the block-sparse matmul `mm` on `layout` with `batch`
/// and dense dim `f`: `(C, dA, dB)` for operands `a`, `b` and upstream gradient `dc`.
pub fn matmul_reference<T: RefElement>(
    mm: ltd_sparse_attn::BlockSparseMatMul,
    layout: &Layout,
    batch: usize,
    f: usize,
    (a, b, dc): (&[T], &[T], &[T]),
) -> (Vec<T>, Vec<T>, Vec<T>) {
    use ltd_sparse_attn::MatMulMode;
    let rl = ref_layout(layout);
    let s = layout.num_blocks() * layout.block();
    let (m, n, k) = match mm.mode {
        MatMulMode::Sdd => (s, s, f),
        MatMulMode::Dsd => (s, f, s),
        MatMulMode::Dds => (f, s, s),
    };
    let dims = ltd_reference::MatmulDims {
        batch,
        heads: layout.num_heads(),
        m,
        n,
        k,
    };
    let (ta, tb) = (mm.trans_a, mm.trans_b);
    let c = match mm.mode {
        MatMulMode::Sdd => ltd_reference::sdd(a, b, dims, &rl, ta, tb),
        MatMulMode::Dsd => ltd_reference::dsd(a, b, dims, &rl, ta, tb),
        MatMulMode::Dds => ltd_reference::dds(a, b, dims, &rl, ta, tb),
    }
    .unwrap();
    let (da, db) = match mm.mode {
        MatMulMode::Sdd => ltd_reference::sdd_backward(a, b, dc, dims, &rl, ta, tb),
        MatMulMode::Dsd => ltd_reference::dsd_backward(a, b, dc, dims, &rl, ta, tb),
        MatMulMode::Dds => ltd_reference::dds_backward(a, b, dc, dims, &rl, ta, tb),
    }
    .unwrap();
    (c, da, db)
}

/// A layout of `family` (0 Fixed, 1 BigBird, 2 BSLongformer, 3 Variable, else Dense) with small
/// windows, `uni` for unidirectional where the family has it.
pub fn make_layout(
    family: u8,
    heads: usize,
    block: usize,
    seq: usize,
    uni: bool,
    seed: u64,
) -> Layout {
    let dir = if uni {
        Direction::Unidirectional
    } else {
        Direction::Bidirectional
    };
    match family {
        0 => {
            let mut c = FixedConfig::new(heads);
            c.block = block;
            c.attention = dir;
            c.num_local_blocks = 2;
            c.num_global_blocks = 1;
            c.make_layout(seq).unwrap()
        }
        1 => {
            let mut c = BigBirdConfig::new(heads);
            c.block = block;
            c.num_random_blocks = 1;
            c.num_sliding_window_blocks = 1;
            c.different_layout_per_head = true;
            c.seed = seed;
            c.make_layout(seq).unwrap()
        }
        2 => {
            let mut c = BSLongformerConfig::new(heads);
            c.block = block;
            c.num_sliding_window_blocks = 1;
            c.attention = dir;
            c.make_layout(seq).unwrap()
        }
        3 => {
            let mut c = VariableConfig::new(heads);
            c.block = block;
            c.num_random_blocks = 1;
            c.local_window_blocks = vec![1, 2];
            c.attention = dir;
            c.different_layout_per_head = true;
            c.seed = seed;
            c.make_layout(seq).unwrap()
        }
        _ => {
            let mut c = DenseConfig::new(heads);
            c.block = block;
            c.make_layout(seq).unwrap()
        }
    }
}

/// The GPU attention kernel choices `dev` runs (all six on an H100: `MmaSync` is the sm_80
/// path, `Wgmma` / `WgmmaPairs` / `WgmmaGathered` / `WgmmaWarpSpecialized` the sm_90 one, `Auto`
/// the default).
#[cfg(feature = "cuda")]
pub fn kernels(dev: &ltd_core::CudaDevice) -> Vec<ltd_sparse_attn::cuda::CudaAttentionKernel> {
    use ltd_sparse_attn::cuda::CudaAttentionKernel as K;
    [
        K::MmaSync,
        K::Auto,
        K::Wgmma,
        K::WgmmaPairs,
        K::WgmmaGathered,
        K::WgmmaWarpSpecialized,
    ]
    .into_iter()
    .filter(|k| k.runs_on(dev.compute_capability()))
    .collect()
}

/// Which key-padding mask an attention case passes: none, the additive `[B, L]` f32 form, or the
/// keep/drop boolean form.
#[derive(Clone, Copy, Debug)]
pub enum Kpm {
    None,
    Additive,
    Keep,
}

/// One randomised attention problem of the property tests against the reference: the layout's
/// block, length, shape and density, and which options it turns on.
pub struct AttnCase {
    pub block: usize,
    pub seq: usize,
    pub head_dim: usize,
    pub heads: usize,
    pub batch: usize,
    pub density: f32,
    pub causal: bool,
    pub kpm: Kpm,
    pub bias: bool,
    pub explicit_scale: bool,
    pub seed: u64,
}
