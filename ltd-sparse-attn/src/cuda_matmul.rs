//! Block-sparse matrix products on the GPU (feature `cuda`): [`BlockSparseMatMul`]'s `sdd`,
//! `dsd` and `dds` with every `trans_a` / `trans_b` combination, forward
//! ([`matmul_forward_cuda`]) and backward ([`matmul_backward_cuda`]), in f32, f16 and bf16,
//! layout blocks 16, 32, 64 and 128. Same shapes and semantics as the CPU
//! [`BlockSparseMatMul::forward`] / [`BlockSparseMatMul::backward`] (upstream-semantics.md §2.6): results equal
//! the dense product of the densified operands, dense output rows or columns with no tile are
//! zero, accumulation is f32 and the output is rounded once.
//!
//! f16 and bf16 run on tensor cores (`mma.sync` m16n8k16), f32 on FMA tiles. Any `dense_dim`
//! works: `sdd`'s reduction (`K = dense_dim`) is zero-filled up to the kernel's chunk size, so,
//! unlike upstream, `K` need not be a multiple of 16 (a `dense_dim` whose rows are not a
//! multiple of 16 bytes takes a slower scalar load path).
//!
//! The layout's lookup tables (CSR, CSC and the row of every tile) are uploaded once into a
//! [`CudaMatMulLayout`] and reused by every call.
//!
//! Operands and results are [`DeviceBuf`] / [`DeviceBufMut`]: whole slices, views at offsets or
//! raw pointers. Inputs may start at any element (the kernels fall back to scalar loads where a
//! row is not 16-byte aligned); an f16 / bf16 output must start 4-byte aligned (an even element
//! offset: results are stored in pairs), else [`SparseAttnError::Misaligned`].

use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
use ltd_core::{CudaDevice, DType, Element};
use ltd_kernels_sys::{LtdSparseMatmulParams, names};

use crate::cuda::align::Align;
use crate::cuda::kernels::{LoadKernel, SPARSE_MATMUL};
use crate::cuda::launch::Borrows;
use crate::cuda::{MATMUL_TILE, matmul_dense, matmul_sdd, matmul_tiles_per_block};
use crate::ops::Operand;
use crate::{BlockSparseMatMul, Layout, MatMulMode, Result, SparseAttnError};

/// A layout's lookup tables in GPU memory for the block-sparse matmuls: the CSR (row offsets
/// and the block column of every tile), the CSC (column offsets, block row and tile of every
/// entry) and the block row of every tile. Build once per layout and device, reuse for every
/// call (forward and backward, any batch and `dense_dim`).
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{FixedConfig, cuda_matmul::CudaMatMulLayout};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(16).make_layout(4096)?;
/// let gl = CudaMatMulLayout::new(&dev, &layout)?;
/// assert_eq!(gl.layout().nnz(), layout.nnz());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CudaMatMulLayout {
    layout: Layout,
    ordinal: usize,
    row_offsets: CudaSlice<i32>,
    row_columns: CudaSlice<i32>,
    col_offsets: CudaSlice<i32>,
    col_rows: CudaSlice<i32>,
    col_tiles: CudaSlice<i32>,
    tile_rows: CudaSlice<i32>,
}

impl std::fmt::Debug for CudaMatMulLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaMatMulLayout")
            .field("ordinal", &self.ordinal)
            .field("heads", &self.layout.num_heads())
            .field("num_blocks", &self.layout.num_blocks())
            .field("block", &self.layout.block())
            .field("nnz", &self.layout.nnz())
            .finish()
    }
}

impl CudaMatMulLayout {
    /// Builds the tables of `layout` and uploads them to `dev` (a host copy of the layout is
    /// kept to validate calls).
    ///
    /// # Errors
    /// Driver failures (no memory, no device).
    ///
    /// ```no_run
    /// use ltd_core::CudaDevice;
    /// use ltd_sparse_attn::{Layout, cuda_matmul::CudaMatMulLayout};
    /// let dev = CudaDevice::new(0)?;
    /// let gl = CudaMatMulLayout::new(&dev, &Layout::from_mask(1, 2, 16, vec![1, 0, 1, 1])?)?;
    /// assert_eq!(gl.layout().nnz(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dev: &CudaDevice, layout: &Layout) -> Result<CudaMatMulLayout> {
        let nb = layout.num_blocks();
        let mut tile_rows = Vec::with_capacity(layout.nnz());
        for (row, w) in layout.row_offsets().windows(2).enumerate() {
            tile_rows.extend(std::iter::repeat_n(row as i32, (w[1] - w[0]) as usize));
        }
        debug_assert_eq!(tile_rows.len(), layout.nnz());
        debug_assert!(
            tile_rows
                .iter()
                .all(|&r| (r as usize) < layout.num_heads() * nb.max(1))
        );
        // A zero-length upload is not a valid allocation: empty tables get one unused entry.
        let up = |v: &[i32]| {
            if v.is_empty() {
                dev.upload(&[0i32])
            } else {
                dev.upload(v)
            }
        };
        Ok(CudaMatMulLayout {
            layout: layout.clone(),
            ordinal: dev.ordinal(),
            row_offsets: up(layout.row_offsets())?,
            row_columns: up(layout.row_columns())?,
            col_offsets: up(layout.column_offsets())?,
            col_rows: up(layout.column_rows())?,
            col_tiles: up(layout.column_tiles())?,
            tile_rows: up(&tile_rows)?,
        })
    }

    /// The host layout these tables were built from.
    ///
    /// ```no_run
    /// # use ltd_core::CudaDevice;
    /// # use ltd_sparse_attn::{DenseConfig, cuda_matmul::CudaMatMulLayout};
    /// let dev = CudaDevice::new(0)?;
    /// let gl = CudaMatMulLayout::new(&dev, &DenseConfig::new(2).make_layout(64)?)?;
    /// assert_eq!(gl.layout().num_heads(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Checks the scalar arguments and that every buffer lives on `dev` (the lengths are checked
/// per product by [`BlockSparseMatMul::check`]; a raw pointer has no ordinal to check).
fn check_common(
    dev: &CudaDevice,
    layout: &CudaMatMulLayout,
    batch: usize,
    dense_dim: usize,
    ordinals: &[(&str, Option<usize>)],
) -> Result<()> {
    if layout.ordinal != dev.ordinal() {
        return Err(SparseAttnError::invalid(
            "layout",
            format!("tables on cuda:{}", layout.ordinal),
            format!(
                "tables uploaded to cuda:{} (the device of the call)",
                dev.ordinal()
            ),
        ));
    }
    for (what, ordinal) in ordinals {
        if let Some(ordinal) = *ordinal
            && ordinal != dev.ordinal()
        {
            return Err(SparseAttnError::invalid(
                what,
                format!("a buffer on cuda:{ordinal}"),
                format!("a buffer on cuda:{}", dev.ordinal()),
            ));
        }
    }
    if batch == 0 || batch > 65_535 {
        return Err(SparseAttnError::invalid("batch", batch, "1 to 65535"));
    }
    if dense_dim == 0 || dense_dim.div_ceil(MATMUL_TILE) > 65_535 {
        return Err(SparseAttnError::invalid(
            "dense_dim",
            dense_dim,
            "1 to 65535 * 64 (the K of sdd, N of dsd, M of dds)",
        ));
    }
    let l = &layout.layout;
    let per = matmul_tiles_per_block(l.block());
    let grid_x = l
        .nnz()
        .max(l.num_heads() * l.num_blocks())
        .checked_mul(per * per);
    if grid_x.is_none_or(|g| g > i32::MAX as usize) {
        return Err(SparseAttnError::invalid(
            "layout",
            format!(
                "{} tiles, {} block rows",
                l.nnz(),
                l.num_heads() * l.num_blocks()
            ),
            "fewer than 2^29 tiles",
        ));
    }
    Ok(())
}

/// Launches one product `out = op(x) op(y)`; lengths are checked here too.
#[allow(clippy::too_many_arguments)]
fn launch<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaMatMulLayout,
    op: BlockSparseMatMul,
    batch: usize,
    dense_dim: usize,
    (xn, x): (&str, &DeviceBuf<'_, T>),
    (yn, y): (&str, &DeviceBuf<'_, T>),
    (on, out): (&str, &mut DeviceBufMut<'_, T>),
) -> Result<()> {
    let l = &layout.layout;
    op.check(
        l,
        batch,
        dense_dim,
        [(xn, x.len()), (yn, y.len()), (on, out.len())],
    )?;
    let (block, nb, heads, nnz) = (l.block(), l.num_blocks(), l.num_heads(), l.nnz());
    let bi = match block {
        16 => 0,
        32 => 1,
        64 => 2,
        128 => 3,
        other => {
            return Err(SparseAttnError::invalid(
                "block",
                other,
                "16, 32, 64 or 128",
            ));
        }
    };
    let di = match T::DTYPE {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    };
    let mi = match op.mode {
        MatMulMode::Sdd => 0,
        MatMulMode::Dsd => 1,
        MatMulMode::Dds => 2,
    };
    if out.is_empty() {
        return Ok(()); // no tile to compute
    }
    let cfg = match op.mode {
        MatMulMode::Sdd => matmul_sdd(nnz, block, batch),
        MatMulMode::Dsd | MatMulMode::Dds => matmul_dense(heads * nb, block, dense_dim, batch),
    };
    let func = SPARSE_MATMUL.function(dev, names::SPARSE_MATMUL[mi][di][bi])?;
    let stream = dev.stream();
    let mut b = Borrows::new(stream);
    let params = LtdSparseMatmulParams {
        a: b.input(xn, x, Align::Element)?,
        b: b.input(yn, y, Align::Element)?,
        c: b.output(on, out, Align::Pairs)?,
        row_offsets: b.read(&layout.row_offsets),
        row_columns: b.read(&layout.row_columns),
        col_offsets: b.read(&layout.col_offsets),
        col_rows: b.read(&layout.col_rows),
        col_tiles: b.read(&layout.col_tiles),
        tile_rows: b.read(&layout.tile_rows),
        batch: batch as i64,
        heads: heads as i64,
        num_blocks: nb as i64,
        nnz: nnz as i64,
        dense_dim: dense_dim as i64,
        trans_a: i32::from(op.trans_a),
        trans_b: i32::from(op.trans_b),
    };
    let mut builder = stream.launch_builder(&func);
    builder.arg(&params);
    // SAFETY: one `LtdSparseMatmulParams` by value, as the kernel takes. Every buffer length
    // was checked against the layout, batch and dense_dim by `op.check` (A, B and C exactly as
    // the header's shapes for this mode and trans flags), inputs aligned for T (the kernel
    // checks 16 bytes itself before vector loads) and C for its paired stores; the tables are this layout's own
    // (uploaded by `CudaMatMulLayout::new` on this device), so every tile index is below nnz and
    // every block index below nb; the grid matches the header (checked against the u32/i32 and
    // 65535 limits in `check_common`); the kernels use static shared memory only. `out` is a
    // distinct `&mut` buffer, so it aliases no input.
    unsafe { builder.launch(cfg) }
        .map_err(SparseAttnError::driver("launching the block-sparse matmul"))?;
    drop(b);
    Ok(())
}

/// `C = op(A) x op(B)` on the GPU (upstream's `MatMul(layout, block, mode, trans_a, trans_b)`
/// forward), shapes as [`BlockSparseMatMul`] documents: with `Z = batch`, `H` = the layout's
/// heads, `S = num_blocks * block` and `F = dense_dim`,
/// `sdd`: op(A) `[Z,H,S,F]`, op(B) `[Z,H,F,S]`, C sparse `[Z,nnz,b,b]`;
/// `dsd`: op(A) sparse, op(B) `[Z,H,S,F]`, C `[Z,H,S,F]`;
/// `dds`: op(A) `[Z,H,F,S]`, op(B) sparse, C `[Z,H,F,S]`
/// (a dense operand with its trans flag set is stored transposed). Every element of `c` is
/// written. The work is queued on `dev`'s stream. `a`, `b` and `c` are whole slices, views at
/// offsets or raw pointers (module docs: alignment).
///
/// # Errors
/// [`SparseAttnError::ShapeMismatch`] for a buffer of the wrong length (naming it and the shape
/// it should have), [`SparseAttnError::InvalidArgument`] for `batch` or `dense_dim` of 0 or past
/// the grid limits, or a buffer or table on another device; [`SparseAttnError::Misaligned`] for
/// an f16/bf16 `c` at an odd element offset; driver failures.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
/// use ltd_sparse_attn::cuda_matmul::{CudaMatMulLayout, matmul_forward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let layout = Layout::from_mask(1, 1, 16, vec![1])?;
/// let gl = CudaMatMulLayout::new(&dev, &layout)?;
/// let a = dev.upload(&vec![1.0f32; 16 * 4])?; // [1,1,16,4]
/// let b = dev.upload(&vec![0.5f32; 4 * 16])?; // [1,1,4,16]
/// let mut c = dev.upload(&vec![0.0f32; 16 * 16])?; // [1,1,16,16]
/// matmul_forward_cuda(&dev, &gl, BlockSparseMatMul::sdd(false, false), 1, 4, &a, &b, &mut c)?;
/// assert!(dev.download(&c)?.iter().all(|&x| x == 2.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward_cuda<'b, T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaMatMulLayout,
    op: BlockSparseMatMul,
    batch: usize,
    dense_dim: usize,
    a: impl Into<DeviceBuf<'b, T>>,
    b: impl Into<DeviceBuf<'b, T>>,
    c: impl Into<DeviceBufMut<'b, T>>,
) -> Result<()> {
    let (a, b, mut c) = (a.into(), b.into(), c.into());
    check_common(
        dev,
        layout,
        batch,
        dense_dim,
        &[("a", a.ordinal()), ("b", b.ordinal()), ("c", c.ordinal())],
    )?;
    launch(
        dev,
        layout,
        op,
        batch,
        dense_dim,
        ("a", &a),
        ("b", &b),
        ("c", &mut c),
    )
}

/// Gradients of [`matmul_forward_cuda`] on the GPU: given `dc` (shaped like `C`), writes `da`
/// (shaped like `A`) and `db` (shaped like `B`); sparse gradients are restricted to the layout.
/// As upstream and the CPU [`BlockSparseMatMul::backward`]: `dA` is one product of mode
/// `sdd→dsd, dsd→sdd, dds→dds` and `dB` one of `sdd→dds, dsd→dsd, dds→sdd`, with the trans
/// flags adjusted (a transposed operand's gradient may use the other dense mode). Two launches
/// on `dev`'s stream; every element of `da` and `db` is written.
///
/// # Errors
/// As [`matmul_forward_cuda`], for `a`, `b`, `dc`, `da` (must match `a`) and `db` (must match
/// `b`); buffers of the same kinds (an f16/bf16 `da` or `db` at an even element offset).
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{BlockSparseMatMul, Layout};
/// use ltd_sparse_attn::cuda_matmul::{CudaMatMulLayout, matmul_backward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let gl = CudaMatMulLayout::new(&dev, &Layout::from_mask(1, 1, 16, vec![1])?)?;
/// let (a, b) = (dev.upload(&vec![1.0f32; 32])?, dev.upload(&vec![3.0f32; 32])?);
/// let dc = dev.upload(&vec![1.0f32; 256])?;
/// let (mut da, mut db) = (dev.upload(&vec![0.0f32; 32])?, dev.upload(&vec![0.0f32; 32])?);
/// matmul_backward_cuda(&dev, &gl, BlockSparseMatMul::sdd(false, false), 1, 2, &a, &b, &dc, &mut da, &mut db)?;
/// assert!(dev.download(&da)?.iter().all(|&x| x == 48.0));
/// assert!(dev.download(&db)?.iter().all(|&x| x == 16.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_cuda<'b, T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaMatMulLayout,
    op: BlockSparseMatMul,
    batch: usize,
    dense_dim: usize,
    a: impl Into<DeviceBuf<'b, T>>,
    b: impl Into<DeviceBuf<'b, T>>,
    dc: impl Into<DeviceBuf<'b, T>>,
    da: impl Into<DeviceBufMut<'b, T>>,
    db: impl Into<DeviceBufMut<'b, T>>,
) -> Result<()> {
    let (a, b, dc) = (a.into(), b.into(), dc.into());
    let (mut da, mut db) = (da.into(), db.into());
    check_common(
        dev,
        layout,
        batch,
        dense_dim,
        &[
            ("a", a.ordinal()),
            ("b", b.ordinal()),
            ("dc", dc.ordinal()),
            ("da", da.ordinal()),
            ("db", db.ordinal()),
        ],
    )?;
    op.check_backward(
        &layout.layout,
        batch,
        dense_dim,
        [a.len(), b.len(), dc.len(), da.len(), db.len()],
    )?;
    let pick = |o: Operand| match o {
        Operand::A => ("a", &a),
        Operand::B => ("b", &b),
        Operand::Dc => ("dc", &dc),
    };
    let [(op_a, xa, ya), (op_b, xb, yb)] = op.backward_products();
    launch(
        dev,
        layout,
        op_a,
        batch,
        dense_dim,
        pick(xa),
        pick(ya),
        ("da", &mut da),
    )?;
    launch(
        dev,
        layout,
        op_b,
        batch,
        dense_dim,
        pick(xb),
        pick(yb),
        ("db", &mut db),
    )
}
