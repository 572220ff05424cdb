#!/usr/bin/env bash
# `ltd train` on one GPU: Random-LTD against the full model at S 1024 (3 seeds), and BigBird
# sparse attention against dense at S 4096. Run from the repository root with an `ltd` built
# with `--features train-cuda` (LTD=path, default target/release/ltd) and the CUDA libraries
# candle links on the loader's path; OUT (default /tmp/ltd-train-h100) collects CSVs and charts.
set -uo pipefail
B=${LTD:-target/release/ltd}
OUT=${OUT:-/tmp/ltd-train-h100}
H=benches/runs/2026-12-06-train-h100
echo "=== quality + wall-clock, S 1024: 8 layers, width 512, 8 heads, batch 8, 200 steps, seeds 1 2 3"
for seed in 1 2 3; do
  $B train --device cuda --compare --quiet --layers 8 --width 512 --heads 8 --seq-len 1024 --batch 8 \
    --steps 200 --eval-every 50 --eval-windows 0 --seed $seed --out $OUT/s1024-seed$seed 2>&1 | tail -7
done
echo "=== sparse vs dense, S 4096: 6 layers, width 256, 4 heads, batch 16, 100 steps (BigBird b64)"
for v in "--baseline" "--baseline --sparse"; do
  $B train $H/sparse-s4096.json --device cuda --quiet $v --layers 6 --width 256 --heads 4 --seq-len 4096 \
    --batch 16 --steps 100 --eval-every 50 --eval-windows 0 --seed 1 --out "$OUT/s4096$(echo $v | tr -d ' -')" 2>&1 | tail -3
done
