#!/usr/bin/env bash
# `Auto` on the warp-specialised backward at head dim 128 (v1's kernel, non-persistent; its
# sanitizer runs are v1's): every cuda_attention and cuda_hardening test, then one run of
# gpu_sparse_attn (column `bwd ws`: whether `Auto`'s backward ran it). Carry .gpu-ab
# (cuda_attention-ws.xz, cuda_hardening-ws.xz, bench-ws.xz built from main):
#
#   bash benches/runs/2026-12-07-bwd-ws/auto/auto-call.sh
source "$(dirname "$0")/../../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention-ws cuda_hardening-ws bench-ws
T=/tmp/cuda_attention-ws
machine
(cd ltd-sparse-attn && timeout 130 $T at_scale --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
(cd ltd-sparse-attn && timeout 230 $T --skip at_scale --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*FAILED|test result|panicked" | tail -6
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening-ws --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
echo "== run 1" | tee -a $O/bench.log
timeout 60 /tmp/bench-ws --bench 2>&1 | tee -a $O/bench.log | tail -21 | cut -c1-40
