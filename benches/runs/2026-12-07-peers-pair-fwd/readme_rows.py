#!/usr/bin/env python3
"""The README's compact table (one row per cell: our times, both efficiencies, each block-sparse
peer's ratio) from the two tables of readme_table.py's output. Usage: python3 readme_rows.py table.md"""
import sys

fwd, bwd, section = {}, {}, None
for line in open(sys.argv[1]):
    if line.startswith("Forward ("):
        section = fwd
    elif line.startswith("Backward ("):
        section = bwd
    elif line.startswith("Targets"):
        section = None
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if section is not None and len(cells) > 10 and cells[1].isdigit():
        section[tuple(cells[:3])] = cells
print("| layout | S | D | density | fwd µs | fwd efficiency | Flex fwd ÷ ours | FA4 fwd ÷ ours | fwd+bwd µs | bwd efficiency | FA4 f+b ÷ ours | Flex f+b ÷ ours |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key, f in fwd.items():
    b = bwd[key]
    # forward: layout S D density ours-us ours-tflops dense eff flex-us flex-ratio fa4-us fa4-ratio
    # backward: layout S D f+b bwd bwd-tflops dense eff flex-f+b flex-ratio fa4-f+b fa4-ratio
    print(f"| {f[0]} | {f[1]} | {f[2]} | {f[3]} | {f[4]} | {f[7]} | {f[9]}x | {f[11]}x | {b[3]} | {b[7]} | {b[11]}x | {b[9]}x |")
