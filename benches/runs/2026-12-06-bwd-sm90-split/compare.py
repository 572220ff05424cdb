"""new / old per bench cell from ab-old.txt and ab-new.txt: best of the rounds, and median."""
import statistics as st
import sys


def parse(path):
    rows = {}
    for line in open(path):
        f = line.split()
        if not f or f[0] == "layout" or f[0].startswith(("#", "gpu_")):
            continue
        rows.setdefault((f[0], f[1], f[3]), []).append((float(f[5]), float(f[7])))
    return rows


here = sys.argv[1] if len(sys.argv) > 1 else "."
old, new = parse(f"{here}/ab-old.txt"), parse(f"{here}/ab-new.txt")
for name, pick in (("best", min), ("median", st.median)):
    fwd = [pick(x[0] for x in new[k]) / pick(x[0] for x in old[k]) for k in old]
    fb = [pick(x[1] for x in new[k]) / pick(x[1] for x in old[k]) for k in old]
    within = lambda rs: sum(abs(r - 1) <= 0.02 for r in rs)
    print(f"{name:>6}: fwd {min(fwd):.3f}-{max(fwd):.3f} mean {st.mean(fwd):.3f} "
          f"({within(fwd)}/{len(fwd)} within 2%); f+b {min(fb):.3f}-{max(fb):.3f} "
          f"mean {st.mean(fb):.3f} ({within(fb)}/{len(fb)} within 2%)")
