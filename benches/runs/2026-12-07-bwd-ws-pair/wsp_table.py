# Auto against WgmmaWarpSpecialized (Auto's kernels, every non-gathered backward warp-specialised)
# in one gpu_sparse_attn run: python3 wsp_table.py bench.log
import sys

runs, cur = {}, None
for line in open(sys.argv[1]):
    if line.startswith("== run"):
        cur = int(line.split()[2])
        runs[cur] = {}
        continue
    parts = line.split()
    if cur and len(parts) > 20 and parts[1].isdigit():
        runs[cur][f"{parts[0]}_s{parts[1]}_d{parts[3]}"] = parts
print("| cell | Auto bwd kernel | WS bwd kernel | Auto fwd µs | Auto f+b µs | WS f+b µs | WS / Auto bwd |")
print("|---|---|---|---|---|---|---|")
for name, p in runs[1].items():
    fwd, auto, ws = float(p[5]), float(p[7]), float(p[21])
    d = int(p[3])
    k = "pair" if p[15] == "true" else "gathered" if p[18] == "true" else "ws" if p[22] == "true" else "single"
    wk = {"pair": "ws pair", "gathered": "gathered", "ws": "ws", "single": "ws"}[k]
    print(f"| {name} | {k} | {wk} | {fwd:.1f} | {auto:.1f} | {ws:.1f} | {(ws - fwd) / (auto - fwd):.3f} |")
