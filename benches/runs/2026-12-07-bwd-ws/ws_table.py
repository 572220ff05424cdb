# The WS / Wgmma table of a gpu_sparse_attn log (runs under "== run N"): python3 ws_table.py bench.log
# "WS / Wgmma bwd" = (WS f+b - Wgmma fwd) / (Wgmma f+b - Wgmma fwd): both f+b run the same
# single-tile forward, timed on its own in the same run.
import re,sys
runs={}
cur=None
for line in open(sys.argv[1]):
    if line.startswith('== run'):
        cur=int(line.split()[2]); runs[cur]={}; continue
    parts=line.split()
    if cur and len(parts)>20 and parts[1].isdigit():
        runs[cur][f"{parts[0]}_s{parts[1]}_d{parts[3]}"]=parts
print(f"| cell | Wgmma f+b µs | WS f+b µs | WS / Wgmma f+b | WS / Wgmma bwd | Auto f+b µs | WS / Auto f+b |")
print("|---|---|---|---|---|---|---|")
for name in runs[1]:
    cols=[]
    for r in sorted(runs):
        p=runs[r][name]
        wg=float(p[13]); ws=float(p[-1]); fw=float(p[16]); auto=float(p[7])
        cols.append((wg,ws,ws/wg,(ws-fw)/(wg-fw),auto,ws/auto))
    f=lambda i,fmt: ", ".join(format(c[i],fmt) for c in cols)
    print(f"| {name} | {f(0,'.1f')} | {f(1,'.1f')} | {f(2,'.3f')} | {f(3,'.3f')} | {f(4,'.1f')} | {f(5,'.3f')} |")
