//! Fused block-sparse attention on the GPU (feature `cuda`): the forward pass, fp16/bf16, head
//! dims 64 and 128, layout blocks 16/32/64/128, token-level causal option, additive or boolean
//! key-padding mask, any sequence length. Same semantics as [`crate::attention_forward`]
//! (including zeros and `lse = -inf` for a row with no visible key).
//!
//! Not on the GPU yet (use the CPU path): the backward pass, an additive bias, f32 inputs and
//! other head dims. Each returns [`SparseAttnError::InvalidArgument`] naming what to do.
//!
//! The kernel works on a 64 x 64 coarsening of the layout (one MMA-sized tile of query rows
//! and keys) with a 16-bit mask of the 16 x 16 sub-blocks in the layout, so small layout blocks
//! still fill the tensor cores; [`CudaAttentionLayout`] builds and uploads those tables once
//! per layout.

use std::collections::BTreeMap;

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg};
use ltd_core::{CoreError, CudaDevice, DType, Element};
use ltd_kernels_sys::{LtdSparseAttnFwdParams, fatbin};

use crate::{AttentionShape, Layout, Result, SparseAttnError};

/// Query rows per kernel tile and keys per chunk.
pub const KERNEL_TILE: usize = 64;
const SUB: usize = 16;

fn cuda_err(during: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> SparseAttnError {
    move |source| SparseAttnError::Core(CoreError::Cuda { during, source })
}

fn invalid(what: &str, value: impl std::fmt::Display, expected: &str) -> SparseAttnError {
    SparseAttnError::InvalidArgument { what: what.into(), value: value.to_string(), expected: expected.into() }
}

/// The kernel's view of a layout: for every (head, 64-row query tile) the active 64-key chunks
/// with a 16-bit mask of active 16 x 16 sub-blocks (bit `4*i + j`: query rows `16i..`, keys
/// `16j..` within the tile). Host-side tables, before upload.
///
/// ```
/// use ltd_sparse_attn::{FixedConfig, cuda::CoarseTables};
/// let layout = FixedConfig::new(1).make_layout(128).unwrap(); // block 16, 8 blocks
/// let t = CoarseTables::new(&layout);
/// assert_eq!(t.num_qtiles, 2);
/// assert_eq!(t.row_ptr.len(), 1 * 2 + 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoarseTables {
    /// Heads.
    pub heads: usize,
    /// Query tiles per head (`ceil(padded_len / 64)`).
    pub num_qtiles: usize,
    /// `[heads * num_qtiles + 1]` offsets into `cols` / `masks`.
    pub row_ptr: Vec<i32>,
    /// Active key chunk of each entry.
    pub cols: Vec<i32>,
    /// Sub-block mask of each entry.
    pub masks: Vec<i32>,
}

impl CoarseTables {
    /// Builds the tables from a layout's CSR.
    ///
    /// ```
    /// use ltd_sparse_attn::{DenseConfig, cuda::CoarseTables};
    /// let t = CoarseTables::new(&DenseConfig::new(2).make_layout(64).unwrap());
    /// assert_eq!(t.masks, vec![0xffff, 0xffff]); // one full tile per head
    /// ```
    pub fn new(layout: &Layout) -> CoarseTables {
        let heads = layout.num_heads();
        let block = layout.block();
        let padded = layout.padded_len();
        let num_qtiles = padded.div_ceil(KERNEL_TILE);
        let per_block = block / SUB; // sub-blocks per layout block side (1, 2, 4 or 8)
        let mut row_ptr = Vec::with_capacity(heads * num_qtiles + 1);
        let mut cols = Vec::new();
        let mut masks = Vec::new();
        row_ptr.push(0);
        for h in 0..heads {
            // chunk -> mask, per query tile of this head.
            let mut tiles: Vec<BTreeMap<usize, u32>> = vec![BTreeMap::new(); num_qtiles];
            for br in 0..layout.num_blocks() {
                let (start, end) = layout.row_range(h, br);
                for &bc in &layout.row_columns()[start..end] {
                    let bc = bc as usize;
                    for si in 0..per_block {
                        let sr = br * per_block + si; // global 16-row sub-block
                        for sj in 0..per_block {
                            let sc = bc * per_block + sj;
                            let (qt, i) = (sr / 4, sr % 4);
                            let (kc, j) = (sc / 4, sc % 4);
                            *tiles[qt].entry(kc).or_insert(0) |= 1 << (4 * i + j);
                        }
                    }
                }
            }
            for tile in tiles {
                for (kc, m) in tile {
                    cols.push(kc as i32);
                    masks.push(m as i32);
                }
                row_ptr.push(cols.len() as i32);
            }
        }
        CoarseTables { heads, num_qtiles, row_ptr, cols, masks }
    }
}

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
    heads: usize,
    num_blocks: usize,
    block: usize,
    num_qtiles: usize,
    active_tiles: usize,
    row_ptr: CudaSlice<i32>,
    cols: CudaSlice<i32>,
    masks: CudaSlice<i32>,
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
        // An empty table still needs a valid device pointer.
        let cols = if t.cols.is_empty() { vec![0] } else { t.cols.clone() };
        let masks = if t.masks.is_empty() { vec![0] } else { t.masks.clone() };
        Ok(CudaAttentionLayout {
            heads: t.heads,
            num_blocks: layout.num_blocks(),
            block: layout.block(),
            num_qtiles: t.num_qtiles,
            active_tiles: t.cols.len(),
            row_ptr: dev.upload(&t.row_ptr)?,
            cols: dev.upload(&cols)?,
            masks: dev.upload(&masks)?,
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
}

/// Options of a GPU attention call.
///
/// ```
/// let o = ltd_sparse_attn::cuda::CudaAttentionOptions { causal: true, ..Default::default() };
/// assert!(o.scale.is_none() && o.key_padding_mask.is_none());
/// ```
#[derive(Clone, Copy, Default)]
pub struct CudaAttentionOptions<'a> {
    /// Softmax scale; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Hide keys after the query (token-level causality inside diagonal blocks).
    pub causal: bool,
    /// Additive key-padding mask `[B, L]` in f32 (`0` keeps a key, `-inf` drops it; convert a
    /// boolean mask with `if keep { 0.0 } else { f32::NEG_INFINITY }`).
    pub key_padding_mask: Option<&'a CudaSlice<f32>>,
}

/// Fused block-sparse attention forward on the GPU: writes `out` `[B, H, L, D]` and `lse`
/// `[B, H, L]` (natural log). Inputs `[B, H, L, D]` contiguous, fp16 or bf16, `D` 64 or 128.
///
/// # Errors
/// [`SparseAttnError::HeadMismatch`], [`SparseAttnError::ShapeMismatch`] (buffer lengths, a
/// layout built for another length), [`SparseAttnError::InvalidArgument`] for f32 inputs or
/// another head dim (use [`crate::attention_forward`] on the CPU), driver failures.
///
/// ```no_run
/// use half::bf16;
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{AttentionShape, FixedConfig};
/// use ltd_sparse_attn::cuda::{CudaAttentionLayout, CudaAttentionOptions, attention_forward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let shape = AttentionShape { batch: 1, heads: 4, seq_len: 1000, head_dim: 64 };
/// let layout = CudaAttentionLayout::new(&dev, &FixedConfig::new(4).make_layout(1000)?)?;
/// let x = dev.upload(&vec![bf16::from_f32(0.5); shape.qkv_len()])?;
/// let mut out = dev.upload(&vec![bf16::ZERO; shape.qkv_len()])?;
/// let mut lse = dev.upload(&vec![0.0f32; shape.lse_len()])?;
/// attention_forward_cuda(&dev, &layout, shape, (&x, &x, &x), &CudaAttentionOptions::default(), &mut out, &mut lse)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attention_forward_cuda<T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    (q, k, v): (&CudaSlice<T>, &CudaSlice<T>, &CudaSlice<T>),
    options: &CudaAttentionOptions<'_>,
    out: &mut CudaSlice<T>,
    lse: &mut CudaSlice<f32>,
) -> Result<()> {
    let AttentionShape { batch, heads, seq_len, head_dim } = shape;
    let type_name = match T::DTYPE {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => {
            return Err(invalid(
                "dtype",
                "f32",
                "f16 or bf16 on the GPU (fused f32 attention runs on the CPU: attention_forward)",
            ));
        }
    };
    if head_dim != 64 && head_dim != 128 {
        return Err(invalid("head_dim", head_dim, "64 or 128 for the fused GPU kernel (other sizes: the CPU path)"));
    }
    if heads != layout.heads {
        return Err(SparseAttnError::HeadMismatch { expected: layout.heads, actual: heads });
    }
    if batch == 0 || seq_len == 0 {
        return Err(invalid("batch and seq_len", format!("{batch} and {seq_len}"), "both at least 1"));
    }
    if seq_len.div_ceil(layout.block) != layout.num_blocks {
        return Err(SparseAttnError::shape(
            "layout",
            format!("{} blocks of {} for L = {seq_len}", seq_len.div_ceil(layout.block), layout.block),
            format!("{} blocks (built for another length)", layout.num_blocks),
        ));
    }
    if batch > 65_535 || heads > 65_535 || seq_len > i32::MAX as usize {
        return Err(invalid("shape", format!("{shape:?}"), "batch and heads at most 65535, L below 2^31"));
    }
    let n = shape.qkv_len();
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("out", out.len())] {
        if len != n {
            return Err(SparseAttnError::shape(what, format!("[B={batch}, H={heads}, L={seq_len}, D={head_dim}] = {n}"), len));
        }
    }
    if lse.len() != shape.lse_len() {
        return Err(SparseAttnError::shape("lse", format!("[B, H, L] = {}", shape.lse_len()), lse.len()));
    }
    if let Some(m) = options.key_padding_mask
        && m.len() != batch * seq_len
    {
        return Err(SparseAttnError::shape("key_padding_mask", format!("[B={batch}, L={seq_len}]"), m.len()));
    }
    let scale = options.scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    if !scale.is_finite() {
        return Err(invalid("scale", scale, "a finite number"));
    }
    let name = format!("ltd_sparse_attn_fwd_{type_name}_d{head_dim}");
    let name: &'static str = match name.as_str() {
        "ltd_sparse_attn_fwd_bf16_d64" => "ltd_sparse_attn_fwd_bf16_d64",
        "ltd_sparse_attn_fwd_bf16_d128" => "ltd_sparse_attn_fwd_bf16_d128",
        "ltd_sparse_attn_fwd_f16_d64" => "ltd_sparse_attn_fwd_f16_d64",
        _ => "ltd_sparse_attn_fwd_f16_d128",
    };
    let func = dev.load_function("sparse_attn", fatbin::SPARSE_ATTN, name)?;
    let smem = 5 * KERNEL_TILE * head_dim * 2;
    func.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
        .map_err(cuda_err("raising the attention kernel's shared-memory limit"))?;
    let stream = dev.stream();
    let (q_ptr, g1) = q.device_ptr(stream);
    let (k_ptr, g2) = k.device_ptr(stream);
    let (v_ptr, g3) = v.device_ptr(stream);
    let (o_ptr, g4) = out.device_ptr_mut(stream);
    let (l_ptr, g5) = lse.device_ptr_mut(stream);
    let (rp_ptr, g6) = layout.row_ptr.device_ptr(stream);
    let (c_ptr, g7) = layout.cols.device_ptr(stream);
    let (m_ptr, g8) = layout.masks.device_ptr(stream);
    let kpm = options.key_padding_mask.map(|m| m.device_ptr(stream));
    let params = LtdSparseAttnFwdParams {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        o: o_ptr,
        lse: l_ptr,
        tile_row_ptr: rp_ptr,
        tile_cols: c_ptr,
        tile_masks: m_ptr,
        kpm: kpm.as_ref().map_or(0, |(p, _)| *p),
        batch: batch as i64,
        heads: heads as i64,
        seq: seq_len as i64,
        num_qtiles: layout.num_qtiles as i64,
        scale_log2: scale * std::f32::consts::LOG2_E,
        causal: i32::from(options.causal),
    };
    let cfg = LaunchConfig {
        grid_dim: (layout.num_qtiles as u32, heads as u32, batch as u32),
        block_dim: (128, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: one `LtdSparseAttnFwdParams` by value, as the kernel declares. q/k/v/out hold
    // exactly B*H*L*D elements and lse B*H*L (checked above); the kernel reads rows < L only
    // (cp.async zero-fills the rest) and writes rows < L only; the tables were built for this
    // layout, whose padded length covers L (checked: ceil(L / block) blocks), so every chunk
    // index is below ceil(L_padded / 64); the key-padding mask has B*L elements; the dynamic
    // shared memory is exactly the 5 tiles of 64 x D the kernel uses.
    unsafe { launch.launch(cfg) }.map_err(cuda_err("launching the sparse attention kernel"))?;
    drop((g1, g2, g3, g4, g5, g6, g7, g8, kpm));
    Ok(())
}
