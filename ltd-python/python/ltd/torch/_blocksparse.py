"""What ``MatMul`` and ``Softmax`` share: reading upstream's layout tensor and checking operands."""

import torch

from ._native import check_device

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def layout_mask(layout):
    """Upstream's ``[H, rows, cols]`` (or 2-D, one head) layout of 0s and 1s as a CPU uint8
    tensor ``[H, rows, cols]``; a ``ValueError`` names any other shape or value."""
    t = torch.as_tensor(layout)
    if t.dim() not in (2, 3):
        raise ValueError(f"layout: shape {tuple(t.shape)}; expected [H, nb, nb] (or [nb, nb]) of 0s and 1s")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    t = t.detach().cpu()
    bad = (t != 0) & (t != 1)
    if bad.any():
        pos = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"layout{list(pos)}: value {t[pos].item()}; expected 0 or 1")
    return t.to(torch.uint8).contiguous()


def check_operand(t, what):
    """A ``ValueError`` naming the device or dtype unless ``t`` is a CPU or CUDA tensor of
    float32, float16 or bfloat16, or a CPU tensor of float64 (computed in float64)."""
    check_device(t, what)
    if t.dtype in _FLOATS or (t.dtype == torch.float64 and not t.is_cuda):
        return
    if t.is_cuda:
        note = "; float64 runs on the CPU only" if t.dtype == torch.float64 else ""
        raise ValueError(f"{what}: dtype {t.dtype} is not supported on CUDA; expected float32, float16 or bfloat16{note}")
    raise ValueError(f"{what}: dtype {t.dtype} is not supported on the CPU; expected float32, float16, bfloat16 or float64")
