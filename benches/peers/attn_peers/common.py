"""Shared pieces of the peer scripts: timing, cells, time budgets and the JSON-lines output.

Example:

    >>> out = Output(None)          # prints rows, writes no file
    >>> budget = Budget(5.0)
    >>> budget.left() > 0
    True
"""
import json
import sys
import time
from dataclasses import dataclass


def median_us(fn, iters=5, reps=7, warmup=3):
    """Median over `reps` of the mean time of `iters` back-to-back calls, in microseconds, by
    CUDA events: the same 3 / 5 / 7 scheme as our bench's `median_time_us(3, 5, 7, ...)`."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / iters)
    times.sort()
    return times[len(times) // 2]


@dataclass(frozen=True)
class Cell:
    """One cell of our bench: a layout at one shape (fields as in `ours.json`)."""

    layout: str
    seq: int
    batch: int
    heads: int
    head_dim: int
    block: int
    nb: int
    nnz: int

    @property
    def key(self):
        return f"{self.layout}_s{self.seq}_d{self.head_dim}"

    def ident(self):
        """The fields that name the cell in every output row."""
        return {"layout": self.layout, "seq": self.seq, "head_dim": self.head_dim,
                "batch": self.batch, "heads": self.heads, "block": self.block}


def load_cells(bench_dir, only=None):
    """The cells of `ours.json` in `bench_dir`, in bench order; `only` keeps those whose key
    (`{layout}_s{S}_d{D}`) contains it. Fails loudly if the file or a layout file is missing."""
    path = f"{bench_dir}/ours.json"
    try:
        with open(path) as f:
            runs = json.load(f)["runs"]
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"peer: cannot read our bench's cells from {path}: {e}")
    cells = []
    for r in runs:
        c = Cell(r["layout"], r["seq"], r["batch"], r["heads"], r["head_dim"], r["block"],
                 r["nb"], r["nnz"])
        if only and only not in c.key:
            continue
        cells.append(c)
    if not cells:
        sys.exit(f"peer: no cell of {path} matches filter {only!r}")
    return cells


def load_layout(bench_dir, cell):
    """The `[H, nb, nb]` bool layout our bench wrote for `cell` (`layout_<name>_s<S>.u8`)."""
    import numpy as np

    path = f"{bench_dir}/layout_{cell.layout}_s{cell.seq}.u8"
    raw = np.fromfile(path, dtype=np.uint8)
    want = cell.heads * cell.nb * cell.nb
    if raw.size != want:
        sys.exit(f"peer: {path} holds {raw.size} bytes, expected H*nb*nb = {want}")
    lay = raw.reshape(cell.heads, cell.nb, cell.nb).astype(bool)
    if int(lay.sum()) != cell.nnz:
        sys.exit(f"peer: {path} has {int(lay.sum())} active blocks, ours.json says {cell.nnz}")
    return lay


class Budget:
    """Wall-clock budget of one peer: later, optional candidates are skipped (and said so) once
    it is spent, so the whole device call ends inside its limit."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def spent(self):
        return self.left() <= 0


class Output:
    """JSON-lines rows: appended to `path` (flushed per row, so a run cut short keeps what it
    measured) and echoed on stdout."""

    def __init__(self, path):
        self.f = open(path, "a") if path else None

    def row(self, **fields):
        line = json.dumps(fields, sort_keys=True)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()
        return line

    def time(self, peer, cell, config, pass_, us, **extra):
        """A timed configuration: `pass_` is "fwd" or "fwdbwd", `us` the median time."""
        self.row(kind="time", peer=peer, config=config, **{"pass": pass_}, us=round(us, 3),
                 **cell.ident(), **extra)
        print(f"  {peer:<5} {cell.key:<28} {pass_:<6} {us:10.1f} us  {config}", flush=True)

    def skip(self, peer, cell, config, pass_, reason):
        """A configuration that did not run, with why (an error, a failed check, the budget)."""
        reason = " ".join(str(reason).split())[:400]
        self.row(kind="skip", peer=peer, config=config, **{"pass": pass_}, reason=reason,
                 **(cell.ident() if cell else {}))
        where = cell.key if cell else "-"
        print(f"  {peer:<5} {where:<28} {pass_:<6}    SKIPPED  {config}: {reason}", flush=True)

    def meta(self, **fields):
        self.row(kind="meta", **fields)
