//! Reading candle CPU storage through its layout: strided 4-d copies into `[B, H, L, D]` order,
//! hidden-state views and index rows.

use std::borrow::Cow;

use candle_core::{CpuStorage, Layout, Storage, Tensor, WithDType};
use ltd_core::{HiddenLayout, HiddenOrder, HiddenView};

use crate::{LtdCandleError, Result};

/// The CPU storage behind a storage guard, or an error naming `what`.
pub(crate) fn cpu_storage<'a>(what: &'static str, s: &'a Storage) -> Result<&'a CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => Err(LtdCandleError::Unsupported {
            what,
            got: "a non-CPU storage".into(),
            expected: "a CPU tensor on the CPU path".into(),
        }),
    }
}

/// The elements of a `[d0, d1, d2, d3]` tensor in the order `perm` of its dims, contiguous:
/// borrowed when the layout is already that (identity order, contiguous), copied otherwise.
/// Any strides are honoured (transposed, narrowed, broadcast).
pub(crate) fn permuted4<'a, T: WithDType>(
    data: &'a CpuStorage,
    layout: &Layout,
    perm: [usize; 4],
) -> Result<Cow<'a, [T]>> {
    let all = data.as_slice::<T>()?;
    let dims = layout.dims();
    let start = layout.start_offset();
    let n: usize = dims.iter().product();
    if perm == [0, 1, 2, 3] && layout.is_contiguous() {
        return Ok(Cow::Borrowed(&all[start..start + n]));
    }
    let st = layout.stride();
    let (d, s) = (perm.map(|p| dims[p]), perm.map(|p| st[p]));
    let mut out = Vec::with_capacity(n);
    for a in 0..d[0] {
        for b in 0..d[1] {
            for c in 0..d[2] {
                let base = start + a * s[0] + b * s[1] + c * s[2];
                if s[3] == 1 {
                    out.extend_from_slice(&all[base..base + d[3]]);
                } else {
                    out.extend((0..d[3]).map(|e| all[base + e * s[3]]));
                }
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// [`permuted4`] of a tensor (its storage must be on the CPU).
pub(crate) fn tensor_permuted4<T: WithDType>(t: &Tensor, perm: [usize; 4]) -> Result<Vec<T>> {
    let (s, l) = t.storage_and_layout();
    let c = cpu_storage("tensor", &s)?;
    Ok(permuted4::<T>(c, l, perm)?.into_owned())
}

/// Swaps dims 1 and 2 of a contiguous `[a, b, c, d]` buffer (`[B, H, L, D]` <-> `[B, L, H, D]`).
pub(crate) fn swap12<T: Copy>(x: &[T], [a, b, c, d]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for i in 0..a {
        for k in 0..c {
            for j in 0..b {
                let base = ((i * b + j) * c + k) * d;
                out.extend_from_slice(&x[base..base + d]);
            }
        }
    }
    out
}

/// The hidden-state layout of a rank-3 candle layout in `order` (channel stride must be 1).
pub(crate) fn hidden_layout(
    what: &'static str,
    layout: &Layout,
    order: HiddenOrder,
) -> Result<HiddenLayout> {
    let (dims, st) = (layout.dims(), layout.stride());
    if dims.len() != 3 || (st[2] != 1 && dims[2] > 1) {
        return Err(LtdCandleError::Shape {
            what,
            got: dims.to_vec(),
            expected: "a rank-3 tensor with channel stride 1".into(),
        });
    }
    let (batch, seq, bs, ss) = match order {
        HiddenOrder::BatchSeq => (dims[0], dims[1], st[0], st[1]),
        HiddenOrder::SeqBatch => (dims[1], dims[0], st[1], st[0]),
    };
    Ok(HiddenLayout::strided(order, batch, seq, dims[2], bs, ss)?)
}

/// A hidden-state view of a rank-3 CPU storage.
pub(crate) fn hidden_view<'a, T: WithDType + ltd_core::Element>(
    what: &'static str,
    data: &'a CpuStorage,
    layout: &Layout,
    order: HiddenOrder,
) -> Result<HiddenView<'a, T>> {
    let hl = hidden_layout(what, layout, order)?;
    let all = data.as_slice::<T>()?;
    Ok(HiddenView::strided(&all[layout.start_offset()..], hl)?)
}

/// The `[B, r]` rows of a U32 index storage as i32, checked: every value below `seq` and
/// every row strictly ascending (as the sampler writes them).
pub(crate) fn index_rows(data: &CpuStorage, layout: &Layout, seq: usize) -> Result<Vec<i32>> {
    let all = data.as_slice::<u32>()?;
    let (dims, st, start) = (layout.dims(), layout.stride(), layout.start_offset());
    let (b, r) = (dims[0], dims[1]);
    let mut out = Vec::with_capacity(b * r);
    for row in 0..b {
        let mut prev: Option<u32> = None;
        for pos in 0..r {
            let v = all[start + row * st[0] + pos * st[1]];
            let bad = |reason: String| LtdCandleError::InvalidIndex {
                what: "indices",
                row,
                pos,
                value: u64::from(v),
                reason,
            };
            if v as usize >= seq {
                return Err(bad(format!("expected a position below S = {seq}")));
            }
            if prev.is_some_and(|p| p >= v) {
                return Err(bad(
                    "expected each row strictly ascending (as the sampler writes them)".into(),
                ));
            }
            prev = Some(v);
            out.push(i32::try_from(v).map_err(|_| bad("expected a position below 2^31".into()))?);
        }
    }
    Ok(out)
}
