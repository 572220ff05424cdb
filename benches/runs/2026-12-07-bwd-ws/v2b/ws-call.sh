#!/usr/bin/env bash
# v2b of the warp-specialised, persistent backward (an item's K / V copy issued before its
# last-freed stage's tile): two runs of gpu_sparse_attn (`Wgmma f+b us`, the single-chunk
# backward, beside `WS f+b us` in the same run), the at-scale and several-items tests, and the
# stall samples of both kernels on BigBird b64 S 4096 D 128. Carry .gpu-ab (cuda_attention-ws.xz,
# bench-ws.xz built from main):
#
#   bash benches/runs/2026-12-07-bwd-ws/v2b/ws-call.sh
source "$(dirname "$0")/../../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention-ws bench-ws
T=/tmp/cuda_attention-ws
machine
for r in 1 2; do
  echo "== run $r" | tee -a $O/bench.log
  timeout 60 /tmp/bench-ws --bench 2>&1 | tee -a $O/bench.log | tail -21 | cut -c1-40
done
(cd ltd-sparse-attn && timeout 100 $T gpu_backward_kernels_agree_at_scale gpu_warp_specialized_backward_walks --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
export BENCH=/tmp/bench-ws PROFILE=0
timeout 60 bash benches/profile/source-stalls.sh bigbird_b64_s4096_d128 '^ltd_sparse_attn_bwd_sm90_ws_bf16_d128$' ws-bwd | tail -2
timeout 60 bash benches/profile/source-stalls.sh bigbird_b64_s4096_d128 '^ltd_sparse_attn_bwd_sm90_bf16_d128$' single-bwd | tail -2
