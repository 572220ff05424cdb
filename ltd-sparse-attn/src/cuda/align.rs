//! The address alignment each GPU kernel needs of a caller's buffer, checked before a launch
//! (a cudarc view at an offset, or a raw pointer, may start anywhere).

use crate::{Result, SparseAttnError};

/// Bytes to which the fused attention kernels need the start of every `[B, H, L, D]` buffer
/// (q, k, v, out, dout, dq, dk, dv) aligned: both kernel families move rows in 16-byte pieces.
/// A view of fp16 / bf16 elements must start at a multiple of 8 elements.
///
/// ```
/// assert_eq!(ltd_sparse_attn::cuda::ATTENTION_TENSOR_ALIGN, 16);
/// ```
pub const ATTENTION_TENSOR_ALIGN: usize = 16;

/// What a kernel needs of a buffer's start address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// `[B, H, L, D]` attention tensors: both kernel families move whole rows in 16-byte
    /// pieces (`cp.async` on sm_80, TMA on Hopper), so the base must be 16-byte aligned.
    Rows,
    /// Read or written one element at a time: the element's own alignment.
    Element,
    /// The f16 / bf16 matmul output, written in pairs of elements (one 32-bit store).
    Pairs,
}

impl Align {
    /// Bytes of alignment for elements of `elem` bytes.
    pub(crate) fn bytes(self, elem: usize) -> u64 {
        let elem = elem.max(1) as u64;
        match self {
            Align::Rows => ATTENTION_TENSOR_ALIGN as u64,
            Align::Element => elem,
            Align::Pairs if elem == 2 => 4,
            Align::Pairs => elem,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Align::Rows => {
                "the attention kernels load and store [B, H, L, D] rows in 16-byte pieces \
                 (cp.async, TMA): start a view at a multiple of 8 fp16/bf16 elements"
            }
            Align::Element => "the alignment of the element type",
            Align::Pairs => {
                "the matmul stores fp16/bf16 results two at a time: start an output view at an \
                 even element offset"
            }
        }
    }

    /// `address` when it has this alignment for elements of `elem` bytes, else
    /// [`SparseAttnError::Misaligned`] naming `what`.
    pub(crate) fn check(self, what: &str, address: u64, elem: usize) -> Result<u64> {
        let required = self.bytes(elem);
        if address.is_multiple_of(required) {
            return Ok(address);
        }
        Err(SparseAttnError::Misaligned {
            what: what.to_string(),
            address,
            alignment: 1u64 << address.trailing_zeros().min(8),
            required,
            why: self.why(),
        })
    }
}

/// The Hopper TMA maps and the sm_80 bias-tile loads read the bias in 16-byte pieces; a bias
/// that starts elsewhere is read element by element instead (a slower kernel, same result).
pub(crate) fn bias_tiles_aligned(address: u64) -> bool {
    address.is_multiple_of(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_need_sixteen_bytes() {
        assert_eq!(Align::Rows.check("q", 0x1000, 2).unwrap(), 0x1000);
        let err = Align::Rows.check("q", 0x1002, 2).unwrap_err();
        match err {
            SparseAttnError::Misaligned {
                what,
                address,
                alignment,
                required,
                ..
            } => {
                assert_eq!(
                    (what.as_str(), address, alignment, required),
                    ("q", 0x1002, 2, 16)
                );
            }
            other => panic!("expected Misaligned, got {other:?}"),
        }
        assert!(
            Align::Rows
                .check("k", 0x1008, 2)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "k: device address 0x1008 is aligned to 8 bytes; expected a multiple of 16"
                )
        );
    }

    #[test]
    fn elements_and_pairs() {
        assert!(Align::Element.check("lse", 0x1004, 4).is_ok());
        assert!(Align::Element.check("lse", 0x1002, 4).is_err());
        assert!(Align::Element.check("x", 0x1001, 1).is_ok());
        assert_eq!(Align::Pairs.bytes(2), 4);
        assert_eq!(Align::Pairs.bytes(4), 4);
        assert!(Align::Pairs.check("c", 0x1002, 2).is_err());
        assert!(Align::Pairs.check("c", 0x1004, 2).is_ok());
        assert!(bias_tiles_aligned(0x2000) && !bias_tiles_aligned(0x2008));
    }
}
