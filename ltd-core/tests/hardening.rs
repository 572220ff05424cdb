//! Regression tests for hostile input (issue 24): sizes past this machine's memory are typed
//! errors returned at once (never an abort), and the router never keeps a stale mask.

use std::time::{Duration, Instant};

use ltd_core::*;

/// Runs `f`, which must fail with [`CoreError::AllocationFailed`] or
/// [`CoreError::SizeOverflow`] well within a second.
fn fails_fast<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> Result<T>) {
    let start = Instant::now();
    let result = f();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        start.elapsed()
    );
    match result {
        Err(CoreError::AllocationFailed { bytes, .. }) => {
            assert!(bytes > memory_limit_bytes(), "{what}: {bytes} bytes")
        }
        Err(CoreError::SizeOverflow { .. }) => {}
        other => panic!("{what}: expected a size error, got {other:?}"),
    }
}

/// A `[B, S, C]` view of one element repeated everywhere (zero strides): tiny buffer, huge shape.
fn broadcast(b: usize, s: usize, c: usize, data: &[f32]) -> HiddenView<'_, f32> {
    let layout = HiddenLayout::strided(HiddenOrder::BatchSeq, b, s, c, 0, 0).unwrap();
    HiddenView::strided(data, layout).unwrap()
}

#[test]
fn sizes_past_memory_are_typed_errors() {
    let one = [1.0f32; 1 << 16];
    let huge = 1usize << 40;
    fails_fast("sample", || TokenSampler::new(1).sample(0, huge, 1, 2, 1));
    fails_fast("sample_decoder", || {
        TokenSampler::new(1).sample_decoder::<bool>(0, huge, 1, 2, 1, &DecoderMask::Causal)
    });
    fails_fast("copy_strided_2d (broadcast)", || {
        let layout = StridedLayout2d {
            rows: huge,
            cols: 1 << 20,
            row_stride: 0,
            col_stride: 0,
        };
        copy_strided_2d(&one[..1], layout)
    });
    // A broadcast hidden view of 2^10 x 2^31 positions of 2^16 channels: the routed output would
    // be 2^57 elements.
    let wide = broadcast(1 << 10, 1 << 31, 1 << 16, &one);
    let positions = vec![0i32; 1 << 10];
    let idx = IndexView::new(&positions, 1 << 10, 1).unwrap();
    fails_fast("route_tensor (broadcast)", || {
        let part = broadcast(1 << 10, 1, 1 << 16, &one);
        route_tensor(&wide, &part, &idx)
    });
    fails_fast("try_vec", || try_vec("anything", usize::MAX / 2, 0u16));
    fails_fast("HiddenTensor::zeros", || {
        HiddenTensor::<f32>::zeros(HiddenOrder::BatchSeq, 1 << 20, 1 << 20, 1 << 10)
    });
    fails_fast("HiddenTensor::full", || {
        HiddenTensor::full(1.0f32, HiddenOrder::SeqBatch, 1 << 16, 1 << 16, 1 << 16)
    });
}

#[test]
fn the_sampler_checks_its_scratch_before_sampling() {
    // A full-length row keeps every position and needs no scratch, whatever S is.
    let idx = TokenSampler::new(3)
        .sample(0, 1, 1, 1 << 20, 1 << 20)
        .unwrap();
    assert_eq!(idx.as_slice()[5], 5);
    // An ordinary call still samples (the checked scratch is the same as before).
    let idx = TokenSampler::new(3).sample(0, 2, 3, 4096, 7).unwrap();
    assert!(
        idx.as_slice()
            .chunks(7)
            .all(|row| row.windows(2).all(|w| w[0] < w[1]))
    );
}

/// Records the key-padding mask each forward call receives.
struct SeesMask {
    seen: Vec<Vec<u8>>,
}

impl Layer<f32, u8> for SeesMask {
    type Extra = ();
    type Error = CoreError;
    fn forward(&mut self, input: LayerInput<'_, f32, u8>) -> Result<LayerOutput<f32, ()>> {
        let l = *input.hidden.layout();
        let LayerMask::Tensor(m) = input.mask else {
            panic!("expected a mask tensor")
        };
        self.seen
            .push((0..m.cols()).map(|j| m.get(0, 0, j).unwrap()).collect());
        let mut out = HiddenTensor::zeros(l.order(), l.batch(), l.seq(), l.channels())?;
        for s in 0..l.seq() {
            let o = out.layout().offset(0, s);
            out.as_mut_slice()[o..o + l.channels()]
                .copy_from_slice(input.hidden.row(0, s).unwrap());
        }
        Ok(LayerOutput {
            hidden: out,
            extra: (),
        })
    }
    fn backward(
        &mut self,
        _input: LayerInput<'_, f32, u8>,
        grad: HiddenView<'_, f32>,
    ) -> Result<HiddenTensor<f32>> {
        let l = grad.layout();
        HiddenTensor::from_vec(
            grad.data().to_vec(),
            l.order(),
            l.batch(),
            l.seq(),
            l.channels(),
        )
    }
}

#[test]
fn a_new_mask_at_the_same_step_is_gathered_not_ignored() {
    // Gradient accumulation: two micro-batches of one step with different padding masks.
    let config = RouterConfig {
        seed: 5,
        ltd_layers: vec![0],
        order: HiddenOrder::BatchSeq,
        kind: ModelKind::Encoder,
    };
    let mut router = TokenDropRouter::<u8>::new(config).unwrap();
    let (seq, r) = (16, 8);
    let h = vec![0.5f32; seq];
    let hidden = HiddenView::new(&h, HiddenOrder::BatchSeq, 1, seq, 1).unwrap();
    let first: Vec<u8> = vec![1; seq];
    let second: Vec<u8> = (0..seq as u8).map(|i| i % 2).collect();
    let mut layer = SeesMask { seen: Vec::new() };
    for mask in [&first, &second, &first] {
        let view = MaskView::new(mask, 1, 1, seq).unwrap();
        router
            .forward(0, 7, r, &mut layer, hidden, ModelMask::Tensor(view))
            .unwrap();
    }
    let kept = router.sampled_indices().unwrap().layer(0).unwrap();
    let kept: Vec<usize> = kept.row(0).unwrap().iter().map(|&p| p as usize).collect();
    let expect = |mask: &[u8]| -> Vec<u8> { kept.iter().map(|&p| mask[p]).collect() };
    assert_eq!(
        layer.seen,
        [expect(&first), expect(&second), expect(&first)]
    );
}
