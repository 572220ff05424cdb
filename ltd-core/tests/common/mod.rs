//! Helpers shared by the integration tests: a tiny independent PRNG, strided buffers, layouts.
#![allow(dead_code)]

use ltd_core::{Element, HiddenLayout, HiddenOrder};

/// splitmix64: an RNG independent of the code under test.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n >= 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// A sorted random `r`-subset of `0..s` (partial Fisher-Yates).
    pub fn subset(&mut self, s: usize, r: usize) -> Vec<i32> {
        let mut all: Vec<i32> = (0..s as i32).collect();
        for i in 0..r {
            let j = i + self.below(s - i);
            all.swap(i, j);
        }
        let mut out = all[..r].to_vec();
        out.sort_unstable();
        out
    }
    /// `[B, r]` sorted distinct indices.
    pub fn sorted_indices(&mut self, b: usize, s: usize, r: usize) -> Vec<i32> {
        (0..b).flat_map(|_| self.subset(s, r)).collect()
    }
    /// `[B, r]` arbitrary in-range indices (repeats, any order).
    pub fn any_indices(&mut self, b: usize, s: usize, r: usize) -> Vec<i32> {
        (0..b * r).map(|_| self.below(s) as i32).collect()
    }
}

/// How a test lays a tensor out in memory.
#[derive(Clone, Copy, Debug)]
pub enum Stride {
    Contiguous,
    /// Rows padded by `row_pad`, outer dimension padded by `outer_pad`.
    Padded {
        row_pad: usize,
        outer_pad: usize,
    },
    /// Memory in the other order than the logical one (a transposed view).
    Transposed,
    /// Batch stride 0 (inputs only): every batch entry reads the same rows.
    BroadcastBatch,
}

pub fn layout(order: HiddenOrder, b: usize, s: usize, c: usize, stride: Stride) -> HiddenLayout {
    match (stride, order) {
        (Stride::Contiguous, _) => HiddenLayout::contiguous(order, b, s, c).unwrap(),
        (Stride::Padded { row_pad, outer_pad }, HiddenOrder::BatchSeq) => {
            HiddenLayout::strided(order, b, s, c, s * (c + row_pad) + outer_pad, c + row_pad)
                .unwrap()
        }
        (Stride::Padded { row_pad, outer_pad }, HiddenOrder::SeqBatch) => {
            HiddenLayout::strided(order, b, s, c, c + row_pad, b * (c + row_pad) + outer_pad)
                .unwrap()
        }
        (Stride::Transposed, HiddenOrder::BatchSeq) => {
            HiddenLayout::strided(order, b, s, c, c, b * c).unwrap()
        }
        (Stride::Transposed, HiddenOrder::SeqBatch) => {
            HiddenLayout::strided(order, b, s, c, s * c, c).unwrap()
        }
        (Stride::BroadcastBatch, HiddenOrder::BatchSeq) => {
            HiddenLayout::strided(order, b, s, c, 0, c).unwrap()
        }
        (Stride::BroadcastBatch, HiddenOrder::SeqBatch) => {
            HiddenLayout::strided(order, b, s, c, 0, c).unwrap()
        }
    }
}

/// A buffer of random values covering `layout` (plus a few spare elements at the end).
pub fn random_buffer<T: Element>(rng: &mut Rng, layout: &HiddenLayout) -> Vec<T> {
    (0..layout.min_buffer_len() + 3)
        .map(|_| T::from_f32_lossy(rng.unit() * 8.0))
        .collect()
}

/// The logical contiguous tensor (in `layout.order()`) a strided buffer holds.
pub fn logical<T: Element>(buf: &[T], layout: &HiddenLayout) -> Vec<T> {
    let (b, s, c) = (layout.batch(), layout.seq(), layout.channels());
    let mut out = Vec::with_capacity(b * s * c);
    let (outer, inner) = match layout.order() {
        HiddenOrder::BatchSeq => (b, s),
        HiddenOrder::SeqBatch => (s, b),
    };
    for o in 0..outer {
        for i in 0..inner {
            let (bb, ss) = match layout.order() {
                HiddenOrder::BatchSeq => (o, i),
                HiddenOrder::SeqBatch => (i, o),
            };
            let off = layout.offset(bb, ss);
            out.extend_from_slice(&buf[off..off + c]);
        }
    }
    out
}

/// Marks which elements of a buffer belong to `layout`'s rows.
pub fn covered(len: usize, layout: &HiddenLayout) -> Vec<bool> {
    let mut m = vec![false; len];
    for b in 0..layout.batch() {
        for s in 0..layout.seq() {
            let off = layout.offset(b, s);
            m[off..off + layout.channels()]
                .iter_mut()
                .for_each(|x| *x = true);
        }
    }
    m
}

/// Bit-exact comparison through f32 (exact for all three element types); NaN never equals.
pub fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_f32().to_bits() == y.to_f32().to_bits() && !x.to_f32().is_nan())
}

pub fn ref_order(order: HiddenOrder) -> ltd_reference::HiddenOrder {
    match order {
        HiddenOrder::BatchSeq => ltd_reference::HiddenOrder::BatchSeq,
        HiddenOrder::SeqBatch => ltd_reference::HiddenOrder::SeqBatch,
    }
}

pub fn ref_dims(order: HiddenOrder, b: usize, s: usize, c: usize) -> ltd_reference::Hidden {
    ltd_reference::Hidden {
        batch: b,
        seq: s,
        channels: c,
        order: ref_order(order),
    }
}

/// Writes a logical contiguous tensor into the rows of a strided buffer.
pub fn fill_from_logical<T: Element>(buf: &mut [T], layout: &HiddenLayout, values: &[T]) {
    let c = layout.channels();
    let (b, s) = (layout.batch(), layout.seq());
    for bb in 0..b {
        for ss in 0..s {
            let row = match layout.order() {
                HiddenOrder::BatchSeq => bb * s + ss,
                HiddenOrder::SeqBatch => ss * b + bb,
            };
            let off = layout.offset(bb, ss);
            buf[off..off + c].copy_from_slice(&values[row * c..(row + 1) * c]);
        }
    }
}

/// The four input stride kinds and three output ones, by number.
pub fn input_stride(k: usize) -> Stride {
    [
        Stride::Contiguous,
        Stride::Padded {
            row_pad: 3,
            outer_pad: 5,
        },
        Stride::Transposed,
        Stride::BroadcastBatch,
    ][k % 4]
}
pub fn output_stride(k: usize) -> Stride {
    [
        Stride::Contiguous,
        Stride::Padded {
            row_pad: 1,
            outer_pad: 2,
        },
        Stride::Transposed,
    ][k % 3]
}
