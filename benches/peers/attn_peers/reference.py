"""Inputs of a cell and the masked dense reference that every sparse peer is checked against
before it is timed: fp32 attention over all keys with the layout as a boolean mask, on a sample
of query rows (their outputs and their dQ depend on those rows alone, so the sample is exact).

Example (on a GPU):

    q, k, v, dout = make_inputs(cell)                     # [B, H, S, D] bf16
    rows = sample_rows(cell.seq)
    ref = reference_rows(q, k, v, dout, lay, cell.block, rows)
    ok, why = compare(ref, out[:, :, rows], dq[:, :, rows])
"""
import math

import torch

OUT_TOL = 2e-2
DQ_TOL = 5e-2


def make_inputs(cell, seed=0):
    """Q, K, V and dO of `cell`, `[B, H, S, D]` bf16 on the GPU, standard normal."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (cell.batch, cell.heads, cell.seq, cell.head_dim)
    return [torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g)
            for _ in range(4)]


def sample_rows(seq, n=256, seed=1):
    """`n` query rows: the first and last 32 and random ones between, sorted, on the GPU."""
    g = torch.Generator().manual_seed(seed)
    mid = torch.randperm(seq - 64, generator=g)[: max(0, n - 64)] + 32
    rows = torch.cat([torch.arange(32), mid, torch.arange(seq - 32, seq)]).unique()
    return rows.cuda()


def reference_rows(q, k, v, dout, lay, blk, rows):
    """fp32 `(out, dq)` of masked dense attention at `rows`, `[B, H, len(rows), D]` each;
    `lay` is the `[H, nb, nb]` bool numpy layout at `blk` tokens a block."""
    seq, d = q.shape[2], q.shape[3]
    lay_t = torch.from_numpy(lay).to(q.device)
    keys = torch.arange(seq, device=q.device) // blk
    mask = lay_t[:, rows // blk][:, :, keys]  # [H, r, S]
    qr = q[:, :, rows].float().requires_grad_()
    s = qr @ k.float().transpose(-1, -2) / math.sqrt(d)
    s = s.masked_fill(~mask[None], float("-inf"))
    out = torch.softmax(s, dim=-1) @ v.float()
    (dq,) = torch.autograd.grad(out, qr, dout[:, :, rows].float())
    return out.detach(), dq.detach()


def _rel_err(got, want):
    if not torch.isfinite(got).all():
        return float("inf")
    scale = want.abs().max().item() or 1.0
    return (got.float() - want).abs().max().item() / scale


def compare(ref, out_rows, dq_rows=None):
    """`(ok, text)`: the max error of the peer's output (and dQ) at the sampled rows, relative
    to the reference's largest magnitude, against `OUT_TOL` (`DQ_TOL`)."""
    ref_out, ref_dq = ref
    e_out = _rel_err(out_rows, ref_out)
    ok = e_out <= OUT_TOL
    text = f"out err {e_out:.2e}"
    if dq_rows is not None:
        e_dq = _rel_err(dq_rows, ref_dq)
        ok = ok and e_dq <= DQ_TOL
        text += f", dq err {e_dq:.2e}"
    return ok, text
