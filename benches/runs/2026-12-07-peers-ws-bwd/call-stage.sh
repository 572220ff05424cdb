#!/usr/bin/env bash
# Call 1 (carry .whl/fa4a, .gpu-peers, .gpu-ab): stage FA4 part A and the four earlier Flex
# searches as the run call's prior, then memcheck and racecheck on the pair backward's split
# columns at block 128 (the test `WgmmaWarpSpecialized` runs on the warp-specialised pair
# kernel; the other split-row test passed both tools in 2026-12-07-bwd-ws-pair).
# The prior: 2026-12-06-peers-gathered's results.tar.gz and flex-results.tar.gz,
# 2026-12-06-peers-gathered-bwd's and 2026-12-07-peers-pair-fwd's results.tar.gz, their
# peers.jsonl concatenated into .gpu-peers/prior.jsonl:
#   R=benches/runs
#   (tar xzOf $R/2026-12-06-peers-gathered/results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-06-peers-gathered/flex-results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-06-peers-gathered-bwd/results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-07-peers-pair-fwd/results.tar.gz ./peers.jsonl) > .gpu-peers/prior.jsonl
bash benches/peers/run-all.sh stage --no-flex && mkdir -p /tmp/peers-stage && cp .gpu-peers/prior.jsonl /tmp/peers-stage/peers.jsonl && echo "prior staged: $(wc -l < /tmp/peers-stage/peers.jsonl) lines"
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention
T=/tmp/cuda_attention
machine
(cd ltd-sparse-attn && timeout 150 compute-sanitizer --tool memcheck $T split_rows_of_the_pair --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result|panicked" | tail -4
(cd ltd-sparse-attn && timeout 120 compute-sanitizer --tool racecheck $T split_rows_of_the_pair --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result|panicked" | tail -4
