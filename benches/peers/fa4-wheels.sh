#!/usr/bin/env bash
# Downloads FlashAttention-4 (CuTe DSL) and its Python dependencies for the GPU machine
# (Python 3.12, x86-64, CUDA 13 driver), installs them into one --target tree, trims what
# the SM90 block-sparse path never loads, and packs the tree in two parts that each fit one
# device call's 64 MiB next to our bench binary:
#
#   .whl/fa4a/fa4-part-a.tar.xz   the CuTe DSL compiler library (_cutlass_ir.cu13...so) alone
#   .whl/fa4b/fa4-part-b.tar.xz   everything else (runtime library, Python packages)
#
# On the device both parts unpack into one folder (benches/peers/run-all.sh does it; part A in
# the first call, part B in the second). Run from the repository root:
#
#   bash benches/peers/fa4-wheels.sh            # about 5 minutes on 2 cores (xz -9)
#
# Needs pip, tar, xz and a Python 3.12 (found as python3.12, or $PY312) for the install step.
set -euo pipefail

root=$(git rev-parse --show-toplevel)
out="$root/.whl"
grep -qxF '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null ||
  { echo "fa4-wheels: add '/.whl/' to $(git rev-parse --git-common-dir)/info/exclude first" >&2; exit 2; }

# Versions: flash-attn-4's newest pre-release and the newest CuTe DSL it accepts
# (flash-attn-4 wants nvidia-cutlass-dsl >= 4.6.2, quack-kernels >= 0.5.3, apache-tvm-ffi < 0.2).
pins=(
  flash-attn-4==4.0.0b40
  nvidia-cutlass-dsl==4.8.1
  nvidia-cutlass-dsl-libs-base==4.8.1
  nvidia-cutlass-dsl-libs-core==4.8.1
  nvidia-cutlass-dsl-libs-cu13==4.8.1
  quack-kernels==0.6.5
  apache-tvm-ffi==0.1.15.post2
  torch-c-dlpack-ext==0.1.5
)
# Already on the device image (KINDS.md): torch, einops, typing-extensions, cuda-bindings,
# protobuf. nvidia-cutlass-dsl-libs-cu12 is left out: the DSL picks the cu13 flavour for a
# CUDA 13 driver and the cu12 one would only add 92 MB.

py=${PY312:-}
for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  [ -n "$py" ] && break
  "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && py=$c
done
[ -n "$py" ] || { echo "fa4-wheels: no working Python 3.12 found (set PY312)" >&2; exit 2; }

dl="$out/dl"; site="$out/site"
rm -rf "$dl" "$site" "$out/fa4a" "$out/fa4b"; mkdir -p "$dl" "$out/fa4a" "$out/fa4b"
python3 -m pip download -q --no-deps --only-binary=:all: --pre --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dl" "${pins[@]}"
"$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$dl"/*.whl

# Trim: aarch64 / QNX stubs, the CLI scripts, tvm-ffi's sources and bundled third-party trees
# (not its libtvm_ffi_testing.so: its core links it), and torch-c-dlpack-ext's prebuilt add-ons
# (made for torch 2.4-2.9; torch 2.11 exports the DLPack exchange API itself). The trimmed tree
# was checked to import (cutlass, flash_attn.cute) under Python 3.12 with torch 2.11.
rm -rf "$site/bin" "$site/build_backend.py" \
  "$site"/nvidia_cutlass_dsl/cu13/lib/stubs \
  "$site"/tvm_ffi/3rdparty "$site"/tvm_ffi/src \
  "$site"/torch_c_dlpack_ext/libtorch_c_dlpack_addon_*.so
find "$site" -name '__pycache__' -prune -exec rm -rf {} +

ir=nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir.cu13.cpython-312-x86_64-linux-gnu.so
[ -f "$site/$ir" ] || { echo "fa4-wheels: $ir missing from the install" >&2; exit 1; }
tarx() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$site" "$@"; }
tarx -cf - "$ir" | xz -9 -T1 > "$out/fa4a/fa4-part-a.tar.xz"
tarx -cf - --exclude="./$ir" . | xz -9 -T1 > "$out/fa4b/fa4-part-b.tar.xz"

for p in a b; do
  (cd "$out/fa4$p" && sha256sum "fa4-part-$p.tar.xz" > "fa4-part-$p.sha256")
done
printf '%s\n' "${pins[@]}" > "$out/fa4b/versions.txt"
du -b "$out"/fa4a/* "$out"/fa4b/* | sed "s|$root/||"
echo "fa4-wheels: part A $(du -m "$out/fa4a" | cut -f1) MiB, part B $(du -m "$out/fa4b" | cut -f1) MiB"
