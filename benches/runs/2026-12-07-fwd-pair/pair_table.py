#!/usr/bin/env python3
"""Single-tile vs pair forward per cell of gpu_sparse_attn tables (`== run N` headers, any
number of runs): `Wgmma fwd us` (the single-tile Hopper forward) and `pairs fwd us` (the pair
forward, `WgmmaPairs`) of each run, pair / single of their means, and the layout's row pair
sharing (`pair share`: pair-table chunks per active tile). Usage: python3 pair_table.py bench.log"""
import collections
import re
import sys

cells = collections.OrderedDict()
run = None
for line in open(sys.argv[1]):
    m = re.match(r"== run (\d+)", line)
    if m:
        run = m.group(1)
        continue
    f = line.split()
    # layout S B D density fwd TFLOP/s f+b mma mma-f+b tiles host host Wgmma-f+b pairs-f+b
    # bwd-pair Wgmma-fwd fwd-gather bwd-gather pairs-fwd pair-share: 21 fields.
    if run and len(f) == 21 and re.match(r"[a-z]", f[0]) and f[1].isdigit():
        key = f"{f[0]} S {f[1]} D {f[3]}"
        cells.setdefault(key, {"single": [], "pair": [], "share": f[20]})
        cells[key]["single"].append(float(f[16]))
        cells[key]["pair"].append(float(f[19]))
if not cells:
    sys.exit("pair_table.py: no 21-column gpu_sparse_attn rows under a `== run N` header")
mean = lambda xs: sum(xs) / len(xs)
fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
print("| cell | single fwd µs | pair fwd µs | pair / single | row pair sharing |")
print("|---|---|---|---|---|")
for key, c in cells.items():
    print(f"| {key} | {fmt(c['single'])} | {fmt(c['pair'])} | {mean(c['pair']) / mean(c['single']):.3f} | {c['share']} |")
