#!/usr/bin/env bash
# One device call for the Hopper backward as programmatic dependent launches, rebuilt on branch
# bwd-pdl2 (the first build, branch bwd-pdl, was lost with its checkout; README.md, "Rebuilt").
# Carry .gpu-ab with cuda_attention-pdl.xz, cuda_hardening-pdl.xz, bench-pdl.xz (bwd-pdl2) and
# bench-old.xz (main at the branch point):
#
#   bash benches/runs/2026-12-07-bwd-pdl/pdl2-call.sh
#
# Most important first, each step under its own timeout (a cut call keeps what ran; 500 s in
# all): the at-scale, gathered and split-row tests, an A/B round (old, pdl), cuda_hardening
# (caller streams), memcheck on the at-scale backward tests, a second round in the reverse order.
# The table: python3 benches/runs/2026-12-06-persistent-bwd/ab_table.py ab.log
source "$(dirname "$0")/common.sh"
unpack cuda_attention-pdl cuda_hardening-pdl bench-old bench-pdl
echo "variant pdl (bwd-pdl2)" | tee "$O/machine.txt"
machine
(cd ltd-sparse-attn && timeout 130 /tmp/cuda_attention-pdl at_scale gathered split_rows --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
round 1 old pdl
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening-pdl --test-threads 1 2>&1) | tee $O/tests_hardening.log | grep -E "test result|panicked|FAILED" | tail -4
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 90 compute-sanitizer --tool memcheck /tmp/cuda_attention-pdl gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
round 2 pdl old
