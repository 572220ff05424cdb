#!/usr/bin/env bash
# The NCCL path of data-parallel training on ONE GPU: a world of one through NCCL must train like
# the plain run. Run on the GPU machine from a folder holding the two binaries built here:
#   cargo test --release -p ltd-train --features nccl --test nccl --no-run   (NCCL_TEST=that binary)
#   cargo build --release -p ltd-cli --features train-nccl                   (LTD=target/release/ltd)
#   NCCL_TEST=... LTD=... bash scripts/nccl-one-gpu.sh
# (or a folder with this script, bins.tar.xz holding `ltd` and `nccl-test`, and no variables).
# Needs the real libnccl.so.2 and the CUDA libraries candle links: taken from the PyTorch
# installation's nvidia packages when python3 has one (NCCL_LIB / CUDA_LIBS override).
# Output goes to $OUT (default /tmp/nccl-one-gpu).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# A bundle folder holds bins.tar.xz (ltd and nccl-test) next to this script: unpack it once.
[ -f "$here/bins.tar.xz" ] && [ ! -x "$here/ltd" ] && tar xJf "$here/bins.tar.xz" -C "$here"
NCCL_TEST=${NCCL_TEST:-$here/nccl-test}
LTD=${LTD:-$here/ltd}
OUT=${OUT:-/tmp/nccl-one-gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0  # keep NVLink multicast off (shared machines)
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
NCCL_LIB=${NCCL_LIB:-${site:+$site/nvidia/nccl/lib}}
CUDA_LIBS=${CUDA_LIBS:-${site:+$site/nvidia/cu13/lib}}
export LD_LIBRARY_PATH="${NCCL_LIB:-}:${CUDA_LIBS:-}:${LD_LIBRARY_PATH:-}"
echo "libnccl: $(ls "${NCCL_LIB:-/nonexistent}"/libnccl.so.2 2>/dev/null || echo 'not found (set NCCL_LIB)')"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -2
fail=0

echo "=== gpu_nccl_* tests (a world of one = the plain run; two ranks on one GPU probed)"
"$NCCL_TEST" gpu_nccl --test-threads=1 --nocapture 2>&1 | tee "$OUT/tests.log" | grep -E "NCCL|two ranks|test result|panicked|FAILED"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1

echo "=== ltd train: plain against --nccl-id-file (world of one), same seed"
args=(train --device cuda --quiet --layers 4 --width 256 --heads 4 --seq-len 512 --batch 8 --steps 40
      --eval-every 20 --eval-windows 8 --seed 3)
"$LTD" "${args[@]}" --out "$OUT/plain" > "$OUT/plain.log" 2>&1 || { echo "plain run failed"; cat "$OUT/plain.log"; fail=1; }
# The plain run twice: GPU kernels with atomics may make it differ from itself.
"$LTD" "${args[@]}" --out "$OUT/plain2" > "$OUT/plain2.log" 2>&1 || { echo "second plain run failed"; fail=1; }
rm -f "$OUT/job.nccl-id"
"$LTD" "${args[@]}" --nccl-id-file "$OUT/job.nccl-id" --out "$OUT/nccl" > "$OUT/nccl.log" 2>&1 \
  || { echo "NCCL run failed"; cat "$OUT/nccl.log"; fail=1; }
for run in "$OUT"/plain/*.csv; do
  name=$(basename "$run")
  # Every column but wall_clock_s (5th) must agree.
  if diff <(cut -d, -f1-4,6- "$run") <(cut -d, -f1-4,6- "$OUT/nccl/$name") > "$OUT/$name.diff"; then
    echo "$name: identical losses, layer-tokens, lr and r"
  elif ! diff -q <(cut -d, -f1-4,6- "$run") <(cut -d, -f1-4,6- "$OUT/plain2/$name") > /dev/null; then
    echo "$name: differs, but so does the plain run from itself (GPU nondeterminism): compare the val losses below"
  else
    echo "$name: DIFFERS (first lines of $OUT/$name.diff):"; head -6 "$OUT/$name.diff"; fail=1
  fi
done
grep -h "val loss\|data-parallel" "$OUT/plain.log" "$OUT/plain2.log" "$OUT/nccl.log"
echo "nccl-one-gpu: $([ $fail -eq 0 ] && echo all passed || echo FAILURES)"
exit $fail
