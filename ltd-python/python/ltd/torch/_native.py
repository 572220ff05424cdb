"""Handing torch tensors to the native module: DLPack capsules and the current CUDA stream.

Every op allocates its outputs with torch and lets the native code write them through DLPack,
so nothing is copied; CUDA work is queued on ``torch.cuda.current_stream()``, ordered with
torch's own work on that stream.
"""

import torch

from .. import _ltd

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def capsule(t):
    """A DLPack capsule of ``t`` (detached: torch refuses to export tensors that need grad).

    CUDA tensors are exported with ``stream=-1`` (no synchronisation): the op runs on the
    current stream, the one their producer used.
    """
    if t is None:
        return None
    t = t.detach()
    if t.is_cuda:
        return t.__dlpack__(stream=-1)
    return t.__dlpack__()


def stream_of(t):
    """The raw ``CUstream`` of torch's current stream on ``t``'s device (0 for CPU tensors)."""
    if t.is_cuda:
        return torch.cuda.current_stream(t.device).cuda_stream
    return 0


def check_device(t, what):
    """A ``ValueError`` for devices other than CPU and CUDA (MPS, XLA, meta, ...)."""
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what}: tensors on {t.device} are not supported; expected a CPU or CUDA tensor")


def check_float(t, what, cpu_float64=False):
    """A ``ValueError`` naming the dtype when ``t`` is not float32, float16 or bfloat16, or, with
    ``cpu_float64`` (ops whose CPU path also computes in float64), a float64 CPU tensor."""
    check_device(t, what)
    if t.dtype in _FLOATS or (cpu_float64 and t.dtype == torch.float64 and not t.is_cuda):
        return
    where = "CUDA" if t.is_cuda else "the CPU"
    expected = "float32, float16, bfloat16 or float64" if cpu_float64 and not t.is_cuda else "float32, float16 or bfloat16"
    note = " (the CUDA attention takes float16 or bfloat16)" if t.is_cuda else ""
    if cpu_float64 and t.is_cuda and t.dtype == torch.float64:
        note += "; float64 runs on the CPU only"
    raise ValueError(f"{what}: dtype {t.dtype} is not supported on {where}; expected {expected}{note}")


native = _ltd
