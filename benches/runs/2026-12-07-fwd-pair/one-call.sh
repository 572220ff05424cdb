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
source "$(dirname "$0")/pair-steps.sh"
unpack bench-old bench-pdl bench-combo bench-counter cuda_attention-fpair bench-fpair
machine
pair_first_tests
pair_bench 1
round 1 old pdl combo counter
pair_sanitizers
