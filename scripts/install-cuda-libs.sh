#!/usr/bin/env bash
# Installs what candle-core's `cuda` feature links at build time, with no root and no system CUDA,
# then prints the environment lines to use it (like install-nvcc.sh, which it calls). Idempotent.
#   eval "$(bash scripts/install-cuda-libs.sh)"
# - cuBLAS, cuBLASLt, cuRAND and NVRTC for CUDA 13.0 from PyPI wheels (pinned), with the
#   unversioned names the linker looks for (libcublas.so -> libcublas.so.13, ...);
# - a link-only stub of the driver library (lib/stubs/libcuda.so, soname libcuda.so.1) defining
#   every cu* entry point of cudarc's bindings: binaries link against it and load the real driver
#   at run time; the same for NCCL (lib/stubs/libnccl.so, soname libnccl.so.2);
# - libcudart.so (candle-kernels links the runtime) pointing at install-nvcc.sh's;
# - CUDA_COMPUTE_CAP=90 so candle-kernels compiles without asking a GPU (override it before).
# Running a candle-CUDA binary needs the driver and these libraries: LD_LIBRARY_PATH below.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
eval "$(bash "$here/install-nvcc.sh")"
root=${LTD_CUDA_LIBS_ROOT:-$HOME/.cache/ltd/cuda-13.0-libs}
lib=$root/nvidia/cu13/lib
if [ ! -e "$lib/libcublasLt.so.13" ] || [ ! -e "$lib/libcurand.so.10" ] || [ ! -e "$lib/libnvrtc.so.13" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps --target "$root" \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88 >&2
fi
for name in cublas cublasLt curand nvrtc; do
  target=$(cd "$lib" && ls "lib$name.so."* | sort | head -1)
  ln -sf "$target" "$lib/lib$name.so"
done
# candle-kernels links the runtime too (from the nvcc wheels).
ln -sf "$CUDA_HOME/lib/libcudart.so.13" "$lib/libcudart.so"
ln -sf "$CUDA_HOME/lib/libcudart.so.13" "$lib/libcudart.so.13"
# stub NAME SONAME SYS PREFIX: a link-only library NAME defining every PREFIX* entry point of
# cudarc's bindings in src/SYS/sys/mod.rs (cargo fetch brings its source); binaries link against
# it and load the real library (SONAME) at run time.
stub() {
  [ -e "$lib/stubs/lib$1.so" ] && return 0
  local cargo_home=${CARGO_HOME:-$HOME/.cargo} bindings
  bindings=$(ls -d "$cargo_home"/registry/src/*/cudarc-0.19.10/src/"$3"/sys/mod.rs 2>/dev/null | head -1 || true)
  if [ -z "$bindings" ]; then
    (cd "$here/.." && cargo fetch --locked >&2)
    bindings=$(ls -d "$cargo_home"/registry/src/*/cudarc-0.19.10/src/"$3"/sys/mod.rs | head -1)
  fi
  mkdir -p "$lib/stubs"
  grep -oE "^pub unsafe fn $4[A-Za-z0-9_]+" "$bindings" | awk '{print "void " $4 "(void) {}"}' | sort -u \
    > "$lib/stubs/lib$1_stub.c"
  cc -shared -fPIC -Wl,-soname,"$2" -o "$lib/stubs/lib$1.so" "$lib/stubs/lib$1_stub.c"
}
stub cuda libcuda.so.1 driver cu
# NCCL, for ltd-train's `nccl` feature (`ltd train --world-size N`): at run time the real
# libnccl.so.2 (PyPI nvidia-nccl-cu13, which PyTorch also ships) must be on LD_LIBRARY_PATH.
stub nccl libnccl.so.2 nccl nccl
echo "export CUDA_HOME='$CUDA_HOME'"
echo "export PATH='$CUDA_HOME/bin':\"\$PATH\""
echo "export CUDA_ROOT='$root/nvidia/cu13'"
echo "export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
echo "# To run candle-CUDA binaries (driver present): export LD_LIBRARY_PATH='$lib':\"\$LD_LIBRARY_PATH\""
