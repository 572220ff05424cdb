#!/usr/bin/env bash
# One device call timing every backward variant against main's kernels: an A/B round of
# gpu_sparse_attn over all cells (old, pdl, combo, counter), the at-scale and gathered tests of
# pdl and combo, then a second round in the reverse order (a clock drift over the call falls on
# both sides). Carry .gpu-ab (bench-V.xz, cuda_attention-V.xz; see README.md):
#
#   bash benches/runs/2026-12-07-bwd-pdl/ab-all.sh
#
# ROUNDS=1 keeps only the first A/B round (a call on less device time).
# The winner's full tests and sanitizers are ab-call.sh's. The table:
#   python3 benches/runs/2026-12-06-persistent-bwd/ab_table.py ab.log
source "$(dirname "$0")/common.sh"
unpack bench-old bench-pdl bench-combo bench-counter cuda_attention-pdl cuda_attention-combo
machine
round 1 old pdl combo counter
for v in pdl combo; do
  echo "== tests $v" | tee -a $O/tests.log
  (cd ltd-sparse-attn && timeout 90 /tmp/cuda_attention-$v at_scale gathered more_items --test-threads 1 2>&1) | tee -a $O/tests.log | grep -E "test result|panicked|FAILED" | tail -6
done
[ "${ROUNDS:-2}" = 1 ] || round 2 counter combo pdl old
