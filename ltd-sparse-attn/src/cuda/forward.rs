//! The fused attention forward: [`attention_forward_cuda`], its kernel variant choice and its
//! typed launch.

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut, kernel_arg, launch_programmatic};
use ltd_core::{CudaDevice, Element};
use ltd_kernels_sys::{LtdSparseAttnFwdParams, LtdSparseAttnTmaMaps};

use super::align::{Align, bias_tiles_aligned};
use super::check::AttentionCall;
use super::config::{self, ForwardSmem};
use super::kernels::{
    AttnKernel, FWD, FWD_BIAS_SM90, FWD_BIAS_TILES, FWD_COMBINE, FWD_GATHER_SM90, FWD_SM90,
    FWD_SM90_PAIR, LoadKernel,
};
use super::launch::{Borrows, TmaBuffers, partial_buffer, tma_maps};
use super::upload::{GpuForwardPairs, GpuGathered, GpuPlan};
use super::{CudaAttentionLayout, CudaAttentionOptions};
use crate::{AttentionShape, Result, SparseAttnError};

/// Fused block-sparse attention forward on the GPU: writes `out` `[B, H, L, D]` and `lse`
/// `[B, H, L]` (natural log). Inputs `[B, H, L, D]` contiguous, fp16 or bf16, `D` 64 or 128.
/// Non-finite values follow [`crate::attention_forward`]: a row with no visible key gives zero
/// output and lse `-inf`; a row that sees a NaN or `+inf` score (NaN / Inf in q or k, `+inf` in
/// the key-padding mask or the bias) gives a NaN output row and NaN lse, and then NaN gradients
/// in the backward.
///
/// Every buffer is a [`DeviceBuf`] / [`DeviceBufMut`]: pass `&x` / `&mut x` for a whole
/// `CudaSlice`, `x.slice(off..off + n)` for a view at an offset (no copy), or a raw device
/// pointer ([`DeviceBuf::from_raw`], `unsafe`). q, k, v and out must start 16-byte aligned
/// (both kernel families move rows in 16-byte pieces), so a view of them starts at a multiple
/// of 8 elements; lse and the key-padding mask at 4 bytes; a bias anywhere (one that is not
/// 16-byte aligned is read element by element).
///
/// # Errors
/// [`SparseAttnError::HeadMismatch`], [`SparseAttnError::ShapeMismatch`] (buffer lengths, a
/// layout built for another length), [`SparseAttnError::InvalidArgument`] for f32 inputs or
/// another head dim (use [`crate::attention_forward`] on the CPU),
/// [`SparseAttnError::Misaligned`] for a buffer that starts where the kernels cannot read it,
/// driver failures.
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
/// // q, k, v packed in one [3, B, H, L, D] buffer: three views, no copy.
/// let n = shape.qkv_len();
/// let qkv = dev.upload(&vec![bf16::from_f32(0.5); 3 * n])?;
/// let views = (qkv.slice(..n), qkv.slice(n..2 * n), qkv.slice(2 * n..));
/// attention_forward_cuda(&dev, &layout, shape, views, &CudaAttentionOptions::default(), &mut out, &mut lse)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attention_forward_cuda<'b, T: Element + DeviceRepr>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    (q, k, v): (
        impl Into<DeviceBuf<'b, T>>,
        impl Into<DeviceBuf<'b, T>>,
        impl Into<DeviceBuf<'b, T>>,
    ),
    options: &CudaAttentionOptions<'_, T>,
    out: impl Into<DeviceBufMut<'b, T>>,
    lse: impl Into<DeviceBufMut<'b, f32>>,
) -> Result<()> {
    let (q, k, v) = (q.into(), k.into(), v.into());
    let (mut out, mut lse) = (out.into(), lse.into());
    let tensors = [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ];
    let call = AttentionCall::check::<T>(
        layout,
        shape,
        &tensors,
        lse.len(),
        options,
        dev.compute_capability(),
    )?;
    let stream = dev.stream();
    // The caller's buffers stay borrowed (their stream guards held) until every launch is queued.
    let mut user = Borrows::new(stream);
    let io = ForwardIo {
        q: user.input("q", &q, Align::Rows)?,
        k: user.input("k", &k, Align::Rows)?,
        v: user.input("v", &v, Align::Rows)?,
        out: user.output("out", &mut out, Align::Rows)?,
        lse: user.output("lse", &mut lse, Align::Element)?,
        kpm: user.input_opt(
            "key_padding_mask",
            options.key_padding_mask.as_ref(),
            Align::Element,
        )?,
        bias: options
            .bias
            .as_ref()
            .map(|b| user.input("bias", b, Align::Element))
            .transpose()?,
    };
    // The gathered table where the choice runs the gathered kernel (docs/kernels.md, "Which
    // variant runs when").
    let cc = dev.compute_capability();
    let with_bias = io.bias.is_some();
    let gathered = layout
        .gathered
        .as_ref()
        .filter(|_| options.kernel.forward_gathered(cc, layout, with_bias));
    // The pair forward's tables where the choice runs it (`forward_pairs` never overlaps
    // `forward_gathered`).
    let d = shape.head_dim;
    let pairs = layout
        .fwd_pairs
        .as_ref()
        .filter(|_| options.kernel.forward_pairs(cc, layout, d, with_bias));
    let tables = ForwardTables::new(layout, gathered, pairs);
    let kernel = ForwardKernel::choose(dev, &call, io.bias, tables.variant)?;
    let plan = tables.plan;
    // Partial outputs of the pieces of split rows (f32 [B, slots, rows, D] and [B, slots,
    // rows]), only for layouts that have split rows.
    let rows = shape.batch * plan.num_slots * config::FWD_ITEM_ROWS;
    let mut part_o = partial_buffer(stream, plan.num_slots, rows * shape.head_dim)?;
    let mut part_lse = partial_buffer(stream, plan.num_slots, rows)?;
    let buffers = ForwardBuffers {
        io,
        part_o: part_o.as_mut(),
        part_lse: part_lse.as_mut(),
    };
    ForwardLaunch::new(dev, tables, &call, kernel, buffers, options)?.enqueue(stream)?;
    drop(user);
    Ok(())
}

/// The checked device addresses of a forward call's own buffers (0: none).
struct ForwardIo {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    lse: u64,
    kpm: u64,
    bias: Option<u64>,
}

/// The forward kernel chosen for a call.
struct ForwardKernel {
    func: CudaFunction,
    smem: usize,
    /// The kernel reads the bias in 64 x 64 tiles (by TMA on Hopper).
    bias_tiles: bool,
    /// The variant's shared-memory layout, which also sets its threads per CTA and says whether
    /// it is a Hopper kernel (every variant but `MmaSync`).
    variant: ForwardSmem,
}

impl ForwardKernel {
    /// A Hopper kernel: it takes the tensor maps, and the combine behind it is a programmatic
    /// launch.
    fn hopper(&self) -> bool {
        self.variant != ForwardSmem::MmaSync
    }
}

/// The table a forward walks and its plan: the layout's plain one, its gathered one with the
/// slots of the gathered chunks, or its row pair tables; and the kernel variant that walks it
/// (`Sm90Gather`, `Sm90Pair`, or `Sm90` for the plain table, which `ForwardKernel::choose`
/// refines by device and bias).
struct ForwardTables<'a> {
    cols: &'a CudaSlice<i32>,
    masks: &'a CudaSlice<i32>,
    slots: Option<&'a CudaSlice<i32>>,
    plan: &'a GpuPlan,
    variant: ForwardSmem,
}

impl<'a> ForwardTables<'a> {
    /// At most one of `gathered` and `pairs` is given.
    fn new(
        layout: &'a CudaAttentionLayout,
        gathered: Option<&'a GpuGathered>,
        pairs: Option<&'a GpuForwardPairs>,
    ) -> Self {
        match (gathered, pairs) {
            (Some(g), _) => ForwardTables {
                cols: &g.entries,
                masks: &g.masks,
                slots: Some(&g.slots),
                plan: &g.plan,
                variant: ForwardSmem::Sm90Gather,
            },
            (None, Some(p)) => ForwardTables {
                cols: &p.cols,
                masks: &p.masks,
                slots: None,
                plan: &p.plan,
                variant: ForwardSmem::Sm90Pair,
            },
            (None, None) => ForwardTables {
                cols: &layout.cols,
                masks: &layout.masks,
                slots: None,
                plan: &layout.fwd_plan,
                variant: ForwardSmem::Sm90,
            },
        }
    }
}

impl ForwardKernel {
    /// The Hopper kernels on Hopper; elsewhere `mma.sync`, with a bias the bias-tile kernel where
    /// its two extra tiles keep as many CTAs per SM as the per-element kernel (not on an A100,
    /// whose smaller shared memory would halve them). The device caches both occupancies.
    /// `bias` is the bias's address: tiles only for a 16-byte aligned one. `tables`: the
    /// variant of the tables the caller has chosen; the gathered and the pair kernel (Hopper,
    /// no bias) run as chosen.
    fn choose(
        dev: &CudaDevice,
        call: &AttentionCall,
        bias: Option<u64>,
        tables: ForwardSmem,
    ) -> Result<ForwardKernel> {
        let (dtype, d) = (call.dtype(), call.shape().head_dim);
        let bias_tiles =
            bias.is_some_and(bias_tiles_aligned) && config::bias_tiles_fit(call.shape().seq_len);
        if matches!(tables, ForwardSmem::Sm90Gather | ForwardSmem::Sm90Pair) {
            let family = if tables == ForwardSmem::Sm90Pair {
                &FWD_SM90_PAIR
            } else {
                &FWD_GATHER_SM90
            };
            let smem = config::forward_smem(tables, d, false);
            return Ok(ForwardKernel {
                func: family.load(dev, dtype, d, smem)?,
                smem,
                bias_tiles: false,
                variant: tables,
            });
        }
        if call.kernel().is_hopper() {
            let family = if bias_tiles {
                &FWD_BIAS_SM90
            } else {
                &FWD_SM90
            };
            let smem = config::forward_smem(ForwardSmem::Sm90, d, bias_tiles);
            let func = family.load(dev, dtype, d, smem)?;
            return Ok(ForwardKernel {
                func,
                smem,
                bias_tiles,
                variant: ForwardSmem::Sm90,
            });
        }
        let smem = config::forward_smem(ForwardSmem::MmaSync, d, false);
        let plain = FWD.load(dev, dtype, d, smem)?;
        if bias_tiles {
            let tiled_smem = config::forward_smem(ForwardSmem::MmaSync, d, true);
            let ctas = |family: &AttnKernel, bytes| {
                let name = family.entry(dtype, d)?;
                family.module.blocks_per_multiprocessor(
                    dev,
                    name,
                    ForwardSmem::MmaSync.threads(),
                    bytes,
                )
            };
            if ctas(&FWD_BIAS_TILES, tiled_smem)? >= ctas(&FWD, smem)? {
                return Ok(ForwardKernel {
                    func: FWD_BIAS_TILES.load(dev, dtype, d, tiled_smem)?,
                    smem: tiled_smem,
                    bias_tiles: true,
                    variant: ForwardSmem::MmaSync,
                });
            }
        }
        Ok(ForwardKernel {
            func: plain,
            smem,
            bias_tiles: false,
            variant: ForwardSmem::MmaSync,
        })
    }
}

/// The buffers of a forward call: the caller's (addresses) and its partial results.
struct ForwardBuffers<'a> {
    io: ForwardIo,
    part_o: Option<&'a mut CudaSlice<f32>>,
    part_lse: Option<&'a mut CudaSlice<f32>>,
}

/// A forward ready to queue, built only from a checked call: its main kernel and, for layouts
/// with split rows, the combine.
struct ForwardLaunch<'a> {
    kernel: ForwardKernel,
    main: LaunchConfig,
    params: LtdSparseAttnFwdParams,
    maps: Option<LtdSparseAttnTmaMaps>,
    combine: Option<(CudaFunction, LaunchConfig)>,
    _borrows: Borrows<'a>,
}

impl<'a> ForwardLaunch<'a> {
    fn new<T>(
        dev: &'a CudaDevice,
        tables: ForwardTables<'a>,
        call: &AttentionCall,
        kernel: ForwardKernel,
        bufs: ForwardBuffers<'a>,
        options: &CudaAttentionOptions<'_, T>,
    ) -> Result<ForwardLaunch<'a>> {
        let shape = call.shape();
        let plan = tables.plan;
        let items = plan.grid(shape.batch)?;
        let mut b = Borrows::new(dev.stream());
        let ForwardIo {
            q,
            k,
            v,
            out: o,
            lse,
            kpm,
            bias,
        } = bufs.io;
        let bias = bias.unwrap_or(0);
        let params = LtdSparseAttnFwdParams {
            q,
            k,
            v,
            o,
            lse,
            tile_cols: b.read(tables.cols),
            tile_masks: b.read(tables.masks),
            kpm,
            bias,
            work_items: b.read(&plan.items),
            split_rows: b.read(&plan.split),
            part_o: b.write_opt(bufs.part_o),
            part_lse: b.write_opt(bufs.part_lse),
            batch: shape.batch as i64,
            heads: shape.heads as i64,
            seq: shape.seq_len as i64,
            num_slots: plan.num_slots as i64,
            scale_log2: call.scale() * std::f32::consts::LOG2_E,
            causal: i32::from(options.causal),
            item_rows: config::FWD_ITEM_ROWS as i32,
            gather_slots: tables.slots.map_or(0, |s| b.read(s)),
        };
        let maps = if kernel.hopper() {
            let tma = TmaBuffers {
                qkv: [q, k, v],
                out: Some(o),
                backward: None,
                bias: kernel.bias_tiles.then_some(bias),
                gather: kernel.variant == ForwardSmem::Sm90Gather,
            };
            Some(tma_maps(&tma, shape)?)
        } else {
            None
        };
        let combine = if plan.num_split > 0 {
            let func = FWD_COMBINE.load_plain(dev, call.dtype(), shape.head_dim)?;
            Some((func, config::forward_combine(plan.num_split * shape.batch)))
        } else {
            None
        };
        Ok(ForwardLaunch {
            main: config::forward_main(kernel.variant, items, kernel.smem),
            kernel,
            params,
            maps,
            combine,
            _borrows: b,
        })
    }

    /// Queues the main kernel, then the combine (behind the Hopper kernels a programmatic
    /// launch: it waits with `griddepcontrol.wait` before reading the partial results).
    fn enqueue(self, stream: &CudaStream) -> Result<()> {
        let mut launch = stream.launch_builder(&self.kernel.func);
        launch.arg(&self.params);
        if let Some(maps) = &self.maps {
            launch.arg(maps);
        }
        // SAFETY: `new` built the params from a checked call (every buffer of its shape's
        // length, lse and masks included, each starting at the alignment its loads need:
        // `align::Align`, bias tiles only from a 16-byte aligned bias; raw pointers hold the
        // promise of `DeviceBuf::from_raw`) over the layout's own tables and forward plan,
        // plain, gathered or in row pairs (items with head < H, tile and chunk indices below the
        // padded length's tiles, pair indices below half of them rounded up, gathered codes
        // below the uploaded slot table's chunks and its slots below the padded length's 16-key
        // slices, slots below num_slots, partial buffers sized for them; the gathered and pair
        // kernels only where there is no bias); the kernel reads and writes rows < L only (TMA
        // boxes over exactly these buffers zero-fill the rest and skip rows >= L on stores), its
        // grid is the plan's items times B (checked), its block and shared memory are
        // `config::forward_main` / `config::forward_smem` of this variant.
        unsafe { launch.launch(self.main) }.map_err(SparseAttnError::driver(
            "launching the sparse attention kernel",
        ))?;
        let Some((combine, cfg)) = &self.combine else {
            return Ok(());
        };
        // SAFETY: the same params; the combine reads the partial buffers the main kernel wrote
        // (same stream, so after it) at the split rows' slots and writes out / lse rows < L.
        if self.kernel.hopper() {
            unsafe { launch_programmatic(stream, combine, *cfg, &mut [kernel_arg(&self.params)]) }
        } else {
            let mut launch = stream.launch_builder(combine);
            launch.arg(&self.params);
            unsafe { launch.launch(*cfg) }.map(drop)
        }
        .map_err(SparseAttnError::driver(
            "launching the attention combine kernel",
        ))
    }
}
