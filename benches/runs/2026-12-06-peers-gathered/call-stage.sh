#!/usr/bin/env bash
# Call B: stage FA4 part A, then the earlier run's Flex results as the run call's prior.
bash benches/peers/run-all.sh stage --no-flex && mkdir -p /tmp/peers-stage && cp .gpu-peers/prior.jsonl /tmp/peers-stage/peers.jsonl && echo "prior staged: $(wc -l < /tmp/peers-stage/peers.jsonl) lines"
