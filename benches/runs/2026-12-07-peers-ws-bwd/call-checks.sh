#!/usr/bin/env bash
# Call 3 (carry .gpu-peers and .gpu-ab): Nsight Compute over all 20 cells on the peer run's bench
# binary, then memcheck and racecheck on the split-row tests (among them the pair backward's
# split columns at block 128, which `WgmmaWarpSpecialized` runs on the warp-specialised pair
# kernel). Outputs: $OUT/profile/{profile.csv,summary.md,profile.log}, memcheck.log,
# racecheck.log.
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention
T=/tmp/cuda_attention
machine
OUT=$O/profile timeout 150 bash benches/profile/profile-cells.sh > /dev/null 2>&1
tail -3 $O/profile/profile.log
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 190 compute-sanitizer --tool memcheck $T split_rows --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result|panicked" | tail -4
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 160 compute-sanitizer --tool racecheck $T split_rows --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result|panicked" | tail -4
