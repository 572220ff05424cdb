#!/usr/bin/env python3
"""Backward µs (forward + backward minus forward, `Auto` columns) per cell of an A/B log
(`== round R old|new` headers before each gpu_sparse_attn table): both rounds, and new / old of
their means. Usage: python3 ab_table.py ab.log"""
import collections
import re
import sys

runs = collections.defaultdict(lambda: collections.defaultdict(list))
version = None
for line in open(sys.argv[1]):
    m = re.match(r"== round (\d) (old|new)", line)
    if m:
        version = m.group(2)
        continue
    f = line.split()
    if version and len(f) > 8 and re.match(r"[a-z]", f[0]) and f[1].isdigit():
        fwd, fb = float(f[5]), float(f[7])
        runs[f"{f[0]} S {f[1]} D {f[3]}"][version].append((fb - fwd, fb))
print("| cell | old bwd µs | new bwd µs | new / old bwd | old f+b µs | new f+b µs | new / old f+b |")
print("|---|---|---|---|---|---|---|")
for cell, v in runs.items():
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
    fmt = lambda xs, i: ", ".join(f"{x[i]:.1f}" for x in xs)
    print(f"| {cell} | {fmt(v['old'], 0)} | {fmt(v['new'], 0)} | {mean(v['new'], 0) / mean(v['old'], 0):.3f} "
          f"| {fmt(v['old'], 1)} | {fmt(v['new'], 1)} | {mean(v['new'], 1) / mean(v['old'], 1):.3f} |")
