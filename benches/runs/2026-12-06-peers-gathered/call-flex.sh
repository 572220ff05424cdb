#!/usr/bin/env bash
# Call F: the Flex search again with a longer budget, both earlier runs' fastest configurations
# first; ours, ceilings and SDPA in the same call; FA4 not carried (its columns say skipped).
mkdir -p /tmp/peers-stage && cp .gpu-peers/prior.jsonl /tmp/peers-stage/peers.jsonl
FLEX_BUDGET_S=${FLEX_BUDGET_S:-470} DEADLINE_S=585 bash benches/peers/run-all.sh run 2>&1 | grep -E "^=== |^--- |!!!|done at"
