# Which backward `Auto` ran per cell and its forward + backward against `Wgmma`'s, from one
# gpu_sparse_attn run of auto/bench.log: python3 auto_table.py auto/bench.log
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
print("| cell | Auto bwd kernel | Auto f+b µs | Wgmma f+b µs | WS f+b µs | Auto / Wgmma f+b | WS / Wgmma bwd |")
print("|---|---|---|---|---|---|---|")
for name, p in runs[1].items():
    auto, wg, ws, fw = float(p[7]), float(p[13]), float(p[21]), float(p[16])
    k = "pair" if p[15] == "true" else "gathered" if p[18] == "true" else "ws" if p[22] == "true" else "single"
    print(f"| {name} | {k} | {auto:.1f} | {wg:.1f} | {ws:.1f} | {auto / wg:.3f} | {(ws - fw) / (wg - fw):.3f} |")
