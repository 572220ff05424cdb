"""Dense torch references, computed in float64."""

import torch


def dense_attention(q, k, v, layout, block, kpm=None, bias=None, causal=False, scale=None, dtype=torch.float64):
    """``softmax(q kᵀ scale + bias + kpm) v`` over the layout's blocks, in float64 (or with the
    products in ``dtype`` and the softmax in float32, as torch's own low-precision attention).

    ``kpm`` is additive ``[B, L]``, ``bias`` additive ``[B, H, L, L]``. A row with every key
    masked gives zeros (ltd's rule; upstream gives NaN).
    """
    q, k, v = (t.to(dtype) for t in (q, k, v))
    L, D = q.shape[-2], q.shape[-1]
    scale = D**-0.5 if scale is None else scale
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    soft = torch.float64 if dtype == torch.float64 else torch.float32
    s = s.to(soft)
    if bias is not None:
        s = s + bias.to(soft)
    if kpm is not None:
        s = s + kpm.to(soft)[:, None, None, :]
    allowed = layout.bool().repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :L, :L]
    allowed = allowed.to(q.device)[None].expand(q.shape[0], -1, -1, -1)
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~allowed, float("-inf"))
    dead = torch.isneginf(s).all(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return torch.matmul(p.to(dtype), v)
