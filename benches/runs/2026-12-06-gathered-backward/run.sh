#!/usr/bin/env bash
# Branch gbwd-kernel on the GPU: cuda_attention (with the gathered-set backward) and
# cuda_hardening, then the gathered tests under memcheck and racecheck, then the Fixed b16 bench
# (Auto, with the gathered kernels, against Wgmma, the plain ones, in one binary).
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do
  xz -dc .gpu-tests/$n.xz > /tmp/$n && chmod +x /tmp/$n
  (cd ltd-sparse-attn && /tmp/$n --test-threads 1 2>&1) | tee $O/$n.log | grep -E "^test |test result|panicked" | tail -30
done
if [ "${SANITIZE:-0}" = 1 ]; then
  for tool in memcheck racecheck; do
    (cd ltd-sparse-attn && LTD_GPU_CASES=2 compute-sanitizer --tool $tool /tmp/cuda_attention gathered --test-threads 1 2>&1) | tee $O/$tool.log | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" | tail -4
  done
fi
xz -dc .gpu-peers/gpu_sparse_attn.xz > /tmp/gpu_sparse_attn && chmod +x /tmp/gpu_sparse_attn
LTD_BENCH_FILTER=fixed_b16 /tmp/gpu_sparse_attn --bench 2>&1 | tee $O/bench.log | tail -8
