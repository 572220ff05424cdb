#!/usr/bin/env python3
"""Backward µs (forward + backward minus forward, `Auto` columns) per cell of an A/B log
(`== round R NAME` headers before each gpu_sparse_attn table; NAME `old` is the baseline, every
other name a variant): each version's rounds, and variant / old of their means, backward and
forward + backward. Usage: python3 ab_table.py ab.log"""
import collections
import re
import sys

runs = collections.defaultdict(lambda: collections.defaultdict(list))
names = []
version = None
for line in open(sys.argv[1]):
    m = re.match(r"== round (\d+) (\S+)", line)
    if m:
        version = m.group(2)
        if version not in names:
            names.append(version)
        continue
    if line.startswith("== "):  # another section (tests): no table until the next round
        version = None
        continue
    f = line.split()
    if version and len(f) > 8 and re.match(r"[a-z]", f[0]) and f[1].isdigit():
        fwd, fb = float(f[5]), float(f[7])
        runs[f"{f[0]} S {f[1]} D {f[3]}"][version].append((fb - fwd, fb))
if "old" not in names:
    sys.exit("ab_table.py: no `== round R old` table in the log (the baseline)")
variants = [n for n in names if n != "old"]
head = ["cell", "old bwd µs"] + [f"{v} bwd µs" for v in variants] + [f"{v} / old bwd" for v in variants]
head += [f"{v} / old f+b" for v in variants]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
fmt = lambda xs: ", ".join(f"{x[0]:.1f}" for x in xs) or "-"
ratio = lambda v, old, i: f"{mean(v, i) / mean(old, i):.3f}" if v else "-"
for cell, r in runs.items():
    old = r["old"]
    if not old:
        print(f"ab_table.py: {cell} has no `old` row; left out", file=sys.stderr)
        continue
    row = [cell, fmt(old)] + [fmt(r[v]) for v in variants]
    row += [ratio(r[v], old, 0) for v in variants] + [ratio(r[v], old, 1) for v in variants]
    print("| " + " | ".join(row) + " |")
