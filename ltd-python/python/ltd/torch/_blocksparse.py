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
    """A ``ValueError`` naming the device or dtype when ``t`` is not a CPU or CUDA tensor of
    float32, float16 or bfloat16 (the primitives' dtypes on both devices)."""
    check_device(t, what)
    if t.dtype not in _FLOATS:
        where = "CUDA" if t.is_cuda else "the CPU"
        raise ValueError(f"{what}: dtype {t.dtype} is not supported on {where}; expected float32, float16 or bfloat16")
