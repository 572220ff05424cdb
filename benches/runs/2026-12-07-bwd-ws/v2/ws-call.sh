#!/usr/bin/env bash
# One device call for the warp-specialised, persistent Hopper backward (`WgmmaWarpSpecialized`,
# v2): a smoke run
# of one cell, the at-scale backward test, two runs of gpu_sparse_attn (whose table times `Wgmma`
# forward + backward, single-chunk backward, beside `WS f+b us`, the same forward with the
# warp-specialised backward, in the same run), the remaining tests and the sanitizers. Carry
# .gpu-ab with cuda_attention-ws.xz, cuda_hardening-ws.xz and bench-ws.xz built from main:
#
#   bash benches/runs/2026-12-07-bwd-ws/v2/ws-call.sh
#
# Each step under its own timeout (a hang or a cut call keeps what ran); they add up to 595 s.
source "$(dirname "$0")/../../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention-ws cuda_hardening-ws bench-ws
T=/tmp/cuda_attention-ws
machine
LTD_BENCH_FILTER=bigbird_b64_s4096_d128 timeout 25 /tmp/bench-ws --bench 2>&1 | tee $O/smoke.log | tail -3 | cut -c1-250
(cd ltd-sparse-attn && timeout 100 $T gpu_backward_kernels_agree_at_scale gpu_warp_specialized_backward_walks --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
for r in 1 2; do
  echo "== run $r" | tee -a $O/bench.log
  timeout 60 /tmp/bench-ws --bench 2>&1 | tee -a $O/bench.log | tail -21 | cut -c1-40
done
(cd ltd-sparse-attn && timeout 170 $T --skip at_scale --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*FAILED|test result|panicked" | tail -6
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening-ws --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 60 compute-sanitizer --tool memcheck $T gpu_warp_specialized_backward_walks split_rows --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 60 compute-sanitizer --tool racecheck $T gpu_warp_specialized_backward_walks --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
