#!/usr/bin/env bash
# Stall samples per SASS instruction and the details page of the single-chunk backward and the
# warp-specialised one on BigBird b64 S 4096 D 128, first launch of each in the cell's timed
# bench (carry .gpu-ab with bench-ws.xz):
#
#   bash benches/runs/2026-12-07-bwd-ws/v2/profile-call.sh
xz -dc .gpu-ab/bench-ws.xz > /tmp/bench-ws && chmod +x /tmp/bench-ws
export BENCH=/tmp/bench-ws PROFILE=0
c=bigbird_b64_s4096_d128
timeout 140 bash benches/profile/source-stalls.sh $c '^ltd_sparse_attn_bwd_sm90_ws_bf16_d128$' ws-bwd | tail -3
timeout 140 bash benches/profile/source-stalls.sh $c '^ltd_sparse_attn_bwd_sm90_bf16_d128$' single-bwd | tail -3
for n in ws-bwd single-bwd; do grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Grid Size|Block Size" ${OUT:-/tmp/profile}/$n-details.txt | sed "s/^/$n: /"; done
