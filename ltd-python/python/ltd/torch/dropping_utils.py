"""Random-LTD's token ops (``deepspeed.ops.random_ltd.dropping_utils``) on ltd's kernels:
``gpt_sample_tokens``, ``bert_sample_tokens``, ``GatherTokens`` and ``ScatterTokens``, with
upstream's names, signatures and gradients (upstream-semantics.md §1.2, §1.4), on the CPU and
on CUDA (float32, float16, bfloat16, and float64 on the CPU; upstream: CUDA only, and other
dtypes silently wrong).

Differences: the kept positions come from ltd's keyed sampler (sorted, distinct, identical on
CPU and GPU for one seed), seeded from torch's default CPU generator, so ``torch.manual_seed``
makes them reproducible; any ``S`` and ``r <= S`` work (upstream's sort stops at 2048).
``ScatterTokens`` writes each row once (no full clone first). Index rows must be strictly
ascending, as the samplers give them: the CPU path checks this (``ValueError``), the GPU
kernels trust it.
"""

import torch

from ._native import capsule, check_device, check_float, native, stream_of


def _seed():
    return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())


def _sample(reserved_length, seq_length, batch_size, layers, device):
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {device} is not supported; expected a CPU or CUDA device")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    out = torch.empty((layers, batch_size, reserved_length), dtype=torch.int32, device=device)
    native.sample_tokens(
        _seed(), 0, layers, batch_size, seq_length, reserved_length, capsule(out), stream=stream_of(out)
    )
    return out


def gpt_sample_tokens(reserved_length, seq_length, batch_size, layers=1, device="cpu", attn_mask=None):
    """Kept positions for a decoder: ``(indices int32 [layers, batch, r], mask[:, :, :r, :r] or None)``.

    The mask slice assumes a causal mask shared by all rows, as upstream does.
    """
    indices = _sample(reserved_length, seq_length, batch_size, layers, device)
    new_mask = attn_mask[:, :, :reserved_length, :reserved_length] if attn_mask is not None else None
    return indices, new_mask


def bert_sample_tokens(reserved_length, seq_length, batch_size, layers=1, device="cpu", attn_mask=None):
    """Kept positions for an encoder: ``(indices int32 [layers, batch, r], list of layers masks)``.

    ``attn_mask`` is a full ``[B, H', S, S]`` mask (required, as upstream); each layer's mask is
    its rows and columns at that layer's kept positions, ``[B, H', r, r]``.
    """
    if attn_mask is None:
        raise ValueError("attn_mask: None; expected the [B, H', S, S] attention mask (bert_sample_tokens needs it)")
    if attn_mask.dim() != 4 or attn_mask.shape[0] != batch_size or attn_mask.shape[2:] != (seq_length, seq_length):
        raise ValueError(f"attn_mask: shape {tuple(attn_mask.shape)}; expected [B, H', S, S] with B = {batch_size}, S = {seq_length}")
    indices = _sample(reserved_length, seq_length, batch_size, layers, device)
    heads = attn_mask.shape[1]
    new_mask = []
    for layer in range(layers):
        idx = indices[layer].to(device=attn_mask.device, dtype=torch.long)
        rows = torch.take_along_dim(attn_mask, idx[:, None, :, None].expand(-1, heads, -1, seq_length), dim=2)
        new_mask.append(torch.take_along_dim(rows, idx[:, None, None, :].expand(-1, heads, reserved_length, -1), dim=3))
    return indices, new_mask


def _index(sorted_indices, like):
    check_device(sorted_indices, "sorted_indices")
    if sorted_indices.device != like.device:
        raise ValueError(f"sorted_indices: on {sorted_indices.device}; expected the activations' device {like.device}")
    return sorted_indices.to(torch.int32).contiguous()


def _gather(h, idx, batch_first):
    b, r = idx.shape
    c = h.shape[-1]
    part = torch.empty((b, r, c) if batch_first else (r, b, c), dtype=h.dtype, device=h.device)
    native.gather(capsule(h), capsule(idx), capsule(part), batch_first, stream=stream_of(h))
    return part


def _route(h, part, idx, batch_first):
    out = torch.empty_like(h)
    native.route(capsule(h), capsule(part), capsule(idx), capsule(out), batch_first, stream=stream_of(h))
    return out


class GatherTokens(torch.autograd.Function):
    """``(activations, sorted_indices [B, r], batch_first) -> (activations, kept tokens)``.

    The kept tokens are ``[B, r, C]`` (batch first) or ``[r, B, C]``. Backward: the gradient
    of ``activations`` is the passthrough's gradient with the kept rows replaced by the kept
    tokens' gradient (upstream's rule).
    """

    @staticmethod
    def forward(ctx, activations, sorted_indices, batch_first):
        check_float(activations, "activations", cpu_float64=True)
        idx = _index(sorted_indices, activations)
        ctx.save_for_backward(idx)
        ctx.batch_first = batch_first
        return activations, _gather(activations.contiguous(), idx, batch_first)

    @staticmethod
    def backward(ctx, a_gradients, g_gradients):
        (idx,) = ctx.saved_tensors
        grad = _route(a_gradients.contiguous(), g_gradients.contiguous(), idx, ctx.batch_first)
        return grad, None, None


class ScatterTokens(torch.autograd.Function):
    """``(all_activations, layer_activations, sorted_indices [B, r], batch_first) -> y``.

    ``y`` is ``all_activations`` with the kept rows replaced by ``layer_activations``.
    Backward: ``all_activations`` gets all of ``y``'s gradient, ``layer_activations`` its
    kept rows (upstream's rule).
    """

    @staticmethod
    def forward(ctx, all_activations, layer_activations, sorted_indices, batch_first):
        check_float(all_activations, "all_activations", cpu_float64=True)
        check_float(layer_activations, "layer_activations", cpu_float64=True)
        idx = _index(sorted_indices, all_activations)
        ctx.save_for_backward(idx)
        ctx.batch_first = batch_first
        return _route(all_activations.contiguous(), layer_activations.contiguous(), idx, batch_first)

    @staticmethod
    def backward(ctx, out_gradients):
        (idx,) = ctx.saved_tensors
        out_gradients = out_gradients.contiguous()
        return out_gradients, _gather(out_gradients, idx, ctx.batch_first), None, None
