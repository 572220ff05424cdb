#!/usr/bin/env bash
# Builds our gpu_sparse_attn bench binary (CUDA) and packs it as .gpu-peers/gpu_sparse_attn.xz
# for benches/peers/run-all.sh on the GPU machine. Run from the repository root, with nvcc
# on the path (for example after `source /tmp/cuda-env.sh` or scripts/install-nvcc.sh):
#
#   bash benches/peers/pack-bench.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qxF '/.gpu-peers/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null ||
  echo '/.gpu-peers/' >> "$(git rev-parse --git-common-dir)/info/exclude"
lock=${LTD_BUILD_LOCK:-/tmp/ltd-build.lock}
msg=$(flock "$lock" cargo bench -p ltd-benches --features cuda --bench gpu_sparse_attn --no-run \
  --message-format=json)
bin=$(printf '%s\n' "$msg" | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line) if line.startswith("{") else {}
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "gpu_sparse_attn" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "pack-bench: no gpu_sparse_attn executable built (is nvcc on the path?)" >&2; exit 1; }
mkdir -p .gpu-peers
xz -9 -T2 -c "$bin" > .gpu-peers/gpu_sparse_attn.xz
echo "pack-bench: $bin -> .gpu-peers/gpu_sparse_attn.xz ($(du -m .gpu-peers/gpu_sparse_attn.xz | cut -f1) MiB)"
