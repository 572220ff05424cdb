#!/usr/bin/env bash
# Profiles one `Auto` forward + backward of every gpu_sparse_attn bench cell with Nsight Compute
# (one ncu process per cell, clocks not locked, so durations match the bench's), then summarises
# where each cell's time goes (benches/profile/summarize.py). Run on the GPU machine from the
# repository root:
#
#   bash benches/profile/profile-cells.sh [CELL_FILTER ...]     (default: all 20 cells)
#
# Inputs: BENCH, the bench binary, raw or .xz (default .gpu-peers/gpu_sparse_attn.xz, from
# benches/peers/pack-bench.sh). Outputs in $OUT (or /tmp/profile): profile.csv (every kernel's
# metrics, a `cell` column first), summary.md, profile.log.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/profile}; mkdir -p "$out"
log=$out/profile.log
b=${BENCH:-$root/.gpu-peers/gpu_sparse_attn.xz}
case "$b" in *.xz) xz -dc "$b" > /tmp/gpu_sparse_attn && b=/tmp/gpu_sparse_attn ;; esac
chmod +x "$b"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
[ -n "$ncu" ] || { echo "profile-cells: no ncu" | tee -a "$log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$log"
"$ncu" --version | tail -1 | tee -a "$log"

# Metrics: the wanted ones this ncu knows for this GPU (a name it does not know fails the run).
# The raw page adds the launch__ ones (grid, registers, occupancy limits) by itself; on the H100
# the hmma tensor-pipe metric also counts the warpgroup (wgmma) products.
"$ncu" --query-metrics > /tmp/ncu-metrics.txt 2>&1
want=(gpu__time_duration.sum sm__throughput.avg.pct_of_peak_sustained_elapsed
  gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed
  dram__throughput.avg.pct_of_peak_sustained_elapsed
  l1tex__throughput.avg.pct_of_peak_sustained_active lts__throughput.avg.pct_of_peak_sustained_elapsed
  sm__inst_issued.avg.pct_of_peak_sustained_active sm__warps_active.avg.pct_of_peak_sustained_active
  smsp__average_warp_latency_per_inst_issued.ratio
  sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
  sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active
  sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active
  sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active)
while read -r m; do want+=("$m"); done < <(grep -o 'smsp__average_warps_issue_stalled_[a-z_]*_per_issue_active' /tmp/ncu-metrics.txt | sort -u | sed 's/$/.ratio/')
metrics=()
for m in "${want[@]}"; do
  base=${m%%.*}
  if grep -qw "$base" /tmp/ncu-metrics.txt; then metrics+=("$m"); else echo "skip metric $m (unknown here)" >> "$log"; fi
done
list=$(IFS=,; echo "${metrics[*]}")

cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  for s in 4096 16384; do for l in fixed_b16 fixed_b64 bigbird_b64 bigbird_b128 bslongformer_b64; do
    for d in 64 128; do cells+=("${l}_s${s}_d${d}"); done; done; done
fi
csv=$out/profile.csv; : > "$csv"
for c in "${cells[@]}"; do
  echo "== $c" | tee -a "$log"
  LTD_BENCH_PROFILE=1 LTD_BENCH_FILTER="${c}" timeout 300 "$ncu" --clock-control none \
    --kernel-name regex:ltd_sparse_attn --metrics "$list" --csv --page raw --print-units base \
    "$b" --bench > "/tmp/ncu-$c.csv" 2>> "$log"
  echo "   rc=$? rows=$(grep -c '^"[0-9]' "/tmp/ncu-$c.csv")" | tee -a "$log"
  python3 - "$c" "/tmp/ncu-$c.csv" "$csv" <<'PY'
import csv, sys
cell, src, dst = sys.argv[1:]
rows = [r for r in csv.reader(l for l in open(src) if l.startswith('"'))]
if not rows: sys.exit(0)
header, body = rows[0], [r for r in rows[1:] if r and r[0].isdigit()]
first = open(dst).read(1) == ""
with open(dst, "a", newline="") as f:
    w = csv.writer(f)
    if first: w.writerow(["cell"] + header)
    for r in body: w.writerow([cell] + r)
PY
done
python3 "$root/benches/profile/summarize.py" "$csv" > "$out/summary.md" 2>> "$log" && cat "$out/summary.md"
