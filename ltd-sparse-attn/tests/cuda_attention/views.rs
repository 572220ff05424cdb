//! Forward and backward through offset views and raw device pointers against whole buffers.

use crate::common::{Data, kernels, poisoned};
use crate::gpu_support::gpu;
use crate::packed;
use half::bf16;
use ltd_core::{CudaDevice, Element};
use ltd_sparse_attn::cuda::{
    CudaAttentionGrads, CudaAttentionLayout, CudaAttentionOptions, attention_backward_cuda,
    attention_forward_cuda,
};
use ltd_sparse_attn::{AttentionShape, BigBirdConfig};

/// Bit patterns of a downloaded buffer, for exact comparisons.
fn bits<T: Element + cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    x: &cudarc::driver::CudaSlice<T>,
) -> Vec<u32> {
    dev.download(x)
        .unwrap()
        .iter()
        .map(|v| v.to_f32().to_bits())
        .collect()
}

/// Forward and backward read through views at (16-byte aligned) offsets of bigger buffers, and
/// through raw device pointers, give exactly the whole-buffer results (dq up to the order of
/// its f32 atomics), with a key-padding mask and a bias, on every kernel family.
#[test]
fn gpu_views_and_raw_pointers_match_whole_buffers() {
    let dev = gpu();
    let b = ViewBuffers::new(&dev);
    let (n, nl) = (b.shape.qkv_len(), b.shape.lse_len());
    for kernel in kernels(&dev) {
        let whole_opts = CudaAttentionOptions {
            causal: true,
            key_padding_mask: Some((&b.wkpm).into()),
            bias: Some((&b.wbias).into()),
            kernel,
            ..Default::default()
        };
        let view_opts = CudaAttentionOptions {
            key_padding_mask: Some(b.pkpm.slice(4..).into()),
            bias: Some(b.pbias.slice(8..).into()),
            ..whole_opts.clone()
        };
        let mut out = dev.upload(&poisoned::<bf16>(n)).unwrap();
        let mut lse = dev.upload(&vec![f32::NAN; nl]).unwrap();
        attention_forward_cuda(
            &dev,
            &b.gl,
            b.shape,
            (&b.wq, &b.wk, &b.wv),
            &whole_opts,
            &mut out,
            &mut lse,
        )
        .unwrap();
        let (vout, vlse) = b.forward_through_views(&dev, &view_opts, (&out, &lse));
        b.forward_through_raw_pointers(&dev, &whole_opts, (&out, &lse));
        b.backward_through_views(
            &dev,
            (&whole_opts, &view_opts),
            (&out, &lse),
            (&vout, &vlse),
        );
    }
}

/// The buffers of `gpu_views_and_raw_pointers_match_whole_buffers`: each input whole, and the
/// same values packed at offsets of bigger buffers.
struct ViewBuffers {
    shape: AttentionShape,
    gl: CudaAttentionLayout,
    wq: cudarc::driver::CudaSlice<bf16>,
    wk: cudarc::driver::CudaSlice<bf16>,
    wv: cudarc::driver::CudaSlice<bf16>,
    wdo: cudarc::driver::CudaSlice<bf16>,
    wbias: cudarc::driver::CudaSlice<bf16>,
    wkpm: cudarc::driver::CudaSlice<f32>,
    /// q, k, v and dout after 8 (16 bytes of) bf16 of padding.
    qkv: cudarc::driver::CudaSlice<bf16>,
    /// The bias after 8 bf16 of padding.
    pbias: cudarc::driver::CudaSlice<bf16>,
    /// The key-padding mask after 4 f32 of padding.
    pkpm: cudarc::driver::CudaSlice<f32>,
}

impl ViewBuffers {
    fn new(dev: &CudaDevice) -> Self {
        let shape = AttentionShape {
            batch: 2,
            heads: 2,
            seq_len: 200,
            head_dim: 64,
        };
        let n = shape.qkv_len();
        let layout = BigBirdConfig::new(2).make_layout(shape.seq_len).unwrap();
        let gl = CudaAttentionLayout::new(dev, &layout).unwrap();
        let mut data = Data::new(91);
        let (q, k, v, dout): (Vec<bf16>, Vec<bf16>, Vec<bf16>, Vec<bf16>) = (
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
            data.vec(n, -1.0, 1.0),
        );
        let bias: Vec<bf16> = data.vec(n / shape.head_dim * shape.seq_len, -0.5, 0.5);
        let kpm: Vec<f32> = (0..shape.batch * shape.seq_len)
            .map(|i| if i % 9 == 4 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let (wq, wk, wv, wdo) = (
            dev.upload(&q).unwrap(),
            dev.upload(&k).unwrap(),
            dev.upload(&v).unwrap(),
            dev.upload(&dout).unwrap(),
        );
        let (wbias, wkpm) = (dev.upload(&bias).unwrap(), dev.upload(&kpm).unwrap());
        ViewBuffers {
            shape,
            gl,
            wq,
            wk,
            wv,
            wdo,
            wbias,
            wkpm,
            qkv: packed(dev, 8, &[&q, &k, &v, &dout]),
            pbias: packed(dev, 8, &[&bias]),
            pkpm: packed(dev, 4, &[&kpm]),
        }
    }

    /// Elements of the bias `[B, H, L, L]`.
    fn bias_len(&self) -> usize {
        self.shape.qkv_len() / self.shape.head_dim * self.shape.seq_len
    }

    /// q, k and v as views of the packed buffer.
    fn qkv_views(
        &self,
    ) -> (
        cudarc::driver::CudaView<'_, bf16>,
        cudarc::driver::CudaView<'_, bf16>,
        cudarc::driver::CudaView<'_, bf16>,
    ) {
        let n = self.shape.qkv_len();
        (
            self.qkv.slice(8..8 + n),
            self.qkv.slice(8 + n..8 + 2 * n),
            self.qkv.slice(8 + 2 * n..8 + 3 * n),
        )
    }

    /// The forward with inputs of one packed buffer and outputs at offsets of bigger ones gives
    /// the whole-buffer `(out, lse)` and leaves the outputs' surroundings alone; returns the
    /// bigger output buffers (out at 16, lse at 1).
    fn forward_through_views(
        &self,
        dev: &CudaDevice,
        view_opts: &CudaAttentionOptions<'_, bf16>,
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) -> (
        cudarc::driver::CudaSlice<bf16>,
        cudarc::driver::CudaSlice<f32>,
    ) {
        let (n, nl) = (self.shape.qkv_len(), self.shape.lse_len());
        let kernel = view_opts.kernel;
        let mut vout = dev.upload(&poisoned::<bf16>(n + 24)).unwrap();
        let mut vlse = dev.upload(&vec![f32::NAN; nl + 3]).unwrap();
        attention_forward_cuda(
            dev,
            &self.gl,
            self.shape,
            self.qkv_views(),
            view_opts,
            vout.slice_mut(16..16 + n),
            vlse.slice_mut(1..1 + nl),
        )
        .unwrap();
        let vo = bits(dev, &vout);
        assert_eq!(
            &vo[16..16 + n],
            &bits(dev, out)[..],
            "{kernel:?}: out through views"
        );
        let vl = bits(dev, &vlse);
        assert_eq!(
            &vl[1..1 + nl],
            &bits(dev, lse)[..],
            "{kernel:?}: lse through views"
        );
        assert!(
            vo[..16]
                .iter()
                .chain(&vo[16 + n..])
                .all(|b| f32::from_bits(*b).is_nan()),
            "{kernel:?}: out outside the view untouched"
        );
        (vout, vlse)
    }

    /// The forward through raw pointers into the packed buffers gives the whole-buffer
    /// `(out, lse)`.
    fn forward_through_raw_pointers(
        &self,
        dev: &CudaDevice,
        whole_opts: &CudaAttentionOptions<'_, bf16>,
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) {
        use cudarc::driver::{DevicePtr, DevicePtrMut};
        use ltd_core::cuda::{DeviceBuf, DeviceBufMut};
        let (n, nl, nb) = (self.shape.qkv_len(), self.shape.lse_len(), self.bias_len());
        let kpm_len = self.shape.batch * self.shape.seq_len;
        let kernel = whole_opts.kernel;
        let mut rout = dev.upload(&poisoned::<bf16>(n)).unwrap();
        let mut rlse = dev.upload(&vec![f32::NAN; nl]).unwrap();
        {
            let s = dev.stream();
            let (base, _g1) = self.qkv.device_ptr(s);
            let (b_ptr, _g2) = self.pbias.device_ptr(s);
            let (m_ptr, _g3) = self.pkpm.device_ptr(s);
            let (o_ptr, _g4) = rout.device_ptr_mut(s);
            let (l_ptr, _g5) = rlse.device_ptr_mut(s);
            // SAFETY: each pointer addresses `len` initialised elements of its buffer, on this
            // device, alive and used by nothing else until the synchronize below.
            let (rq, rk, rv, rb, rm, ro, rl) = unsafe {
                (
                    DeviceBuf::<bf16>::from_raw(base + 16, n),
                    DeviceBuf::<bf16>::from_raw(base + 16 + 2 * n as u64, n),
                    DeviceBuf::<bf16>::from_raw(base + 16 + 4 * n as u64, n),
                    DeviceBuf::<bf16>::from_raw(b_ptr + 16, nb),
                    DeviceBuf::<f32>::from_raw(m_ptr + 16, kpm_len),
                    DeviceBufMut::<bf16>::from_raw(o_ptr, n),
                    DeviceBufMut::<f32>::from_raw(l_ptr, nl),
                )
            };
            let raw_opts = CudaAttentionOptions {
                key_padding_mask: Some(rm),
                bias: Some(rb),
                ..whole_opts.clone()
            };
            attention_forward_cuda(dev, &self.gl, self.shape, (rq, rk, rv), &raw_opts, ro, rl)
                .unwrap();
            dev.synchronize().unwrap();
        }
        assert_eq!(
            bits(dev, &rout),
            bits(dev, out),
            "{kernel:?}: out through raw pointers"
        );
        assert_eq!(
            bits(dev, &rlse),
            bits(dev, lse),
            "{kernel:?}: lse through raw pointers"
        );
    }

    /// The backward on whole buffers, then through views (inputs packed, gradients in one
    /// `[3, n]` buffer after 8 elements, dbias at an offset), gives the same gradients (dq up to
    /// the order of its f32 atomics).
    fn backward_through_views(
        &self,
        dev: &CudaDevice,
        (whole_opts, view_opts): (
            &CudaAttentionOptions<'_, bf16>,
            &CudaAttentionOptions<'_, bf16>,
        ),
        (out, lse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
        (vout, vlse): (
            &cudarc::driver::CudaSlice<bf16>,
            &cudarc::driver::CudaSlice<f32>,
        ),
    ) {
        let (n, nl, nb) = (self.shape.qkv_len(), self.shape.lse_len(), self.bias_len());
        let kernel = whole_opts.kernel;
        let poison = || dev.upload(&poisoned::<bf16>(n)).unwrap();
        let (mut gq, mut gk, mut gv) = (poison(), poison(), poison());
        let mut gb = dev.upload(&poisoned::<bf16>(nb)).unwrap();
        let grads = CudaAttentionGrads::new(&mut gq, &mut gk, &mut gv).with_dbias(&mut gb);
        attention_backward_cuda(
            dev,
            &self.gl,
            self.shape,
            (&self.wq, &self.wk, &self.wv),
            (out, lse),
            &self.wdo,
            whole_opts,
            grads,
        )
        .unwrap();
        let mut g3 = dev.upload(&poisoned::<bf16>(8 + 3 * n)).unwrap();
        let mut vgb = dev.upload(&poisoned::<bf16>(nb + 8)).unwrap();
        {
            let (_, mut tail) = g3.split_at_mut(8);
            let (vdq, mut rest) = tail.split_at_mut(n);
            let (vdk, vdv) = rest.split_at_mut(n);
            let grads = CudaAttentionGrads::new(vdq, vdk, vdv).with_dbias(vgb.slice_mut(8..));
            let saved = (vout.slice(16..16 + n), vlse.slice(1..1 + nl));
            let vdout = self.qkv.slice(8 + 3 * n..);
            attention_backward_cuda(
                dev,
                &self.gl,
                self.shape,
                self.qkv_views(),
                saved,
                vdout,
                view_opts,
                grads,
            )
            .unwrap();
        }
        let g3b = bits(dev, &g3);
        assert_eq!(
            &g3b[8 + n..8 + 2 * n],
            &bits(dev, &gk)[..],
            "{kernel:?}: dk through views"
        );
        assert_eq!(
            &g3b[8 + 2 * n..],
            &bits(dev, &gv)[..],
            "{kernel:?}: dv through views"
        );
        assert_eq!(
            &bits(dev, &vgb)[8..],
            &bits(dev, &gb)[..],
            "{kernel:?}: dbias through views"
        );
        // dq sums f32 atomics in no fixed order: equal up to the last bf16 bit.
        let (vdq, wdq) = (dev.download(&g3).unwrap(), dev.download(&gq).unwrap());
        for (i, (a, b)) in vdq[8..8 + n].iter().zip(&wdq).enumerate() {
            let (a, b) = (a.to_f32(), b.to_f32());
            assert!(
                (a - b).abs() <= b.abs() / 64.0 + 1e-6,
                "{kernel:?}: dq[{i}] {a} vs {b}"
            );
        }
    }
}
