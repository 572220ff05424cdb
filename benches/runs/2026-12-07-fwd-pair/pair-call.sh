#!/usr/bin/env bash
# One device call for the Hopper pair forward (on main, `WgmmaPairs`): its tests, sanitizers and two
# runs of gpu_sparse_attn, whose table times the single-tile forward (`Wgmma fwd us`) and the
# pair forward (`pairs fwd us`) of every cell in the same run. Carry .gpu-ab with
# cuda_attention-fpair.xz, cuda_hardening-fpair.xz and bench-fpair.xz, built from main (README.md):
#
#   bash benches/runs/2026-12-07-fwd-pair/pair-call.sh
#
# Most important first, each step under its own timeout (a cut call keeps what ran); they add up
# to 550 s. The table: python3 benches/runs/2026-12-07-fwd-pair/pair_table.py bench.log
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
source "$(dirname "$0")/pair-steps.sh"
unpack cuda_attention-fpair cuda_hardening-fpair bench-fpair
machine
pair_first_tests
pair_bench 1
(cd ltd-sparse-attn && timeout 100 $T --skip at_scale --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*FAILED|test result|panicked" | tail -6
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening-fpair --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
pair_sanitizers
pair_bench 2
