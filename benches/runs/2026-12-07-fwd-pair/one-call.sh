#!/usr/bin/env bash
# One device call for everything waiting on a GPU, when only one call's device time is left:
# the pair forward's at-scale and split-row tests and a bench run, one A/B round of the three
# backward variants against main's kernels (no tests: the winner's are ab-call.sh's), then the
# pair forward's memcheck and racecheck. Carry .gpu-ab (see this README and ../2026-12-07-bwd-pdl/README.md):
#
#   bash benches/runs/2026-12-07-fwd-pair/one-call.sh
#
# Step timeouts add up to 505 s. Tables: ../2026-12-06-persistent-bwd/ab_table.py ab.log and
# pair_table.py bench.log.
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
unpack bench-old bench-pdl bench-combo bench-counter cuda_attention-fpair bench-fpair
machine
T=/tmp/cuda_attention-fpair
(cd ltd-sparse-attn && timeout 90 $T at_scale split_rows --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
echo "== run 1" | tee -a $O/bench.log
timeout 45 /tmp/bench-fpair --bench 2>&1 | tee -a $O/bench.log | tail -22 | cut -c1-72
round 1 old pdl combo counter
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 90 compute-sanitizer --tool memcheck $T split_rows query_tile_past_the_end fully_masked --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 100 compute-sanitizer --tool racecheck $T split_rows --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
