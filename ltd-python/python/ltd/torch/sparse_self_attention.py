"""``SparseSelfAttention`` (``deepspeed.ops.sparse_attention.SparseSelfAttention``) on ltd's fused
block-sparse attention: one kernel for scores, softmax and the product with ``value``, with a
fused backward (``torch.autograd.Function``).

Semantics follow upstream (upstream-semantics.md §2.8) with these differences (§2.12):

- dtypes: float32, float16 and bfloat16 on the CPU (computed in float32) and float64 (computed in
  float64, so ``torch.autograd.gradcheck`` runs on it); float16 and bfloat16 on CUDA with head
  dim 64 or 128 (upstream: float16 only). Anything else is a ``ValueError``.
- any sequence length (no padding to the block size); the layout is built for each length
  rather than cropped from the ``max_seq_length`` one.
- ``rpe`` gets a gradient (upstream returns none); a row whose keys are all masked gives zeros,
  not NaN.
- a lower-triangular ``attn_mask`` in ``mul`` mode runs as the op's token-level causal flag;
  any other ``attn_mask`` is added to the scores as a dense ``[B, H, L, L]`` bias, like ``rpe``.
"""

import torch
from torch import nn

from ._native import capsule, check_device, check_float, stream_of
from .sparsity_config import SparsityConfig


class _SparseAttentionFn(torch.autograd.Function):
    """The fused op: ``(q, k, v, additive key-padding mask, additive bias) -> out``."""

    @staticmethod
    def forward(ctx, op, causal, q, k, v, kpm, bias):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        b, h, l, _ = q.shape
        out = torch.empty_like(q)
        lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        lse = torch.empty((b, h, l), dtype=lse_dtype, device=q.device)
        op.forward(
            capsule(q), capsule(k), capsule(v), capsule(out), capsule(lse),
            kpm=capsule(kpm), bias=capsule(bias), causal=causal, stream=stream_of(q),
        )
        ctx.op, ctx.causal = op, causal
        ctx.save_for_backward(q, k, v, out, lse, kpm, bias)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, kpm, bias = ctx.saved_tensors
        dout = dout.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dbias = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[6] else None
        ctx.op.backward(
            capsule(q), capsule(k), capsule(v), capsule(out), capsule(lse), capsule(dout),
            capsule(dq), capsule(dk), capsule(dv), dbias=capsule(dbias),
            kpm=capsule(kpm), bias=capsule(bias), causal=ctx.causal, stream=stream_of(q),
        )
        return None, None, dq, dk, dv, None, dbias


def _additive(mask, mode, what):
    """Upstream's mask modes: ``add`` adds the values; ``mul`` adds -inf where the mask is 0."""
    if mode == "add":
        return mask
    if mode == "mul":
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(mask == 0, float("-inf"))
    raise NotImplementedError(f"{what} mode {mode!r} is not supported; expected 'add' or 'mul'")


def _squeeze_all_but_first(t):
    for dim in range(t.dim() - 1, 0, -1):
        if t.shape[dim] == 1 and t.dim() > 2:
            t = t.squeeze(dim)
    return t


class SparseSelfAttention(nn.Module):
    """Block-sparse self-attention for ``[B, H, L, D]`` query, key and value.

    Arguments, as upstream: ``sparsity_config`` (one of the ``*SparsityConfig`` classes),
    ``key_padding_mask_mode`` and ``attn_mask_mode`` (``"add"`` or ``"mul"``) and
    ``max_seq_length`` (the length of the ``master_layout`` buffer kept for state-dict
    compatibility; every length is supported).
    """

    def __init__(
        self,
        sparsity_config=SparsityConfig(num_heads=4),
        key_padding_mask_mode="add",
        attn_mask_mode="mul",
        max_seq_length=2048,
    ):
        super().__init__()
        self.sparsity_config = sparsity_config
        self._op = sparsity_config.native()
        self.key_padding_mask_mode = key_padding_mask_mode
        self.attn_mask_mode = attn_mask_mode
        self.register_buffer("master_layout", sparsity_config.make_layout(max_seq_length))

    def get_layout(self, L):
        """The layout ``[H, nb, nb]`` the op uses for ``L`` tokens."""
        return self.sparsity_config.make_layout(L)

    def _attn_mask(self, attn_mask, L, device):
        """``(causal, additive [L, L] or None)`` from upstream's 2-D ``attn_mask``."""
        am = attn_mask.squeeze()
        if am.shape != (L, L):
            raise ValueError(f"attn_mask: shape {tuple(attn_mask.shape)}; expected [L, L] = [{L}, {L}] (size-1 dims allowed)")
        am = am.to(device)
        if self.attn_mask_mode == "mul":
            causal = torch.ones((L, L), dtype=torch.bool, device=device).tril()
            if torch.equal(am != 0, causal):
                return True, None
        return False, _additive(am, self.attn_mask_mode, "attn_mask")

    def forward(self, query, key, value, rpe=None, key_padding_mask=None, attn_mask=None):
        """``softmax(q kᵀ / sqrt(D) + rpe + masks) v`` over the layout's blocks: ``[B, H, L, D]``."""
        for t, what in ((query, "query"), (key, "key"), (value, "value")):
            check_float(t, what, cpu_float64=True)
        if query.dim() != 4:
            raise ValueError(f"query: shape {tuple(query.shape)}; expected 4 dimensions [B, H, L, D]")
        bsz, heads, L, _ = query.shape
        if key.dim() == 4 and key.shape[2] != L:
            key = key.transpose(-2, -1)  # upstream accepts a key given as [B, H, D, L]
        if query.shape != key.shape or key.shape != value.shape:
            raise NotImplementedError("only self-attention is supported for now")
        if heads != self.sparsity_config.num_heads:
            raise ValueError(f"query: {heads} heads; expected the sparsity config's num_heads {self.sparsity_config.num_heads}")
        kpm = None
        if key_padding_mask is not None:
            check_device(key_padding_mask, "key_padding_mask")
            m = _squeeze_all_but_first(key_padding_mask)
            if m.shape != (bsz, L):
                raise ValueError(f"key_padding_mask: shape {tuple(key_padding_mask.shape)}; expected [B, L] = [{bsz}, {L}] (size-1 dims allowed)")
            kpm = _additive(m.to(query.device), self.key_padding_mask_mode, "key_padding_mask").to(torch.float32).contiguous()
        causal, bias = False, None
        if attn_mask is not None:
            check_device(attn_mask, "attn_mask")
            causal, bias = self._attn_mask(attn_mask, L, query.device)
        if rpe is not None:
            check_device(rpe, "rpe")
            bias = rpe if bias is None else rpe + bias
        if bias is not None:
            bias = bias.to(device=query.device, dtype=query.dtype).expand(bsz, heads, L, L).contiguous()
        return _SparseAttentionFn.apply(self._op, causal, query, key, value, kpm, bias)
