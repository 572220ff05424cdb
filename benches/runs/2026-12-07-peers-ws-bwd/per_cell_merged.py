#!/usr/bin/env python3
"""per-cell.md for this run: benches/profile/per_cell.py over this run's table.md and a summary
that takes the six cells profiled here (profile/summary.md) and the other fourteen from
2026-12-07-profiles-pair-fwd (whose kernels `Auto` still runs in those cells), with a last
column naming the profile each row comes from.

    python3 per_cell_merged.py > per-cell.md
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
new = open(os.path.join(here, "profile/summary.md"), encoding="utf-8").read()
old = open(os.path.join(here, "../2026-12-07-profiles-pair-fwd/summary.md"), encoding="utf-8").read()


def first_table(text):
    """The header, separator and body lines of the first table (the per-cell one)."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| cell |"))
    end = next((i for i in range(start + 2, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:start + 2], lines[start + 2:end]


head, new_rows = first_table(new)
_, old_rows = first_table(old)
cell = lambda l: l.split("|")[1].strip()  # noqa: E731
here_cells = {cell(l) for l in new_rows}
merged = head + new_rows + [l for l in old_rows if cell(l) not in here_cells]
with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as f:
    f.write("\n".join(merged) + "\n")
out = subprocess.run([sys.executable, os.path.join(here, "../../profile/per_cell.py"),
                      os.path.join(here, "table.md"), f.name], capture_output=True, text=True, check=True).stdout
os.unlink(f.name)
for line in out.splitlines():
    if line.startswith("| cell |"):
        line += " profile |"
    elif line.startswith("|---"):
        line += "---|"
    elif line.startswith("| "):
        line += " here |" if cell(line) in here_cells else " profiles-pair-fwd |"
    print(line)
