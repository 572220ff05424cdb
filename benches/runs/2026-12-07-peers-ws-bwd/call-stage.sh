#!/usr/bin/env bash
# Call 1: stage FA4 part A, then the four earlier Flex searches (2026-12-06-peers-gathered's
# results.tar.gz and flex-results.tar.gz, 2026-12-06-peers-gathered-bwd's and
# 2026-12-07-peers-pair-fwd's results.tar.gz; their peers.jsonl concatenated into
# .gpu-peers/prior.jsonl) as the run call's prior.
#   R=benches/runs
#   (tar xzOf $R/2026-12-06-peers-gathered/results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-06-peers-gathered/flex-results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-06-peers-gathered-bwd/results.tar.gz ./peers.jsonl
#    tar xzOf $R/2026-12-07-peers-pair-fwd/results.tar.gz ./peers.jsonl) > .gpu-peers/prior.jsonl
bash benches/peers/run-all.sh stage --no-flex && mkdir -p /tmp/peers-stage && cp .gpu-peers/prior.jsonl /tmp/peers-stage/peers.jsonl && echo "prior staged: $(wc -l < /tmp/peers-stage/peers.jsonl) lines"
