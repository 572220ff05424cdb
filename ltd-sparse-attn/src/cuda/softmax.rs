//! The block-sparse softmax on the GPU ([`softmax_forward_cuda`], [`softmax_backward_cuda`]):
//! upstream's `Softmax` primitive over a layout's sparse `[Z, nnz, b, b]` scores.

use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
use ltd_core::{CudaDevice, Element};
use ltd_kernels_sys::LtdSparseSoftmaxParams;

use super::CudaAttentionLayout;
use super::align::Align;
use super::config;
use super::kernels::{LoadKernel, SPARSE_SOFTMAX, softmax_name};
use super::launch::Borrows;
use crate::{MaskMode, Result, SparseAttnError};

/// Options of [`softmax_forward_cuda`], as [`crate::SoftmaxOptions`] with device buffers (all in
/// the scores' element type): `rpe` `[Z, H, S, S]`, `key_padding_mask` `[Z, S]`, `attn_mask`
/// `[S, S]`, `S = num_blocks * block`. Each is a [`DeviceBuf`] (`Some((&x).into())`, a view
/// `Some(x.slice(off..).into())`, or a raw pointer), read element by element.
///
/// ```
/// let o = ltd_sparse_attn::cuda::CudaSoftmaxOptions::<f32>::default();
/// assert_eq!(o.scale, 1.0);
/// ```
#[derive(Clone)]
pub struct CudaSoftmaxOptions<'a, T> {
    /// Multiplies the scores first.
    pub scale: f32,
    /// Dense relative-position bias, added after the scale.
    pub rpe: Option<DeviceBuf<'a, T>>,
    /// Key-padding mask.
    pub key_padding_mask: Option<DeviceBuf<'a, T>>,
    /// How the key-padding mask applies.
    pub key_padding_mask_mode: MaskMode,
    /// Attention mask shared by batch and heads.
    pub attn_mask: Option<DeviceBuf<'a, T>>,
    /// How the attention mask applies.
    pub attn_mask_mode: MaskMode,
}

impl<T> Default for CudaSoftmaxOptions<'_, T> {
    fn default() -> Self {
        CudaSoftmaxOptions {
            scale: 1.0,
            rpe: None,
            key_padding_mask: None,
            key_padding_mask_mode: MaskMode::Add,
            attn_mask: None,
            attn_mask_mode: MaskMode::Add,
        }
    }
}

impl CudaAttentionLayout {
    /// Elements of a sparse `[Z, nnz, b, b]` tensor of this layout for batch `z`.
    fn sparse_len(&self, batch: usize) -> Option<usize> {
        batch
            .checked_mul(self.nnz)?
            .checked_mul(self.block * self.block)
    }

    fn check_sparse(&self, what: &str, batch: usize, len: usize) -> Result<()> {
        let want = self.sparse_len(batch);
        if want != Some(len) {
            return Err(SparseAttnError::shape(
                what,
                format!(
                    "[Z={batch}, nnz={}, b={}, b={}]",
                    self.nnz, self.block, self.block
                ),
                len,
            ));
        }
        Ok(())
    }

    /// The softmax launch for `batch` (one warp per row of `Z * H * S` rows), checked.
    fn softmax_launch(&self, batch: usize) -> Result<LaunchConfig> {
        self.sparse_len(batch)
            .and_then(|_| config::softmax(batch * self.heads * self.num_blocks * self.block))
            .ok_or_else(|| {
                SparseAttnError::invalid(
                    "batch",
                    batch,
                    "at least 1, with Z * H * S rows below 2^33",
                )
            })
    }

    /// The kernel parameters of this layout for `batch`: its own CSR tables, buffers and
    /// options still null.
    fn softmax_params<'a>(
        &'a self,
        b: &mut Borrows<'a>,
        batch: usize,
        scale: f32,
    ) -> LtdSparseSoftmaxParams {
        LtdSparseSoftmaxParams {
            x: 0,
            y: 0,
            dy: 0,
            dx: 0,
            row_offsets: b.read(&self.csr_offsets),
            row_columns: b.read(&self.csr_columns),
            rpe: 0,
            kpm: 0,
            attn_mask: 0,
            batch: batch as i64,
            heads: self.heads as i64,
            num_blocks: self.num_blocks as i64,
            block: self.block as i64,
            nnz: self.nnz as i64,
            scale,
            kpm_mul: 0,
            attn_mask_mul: 0,
            pad_: 0,
        }
    }
}

/// The CPU ops' check and error: `expected` is theirs for the forward and the backward.
fn check_scale(scale: f32, expected: &str) -> Result<()> {
    if scale.is_finite() {
        Ok(())
    } else {
        Err(SparseAttnError::invalid("scale", scale, expected))
    }
}

/// Block-sparse softmax forward on the GPU (upstream's `Softmax`): `y` gets the softmax of each
/// query row of the sparse scores `x` `[Z, nnz, b, b]` over the row's active keys, after scale,
/// rpe, key-padding and attention masks (in that order); a row with a NaN or `+inf` score gives
/// NaN (as [`crate::softmax_forward`]), a row with no finite score zeros. f32, f16 and bf16 (f32 arithmetic). `x` and `y` are whole slices, views
/// at offsets or raw pointers ([`DeviceBuf`], [`DeviceBufMut`]), aligned for `T`.
///
/// # Errors
/// [`SparseAttnError::ShapeMismatch`] for any buffer of the wrong length,
/// [`SparseAttnError::InvalidArgument`] for a non-finite scale,
/// [`SparseAttnError::Misaligned`] for a raw pointer not aligned for `T`, driver failures.
///
/// ```no_run
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::FixedConfig;
/// use ltd_sparse_attn::cuda::{CudaAttentionLayout, CudaSoftmaxOptions, softmax_forward_cuda};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(2).make_layout(128)?;
/// let gl = CudaAttentionLayout::new(&dev, &layout)?;
/// let n = 1 * layout.nnz() * 16 * 16;
/// let x = dev.upload(&vec![0.5f32; n])?;
/// let mut y = dev.upload(&vec![0.0f32; n])?;
/// softmax_forward_cuda(&dev, &gl, 1, &x, &CudaSoftmaxOptions::default(), &mut y)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn softmax_forward_cuda<'b, T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    batch: usize,
    x: impl Into<DeviceBuf<'b, T>>,
    options: &CudaSoftmaxOptions<'_, T>,
    y: impl Into<DeviceBufMut<'b, T>>,
) -> Result<()> {
    let (x, mut y) = (x.into(), y.into());
    layout.check_sparse("x", batch, x.len())?;
    layout.check_sparse("y", batch, y.len())?;
    let s = layout.num_blocks * layout.block;
    for (what, buf, want) in [
        ("rpe", &options.rpe, batch * layout.heads * s * s),
        ("key_padding_mask", &options.key_padding_mask, batch * s),
        ("attn_mask", &options.attn_mask, s * s),
    ] {
        if let Some(b) = buf
            && b.len() != want
        {
            return Err(SparseAttnError::shape(what, want, b.len()));
        }
    }
    check_scale(options.scale, "a finite number")?;
    let cfg = layout.softmax_launch(batch)?;
    let func = SPARSE_SOFTMAX.function(dev, softmax_name(false, T::DTYPE))?;
    let stream = dev.stream();
    let mut b = Borrows::new(stream);
    let el = Align::Element;
    let params = LtdSparseSoftmaxParams {
        x: b.input("x", &x, el)?,
        y: b.output("y", &mut y, el)?,
        rpe: b.input_opt("rpe", options.rpe.as_ref(), el)?,
        kpm: b.input_opt("key_padding_mask", options.key_padding_mask.as_ref(), el)?,
        attn_mask: b.input_opt("attn_mask", options.attn_mask.as_ref(), el)?,
        kpm_mul: i32::from(options.key_padding_mask_mode == MaskMode::Mul),
        attn_mask_mul: i32::from(options.attn_mask_mode == MaskMode::Mul),
        ..layout.softmax_params(&mut b, batch, options.scale)
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: x and y hold Z*nnz*b*b elements and the masks exactly the sizes above, each
    // aligned for T (checked);
    // the CSR tables are the layout's own, so every tile index is below nnz and every column
    // below nb; one warp per row of Z*H*S rows (grid checked).
    unsafe { launch.launch(cfg) }.map_err(SparseAttnError::driver(
        "launching the block-sparse softmax",
    ))?;
    Ok(())
}

/// Block-sparse softmax backward on the GPU: `dx = y * (dy - sum_row(y * dy)) * scale` over
/// each row's active keys (no gradient to rpe or the masks, as upstream). Buffers as
/// [`softmax_forward_cuda`]'s.
///
/// # Errors
/// [`SparseAttnError::ShapeMismatch`] for a buffer of the wrong length,
/// [`SparseAttnError::InvalidArgument`] for a non-finite scale (as [`crate::softmax_backward`]),
/// [`SparseAttnError::Misaligned`] for a raw pointer not aligned for `T`, driver failures.
///
/// ```no_run
/// # use ltd_core::CudaDevice;
/// # use ltd_sparse_attn::{FixedConfig, cuda::*};
/// let dev = CudaDevice::new(0)?;
/// let layout = FixedConfig::new(2).make_layout(128)?;
/// let gl = CudaAttentionLayout::new(&dev, &layout)?;
/// let n = layout.nnz() * 16 * 16;
/// let (y, dy) = (dev.upload(&vec![0.1f32; n])?, dev.upload(&vec![1.0f32; n])?);
/// let mut dx = dev.upload(&vec![0.0f32; n])?;
/// softmax_backward_cuda(&dev, &gl, 1, &y, &dy, 1.0, &mut dx)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn softmax_backward_cuda<'b, T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    batch: usize,
    y: impl Into<DeviceBuf<'b, T>>,
    dy: impl Into<DeviceBuf<'b, T>>,
    scale: f32,
    dx: impl Into<DeviceBufMut<'b, T>>,
) -> Result<()> {
    let (y, dy, mut dx) = (y.into(), dy.into(), dx.into());
    layout.check_sparse("y", batch, y.len())?;
    layout.check_sparse("dy", batch, dy.len())?;
    layout.check_sparse("dx", batch, dx.len())?;
    check_scale(scale, "a finite number (as softmax_forward requires)")?;
    let cfg = layout.softmax_launch(batch)?;
    let func = SPARSE_SOFTMAX.function(dev, softmax_name(true, T::DTYPE))?;
    let stream = dev.stream();
    let mut b = Borrows::new(stream);
    let el = Align::Element;
    let params = LtdSparseSoftmaxParams {
        y: b.input("y", &y, el)?,
        dy: b.input("dy", &dy, el)?,
        dx: b.output("dx", &mut dx, el)?,
        ..layout.softmax_params(&mut b, batch, scale)
    };
    let mut launch = stream.launch_builder(&func);
    launch.arg(&params);
    // SAFETY: as in softmax_forward_cuda: y, dy, dx hold Z*nnz*b*b elements (checked) and the
    // CSR tables are the layout's own.
    unsafe { launch.launch(cfg) }.map_err(SparseAttnError::driver(
        "launching the block-sparse softmax backward",
    ))?;
    Ok(())
}
