"""Dense attention with each SDPA backend (cuDNN, flash, efficient) forced in turn, no mask,
forward and forward + backward: the denominator of our efficiency column. Every backend's time
is written; the table keeps the fastest per pass.

Example (on a GPU):

    run_sdpa(cells, out)
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .common import median_us
from .reference import make_inputs

BACKENDS = [
    ("cudnn", SDPBackend.CUDNN_ATTENTION),
    ("flash", SDPBackend.FLASH_ATTENTION),
    ("efficient", SDPBackend.EFFICIENT_ATTENTION),
]


def _time_backend(backend, q, k, v, dout):
    """(fwd us, fwd+bwd us) with `backend` forced; gradients by autograd.grad (nothing
    accumulates into `.grad` between calls)."""
    qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))
    with sdpa_kernel([backend]):
        fwd = median_us(lambda: F.scaled_dot_product_attention(q, k, v))

        def fwd_bwd():
            o = F.scaled_dot_product_attention(qg, kg, vg)
            torch.autograd.grad(o, (qg, kg, vg), dout)

        fb = median_us(fwd_bwd)
    return fwd, fb


def run_sdpa(cells, out):
    """Times every backend on every distinct (S, B, H, D) of `cells` and writes one row per
    cell, backend and pass."""
    done = {}
    for cell in cells:
        shape = (cell.seq, cell.batch, cell.heads, cell.head_dim)
        if shape not in done:
            q, k, v, dout = make_inputs(cell)
            done[shape] = {}
            for name, backend in BACKENDS:
                try:
                    done[shape][name] = _time_backend(backend, q, k, v, dout)
                except (RuntimeError, torch.OutOfMemoryError) as e:
                    done[shape][name] = e
                torch.cuda.empty_cache()
            del q, k, v, dout
        for name, res in done[shape].items():
            cfg = f"SDPA {name} backend (dense, no mask)"
            if isinstance(res, Exception):
                out.skip("sdpa", cell, cfg, "both", f"{type(res).__name__}: {res}")
                continue
            out.time("sdpa", cell, cfg, "fwd", res[0], backend=name)
            out.time("sdpa", cell, cfg, "fwdbwd", res[1], backend=name)
