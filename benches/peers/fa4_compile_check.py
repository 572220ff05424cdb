#!/usr/bin/env python3
"""Compiles the FA4 peer's configurations for SM90 (sm_90a) on a machine without a GPU: fake
tensors carry only shapes, so nothing runs, but every kernel the peer would call is built by
the CuTe DSL, the layout `mask_mod` included. A check of the API usage in attn_peers/fa4.py.

    PYTHONPATH=$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages python3 benches/peers/fa4_compile_check.py

with $SITE the unpacked wheels of fa4-wheels.sh (both parts) and torch 2.11 for Python 3.12.
About 10 s a kernel on one core.
"""
import os
import sys
import time

os.environ.setdefault("FLASH_ATTENTION_ARCH", "sm_90")
os.environ.setdefault("CUTE_DSL_ARCH", "sm_90a")
os.environ.setdefault("FLASH_ATTENTION_NUM_SMS", "132")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from attn_peers.common import Cell  # noqa: E402
from attn_peers.fa4 import Fa4Cell, fwd_tiles, load_fa4  # noqa: E402


def main():
    api, why = load_fa4()
    if api is None:
        sys.exit(f"fa4_compile_check: {why}")
    from flash_attn.cute.interface import _flash_attn_bwd

    seq, heads, failed = 1024, 16, 0
    rng = np.random.default_rng(0)
    for blk in (16, 64, 128):
        nb = seq // blk
        lay = (rng.random((heads, nb, nb)) < 0.3) | np.eye(nb, dtype=bool)[None]
        for d in (64, 128):
            cell = Cell(f"check_b{blk}", seq, 1, heads, d, blk, nb, int(lay.sum()))
            for tile in fwd_tiles(blk):
                t = time.time()
                try:
                    with FakeTensorMode(allow_non_fake_inputs=True):
                        fc = Fa4Cell(api, cell, lay)
                        kw, text = fc.call_args(tile, with_bwd=True)
                        q, k, v = (torch.empty((1, seq, heads, d), dtype=torch.bfloat16,
                                               device="cuda") for _ in range(3))
                        o, lse = api["func"](q, k, v, return_lse=True, **kw)
                        _flash_attn_bwd(q, k, v, o, torch.empty_like(o), lse,
                                        softmax_scale=d ** -0.5, mask_mod=kw.get("mask_mod"),
                                        aux_tensors=kw.get("aux_tensors"),
                                        block_sparse_tensors=kw["block_sparse_tensors_bwd"])
                    print(f"ok    block {blk:3} D {d:3}: {text} ({time.time() - t:.0f} s)", flush=True)
                except Exception as e:  # report every configuration, then fail at the end
                    failed += 1
                    print(f"FAIL  block {blk:3} D {d:3} tile {tile}: {type(e).__name__}: {e}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
