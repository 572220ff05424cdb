//! Which kernel family runs a call: [`CudaAttentionKernel`] and the rule `Auto` follows.
//!
//! The rule: on compute capability 9.0 (H100, H200) the Hopper kernels (`wgmma` fed by TMA),
//! elsewhere the `mma.sync` ones. The Hopper backward runs its pair kernel (two warpgroups on two
//! adjacent key chunks sharing every Q / dO tile load and dQ reduction) at head dim 128 without
//! a bias, on layouts whose adjacent chunks see the same query tiles (block-128 layouts); at head
//! dim 64 its register use halves the warps an SM holds, and on layouts that share less the
//! saved loads do not pay for the union of the two chunks' work. The Hopper forward runs its
//! gathered kernel (the active 16-key slices of sparse chunks packed four to a chunk) without a
//! bias on layouts where that leaves markedly fewer chunk iterations than the plain table
//! (small layout blocks: only a block of 16 or 32 leaves a chunk partly empty), and its backward
//! the gathered-set kernel (sparse columns' active 16-key slices packed four to a CTA) where that
//! leaves markedly fewer tile visits. The Hopper forward runs its pair kernel (two warpgroups on
//! two adjacent query tiles sharing every K / V copy) at head dim 128 without a bias on layouts
//! whose adjacent query tiles see the same chunks; at head dim 64, where the single-tile kernel
//! already holds as many warpgroups per SM, the pair kernel was the slower one (the performance
//! log). Where none of those takes a backward at head dim 128, it runs the warp-specialised
//! single-chunk kernel (a producer warpgroup issuing every copy and dQ reduction, a consumer
//! warpgroup computing): as fast on short columns, faster on long ones; at head dim 64 it holds
//! two CTAs per SM where the single kernel holds three, and measured slower; the
//! warp-specialised pair kernel measured even with the pair kernel, which `Auto` keeps. See
//! `docs/kernels.md`, "Which variant runs when".

use super::CudaAttentionLayout;

/// The kernel family of the fused attention (forward and backward). All compute the same thing
/// from the same tables; they differ in the tensor-core instructions, so results agree to
/// rounding (f32 accumulation in all).
///
/// ```
/// use ltd_sparse_attn::cuda::CudaAttentionKernel;
/// assert_eq!(CudaAttentionKernel::default(), CudaAttentionKernel::Auto);
/// assert!(CudaAttentionKernel::Wgmma.runs_on((9, 0)) && CudaAttentionKernel::WgmmaPairs.runs_on((9, 0)));
/// assert!(!CudaAttentionKernel::Wgmma.runs_on((8, 0)) && CudaAttentionKernel::MmaSync.runs_on((8, 6)));
/// assert!(CudaAttentionKernel::WgmmaGathered.runs_on((9, 0)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CudaAttentionKernel {
    /// On compute capability 9.0 (H100/H200) [`Wgmma`](Self::Wgmma), except for a backward
    /// [`backward_gathered`](Self::backward_gathered) gives to the gathered-set kernel,
    /// [`backward_pairs`](Self::backward_pairs) to the pair kernel or
    /// [`backward_warp_specialized`](Self::backward_warp_specialized) to the warp-specialised
    /// kernel, and a forward
    /// [`forward_gathered`](Self::forward_gathered) gives to the gathered kernel or
    /// [`forward_pairs`](Self::forward_pairs) to the pair forward;
    /// [`MmaSync`](Self::MmaSync) elsewhere.
    #[default]
    Auto,
    /// `mma.sync` warp MMAs, 4 warps x 16 query rows (sm_80 and newer: A100, H100, ...).
    MmaSync,
    /// Hopper warpgroup MMAs (`wgmma.mma_async`, sm_90a machine code), one warpgroup per 64-row
    /// query tile or 64-key chunk: compute capability 9.0 only; asking for it elsewhere is an
    /// [`SparseAttnError::InvalidArgument`](crate::SparseAttnError::InvalidArgument).
    Wgmma,
    /// [`Wgmma`](Self::Wgmma) with the backward always on the pair kernel (two warpgroups per
    /// CTA on a pair of adjacent 64-key chunks, sharing the Q / dO tiles of every query tile and
    /// adding one dQ tile for both, [`CudaAttentionLayout::column_pair_sharing`]), where `Auto`
    /// picks it only where [`backward_pairs`](Self::backward_pairs) says, and the forward always
    /// on the pair forward (two warpgroups per CTA on a pair of adjacent 64-row query tiles,
    /// sharing the K / V copy of every chunk, [`CudaAttentionLayout::row_pair_sharing`]), where
    /// `Auto` picks it only where [`forward_pairs`](Self::forward_pairs) says. With a bias both
    /// are `Wgmma`'s (no pair variant of the bias kernels).
    WgmmaPairs,
    /// [`Wgmma`](Self::Wgmma) with the forward on the gathered kernel wherever the layout has
    /// gathered chunks ([`CudaAttentionLayout::forward_gather_ratio`]) and the backward on the
    /// gathered-set kernel wherever it has gathered key sets
    /// ([`CudaAttentionLayout::backward_gather_ratio`]), without a bias; `Auto` picks them only
    /// where [`forward_gathered`](Self::forward_gathered) and
    /// [`backward_gathered`](Self::backward_gathered) say.
    WgmmaGathered,
    /// `Auto`'s choices on 9.0 (gathered, pair or single-tile forward; gathered-set, pair or
    /// single-chunk backward), with every backward that is not the gathered-set one
    /// warp-specialised, without a bias and at both head dims: a producer warpgroup issues every
    /// copy and dQ reduction ahead of consumer warpgroups that only compute
    /// ([`backward_warp_specialized`](Self::backward_warp_specialized); `Auto` runs the
    /// warp-specialised single-chunk kernel at head dim 128 only). With a bias, `Wgmma`'s.
    WgmmaWarpSpecialized,
}

impl CudaAttentionKernel {
    /// Whether this choice can run on a device of compute capability `(major, minor)`.
    ///
    /// ```
    /// use ltd_sparse_attn::cuda::CudaAttentionKernel;
    /// assert!(CudaAttentionKernel::Auto.runs_on((8, 0)));
    /// assert!(!CudaAttentionKernel::MmaSync.runs_on((7, 5)));
    /// ```
    pub fn runs_on(self, (major, minor): (i32, i32)) -> bool {
        match self {
            CudaAttentionKernel::Auto | CudaAttentionKernel::MmaSync => major >= 8,
            CudaAttentionKernel::Wgmma
            | CudaAttentionKernel::WgmmaPairs
            | CudaAttentionKernel::WgmmaGathered
            | CudaAttentionKernel::WgmmaWarpSpecialized => (major, minor) == (9, 0),
        }
    }

    /// Whether this (resolved) choice is one of the Hopper kernels.
    ///
    /// ```
    /// use ltd_sparse_attn::cuda::CudaAttentionKernel;
    /// assert!(CudaAttentionKernel::WgmmaPairs.is_hopper());
    /// assert!(!CudaAttentionKernel::MmaSync.is_hopper());
    /// ```
    pub fn is_hopper(self) -> bool {
        matches!(
            self,
            CudaAttentionKernel::Wgmma
                | CudaAttentionKernel::WgmmaPairs
                | CudaAttentionKernel::WgmmaGathered
                | CudaAttentionKernel::WgmmaWarpSpecialized
        )
    }

    /// The concrete family this choice runs on a device of compute capability `cc`: `Auto` is
    /// [`Wgmma`](Self::Wgmma) on 9.0 and [`MmaSync`](Self::MmaSync) elsewhere (whether its
    /// backward runs the pair kernel, [`backward_pairs`](Self::backward_pairs) says); other
    /// choices are returned as they are.
    ///
    /// ```
    /// use ltd_sparse_attn::cuda::CudaAttentionKernel;
    /// assert_eq!(CudaAttentionKernel::Auto.resolve((9, 0)), CudaAttentionKernel::Wgmma);
    /// assert_eq!(CudaAttentionKernel::Auto.resolve((8, 0)), CudaAttentionKernel::MmaSync);
    /// assert_eq!(CudaAttentionKernel::MmaSync.resolve((9, 0)), CudaAttentionKernel::MmaSync);
    /// ```
    pub fn resolve(self, cc: (i32, i32)) -> CudaAttentionKernel {
        match self {
            CudaAttentionKernel::Auto if cc == (9, 0) => CudaAttentionKernel::Wgmma,
            CudaAttentionKernel::Auto => CudaAttentionKernel::MmaSync,
            other => other,
        }
    }

    /// Whether the backward of this choice runs the Hopper pair kernel (two warpgroups on two
    /// adjacent key chunks) on a device of compute capability `cc`: always for
    /// [`WgmmaPairs`](Self::WgmmaPairs); for `Auto` on 9.0 at head dim 128 where adjacent
    /// chunks see the same query tiles ([`CudaAttentionLayout::column_pair_sharing`] at most
    /// [`AUTO_BACKWARD_PAIR_SHARING`]; [`WgmmaWarpSpecialized`](Self::WgmmaWarpSpecialized)
    /// follows the same rule); never with a bias or dbias (no pair variant of the bias kernel)
    /// and never for the other choices. The module docs give the reasons.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{BigBirdConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(4);
    /// c.block = 128;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(4096)?)?;
    /// assert!(CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 128, false));
    /// assert!(!CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 64, false));
    /// assert!(!CudaAttentionKernel::Auto.backward_pairs((9, 0), &layout, 128, true));
    /// assert!(!CudaAttentionKernel::Wgmma.backward_pairs((9, 0), &layout, 128, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_pairs(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        head_dim: usize,
        with_bias: bool,
    ) -> bool {
        !with_bias
            && match self {
                CudaAttentionKernel::WgmmaPairs => true,
                CudaAttentionKernel::Auto | CudaAttentionKernel::WgmmaWarpSpecialized => {
                    cc == (9, 0)
                        && head_dim == 128
                        && layout.column_pair_sharing() <= AUTO_BACKWARD_PAIR_SHARING
                }
                _ => false,
            }
    }

    /// Whether the forward of this choice runs the Hopper pair forward (two warpgroups on two
    /// adjacent query tiles, walking the union of their chunks) on a device of compute
    /// capability `cc`: never with a bias (no pair variant of the bias kernel) or off 9.0;
    /// otherwise always for [`WgmmaPairs`](Self::WgmmaPairs), and for `Auto` at head dim 128
    /// where adjacent query tiles see the same chunks
    /// ([`CudaAttentionLayout::row_pair_sharing`] at most [`AUTO_FORWARD_PAIR_SHARING`]) and
    /// [`forward_gathered`](Self::forward_gathered) does not take the call (so does
    /// [`WgmmaWarpSpecialized`](Self::WgmmaWarpSpecialized)); never for the other choices. The
    /// module docs give the reasons.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{BigBirdConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?; // an H100
    /// let mut c = BigBirdConfig::new(4);
    /// c.block = 128;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(4096)?)?;
    /// assert!(CudaAttentionKernel::Auto.forward_pairs((9, 0), &layout, 128, false));
    /// assert!(!CudaAttentionKernel::Auto.forward_pairs((9, 0), &layout, 64, false));
    /// assert!(CudaAttentionKernel::WgmmaPairs.forward_pairs((9, 0), &layout, 64, false));
    /// assert!(!CudaAttentionKernel::WgmmaPairs.forward_pairs((9, 0), &layout, 128, true));
    /// assert!(!CudaAttentionKernel::Wgmma.forward_pairs((9, 0), &layout, 128, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_pairs(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        head_dim: usize,
        with_bias: bool,
    ) -> bool {
        !with_bias
            && cc == (9, 0)
            && layout.fwd_pairs.is_some()
            && match self {
                CudaAttentionKernel::WgmmaPairs => true,
                CudaAttentionKernel::Auto | CudaAttentionKernel::WgmmaWarpSpecialized => {
                    head_dim == 128
                        && layout.row_pair_sharing() <= AUTO_FORWARD_PAIR_SHARING
                        && !self.forward_gathered(cc, layout, with_bias)
                }
                _ => false,
            }
    }

    /// Whether the forward of this choice runs the Hopper gathered kernel on a device of compute
    /// capability `cc`: never with a bias (no gathered bias kernel) or on a layout without
    /// gathered chunks ([`CudaAttentionLayout::forward_gather_ratio`] is `None`: the device is
    /// not 9.0, or no chunk has few enough active slices); otherwise always for
    /// [`WgmmaGathered`](Self::WgmmaGathered) and for `Auto` (and
    /// [`WgmmaWarpSpecialized`](Self::WgmmaWarpSpecialized)) on 9.0 where the gathered table has
    /// at most [`AUTO_FORWARD_GATHER_RATIO`] of the plain table's entries, never for the other
    /// choices.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?; // an H100
    /// let mut c = FixedConfig::new(4); // block 16
    /// c.num_local_blocks = 16;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(16384)?)?;
    /// assert!(CudaAttentionKernel::Auto.forward_gathered((9, 0), &layout, false));
    /// assert!(!CudaAttentionKernel::Auto.forward_gathered((9, 0), &layout, true));
    /// assert!(!CudaAttentionKernel::Wgmma.forward_gathered((9, 0), &layout, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_gathered(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        with_bias: bool,
    ) -> bool {
        let Some(ratio) = layout.forward_gather_ratio() else {
            return false;
        };
        !with_bias
            && cc == (9, 0)
            && match self {
                CudaAttentionKernel::WgmmaGathered => true,
                CudaAttentionKernel::Auto | CudaAttentionKernel::WgmmaWarpSpecialized => {
                    ratio <= AUTO_FORWARD_GATHER_RATIO
                }
                _ => false,
            }
    }

    /// Whether the backward of this choice runs the Hopper gathered-set kernel (one grid over
    /// the gathered key sets and the plain columns) on a device of compute capability `cc`: never with a bias
    /// or dbias, or on a layout without gathered key sets
    /// ([`CudaAttentionLayout::backward_gather_ratio`] is `None`); otherwise always for
    /// [`WgmmaGathered`](Self::WgmmaGathered) and for `Auto` (and
    /// [`WgmmaWarpSpecialized`](Self::WgmmaWarpSpecialized)) on 9.0 where the gathered walk
    /// visits at most [`AUTO_BACKWARD_GATHER_RATIO`] of the plain walk's tiles. It takes
    /// precedence over [`backward_pairs`](Self::backward_pairs) and
    /// [`backward_warp_specialized`](Self::backward_warp_specialized).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, cuda::{CudaAttentionKernel, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?; // an H100
    /// let mut c = FixedConfig::new(4); // block 16
    /// c.num_local_blocks = 16;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(16384)?)?;
    /// assert!(CudaAttentionKernel::Auto.backward_gathered((9, 0), &layout, false));
    /// assert!(!CudaAttentionKernel::Auto.backward_gathered((9, 0), &layout, true));
    /// assert!(!CudaAttentionKernel::Wgmma.backward_gathered((9, 0), &layout, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_gathered(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        with_bias: bool,
    ) -> bool {
        let Some(ratio) = layout.backward_gather_ratio() else {
            return false;
        };
        !with_bias
            && cc == (9, 0)
            && match self {
                CudaAttentionKernel::WgmmaGathered => true,
                CudaAttentionKernel::Auto | CudaAttentionKernel::WgmmaWarpSpecialized => {
                    ratio <= AUTO_BACKWARD_GATHER_RATIO
                }
                _ => false,
            }
    }

    /// Whether the backward of this choice runs a Hopper warp-specialised kernel (a producer
    /// warpgroup issuing every copy and dQ reduction for computing consumer warpgroups) on a
    /// device of compute capability `cc`: the warp-specialised pair kernel where
    /// [`backward_pairs`](Self::backward_pairs) picks the pair kernel, else the
    /// warp-specialised single-chunk kernel. Never with a bias or dbias (no bias variant), off
    /// 9.0, or where [`backward_gathered`](Self::backward_gathered) takes the call (no gathered
    /// variant); otherwise always for [`WgmmaWarpSpecialized`](Self::WgmmaWarpSpecialized), and
    /// for `Auto` the single-chunk kernel at head dim 128 (at 64 its two CTAs per SM hold fewer
    /// warpgroups than the single kernel's three); never for the other choices. The module
    /// docs give the reasons.
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{BigBirdConfig, cuda::{CudaAttentionKernel as K, CudaAttentionLayout}};
    /// let dev = CudaDevice::new(0)?; // an H100
    /// let mut c = BigBirdConfig::new(4);
    /// c.block = 64;
    /// let layout = CudaAttentionLayout::new(&dev, &c.make_layout(4096)?)?;
    /// assert!(K::WgmmaWarpSpecialized.backward_warp_specialized((9, 0), &layout, 64, false));
    /// assert!(!K::WgmmaWarpSpecialized.backward_warp_specialized((9, 0), &layout, 128, true));
    /// assert!(K::Auto.backward_warp_specialized((9, 0), &layout, 128, false));
    /// assert!(!K::Auto.backward_warp_specialized((9, 0), &layout, 64, false));
    /// assert!(!K::Wgmma.backward_warp_specialized((9, 0), &layout, 128, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_warp_specialized(
        self,
        cc: (i32, i32),
        layout: &CudaAttentionLayout,
        head_dim: usize,
        with_bias: bool,
    ) -> bool {
        !with_bias
            && cc == (9, 0)
            && !self.backward_gathered(cc, layout, with_bias)
            && match self {
                CudaAttentionKernel::WgmmaWarpSpecialized => true,
                CudaAttentionKernel::Auto => {
                    head_dim == 128 && !self.backward_pairs(cc, layout, head_dim, with_bias)
                }
                _ => false,
            }
    }
}

/// `Auto` runs the backward's gathered-set kernel on layouts whose
/// [`CudaAttentionLayout::backward_gather_ratio`] (tile visits of the gathered walk per visit of
/// the plain one) is at most this: the sets' chunks pay four copies and partial dK / dV slots
/// with a combine, as the forward's gathered chunks pay their copies.
pub const AUTO_BACKWARD_GATHER_RATIO: f64 = 0.75;

/// `Auto` runs the forward's gathered kernel on layouts whose
/// [`CudaAttentionLayout::forward_gather_ratio`] (entries of the gathered table per entry of the
/// plain one) is at most this: the gathered kernel pays four copies per gathered chunk and a
/// slot read per entry, so it needs markedly fewer chunk iterations to win.
pub const AUTO_FORWARD_GATHER_RATIO: f64 = 0.75;

/// `Auto` runs the pair forward (head dim 128) on layouts whose
/// [`CudaAttentionLayout::row_pair_sharing`] is at most this: layouts whose adjacent query tiles
/// see the same chunks (0.5: block 128, Fixed at block 64), where the pair forward copies each
/// chunk once for 128 rows; the block-64 BigBird and BSLongformer layouts share less (0.69 and
/// up), and there the products of chunks only one tile sees cost more than the saved copies.
pub const AUTO_FORWARD_PAIR_SHARING: f64 = 0.55;

/// `Auto` runs the backward's pair kernel (head dim 128) on layouts whose
/// [`CudaAttentionLayout::column_pair_sharing`] is at most this: block-128 layouts (0.5), where
/// adjacent chunks always see the same query tiles; the block-64 layouts of the benchmarks
/// share less (0.69 and up), and there the pair backward did not pay.
pub const AUTO_BACKWARD_PAIR_SHARING: f64 = 0.55;
