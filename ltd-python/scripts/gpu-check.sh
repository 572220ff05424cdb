#!/usr/bin/env bash
# The wheel's GPU check, on a machine with an NVIDIA GPU, Python >= 3.10 and torch >= 2.1 (the
# bundle's: Python 3.12, torch 2.11): installs the wheel from WHEEL_DIR (default: target/wheels)
# (and pytest's, if the machine lacks pytest) into a private directory, then runs the pytest suite (CPU and CUDA cases, the non-default
# stream tests) and the tiny-GPT training example.
#
#   bash ltd-python/scripts/gpu-check.sh [WHEEL_DIR]
#
# PYTHON picks the interpreter (default python3); LTD_GPU_CHECK_ALLOW_CPU=1 and
# LTD_EXAMPLE_STEPS=N let the script run on a machine without a GPU (a dry run).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
wheel_dir="${1:-$here/../target/wheels}"
python="${PYTHON:-python3}"
target="${LTD_PY_TARGET:-/tmp/ltdpy}"

wheel="$(ls -t "$wheel_dir"/ltd-*.whl | head -1)"
echo "wheel: $wheel"
rm -rf "$target"
"$python" -m pip install --quiet --no-deps --target "$target" "$wheel"
# pytest, if the machine has none: its wheels (pytest, pluggy, iniconfig, packaging, pygments)
# may sit next to ours, since the GPU machine has no network.
if ! "$python" -c "import pytest" 2>/dev/null; then
  extra=()
  for w in pytest pluggy iniconfig packaging pygments; do
    extra+=("$(ls "$wheel_dir"/"$w"-*.whl | head -1)")
  done
  "$python" -m pip install --quiet --no-deps --target "$target" "${extra[@]}"
fi
export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"

"$python" - <<'PY'
import torch, ltd
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(), "ltd.HAS_CUDA:", ltd.HAS_CUDA)
import os
if os.environ.get("LTD_GPU_CHECK_ALLOW_CPU") != "1":
    assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU paths"
    print(torch.cuda.get_device_name(0))
PY

# pytest from the checkout's tests; -p no:cacheprovider keeps the checkout clean.
(cd "$here/tests" && "$python" -m pytest -q -p no:cacheprovider -rs .)
"$python" "$here/examples/train_tiny_gpt.py" --steps "${LTD_EXAMPLE_STEPS:-300}"
echo "gpu-check: OK"
