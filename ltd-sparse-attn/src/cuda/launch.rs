//! What every launch of the attention kernels shares: device addresses with their stream
//! guards ([`Borrows`]), the partial-result buffers of split rows and columns, and the TMA
//! tensor maps of the Hopper kernels.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop};
use ltd_core::cuda::{DeviceBuf, DeviceBufMut, TensorMapElement, tensor_map_3d};
use ltd_kernels_sys::LtdSparseAttnTmaMaps;

use super::align::Align;
use crate::{AttentionShape, Result, SparseAttnError};

/// The device addresses of a call's buffers, each buffer borrowed (and its stream guard held)
/// until the launches that use the address are queued, when this is dropped.
pub(crate) struct Borrows<'a> {
    stream: &'a CudaStream,
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> Borrows<'a> {
    pub(crate) fn new(stream: &'a CudaStream) -> Borrows<'a> {
        Borrows {
            stream,
            guards: Vec::new(),
        }
    }

    /// The address of a buffer the kernels read.
    pub(crate) fn read<T>(&mut self, buf: &'a CudaSlice<T>) -> u64 {
        let (ptr, guard) = buf.device_ptr(self.stream);
        self.guards.push(guard);
        ptr
    }

    /// The address of a buffer the kernels write.
    pub(super) fn write<T>(&mut self, buf: &'a mut CudaSlice<T>) -> u64 {
        let (ptr, guard) = buf.device_ptr_mut(self.stream);
        self.guards.push(guard);
        ptr
    }

    /// The address of an optional output, 0 (null: the kernels skip it) for none.
    pub(super) fn write_opt<T>(&mut self, buf: Option<&'a mut CudaSlice<T>>) -> u64 {
        buf.map_or(0, |b| self.write(b))
    }

    /// The address of a caller's buffer the kernels read, checked for `align`.
    pub(crate) fn input<T>(
        &mut self,
        what: &str,
        buf: &'a DeviceBuf<'_, T>,
        align: Align,
    ) -> Result<u64> {
        let (ptr, guard) = buf.ptr(self.stream);
        self.guards.push(guard);
        check_address(what, ptr, buf.len(), align, std::mem::size_of::<T>())
    }

    /// The address of an optional caller's input, 0 (null: the kernels skip it) for none.
    pub(crate) fn input_opt<T>(
        &mut self,
        what: &str,
        buf: Option<&'a DeviceBuf<'_, T>>,
        align: Align,
    ) -> Result<u64> {
        buf.map_or(Ok(0), |b| self.input(what, b, align))
    }

    /// The address of a caller's buffer the kernels write, checked for `align`.
    pub(crate) fn output<T>(
        &mut self,
        what: &str,
        buf: &'a mut DeviceBufMut<'_, T>,
        align: Align,
    ) -> Result<u64> {
        let len = buf.len();
        let (ptr, guard) = buf.ptr_mut(self.stream);
        self.guards.push(guard);
        check_address(what, ptr, len, align, std::mem::size_of::<T>())
    }
}

/// A caller's address: not null (a raw pointer could be) unless the buffer is empty, and
/// aligned as `align` asks for elements of `elem` bytes.
fn check_address(what: &str, ptr: u64, len: usize, align: Align, elem: usize) -> Result<u64> {
    if ptr == 0 && len > 0 {
        return Err(SparseAttnError::invalid(
            what,
            "a null device pointer",
            format!("the address of {len} elements"),
        ));
    }
    align.check(what, ptr, elem)
}

/// An uninitialised f32 buffer of `len` for the partial results of split rows or columns, or
/// `None` when the plan splits nothing (the kernels then never touch it). Not zero-filled:
/// every slot belongs to exactly one piece, which writes all of its rows (past the sequence end
/// too) before the combine, launched after it on the same stream, reads any.
pub(super) fn partial_buffer(
    stream: &Arc<CudaStream>,
    num_slots: usize,
    len: usize,
) -> Result<Option<CudaSlice<f32>>> {
    if num_slots == 0 {
        return Ok(None);
    }
    // SAFETY: uninitialised device memory of `len` f32; only kernels touch it, and (above) each
    // element is written by the main kernel before the combine reads it.
    unsafe { stream.alloc::<f32>(len) }
        .map(Some)
        .map_err(SparseAttnError::driver(
            "allocating the partial results of split rows",
        ))
}

/// The buffers a Hopper launch addresses through tensor maps (device addresses).
pub(super) struct TmaBuffers {
    /// q, k, v: `[B*H][L][D]`.
    pub qkv: [u64; 3],
    /// The forward's output o.
    pub out: Option<u64>,
    /// The backward's dout, f32 dq accumulator, dk and dv.
    pub backward: Option<[u64; 4]>,
    /// The additive bias `[B*H][L][L]`, when the kernel reads it by TMA.
    pub bias: Option<u64>,
    /// The gathered kernels (forward chunks, backward key sets): k and v also with 16-row boxes
    /// (one 16-key slice each).
    pub gather: bool,
}

/// The tensor maps of a Hopper attention launch over `B*H` `[L][D]` matrices: 64 x 64
/// boxes of 2-byte elements (64 x 32 of f32 for the dq accumulator; 64 x 64 boxes of the
/// `[L][L]` bias; 64 x 16 boxes of k and v for the gathered kernels). Maps a call does not use
/// repeat q's (encoded once).
pub(super) fn tma_maps(bufs: &TmaBuffers, shape: AttentionShape) -> Result<LtdSparseAttnTmaMaps> {
    use TensorMapElement::{F32, U16};
    let (matrices, seq) = (shape.batch * shape.heads, shape.seq_len);
    let dims = [matrices, seq, shape.head_dim];
    let tile = |ptr| tensor_map_3d(ptr, U16, [64, 64], dims);
    let [q, k, v] = bufs.qkv;
    let q = tile(q)?;
    let [dout, dq_acc, dk, dv] = match bufs.backward {
        Some([dout, dq_acc, dk, dv]) => [
            tile(dout)?,
            tensor_map_3d(dq_acc, F32, [32, 64], dims)?,
            tile(dk)?,
            tile(dv)?,
        ],
        None => [q; 4],
    };
    let o = match bufs.out {
        Some(o) => tile(o)?,
        None => q,
    };
    let bias = match bufs.bias {
        Some(b) => tensor_map_3d(b, U16, [64, 64], [matrices, seq, seq])?,
        None => q,
    };
    let [k16, v16] = if bufs.gather {
        let slice = |ptr| tensor_map_3d(ptr, U16, [64, 16], dims);
        [slice(k)?, slice(v)?]
    } else {
        [q; 2]
    };
    Ok(LtdSparseAttnTmaMaps {
        q,
        k: tile(k)?,
        v: tile(v)?,
        k16,
        v16,
        dout,
        dq_acc,
        o,
        dk,
        dv,
        bias,
    })
}
