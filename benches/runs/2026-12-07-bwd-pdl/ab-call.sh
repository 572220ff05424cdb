#!/usr/bin/env bash
# One device call for a backward variant built on a branch: counter (persistent-bwd), pdl
# (bwd-pdl) or combo (persistent-pdl, both). Carry .gpu-ab with its packed binaries
# (cuda_attention-V.xz, cuda_hardening-V.xz, bench-V.xz, and bench-old.xz from 37c0ff3):
#
#   bash benches/runs/2026-12-07-bwd-pdl/ab-call.sh counter
#
# Most important first, each step under its own timeout (a cut call keeps what ran): the
# at-scale and gathered tests, one A/B round (old, V) over every cell, the rest of the tests
# and cuda_hardening, memcheck on the at-scale backward tests, a second A/B round, racecheck on
# the several-items-per-CTA test (counter and combo only). ab_table.py of
# ../2026-12-06-persistent-bwd makes the A/B table from ab.log.
V=${1:-}
case $V in counter|pdl|combo) ;; *) echo "usage: ab-call.sh counter|pdl|combo (got '$V')" >&2; exit 2;; esac
source "$(dirname "$0")/common.sh"
unpack "cuda_attention-$V" "cuda_hardening-$V" bench-old "bench-$V"
echo "variant $V" | tee "$O/machine.txt"
machine
(cd ltd-sparse-attn && timeout 80 /tmp/cuda_attention-$V at_scale gathered --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
round 1 old "$V"
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_attention-$V --skip at_scale --skip gathered --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*FAILED|test result|panicked" | tail -6
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening-$V --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 70 compute-sanitizer --tool memcheck /tmp/cuda_attention-$V gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
round 2 "$V" old
[ "$V" = pdl ] && exit 0
(cd ltd-sparse-attn && LTD_GPU_CASES=2 timeout 100 compute-sanitizer --tool racecheck /tmp/cuda_attention-$V more_items_than_resident --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
