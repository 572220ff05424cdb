#!/usr/bin/env python3
"""Peers of the GPU sparse-attention bench, each at its best, on the layouts and shapes that
`gpu_sparse_attn` exported in the same run; one JSON line per configuration timed or skipped.

    LTD_BENCH_DIR=dir <gpu_sparse_attn bench binary> --bench
    python3 benches/peers/sparse_attn_peer.py dir --peer ceilings --out dir/peers.jsonl
    python3 benches/peers/sparse_attn_peer.py dir --peer sdpa --out dir/peers.jsonl
    python3 benches/peers/sparse_attn_peer.py dir --peer fa4 --budget-s 200 --out dir/peers.jsonl
    python3 benches/peers/sparse_attn_peer.py dir --peer flex --budget-s 200 --out dir/peers.jsonl
    python3 benches/peers/readme_table.py dir/ours.json dir/peers.jsonl > table.md

Peers (benches/peers/README.md says more): dense SDPA with each backend forced (cuDNN, flash,
efficient); FlexAttention with the BlockMask at every tile its kernels accept for the layout and
tuned forward / backward kernel options; FlashAttention-4's block-sparse kernels at native or
coarse tiles with a `mask_mod`. Sparse peers are checked against a masked dense reference
before they are timed. Run one peer per process (as `run-all.sh` does), so one that crashes
the CUDA context costs only its own rows.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from attn_peers.common import Budget, Output, load_cells, median_us  # noqa: E402


def ceilings(out):
    """Copy bandwidth and the dense bf16 matmul rate, measured in this run."""
    import torch

    big = torch.empty(1 << 29, device="cuda", dtype=torch.bfloat16)
    copy_gbs = 2 * big.numel() * 2 / median_us(lambda: big.clone()) / 1e3
    del big
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_tf = 2 * 8192 ** 3 / median_us(lambda: a @ a) / 1e6
    del a
    torch.cuda.empty_cache()
    print(f"ceilings (same run): copy {copy_gbs:.0f} GB/s, dense bf16 matmul {mm_tf:.0f} TFLOP/s")
    out.meta(peer="ceilings", copy_gbs=round(copy_gbs, 1), matmul_tflops=round(mm_tf, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench_dir", help="LTD_BENCH_DIR of the gpu_sparse_attn run (ours.json, layouts)")
    ap.add_argument("--peer", required=True, choices=["ceilings", "sdpa", "flex", "fa4"])
    ap.add_argument("--out", help="JSON-lines file to append rows to (default: print only)")
    ap.add_argument("--budget-s", type=float, default=200.0,
                    help="wall-clock seconds for this peer; later candidates are skipped once spent")
    ap.add_argument("--filter", help="only cells whose {layout}_s{S}_d{D} contains this")
    ap.add_argument("--flex-prior", help="peers JSON lines of an earlier Flex search on this "
                    "machine: its fastest configurations are timed first (the replay of run-all.sh)")
    ap.add_argument("--flex-mode", default=None,
                    help="torch.compile mode for Flex, e.g. max-autotune-no-cudagraphs (slow to compile)")
    args = ap.parse_args()

    cells = load_cells(args.bench_dir, args.filter)
    import torch

    if not torch.cuda.is_available():
        sys.exit("peer: no CUDA device visible to torch")
    out = Output(args.out)
    dev = torch.cuda.get_device_name(0)
    print(f"peer {args.peer}: torch {torch.__version__} on {dev}, {len(cells)} cells, "
          f"budget {args.budget_s:.0f} s")
    out.meta(peer=args.peer, torch=torch.__version__, device=dev, cells=len(cells))
    budget = Budget(args.budget_s)
    if args.peer == "ceilings":
        ceilings(out)
    elif args.peer == "sdpa":
        from attn_peers.sdpa import run_sdpa

        run_sdpa(cells, out)
    elif args.peer == "flex":
        from attn_peers.flex import load_prior, run_flex

        prior = load_prior(args.flex_prior) if args.flex_prior else None
        run_flex(args.bench_dir, cells, out, budget, args.flex_mode, prior)
    else:
        from attn_peers.fa4 import run_fa4

        run_fa4(args.bench_dir, cells, out, budget)


if __name__ == "__main__":
    main()
