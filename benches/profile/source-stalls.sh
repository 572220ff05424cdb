#!/usr/bin/env bash
# Where one kernel's warps stall, per SASS instruction: Nsight Compute's source counters (warp
# stall samples by reason) on the first launch of a kernel in one untimed `Auto` forward +
# backward of one gpu_sparse_attn bench cell, then the instructions with the most samples.
# Run on the GPU machine from the repository root:
#
#   bash benches/profile/source-stalls.sh CELL KERNEL_REGEX NAME
#   bash benches/profile/source-stalls.sh bigbird_b64_s16384_d64 '^ltd_sparse_attn_bwd_sm90_bf16_d64$' bigbird-bwd
#
# Inputs: BENCH as in profile-cells.sh; PROFILE=0 runs the cell's timed bench instead of the
# untimed `Auto` call (for a kernel only a forced choice runs: the first launch the regex
# matches is profiled). Outputs in $OUT (or /tmp/profile): NAME.csv.xz (the whole source page:
# every SASS instruction with its samples per stall reason), NAME-top.md (the 40 instructions
# with the most samples, and the totals per stall reason), NAME-details.txt (duration,
# throughputs, warp states), NAME.log.
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: source-stalls.sh CELL KERNEL_REGEX NAME" >&2; exit 2; }
cell=$1 kernel=$2 name=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/profile}; mkdir -p "$out"
log=$out/$name.log
b=${BENCH:-$root/.gpu-peers/gpu_sparse_attn.xz}
case "$b" in *.xz) xz -dc "$b" > /tmp/gpu_sparse_attn && b=/tmp/gpu_sparse_attn ;; esac
chmod +x "$b"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
[ -n "$ncu" ] || { echo "source-stalls: no ncu" | tee -a "$log"; exit 1; }
rep=/tmp/stalls-$name
profile=()
[ "${PROFILE:-1}" = 0 ] || profile=(LTD_BENCH_PROFILE=1)
env "${profile[@]}" LTD_BENCH_FILTER="$cell" timeout 300 "$ncu" --clock-control none \
  --kernel-name "regex:$kernel" --launch-count 1 --section SourceCounters --section WarpStateStats \
  --section SpeedOfLight --section Occupancy --section LaunchStats \
  --force-overwrite -o "$rep" "$b" --bench >> "$log" 2>&1
echo "profile rc=$?" | tee -a "$log"
"$ncu" -i "$rep.ncu-rep" --page details > "$out/$name-details.txt" 2>> "$log"
"$ncu" -i "$rep.ncu-rep" --page source --csv --print-source sass > "/tmp/$name.csv" 2>> "$log"
echo "source page rc=$? lines=$(wc -l < "/tmp/$name.csv")" | tee -a "$log"
xz -9 -c "/tmp/$name.csv" > "$out/$name.csv.xz"
python3 - "/tmp/$name.csv" "$cell" "$kernel" > "$out/$name-top.md" 2>> "$log" <<'PY'
import csv, sys
path, cell, kernel = sys.argv[1:]
rows = list(csv.reader(l for l in open(path) if l.strip()))
hi = next((i for i, r in enumerate(rows) if any("Source" == c.strip() for c in r)), None)
if hi is None:
    sys.exit(f"no header with a Source column in {path}")
head, body = rows[hi], rows[hi + 1:]
num = lambda s: float(s.replace(",", "")) if s.replace(",", "").replace(".", "", 1).isdigit() else 0.0
src = head.index("Source")
samp = next((i for i, c in enumerate(head) if c.strip() in ("Warp Stall Sampling (All Samples)", "Warp Stall Sampling (All Cycles)")), None)
if samp is None:
    sys.exit("no warp stall sampling column; header: " + ", ".join(head))
reasons = [i for i, c in enumerate(head) if c.startswith("stall_") or c.startswith("Stall ")]
total = sum(num(r[samp]) for r in body if len(r) > samp) or 1.0
print(f"# Stall samples: {kernel} on {cell}\n")
print(f"{int(total)} samples. Totals per reason (share of all samples):\n")
tot = sorted(((sum(num(r[i]) for r in body if len(r) > i), head[i]) for i in reasons), reverse=True)
for v, n in tot[:12]:
    if v: print(f"- {n}: {v / total:.3f}")
print("\nThe 40 instructions with the most samples (share, then the top reasons):\n")
print("| # | share | instruction | top reasons |\n|---|---|---|---|")
ranked = sorted((r for r in body if len(r) > samp), key=lambda r: -num(r[samp]))[:40]
for r in ranked:
    top = sorted(((num(r[i]), head[i]) for i in reasons if len(r) > i), reverse=True)[:3]
    why = ", ".join(f"{n} {v / max(num(r[samp]), 1):.2f}" for v, n in top if v)
    line = rows.index(r) - hi
    print(f"| {line} | {num(r[samp]) / total:.3f} | `{r[src].strip()[:90]}` | {why} |")
PY
echo "summary rc=$?" | tee -a "$log"
cat "$out/$name-top.md" | head -30
