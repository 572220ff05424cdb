#!/usr/bin/env bash
# issue 21 follow-up: 10 more alternating rounds on the one cell outside ±2%, and racecheck on two
# backward tests smaller than the at-scale one (which racecheck could not finish in 150 s)
set -u
cd "$(dirname "$0")"; [ -d new ] || tar xJf k21.tar.xz
t0=$(date +%s)
: > $OUT/cell-old.txt; : > $OUT/cell-new.txt
for r in $(seq 1 10); do
  LTD_BENCH_FILTER=fixed_b64_s16384_d64 ./old/gpu_sparse_attn --bench >> $OUT/cell-old.txt 2>&1
  LTD_BENCH_FILTER=fixed_b64_s16384_d64 ./new/gpu_sparse_attn --bench >> $OUT/cell-new.txt 2>&1
done
echo "cell A/B $(( $(date +%s)-t0 )) s"
timeout 200 compute-sanitizer --tool racecheck --error-exitcode 9 ./new/cuda_attention --test-threads=1 gpu_bias_tiles gpu_split_rows 2>&1 | tail -6 | tee $OUT/racecheck.txt
echo "racecheck rc=${PIPESTATUS[0]} $(( $(date +%s)-t0 )) s" | tee -a $OUT/racecheck.txt
