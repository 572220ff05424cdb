#!/usr/bin/env bash
# Call A: the wheel's GPU check, then the per-cell profile within the call's limit.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p $O
t0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $O/wheel.log
LTD_EXAMPLE_STEPS=${LTD_EXAMPLE_STEPS:-300} timeout 240 bash ltd-python/scripts/gpu-check.sh target/wheels/gpu >> $O/wheel.log 2>&1; echo "wheel rc=$?" | tee -a $O/wheel.log
grep -E "passed|failed|FAILED|Error|step|gpu-check" $O/wheel.log | tail -30
left=$((580 - (SECONDS - t0)))
echo "== profile (t=$((SECONDS-t0)), ${left}s left)"
timeout $left bash benches/profile/profile-cells.sh > /tmp/profile-stdout.txt 2>&1; echo "profile rc=$?"
grep -E "^== |rc=" $O/profile.log | paste - - | tail -25
echo "done t=$((SECONDS-t0))"
