//! The host-side work planner of the fused GPU attention: a layout's coarse tables (its 64 x 64
//! kernel tiles, [`CoarseTables`]), the Hopper forward's gathered table (the active 16-key slices
//! of sparse chunks packed four to a chunk, [`GatheredTables`]), its mirror for the
//! backward ([`GatheredColumns`]) and the work items the kernels' CTAs
//! take from them ([`WorkPlan`]). Plain host code with no GPU dependency, so it is built and unit-tested
//! without the `cuda` feature; the `cuda` module uploads what it builds.
//!
//! # The 64 x 64 tile is fixed
//!
//! The kernels compute 64 query rows by 64 keys at a time (one MMA-sized tile: 4 warps of 16
//! rows, or one Hopper warpgroup), and describe which parts of a tile the layout keeps by a
//! 16-bit mask of its 4 x 4 sub-blocks of 16 x 16 (bit `4 * i + j`: query rows `16i..`, keys
//! `16j..`). 16 is the smallest layout block, so every layout block is a whole number of
//! sub-blocks; 64 = 4 x 16 is what makes the mask 16 bits. Neither number can be tuned: both are
//! built into the kernels' code and the tables' format. See `docs/kernels.md`, "Tiles and
//! sub-block masks".

mod gather;
mod gather_bwd;
mod tables;
mod work;

pub use gather::{GATHER_MAX_SLICES, GatheredTables};
pub use gather_bwd::{GatheredBackwardPlan, GatheredColumns};
pub use tables::CoarseTables;
pub use work::WorkPlan;

/// Query rows per kernel tile, and keys per key chunk (fixed: see the module docs).
pub(crate) const TILE: usize = 64;

/// Side of a sub-block, one bit of a tile's mask (fixed: see the module docs).
pub(crate) const SUB_BLOCK: usize = 16;

/// Sub-blocks per tile side.
const SUBS_PER_TILE: usize = TILE / SUB_BLOCK;

const _: () = assert!(
    SUBS_PER_TILE * SUBS_PER_TILE == 16,
    "one bit per sub-block of an i32 mask half"
);
