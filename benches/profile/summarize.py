#!/usr/bin/env python3
"""Summarises profile-cells.sh's profile.csv: where each bench cell's forward + backward time goes.

    python3 benches/profile/summarize.py profile.csv > summary.md

One row per cell: the main forward and backward kernels' durations, the auxiliary kernels'
(backward pre-pass, dq conversion, combines) and their share of the call, and for each main kernel
the tensor-pipe and issue-slot utilisation, achieved occupancy and the three largest stall
reasons (cycles per issued instruction). A second table lists every kernel.
"""
import csv
import sys
from collections import OrderedDict

DUR = "gpu__time_duration.sum"
TENSOR = ("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",)
ISSUE = "sm__inst_issued.avg.pct_of_peak_sustained_active"
OCC = "sm__warps_active.avg.pct_of_peak_sustained_active"
STALL_PREFIX = "smsp__average_warps_issue_stalled_"
STALL_SUFFIX = "_per_issue_active.ratio"


def role(name):
    """The kernel's role in a call, from its name."""
    n = name.split("(")[0]
    if "fwd_combine" in n:
        return "fwd combine"
    if "bwd_combine" in n:
        return "bwd combine"
    if "bwd_pre" in n:
        return "bwd pre-pass"
    if "bwd_dq" in n:
        return "dq conversion"
    if "fill" in n or "zero" in n:
        return "bwd fill"
    if "_fwd" in n:
        return "fwd main"
    if "_bwd" in n:
        return "bwd main"
    return "other"


def num(row, key):
    try:
        return float(row.get(key, "").replace(",", ""))
    except ValueError:
        return float("nan")


def duration_us(row):
    """Duration in microseconds (ncu's raw page reports nanoseconds for this metric)."""
    return num(row, DUR) / 1000.0


def tensor_pct(row):
    for k in TENSOR:
        v = num(row, k)
        if v == v:
            return v
    return float("nan")


def top_stalls(row, n=3):
    stalls = []
    for k, v in row.items():
        if k.startswith(STALL_PREFIX) and k.endswith(STALL_SUFFIX):
            reason = k[len(STALL_PREFIX):-len(STALL_SUFFIX)]
            if reason in ("selected", "not_selected"):
                continue
            x = num(row, k)
            if x == x:
                stalls.append((x, reason))
    stalls.sort(reverse=True)
    return ", ".join(f"{r} {x:.1f}" for x, r in stalls[:n])


def load(path):
    cells = OrderedDict()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cells.setdefault(row["cell"], []).append(row)
    return cells


def fmt(x, spec=".0f"):
    return "–" if x != x else format(x, spec)


def summary(cells):
    out = ["| cell | fwd main µs | fwd aux µs | bwd main µs | bwd aux µs | aux share of f+b | "
           "fwd: tensor % / issue % / occupancy % | fwd top stalls | "
           "bwd: tensor % / issue % / occupancy % | bwd top stalls |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for cell, rows in cells.items():
        by = {}
        for r in rows:
            by.setdefault(role(r["Kernel Name"]), []).append(r)
        t = {k: sum(duration_us(r) for r in v) for k, v in by.items()}
        fwd_main = t.get("fwd main", 0.0)
        bwd_main = t.get("bwd main", 0.0)
        fwd_aux = t.get("fwd combine", 0.0)
        bwd_aux = sum(t.get(k, 0.0) for k in ("bwd pre-pass", "dq conversion", "bwd combine", "bwd fill"))
        total = sum(t.values())
        share = (fwd_aux + bwd_aux) / total if total else float("nan")

        def main_stats(k):
            if k not in by:
                return "–", "–"
            r = max(by[k], key=duration_us)
            return (f"{fmt(tensor_pct(r))} / {fmt(num(r, ISSUE))} / {fmt(num(r, OCC))}", top_stalls(r))

        fs, fst = main_stats("fwd main")
        bs, bst = main_stats("bwd main")
        out.append(f"| {cell} | {fwd_main:.1f} | {fwd_aux:.1f} | {bwd_main:.1f} | {bwd_aux:.1f} | "
                   f"{share:.2f} | {fs} | {fst} | {bs} | {bst} |")
    return "\n".join(out)


def kernels(cells):
    out = ["| cell | kernel | role | µs | grid | regs | tensor % | issue % | occupancy % | SM % | L1 % | L2 % | DRAM % |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell, rows in cells.items():
        for r in rows:
            name = r["Kernel Name"].split("(")[0]
            out.append(
                f"| {cell} | {name} | {role(name)} | {duration_us(r):.1f} | {fmt(num(r, 'launch__grid_size'))} | "
                f"{fmt(num(r, 'launch__registers_per_thread'))} | {fmt(tensor_pct(r))} | {fmt(num(r, ISSUE))} | "
                f"{fmt(num(r, OCC))} | {fmt(num(r, 'sm__throughput.avg.pct_of_peak_sustained_elapsed'))} | "
                f"{fmt(num(r, 'l1tex__throughput.avg.pct_of_peak_sustained_active'))} | "
                f"{fmt(num(r, 'lts__throughput.avg.pct_of_peak_sustained_elapsed'))} | "
                f"{fmt(num(r, 'dram__throughput.avg.pct_of_peak_sustained_elapsed'))} |")
    return "\n".join(out)


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: summarize.py profile.csv")
    cells = load(argv[1])
    if not cells:
        sys.exit(f"summarize.py: no kernels in {argv[1]}")
    print("## Where each cell's time goes (one `Auto` forward + backward, ncu, clocks unlocked)\n")
    print(summary(cells))
    print("\n## Every kernel\n")
    print(kernels(cells))


if __name__ == "__main__":
    main(sys.argv)
