#!/usr/bin/env bash
# issue 21: the split sparse_attn_bwd_sm90 — tests, sanitizer on the backward tests, old/new A/B
set -u
cd "$(dirname "$0")"; tar xJf k21.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
for b in cuda_attention cuda_hardening; do ./new/$b --test-threads=1 2>&1 | tail -4 | tee -a $OUT/tests.txt; done
echo "tests done $(( $(date +%s)-t0 )) s"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 ./new/cuda_attention --test-threads=1 gpu_backward_kernels_agree_at_scale gpu_bias_tiles gpu_split_rows 2>&1 | tail -6 | tee -a $OUT/sanitizer.txt
  echo "$tool rc=${PIPESTATUS[0]} $(( $(date +%s)-t0 )) s" | tee -a $OUT/sanitizer.txt
done
OLD=./old/gpu_sparse_attn NEW=./new/gpu_sparse_attn ROUNDS=${ROUNDS:-3} bash ab.sh
echo "all done $(( $(date +%s)-t0 )) s"
