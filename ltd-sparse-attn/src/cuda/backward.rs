//! The fused attention backward: [`attention_backward_cuda`], its kernel variant choice and its
//! typed launch (pre-pass, main kernel, dq conversion, combine). See `docs/kernels.md`,
//! "Backward".

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
use ltd_core::{CudaDevice, Element};
use ltd_kernels_sys::{LtdSparseAttnBwdParams, LtdSparseAttnTmaMaps};

use super::align::{Align, bias_tiles_aligned};
use super::check::{AttentionCall, check_dbias};
use super::config::{self, BackwardSmem};
use super::kernels::{
    AttnKernel, BWD, BWD_BIAS, BWD_BIAS_SM90, BWD_BIAS_TILES, BWD_BIAS_TMA_SM90, BWD_COMBINE,
    BWD_COMBINE_GATHER, BWD_DQ, BWD_GATHER_SM90, BWD_PRE, BWD_SM90, BWD_SM90_PAIR, BWD_SM90_WS,
    BWD_SM90_WS_PAIR,
};
use super::launch::{Borrows, TmaBuffers, partial_buffer, tma_maps};
use super::upload::{GpuGatheredBwd, GpuPlan};
use super::{CudaAttentionGrads, CudaAttentionLayout, CudaAttentionOptions};
use crate::plan::TILE;
use crate::{AttentionShape, Result, SparseAttnError};

/// Fused block-sparse attention backward on the GPU: given the forward's inputs, its output
/// `out` and `lse`, and `dout`, writes dq, dk, dv (FA2 structure: one CTA per 64-key chunk
/// walking the query tiles that see it; dq through f32 atomics, then rounded). Same options,
/// limits and buffer kinds as [`attention_forward_cuda`](super::attention_forward_cuda) (whole
/// slices, views at offsets, raw pointers; `[B, H, L, D]` buffers 16-byte aligned, lse 4-byte,
/// dbias 2-byte); with a bias in the options (or a `dbias` buffer) the bias kernel variant runs
/// and fills `dbias`. A row whose lse is NaN (the forward's poisoned rows) gets a NaN dq row
/// and makes dk / dv NaN at the keys it sees; unlike the CPU path, NaN may also reach
/// gradients that only share a 64-row tile with a NaN (the tensor cores multiply zero weights
/// too: docs/kernels.md, "Non-finite inputs").
///
/// # Errors
/// As [`attention_forward_cuda`](super::attention_forward_cuda), plus length and alignment
/// checks of `out`, `lse`, `dout` and the gradients.
///
/// ```no_run
/// use half::bf16;
/// use ltd_core::CudaDevice;
/// use ltd_sparse_attn::{AttentionShape, FixedConfig};
/// use ltd_sparse_attn::cuda::*;
/// let dev = CudaDevice::new(0)?;
/// let shape = AttentionShape { batch: 1, heads: 4, seq_len: 256, head_dim: 64 };
/// let layout = CudaAttentionLayout::new(&dev, &FixedConfig::new(4).make_layout(256)?)?;
/// let n = shape.qkv_len();
/// let x = dev.upload(&vec![bf16::from_f32(0.5); n])?;
/// let (mut out, mut lse) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![0.0f32; shape.lse_len()])?);
/// let opts = CudaAttentionOptions::default();
/// attention_forward_cuda(&dev, &layout, shape, (&x, &x, &x), &opts, &mut out, &mut lse)?;
/// let (mut dq, mut dk, mut dv) = (dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?, dev.upload(&vec![bf16::ZERO; n])?);
/// attention_backward_cuda(&dev, &layout, shape, (&x, &x, &x), (&out, &lse), &x, &opts,
///     CudaAttentionGrads::new(&mut dq, &mut dk, &mut dv))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_cuda<'b, T: Element + DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    layout: &CudaAttentionLayout,
    shape: AttentionShape,
    (q, k, v): (
        impl Into<DeviceBuf<'b, T>>,
        impl Into<DeviceBuf<'b, T>>,
        impl Into<DeviceBuf<'b, T>>,
    ),
    (out, lse): (impl Into<DeviceBuf<'b, T>>, impl Into<DeviceBuf<'b, f32>>),
    dout: impl Into<DeviceBuf<'b, T>>,
    options: &CudaAttentionOptions<'_, T>,
    grads: CudaAttentionGrads<'_, T>,
) -> Result<()> {
    let (q, k, v) = (q.into(), k.into(), v.into());
    let (out, lse, dout) = (out.into(), lse.into(), dout.into());
    let CudaAttentionGrads {
        mut dq,
        mut dk,
        mut dv,
        mut dbias,
    } = grads;
    let tensors = [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
        ("dout", dout.len()),
        ("dq", dq.len()),
        ("dk", dk.len()),
        ("dv", dv.len()),
    ];
    let cc = dev.compute_capability();
    let call = AttentionCall::check::<T>(layout, shape, &tensors, lse.len(), options, cc)?;
    check_dbias(&call, dbias.as_ref().map(DeviceBufMut::len))?;
    let want_dbias = dbias.is_some();
    let stream = dev.stream();
    // The caller's buffers stay borrowed (their stream guards held) until every launch is queued.
    let mut user = Borrows::new(stream);
    let io = BackwardIo {
        q: user.input("q", &q, Align::Rows)?,
        k: user.input("k", &k, Align::Rows)?,
        v: user.input("v", &v, Align::Rows)?,
        out: user.input("out", &out, Align::Rows)?,
        lse: user.input("lse", &lse, Align::Element)?,
        dout: user.input("dout", &dout, Align::Rows)?,
        dq: user.output("dq", &mut dq, Align::Rows)?,
        dk: user.output("dk", &mut dk, Align::Rows)?,
        dv: user.output("dv", &mut dv, Align::Rows)?,
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
        dbias: 0,
    };
    let io = match dbias.as_mut() {
        Some(db) => {
            db.zero(stream)
                .map_err(SparseAttnError::driver("zeroing dbias"))?;
            BackwardIo {
                dbias: user.output("dbias", db, Align::Element)?,
                ..io
            }
        }
        None => io,
    };
    let with_bias = io.bias.is_some() || want_dbias;
    // The gathered key sets where the choice runs them (docs/kernels.md, "Gathered key sets,
    // for the backward"); they take precedence over the pair kernel.
    let gathered = layout
        .gathered_bwd
        .as_ref()
        .filter(|_| options.kernel.backward_gathered(cc, layout, with_bias));
    let pairs = gathered.is_none()
        && options
            .kernel
            .backward_pairs(cc, layout, shape.head_dim, with_bias);
    // Never where the gathered-set kernel runs: the rule excludes it.
    let warp_specialized =
        options
            .kernel
            .backward_warp_specialized(cc, layout, shape.head_dim, with_bias);
    let variant = BackwardSmem {
        hopper: call.kernel().is_hopper(),
        pairs,
        bias_tiles: !pairs
            && io.bias.is_some_and(bias_tiles_aligned)
            && config::bias_tiles_fit(shape.seq_len),
        warp_specialized,
    };
    let kernel = BackwardKernel::choose(dev, &call, layout, variant, with_bias, gathered)?;
    let n = shape.qkv_len();
    // SAFETY: uninitialised device memory of B*H*L*D f32; the pre-pass (the first launch, on
    // the same stream, over all B*H*L rows) zeroes every element before the main kernel adds
    // into any.
    let mut dq_acc = unsafe { stream.alloc::<f32>(n) }
        .map_err(SparseAttnError::driver("allocating the dq accumulator"))?;
    // SAFETY: uninitialised device memory; the pre-pass (first, same stream, every statistics
    // row, padding rows included) writes every element before the main kernel reads any.
    let mut stats = unsafe { stream.alloc::<f32>(kernel.stats_len) }
        .map_err(SparseAttnError::driver("allocating the row statistics"))?;
    // Partial dK / dV of the pieces of split key columns and of gathered key sets (f32 [B,
    // slots, 64, D] each), only for calls that have slots.
    let parts = shape.batch * kernel.num_slots * TILE * shape.head_dim;
    let mut part_dk = partial_buffer(stream, kernel.num_slots, parts)?;
    let mut part_dv = partial_buffer(stream, kernel.num_slots, parts)?;
    let buffers = BackwardBuffers {
        io,
        stats: &mut stats,
        dq_acc: &mut dq_acc,
        part_dk: part_dk.as_mut(),
        part_dv: part_dv.as_mut(),
    };
    BackwardLaunch::new(dev, &call, kernel, buffers, options)?.enqueue(stream)?;
    drop(user);
    Ok(())
}

/// The checked device addresses of a backward call's own buffers (0: none).
#[derive(Clone, Copy)]
struct BackwardIo {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    lse: u64,
    dout: u64,
    dq: u64,
    dk: u64,
    dv: u64,
    kpm: u64,
    bias: Option<u64>,
    dbias: u64,
}

/// The backward kernels chosen for a call, and the plan and tables the main one walks.
struct BackwardKernel<'a> {
    pre: CudaFunction,
    main: CudaFunction,
    post: CudaFunction,
    combine: Option<CudaFunction>,
    smem: BackwardSmem,
    plan: &'a GpuPlan,
    rows: &'a CudaSlice<i32>,
    row_masks: &'a CudaSlice<i32>,
    /// The gathered key sets' slices (`gather_slots`) when the main kernel is the gathered one.
    gather_slots: Option<&'a CudaSlice<i32>>,
    /// What the combine reads (`split_cols`): 4 int32 per split column, or 12 per row of the
    /// gathered combine; and the rows.
    combine_rows: &'a CudaSlice<i32>,
    num_combine: usize,
    /// Partial slots of the call (split columns, and gathered key sets).
    num_slots: usize,
    stats_rows: usize,
    stats_len: usize,
}

impl<'a> BackwardKernel<'a> {
    /// The kernels of `smem`'s variant; `with_bias` (a bias or a dbias) picks the kernels with
    /// the bias code compiled in.
    fn choose(
        dev: &CudaDevice,
        call: &AttentionCall,
        layout: &'a CudaAttentionLayout,
        smem: BackwardSmem,
        with_bias: bool,
        gathered: Option<&'a GpuGatheredBwd>,
    ) -> Result<BackwardKernel<'a>> {
        let shape = call.shape();
        let (dtype, d) = (call.dtype(), shape.head_dim);
        let hopper = smem.hopper;
        let family = main_family(smem, with_bias);
        let (plan, rows, row_masks) = if let Some(g) = gathered {
            (&g.plan, &g.rows, &g.masks)
        } else if smem.pairs {
            (
                &layout.bwd_pair_plan,
                &layout.col_pair_rows,
                &layout.col_pair_masks,
            )
        } else {
            (&layout.bwd_plan, &layout.col_rows, &layout.col_masks)
        };
        let (combine_rows, num_combine, num_slots) = match gathered {
            Some(g) => (&g.combine, g.num_combine, g.num_slots),
            None => (&plan.split, plan.num_split, plan.num_slots),
        };
        // Hopper statistics hold each query tile's lse and dvec side by side.
        let stats_rows = config::stats_rows(shape.batch * shape.heads, shape.seq_len, hopper);
        let plain = |family: &AttnKernel| family.load_plain(dev, dtype, d);
        Ok(BackwardKernel {
            pre: plain(&BWD_PRE)?,
            main: match gathered {
                // Plain columns and gathered key sets in one grid.
                Some(_) => BWD_GATHER_SM90.load(dev, dtype, d, smem.bytes(d))?,
                None => family.load(dev, dtype, d, smem.bytes(d))?,
            },
            post: plain(&BWD_DQ)?,
            combine: match (gathered, num_combine) {
                (_, 0) => None,
                (Some(_), _) => Some(plain(&BWD_COMBINE_GATHER)?),
                (None, _) => Some(plain(&BWD_COMBINE)?),
            },
            gather_slots: gathered.map(|g| &g.slots),
            smem,
            plan,
            rows,
            row_masks,
            combine_rows,
            num_combine,
            num_slots,
            stats_rows,
            stats_len: if hopper { 2 * stats_rows } else { stats_rows },
        })
    }
}

/// The main kernel of a variant: the warp-specialised kernels where chosen (never with a bias),
/// the bias-tile kernels where the bias is read in tiles, the pair kernel (never with a bias),
/// else the kernel with or without the bias code.
fn main_family(smem: BackwardSmem, with_bias: bool) -> &'static AttnKernel {
    if smem.warp_specialized {
        return if smem.pairs {
            &BWD_SM90_WS_PAIR
        } else {
            &BWD_SM90_WS
        };
    }
    match (smem.hopper, smem.bias_tiles, smem.pairs, with_bias) {
        (true, true, _, _) => &BWD_BIAS_TMA_SM90,
        (false, true, _, _) => &BWD_BIAS_TILES,
        (true, false, true, _) => &BWD_SM90_PAIR,
        (true, false, false, true) => &BWD_BIAS_SM90,
        (true, false, false, false) => &BWD_SM90,
        (false, false, _, true) => &BWD_BIAS,
        (false, false, _, false) => &BWD,
    }
}

/// The buffers of a backward call: the caller's (addresses) and its scratch.
struct BackwardBuffers<'a> {
    io: BackwardIo,
    stats: &'a mut CudaSlice<f32>,
    dq_acc: &'a mut CudaSlice<f32>,
    part_dk: Option<&'a mut CudaSlice<f32>>,
    part_dv: Option<&'a mut CudaSlice<f32>>,
}

/// A backward ready to queue, built only from a checked call: pre-pass, main kernel, dq
/// conversion and, for layouts with split columns, the combine, on one stream in that order.
struct BackwardLaunch<'a> {
    kernel: BackwardKernel<'a>,
    params: LtdSparseAttnBwdParams,
    maps: Option<LtdSparseAttnTmaMaps>,
    head_dim: i64,
    configs: [LaunchConfig; 4],
    _borrows: Borrows<'a>,
}

impl<'a> BackwardLaunch<'a> {
    fn new<T>(
        dev: &'a CudaDevice,
        call: &AttentionCall,
        kernel: BackwardKernel<'a>,
        bufs: BackwardBuffers<'a>,
        options: &CudaAttentionOptions<'_, T>,
    ) -> Result<BackwardLaunch<'a>> {
        let shape = call.shape();
        let hopper = kernel.smem.hopper;
        let items = kernel.plan.grid(shape.batch)?;
        let mut b = Borrows::new(dev.stream());
        let BackwardIo {
            q,
            k,
            v,
            out,
            lse,
            dout,
            dq,
            dk,
            dv,
            kpm,
            bias,
            dbias,
        } = bufs.io;
        let (dq_acc, stats) = (b.write(bufs.dq_acc), b.write(bufs.stats));
        let bias = bias.unwrap_or(0);
        let params = LtdSparseAttnBwdParams {
            q,
            k,
            v,
            o: out,
            dout,
            lse,
            dvec: if hopper { 0 } else { stats },
            row_stats: if hopper { stats } else { 0 },
            dq_acc,
            dq,
            dk,
            dv,
            tile_rows: b.read(kernel.rows),
            tile_col_masks: b.read(kernel.row_masks),
            kpm,
            bias,
            dbias,
            work_items: b.read(&kernel.plan.items),
            split_cols: b.read(kernel.combine_rows),
            part_dk: b.write_opt(bufs.part_dk),
            part_dv: b.write_opt(bufs.part_dv),
            batch: shape.batch as i64,
            heads: shape.heads as i64,
            seq: shape.seq_len as i64,
            num_slots: kernel.num_slots as i64,
            scale: call.scale(),
            scale_log2: call.scale() * std::f32::consts::LOG2_E,
            causal: i32::from(options.causal),
            pad_: 0,
            // Read by the gathered kernel only.
            gather_slots: kernel.gather_slots.map_or(0, |s| b.read(s)),
        };
        let maps = if hopper {
            let tma = TmaBuffers {
                qkv: [q, k, v],
                out: None,
                backward: Some([dout, dq_acc, dk, dv]),
                bias: kernel.smem.bias_tiles.then_some(bias),
                gather: kernel.gather_slots.is_some(),
            };
            Some(tma_maps(&tma, shape)?)
        } else {
            None
        };
        let configs = [
            config::backward_pre(kernel.stats_rows),
            kernel.smem.launch(items, shape.head_dim),
            config::dq_convert(shape.qkv_len()),
            config::backward_combine(kernel.num_combine * shape.batch),
        ];
        Ok(BackwardLaunch {
            kernel,
            params,
            maps,
            head_dim: shape.head_dim as i64,
            configs,
            _borrows: b,
        })
    }

    fn enqueue(self, stream: &CudaStream) -> Result<()> {
        let [pre, main, post, combine] = self.configs;
        let mut launch = stream.launch_builder(&self.kernel.pre);
        launch.arg(&self.params);
        // SAFETY: `new` built the params from a checked call; the pre-pass writes every row of
        // the statistics buffer (sized by `config::stats_rows` for this family) and zeroes the
        // dq accumulator (B*H*L*D f32), one warp per row.
        unsafe { launch.launch(pre) }.map_err(SparseAttnError::driver(
            "launching the attention backward pre-pass",
        ))?;
        let mut launch = stream.launch_builder(&self.kernel.main);
        launch.arg(&self.params);
        if let Some(maps) = &self.maps {
            launch.arg(maps);
        }
        // SAFETY: every buffer has its checked length and alignment (`align::Align`; bias
        // tiles only from a 16-byte aligned bias; raw pointers hold the promise of
        // `DeviceBuf::from_raw`); the kernel walks the layout's own
        // transposed tables through its plan (head < H, chunk and tile indices below the padded
        // length's tiles, slots below num_slots, partial buffers sized for them), touches rows
        // < L only (TMA boxes over exactly these buffers zero-fill the rest), after the
        // pre-pass on the same stream; grid = items x B (checked), shared memory and threads
        // from `config::BackwardSmem` of this variant; bias / dbias reads only at positions < L.
        // The gathered kernel's set items (tile < 0) read their slices from `gather_slots` (set
        // indices below its sets, slices below the padded length's) through the 16-row k / v
        // maps `tma_maps` built for it, and every one writes its slot.
        unsafe { launch.launch(main) }.map_err(SparseAttnError::driver(
            "launching the attention backward kernel",
        ))?;
        let mut launch = stream.launch_builder(&self.kernel.post);
        launch.arg(&self.params).arg(&self.head_dim);
        // SAFETY: the dq conversion reads the accumulator (complete: after the main kernel on
        // this stream) and writes dq, both B*H*L*D elements, in a grid-stride loop.
        unsafe { launch.launch(post) }
            .map_err(SparseAttnError::driver("launching the dq conversion"))?;
        let Some(func) = &self.kernel.combine else {
            return Ok(());
        };
        let mut launch = stream.launch_builder(func);
        launch.arg(&self.params);
        // SAFETY: the combine reads the partial dK / dV the main (and gathered-set) kernels
        // wrote (same stream, so after them) at the slots its rows name, and writes dk / dv
        // keys < L of those columns.
        unsafe { launch.launch(combine) }
            .map_err(SparseAttnError::driver("launching the dk/dv combine"))?;
        Ok(())
    }
}
