"""``MatMul`` (``deepspeed.ops.sparse_attention.MatMul``): block-sparse products on ltd's CPU ops
and CUDA kernels, with autograd.

Modes, as upstream (``op(X)`` is ``Xᵀ`` when its trans flag is set; a transposed dense operand
is passed as stored, ``[Z, H, cols, rows]`` of ``op``):

- ``sdd``: sparse ``[Z, nnz, b, b]`` = op(A) ``[Z, H, M, K]`` x op(B) ``[Z, H, K, N]``, computed
  only at the tiles of the layout ``[H, M/b, N/b]``;
- ``dsd``: dense ``[Z, H, M, N]`` = op(A) sparse x op(B) dense;
- ``dds``: dense ``[Z, H, M, N]`` = op(A) dense x op(B) sparse.

Results equal ``torch.matmul`` of the densified operands (zeros outside the layout); the
gradient of a sparse operand holds the layout's tiles only. Differences from upstream: CPU and
CUDA, float32 / float16 / bfloat16 on both (accumulated in float32) and float64 on the CPU
(accumulated in float64, so ``torch.autograd.gradcheck`` runs on it); any K (upstream:
``sdd``'s K a multiple of 16); blocks 16, 32, 64 or 128; a rectangular layout runs as the
square one it is the top-left corner of, the dense operands zero-padded (a copy; square layouts
are zero-copy).

Example::

    import torch
    import ltd.torch as lt

    layout = torch.tensor([[[1, 0], [1, 1]]])     # one head, 2 x 2 blocks of 16
    sdd = lt.MatMul(layout, 16, "sdd", trans_b=True)
    dsd = lt.MatMul(layout, 16, "dsd")
    q, k, v = (torch.randn(2, 1, 32, 8, requires_grad=True) for _ in range(3))
    scores = sdd(q, k)                             # q kᵀ at the 3 tiles: [2, 3, 16, 16]
    out = dsd(scores, v)                           # [2, 1, 32, 8]
    out.sum().backward()
"""

import torch
import torch.nn.functional as F

from ._blocksparse import check_operand, layout_mask
from ._native import capsule, check_device, native, stream_of


class _MatMulFn(torch.autograd.Function):
    """One product over a square layout: ``(a, b) -> c``, outputs allocated here."""

    @staticmethod
    def forward(ctx, op, a, b):
        a, b = a.contiguous(), b.contiguous()
        shape = op.output_shape(capsule(a), capsule(b))
        ctx.op = op
        ctx.save_for_backward(a, b)
        if a.numel() == 0 or b.numel() == 0:
            return torch.zeros(shape, dtype=a.dtype, device=a.device)  # an empty sum
        c = torch.empty(shape, dtype=a.dtype, device=a.device)
        op.forward(capsule(a), capsule(b), capsule(c), stream=stream_of(a))
        return c

    @staticmethod
    def backward(ctx, dc):
        a, b = ctx.saved_tensors
        if a.numel() == 0 or b.numel() == 0 or dc.numel() == 0:
            return None, torch.zeros_like(a), torch.zeros_like(b)
        dc = dc.contiguous()
        da, db = torch.empty_like(a), torch.empty_like(b)
        ctx.op.backward(capsule(a), capsule(b), capsule(dc), capsule(da), capsule(db), stream=stream_of(a))
        return None, da, db


def _pad(x, trans, op_rows, size):
    """``x`` (stored transposed when ``trans``) with the rows (``op_rows``) or the columns of
    ``op(x)`` zero-padded to ``size``."""
    last = op_rows == trans  # which stored dim holds them
    extra = size - x.shape[-1 if last else -2]
    if extra == 0:
        return x
    return F.pad(x, (0, extra) if last else (0, 0, 0, extra))


def _four_dims(x):
    """Upstream's rule: leading singleton dims up to 4; more than 4 is an error."""
    if x.dim() > 4:
        raise ValueError("Tensors with more than 4 dimensions are not currently supported")
    return x.view(*([1] * (4 - x.dim())), *x.shape)


class MatMul:
    """Block-sparse matmul of one layout, mode and pair of trans flags (upstream's class).

    Arguments, as upstream: ``layout`` (an integer tensor ``[H, rows, cols]``, or ``[rows,
    cols]`` for one head, of 0s and 1s), ``block`` (16, 32, 64 or 128), ``mode`` (``"sdd"``,
    ``"dsd"`` or ``"dds"``), ``trans_a`` and ``trans_b``; ``bench`` is accepted and ignored.
    The layout's tables are built once here (and uploaded once per GPU), then reused by every
    call, forward and backward.
    """

    def __init__(self, layout, block, mode, trans_a=False, trans_b=False, bench=False):
        if mode not in ("sdd", "dsd", "dds"):
            raise NotImplementedError("Supported modes are: sdd, dsd, dds")
        mask = layout_mask(layout)
        self.layout = layout
        self.block = block
        self.mode = mode
        self.trans_a = trans_a
        self.trans_b = trans_b
        self.bench = bench
        self.spdims = mask.shape
        heads, rows, cols = mask.shape
        n = max(rows, cols)
        square = torch.zeros((heads, n, n), dtype=torch.uint8)
        square[:, :rows, :cols] = mask
        self._size = n * block
        self._op = native.BlockSparseMatMul(heads, n, block, square.flatten().tolist(), mode, trans_a, trans_b)

    def __call__(self, a, b):
        """The product ``op(a) op(b)``; leading singleton dims added to the inputs are removed
        from the output, as upstream."""
        original_dims = max(a.dim(), b.dim())
        a, b = self._validate_inputs(a, b)
        c = self._run(a, b)
        for _ in range(c.dim() - original_dims):
            c = c.squeeze(0)
        return c

    def _run(self, a, b):
        """The square op, padding the dense operands of a rectangular layout (and cropping a
        dense result): the padded layout keeps the same tiles in the same order."""
        _, rows, cols = self.spdims
        blk, size, ta, tb = self.block, self._size, self.trans_a, self.trans_b
        if rows == cols:
            return _MatMulFn.apply(self._op, a, b)
        if self.mode == "sdd":
            return _MatMulFn.apply(self._op, _pad(a, ta, True, size), _pad(b, tb, False, size))
        if self.mode == "dsd":
            c = _MatMulFn.apply(self._op, a, _pad(b, tb, True, size))
            return c[:, :, : (cols if ta else rows) * blk].contiguous()
        c = _MatMulFn.apply(self._op, _pad(a, ta, False, size), b)
        return c[..., : (rows if tb else cols) * blk].contiguous()

    def _validate_inputs(self, a, b):
        """Upstream's checks and messages, plus the dtypes, devices and sizes ltd checks."""
        check_device(a, "a")
        check_device(b, "b")
        if a.device != b.device:
            raise ValueError(f"Inputs must be on the same device; got {a.device} for tensor A and {b.device} for tensor B")
        if a.is_cuda and torch.is_autocast_enabled():
            a, b = a.half(), b.half()  # as upstream: torch.matmul would autocast to float16
        elif a.dtype != b.dtype:
            raise ValueError(f"Inputs must be the same dtype; got {a.dtype} for A and {b.dtype} for B")
        check_operand(a, "a")
        check_operand(b, "b")
        a, b = _four_dims(a), _four_dims(b)
        self._check_sizes(a, b)
        return a, b

    def _check_sizes(self, a, b):
        heads, rows, cols = self.spdims
        blk, ta, tb = self.block, self.trans_a, self.trans_b
        sparse_rows, sparse_cols = rows * blk, cols * blk

        def op_dim(trans, op_rows):
            return -2 if op_rows != trans else -1

        def expect(x, name, dim, size, why):
            if x.shape[dim] != size:
                raise ValueError(f"Expected tensor {name} to have size {size} at dim {dim % 4} ({why}), got {x.shape[dim]}.")

        def expect_sparse(x, name):
            want = (int(self._op.nnz()), blk, blk)
            if tuple(x.shape[-3:]) != want:
                raise ValueError(f"Expected tensor with trailing dimensions of shape {want} for argument {name}, got {tuple(x.shape)}")

        if self.mode == "sdd":
            expect(a, "A", op_dim(ta, True), sparse_rows, "the layout's rows x block")
            expect(b, "B", op_dim(tb, False), sparse_cols, "the layout's columns x block")
            expect(b, "B", op_dim(tb, True), a.shape[op_dim(ta, False)], "the inner size of A")
            dense = [(a, "A"), (b, "B")]
        elif self.mode == "dsd":
            expect_sparse(a, "A")
            expect(b, "B", op_dim(tb, True), sparse_rows if ta else sparse_cols, "the inner size of the sparse A")
            dense = [(b, "B")]
        else:
            expect_sparse(b, "B")
            expect(a, "A", op_dim(ta, False), sparse_cols if tb else sparse_rows, "the inner size of the sparse B")
            dense = [(a, "A")]
        for x, name in dense:
            expect(x, name, 1, heads, "the layout's heads")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"Expected tensors A and B to have the same batch size, got {a.shape[0]} for A and {b.shape[0]} for B")
