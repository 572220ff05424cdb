//! A layout's kernel tables in GPU memory ([`CudaAttentionLayout`]) and the per-device cache
//! behind [`SparseSelfAttention::cuda_layout`] ([`CudaLayoutCache`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cudarc::driver::CudaSlice;
use ltd_core::CudaDevice;

use crate::plan::{CoarseTables, GatheredColumns, GatheredTables, WorkPlan};
use crate::{Layout, Result, SparseAttnError, SparseSelfAttention};

/// A layout's kernel tables in GPU memory. Build once per layout (and device) and reuse for
/// every call: [`crate::SparseSelfAttention`] layouts are cached per length, so hold one of
/// these per cached layout.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{FixedConfig, cuda::CudaAttentionLayout};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(16).make_layout(4096)?;
/// let gpu_layout = CudaAttentionLayout::new(&dev, &layout)?;
/// assert_eq!(gpu_layout.heads(), 16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaAttentionLayout {
    pub(super) heads: usize,
    pub(super) num_blocks: usize,
    pub(super) block: usize,
    active_tiles: usize,
    /// The forward's tables ([`CoarseTables::cols`] / [`CoarseTables::masks`]).
    pub(super) cols: CudaSlice<i32>,
    pub(super) masks: CudaSlice<i32>,
    /// The backward's transposed tables, single chunks and pairs of chunks.
    pub(super) col_rows: CudaSlice<i32>,
    pub(super) col_masks: CudaSlice<i32>,
    pub(super) col_pair_rows: CudaSlice<i32>,
    pub(super) col_pair_masks: CudaSlice<i32>,
    col_pair_tiles: usize,
    /// Entries of the row pair tables ([`CoarseTables::row_pair_cols`]), for the sharing ratio.
    row_pair_chunks: usize,
    /// The Hopper pair forward's tables and plan, on compute capability 9.0.
    pub(super) fwd_pairs: Option<GpuForwardPairs>,
    /// The layout's own CSR (per block-row: active tile columns; position = tile index), for the
    /// block-sparse softmax.
    pub(super) csr_offsets: CudaSlice<i32>,
    pub(super) csr_columns: CudaSlice<i32>,
    pub(super) nnz: usize,
    /// The work plans ([`WorkPlan`]): forward per query tile, backward per key chunk and per
    /// pair of key chunks.
    pub(super) fwd_plan: GpuPlan,
    pub(super) bwd_plan: GpuPlan,
    pub(super) bwd_pair_plan: GpuPlan,
    /// The Hopper gathered forward's table and plan, on compute capability 9.0 where the layout
    /// has gathered chunks.
    pub(super) gathered: Option<GpuGathered>,
    /// The Hopper gathered backward's tables and plans, on compute capability 9.0 where the
    /// layout has gathered key sets.
    pub(super) gathered_bwd: Option<GpuGatheredBwd>,
}

/// The gathered backward's tables ([`GatheredColumns`]), work plan and combine rows in GPU
/// memory: the plain columns (every chunk that lost a slice to a set writes partial slots) and
/// the sets, whose slots follow the plain ones (`num_slots` counts both), in one grid.
pub(super) struct GpuGatheredBwd {
    /// The plain columns' entries followed by the sets' (`GatheredBackwardPlan::one_grid`).
    pub(super) rows: CudaSlice<i32>,
    pub(super) masks: CudaSlice<i32>,
    /// Plain and set items in one grid.
    pub(super) plan: GpuPlan,
    pub(super) slots: CudaSlice<i32>,
    /// `[12 per row]`: `GatheredBackwardPlan::combine`.
    pub(super) combine: CudaSlice<i32>,
    pub(super) num_combine: usize,
    pub(super) num_slots: usize,
    /// Tile visits of the gathered walk per visit of the plain one.
    ratio: f64,
}

impl GpuGatheredBwd {
    /// The gathered columns of `t` and their plans (pieces of at most `limit` query tiles),
    /// uploaded on a device of compute capability 9.0 when some slice was gathered.
    fn upload(dev: &CudaDevice, t: &CoarseTables, limit: usize) -> Result<Option<GpuGatheredBwd>> {
        if dev.compute_capability() != (9, 0) {
            return Ok(None);
        }
        let g = GatheredColumns::new(t);
        if g.num_sets() == 0 {
            return Ok(None);
        }
        let plan = g.backward_plan(limit);
        let combine: Vec<i32> = plan.combine.iter().flatten().copied().collect();
        let rows = [&g.col_rows[..], &g.set_rows[..]].concat();
        let masks = [&g.col_masks[..], &g.set_masks[..]].concat();
        let grid = plan.one_grid(g.col_rows.len());
        Ok(Some(GpuGatheredBwd {
            plan: GpuPlan::upload(dev, &grid, (&rows, &masks))?,
            rows: upload_table(dev, &rows)?,
            masks: upload_table(dev, &masks)?,
            slots: upload_table(dev, &g.set_slots)?,
            combine: upload_table(dev, &combine)?,
            num_combine: plan.combine.len(),
            num_slots: plan.num_slots,
            ratio: g.tile_visits() as f64 / t.col_rows.len().max(1) as f64,
        }))
    }
}

/// The pair forward's row pair tables ([`CoarseTables::row_pair_cols`] /
/// [`CoarseTables::row_pair_masks`]) and work plan in GPU memory.
pub(super) struct GpuForwardPairs {
    pub(super) cols: CudaSlice<i32>,
    pub(super) masks: CudaSlice<i32>,
    pub(super) plan: GpuPlan,
}

impl GpuForwardPairs {
    /// The row pair tables of `t` and their plan, uploaded on a device of compute capability 9.0
    /// (the only one with the pair forward); `None` elsewhere.
    fn upload(dev: &CudaDevice, t: &CoarseTables) -> Result<Option<GpuForwardPairs>> {
        if dev.compute_capability() != (9, 0) {
            return Ok(None);
        }
        let plan = t.forward_pair_plan(t.forward_pair_split_chunks(dev.sm_count()));
        Ok(Some(GpuForwardPairs {
            plan: GpuPlan::upload(dev, &plan, (&t.row_pair_cols, &t.row_pair_masks))?,
            cols: upload_table(dev, &t.row_pair_cols)?,
            masks: upload_table(dev, &t.row_pair_masks)?,
        }))
    }
}

/// The gathered forward's tables ([`GatheredTables`]) and work plan in GPU memory.
pub(super) struct GpuGathered {
    pub(super) entries: CudaSlice<i32>,
    pub(super) masks: CudaSlice<i32>,
    pub(super) slots: CudaSlice<i32>,
    pub(super) plan: GpuPlan,
    /// Entries of the gathered table per entry of the plain one.
    ratio: f64,
}

impl GpuGathered {
    /// The gathered table of `t` and its plan, uploaded on a device of compute capability 9.0
    /// (the only one with the gathered kernel) when some chunk was gathered; `None` otherwise.
    fn upload(dev: &CudaDevice, t: &CoarseTables) -> Result<Option<GpuGathered>> {
        if dev.compute_capability() != (9, 0) {
            return Ok(None);
        }
        let g = GatheredTables::new(t);
        if g.gathered_chunks() == 0 {
            return Ok(None);
        }
        let plan = g.forward_plan(g.forward_split_chunks(dev.sm_count()));
        Ok(Some(GpuGathered {
            plan: GpuPlan::upload(dev, &plan, (&g.entries, &g.masks))?,
            entries: upload_table(dev, &g.entries)?,
            masks: upload_table(dev, &g.masks)?,
            slots: upload_table(dev, &g.slots)?,
            ratio: g.entries.len() as f64 / t.cols.len() as f64,
        }))
    }
}

/// A [`WorkPlan`] in GPU memory: the kernels' work-item rows (`ltd_kernels.h`: head, tile,
/// first, end, slot, the table's entry at `first` and its mask, the entry at `first + 1`) and
/// the split rows.
pub(super) struct GpuPlan {
    pub(super) items: CudaSlice<i32>,
    pub(super) split: CudaSlice<i32>,
    num_items: usize,
    pub(super) num_slots: usize,
    pub(super) num_split: usize,
}

/// Uploads a kernel table; an empty one as a single 0 (a kernel parameter still needs a valid
/// device pointer, and nothing reads past a table's length).
fn upload_table(dev: &CudaDevice, table: &[i32]) -> Result<CudaSlice<i32>> {
    Ok(dev.upload(if table.is_empty() { &[0] } else { table })?)
}

impl GpuPlan {
    /// `table` is the (entries, masks) pair the plan's ranges index.
    fn upload(dev: &CudaDevice, plan: &WorkPlan, table: (&[i32], &[i32])) -> Result<GpuPlan> {
        let items: Vec<i32> = plan
            .kernel_rows(table.0, table.1)
            .into_iter()
            .flatten()
            .collect();
        let split: Vec<i32> = plan.split.iter().flatten().copied().collect();
        Ok(GpuPlan {
            items: upload_table(dev, &items)?,
            split: upload_table(dev, &split)?,
            num_items: plan.items.len(),
            num_slots: plan.num_slots,
            num_split: plan.split.len(),
        })
    }

    /// Grid size `items * batch`, checked against the 2^31 - 1 grid limit.
    pub(super) fn grid(&self, batch: usize) -> Result<u32> {
        self.num_items
            .checked_mul(batch)
            .filter(|&n| n <= i32::MAX as usize)
            .map(|n| n as u32)
            .ok_or_else(|| {
                SparseAttnError::invalid(
                    "batch",
                    batch,
                    "a batch whose work items (batch x items of the layout) fit a 2^31 grid",
                )
            })
    }
}

impl CudaAttentionLayout {
    /// Builds the coarse tables of `layout` and uploads them.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice;
    /// # use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// let dev = CudaDevice::new(0)?;
    /// let l = CudaAttentionLayout::new(&dev, &BigBirdConfig::new(4).make_layout(1024)?)?;
    /// assert!(l.active_kernel_tiles() > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dev: &CudaDevice, layout: &Layout) -> Result<CudaAttentionLayout> {
        let t = CoarseTables::new(layout);
        let fwd_limit = t.forward_split_chunks(dev.sm_count());
        let bwd_limit = t.backward_split_chunks(dev.sm_count());
        let columns = (&t.col_rows[..], &t.col_masks[..]);
        let column_pairs = (&t.col_pair_rows[..], &t.col_pair_masks[..]);
        Ok(CudaAttentionLayout {
            fwd_plan: GpuPlan::upload(dev, &t.forward_plan(fwd_limit), (&t.cols, &t.masks))?,
            bwd_plan: GpuPlan::upload(dev, &t.backward_plan(bwd_limit), columns)?,
            bwd_pair_plan: GpuPlan::upload(dev, &t.backward_pair_plan(bwd_limit), column_pairs)?,
            gathered: GpuGathered::upload(dev, &t)?,
            fwd_pairs: GpuForwardPairs::upload(dev, &t)?,
            row_pair_chunks: t.row_pair_cols.len(),
            gathered_bwd: GpuGatheredBwd::upload(dev, &t, bwd_limit)?,
            col_pair_rows: upload_table(dev, &t.col_pair_rows)?,
            col_pair_tiles: t.col_pair_rows.len(),
            col_pair_masks: upload_table(dev, &t.col_pair_masks)?,
            heads: t.heads,
            num_blocks: layout.num_blocks(),
            block: layout.block(),
            active_tiles: t.cols.len(),
            cols: upload_table(dev, &t.cols)?,
            masks: upload_table(dev, &t.masks)?,
            col_rows: upload_table(dev, &t.col_rows)?,
            col_masks: upload_table(dev, &t.col_masks)?,
            csr_offsets: dev.upload(layout.row_offsets())?,
            csr_columns: upload_table(dev, layout.row_columns())?,
            nnz: layout.nnz(),
        })
    }

    /// Heads of the layout.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{DenseConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// assert_eq!(CudaAttentionLayout::new(&dev, &DenseConfig::new(3).make_layout(64)?)?.heads(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// 64 x 64 kernel tiles computed per (batch, all heads) call: the work the kernel does.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{DenseConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// assert_eq!(CudaAttentionLayout::new(&dev, &DenseConfig::new(1).make_layout(128)?)?.active_kernel_tiles(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn active_kernel_tiles(&self) -> usize {
        self.active_tiles
    }

    /// Q / dO tile loads (and dQ reductions) of the backward's pair kernel per one of the
    /// single-chunk kernel: active query tiles of the transposed pair tables (union over two
    /// adjacent key chunks) / active 64 x 64 tiles. 0.5 when adjacent chunks always see the same
    /// query tiles (every layout of block 128), 1 when they never share (1 for no tiles).
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(2);
    /// c.block = 128;
    /// let l = CudaAttentionLayout::new(&dev, &c.make_layout(2048)?)?;
    /// assert_eq!(l.column_pair_sharing(), 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn column_pair_sharing(&self) -> f64 {
        if self.active_tiles == 0 {
            1.0
        } else {
            self.col_pair_tiles as f64 / self.active_tiles as f64
        }
    }

    /// K / V chunk copies of the Hopper pair forward per one of the single-tile forward: entries
    /// of the row pair tables (union over two adjacent query tiles) / active 64 x 64 tiles. 0.5
    /// when adjacent query tiles always see the same chunks (every layout of block 128; Fixed
    /// at block 64 with an even local window), 1 when they never share (1 for no tiles). Each
    /// warpgroup of the pair kernel also computes the products of the chunks only the other
    /// tile sees, so its products per single-kernel product are twice this.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(2);
    /// c.block = 128;
    /// let l = CudaAttentionLayout::new(&dev, &c.make_layout(2048)?)?;
    /// assert_eq!(l.row_pair_sharing(), 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn row_pair_sharing(&self) -> f64 {
        if self.active_tiles == 0 {
            1.0
        } else {
            self.row_pair_chunks as f64 / self.active_tiles as f64
        }
    }

    /// Chunk iterations of the Hopper gathered forward per one of the plain forward: entries of
    /// the gathered table (plain chunks with 3 or 4 active 16-key slices, and gathered chunks of
    /// four slices of the others) / active 64 x 64 tiles; `None` where there is no gathered
    /// table (a device other than compute capability 9.0, or no chunk with at most two active
    /// slices, as in every layout of block 64 or 128).
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice; use ltd_sparse_attn::{BigBirdConfig, cuda::CudaAttentionLayout};
    /// # let dev = CudaDevice::new(0)?;
    /// let mut c = BigBirdConfig::new(2);
    /// c.block = 64;
    /// let l = CudaAttentionLayout::new(&dev, &c.make_layout(2048)?)?;
    /// assert_eq!(l.forward_gather_ratio(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_gather_ratio(&self) -> Option<f64> {
        self.gathered.as_ref().map(|g| g.ratio)
    }

    /// The gathered backward's tile visits per visit of the plain backward (its gathered key
    /// sets, `plan::GatheredColumns`), or `None` where the backward has no gathered table (the
    /// device is not compute capability 9.0, or no key slice was gathered).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, cuda::CudaAttentionLayout};
    /// let dev = CudaDevice::new(0)?; // an H100
    /// let mut c = FixedConfig::new(2); // block 16, a global block per window
    /// c.num_local_blocks = 16;
    /// let l = CudaAttentionLayout::new(&dev, &c.make_layout(4096)?)?;
    /// assert!(l.backward_gather_ratio().unwrap() < 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_gather_ratio(&self) -> Option<f64> {
        self.gathered_bwd.as_ref().map(|g| g.ratio)
    }
}

/// Uploaded kernel tables per (device ordinal, block count), shared between threads; the cache
/// behind [`SparseSelfAttention::cuda_layout`].
///
/// ```
/// let cache = ltd_sparse_attn::cuda::CudaLayoutCache::default();
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Default)]
pub struct CudaLayoutCache {
    map: RwLock<HashMap<(usize, usize), Arc<CudaAttentionLayout>>>,
}

impl std::fmt::Debug for CudaLayoutCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaLayoutCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl CudaLayoutCache {
    /// Number of cached tables.
    ///
    /// ```
    /// assert!(ltd_sparse_attn::cuda::CudaLayoutCache::default().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// assert_eq!(ltd_sparse_attn::cuda::CudaLayoutCache::default().len(), 0);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SparseSelfAttention {
    /// The GPU kernel tables of this module's layout for `seq_len` on `dev`: built from the
    /// cached layout and uploaded on first use, then reused (per device and block count).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{FixedConfig, SparseSelfAttention};
    /// let dev = CudaDevice::new(0)?;
    /// let attn = SparseSelfAttention::new(FixedConfig::new(16).into())?;
    /// let a = attn.cuda_layout(&dev, 4096)?;
    /// let b = attn.cuda_layout(&dev, 4096)?;
    /// assert!(std::sync::Arc::ptr_eq(&a, &b));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cuda_layout(
        &self,
        dev: &CudaDevice,
        seq_len: usize,
    ) -> Result<Arc<CudaAttentionLayout>> {
        let layout = self.layout(seq_len)?;
        let key = (dev.ordinal(), layout.num_blocks());
        if let Some(found) = self
            .cuda_tables
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let built = Arc::new(CudaAttentionLayout::new(dev, &layout)?);
        let mut map = self
            .cuda_tables
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(key).or_insert(built).clone())
    }
}
