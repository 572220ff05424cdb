"""``Softmax`` (``deepspeed.ops.sparse_attention.Softmax``): the block-sparse softmax over a
layout's tiles, on ltd's CPU ops and CUDA kernels, with autograd.

For batch ``z``, head ``h`` and query ``i``, over the keys ``j`` of the active tiles of ``i``'s
block row: ``softmax(x * scale + rpe[z, h, i, j] + kpm[z, j] + attn_mask[i, j])``, each mask
added (``"add"``) or turned into ``-inf`` where it is 0 (``"mul"``). As upstream, the result is
written into ``x`` (marked dirty) and returned, and no gradient flows to ``rpe`` or the masks.

Differences from upstream: CPU and CUDA, float32 / float16 / bfloat16 on both (computed in
float32) and float64 on the CPU (computed in float64, so ``torch.autograd.gradcheck`` runs on it;
``scale`` is taken as a float32 in every dtype); a row whose keys are all masked gives zeros, not
NaN; the result is computed into a new tensor and copied into ``x``; the layout must be square
(rows and keys are one sequence).

Example::

    import torch
    import ltd.torch as lt

    layout = torch.tensor([[[1, 0], [1, 1]]])      # one head, 2 x 2 blocks of 16
    softmax = lt.Softmax(layout, 16)
    scores = torch.randn(2, 3, 16, 16, requires_grad=True)   # [Z, nnz, b, b]
    probs = softmax(scores.clone(), scale=0.25)     # rows sum to 1 over their active keys
    probs.sum().backward()
"""

import torch

from ._blocksparse import check_operand, layout_mask
from ._native import capsule, check_device, native, stream_of


class _SoftmaxFn(torch.autograd.Function):
    """``x -> softmax(x)`` in place on ``x``; the masks get no gradient."""

    @staticmethod
    def forward(ctx, op, x, scale, rpe, kpm, kpm_mode, am, am_mode):
        src = x.contiguous()
        y = torch.empty_like(src)
        op.forward(
            capsule(src), capsule(y), scale=scale, rpe=capsule(rpe), key_padding_mask=capsule(kpm),
            attn_mask=capsule(am), key_padding_mask_mode=kpm_mode, attn_mask_mode=am_mode,
            stream=stream_of(x),
        )
        x.copy_(y)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.op, ctx.scale = op, scale
        return x

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        y, dy = y.contiguous(), dy.contiguous()
        dx = torch.empty_like(y)
        ctx.op.backward(capsule(y), capsule(dy), capsule(dx), scale=ctx.scale, stream=stream_of(y))
        return None, dx, None, None, None, None, None, None


class Softmax:
    """Block-sparse softmax over one layout (upstream's class).

    Arguments, as upstream: ``layout`` (an integer tensor ``[H, nb, nb]``, or ``[nb, nb]`` for
    one head, of 0s and 1s) and ``block`` (16, 32, 64 or 128); ``bench`` is accepted and
    ignored. The layout's tables are built once here (and uploaded once per GPU).
    """

    def __init__(self, layout, block, bench=False):
        mask = layout_mask(layout)
        heads, rows, cols = mask.shape
        if rows != cols:
            raise ValueError(f"layout: shape {tuple(mask.shape)}; expected a square [H, nb, nb] (query and key blocks of one sequence)")
        self.num_blocks = int(mask.sum())
        self.spdims = mask.shape
        self.layout = layout
        self.block = block
        self.bench = bench
        self._op = native.BlockSparseSoftmax(heads, rows, block, mask.flatten().tolist())

    def __call__(
        self,
        x,
        scale=1.0,
        rpe=None,
        key_padding_mask=None,
        attn_mask=None,
        key_padding_mask_mode="add",
        attn_mask_mode="add",
    ):
        """Softmax of the sparse scores ``x`` ``[Z, nnz, b, b]``, written into ``x`` and
        returned. ``rpe`` is ``[Z, H, S, S]``, ``key_padding_mask`` ``[Z, S]`` and ``attn_mask``
        ``[S, S]`` (``S`` = blocks x block), all of x's dtype."""
        if rpe is not None and rpe.dtype != x.dtype:
            raise ValueError("relative position embedding must be %s" % x.dtype)
        if attn_mask is not None and attn_mask.dtype != x.dtype:
            raise ValueError("Attention mask must be %s" % x.dtype)
        if key_padding_mask is not None and key_padding_mask.dtype != x.dtype:
            raise ValueError("Key padding mask must be %s" % x.dtype)
        for mode, what in ((key_padding_mask_mode, "key_padding_mask_mode"), (attn_mask_mode, "attn_mask_mode")):
            if mode not in ("add", "mul"):
                raise ValueError(f"{what}: {mode!r} is not supported; expected 'add' or 'mul'")
        check_operand(x, "x")
        heads, nb, _ = self.spdims
        Z, S, b = (x.shape[0] if x.dim() == 4 else None), nb * self.block, self.block
        want = (Z, self.num_blocks, b, b)
        if x.dim() != 4 or tuple(x.shape) != want:
            raise ValueError(f"x: shape {tuple(x.shape)}; expected [Z, nnz, block, block] = [Z, {self.num_blocks}, {b}, {b}]")
        extras = []
        for t, what, shape in ((rpe, "rpe", (Z, heads, S, S)), (key_padding_mask, "key_padding_mask", (Z, S)), (attn_mask, "attn_mask", (S, S))):
            if t is not None:
                check_device(t, what)
                if t.device != x.device:
                    raise ValueError(f"{what}: is on {t.device}; expected {x.device} (the device of x)")
                if tuple(t.shape) != shape:
                    raise ValueError(f"{what}: shape {tuple(t.shape)}; expected {list(shape)}")
                t = t.detach().contiguous()
            extras.append(t)
        if x.numel() == 0:
            return x
        rpe, kpm, am = extras
        return _SoftmaxFn.apply(self._op, x, float(scale), rpe, kpm, key_padding_mask_mode, am, attn_mask_mode)
