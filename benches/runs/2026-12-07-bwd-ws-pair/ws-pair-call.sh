#!/usr/bin/env bash
# One device call for the warp-specialised pair backward (`WgmmaWarpSpecialized` = `Auto`'s kernels
# with every backward but the gathered-set one warp-specialised: the pair one where `Auto` runs
# the pair kernel): one run of gpu_sparse_attn (`fwd+bwd us` = Auto beside `WS f+b us`), the
# at-scale tests, memcheck on the split-row tests, the reference proptest, racecheck on the
# split-row tests. Carry .gpu-ab (cuda_attention-ws.xz, bench-ws.xz built from main):
#
#   bash benches/runs/2026-12-07-bwd-ws-pair/ws-pair-call.sh
#
# Most important first, each step under its own timeout; they add up to 300 s.
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention-ws bench-ws
T=/tmp/cuda_attention-ws
machine
echo "== run 1" | tee -a $O/bench.log
timeout 30 /tmp/bench-ws --bench 2>&1 | tee -a $O/bench.log | tail -21 | cut -c1-40
(cd ltd-sparse-attn && timeout 50 $T at_scale --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 70 compute-sanitizer --tool memcheck $T split_rows --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
(cd ltd-sparse-attn && timeout 100 $T reference --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -6
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 50 compute-sanitizer --tool racecheck $T split_rows --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
