#!/usr/bin/env bash
# The Hopper backward as programmatic dependent launches (branch bwd-pdl) on the GPU, most
# important first, each step under its own timeout (a cut call keeps what ran): the at-scale and
# gathered tests, one A/B round (old = 37c0ff3, new = bwd-pdl) over every cell, the rest of the
# tests and cuda_hardening (external streams), memcheck and synccheck on the at-scale backward
# tests, a second A/B round.
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do xz -dc .gpu-ab/$n-pdl.xz > /tmp/$n && chmod +x /tmp/$n; done
xz -dc .gpu-ab/bench-old.xz > /tmp/bench-old && xz -dc .gpu-ab/bench-pdl.xz > /tmp/bench-new && chmod +x /tmp/bench-old /tmp/bench-new
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee $O/machine.txt
(cd ltd-sparse-attn && timeout 80 /tmp/cuda_attention at_scale gathered --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
ab() { for v in old new; do
  echo "== round $1 $v" | tee -a $O/ab.log
  timeout 45 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab.log | tail -20 | cut -c1-72
done; }
ab 1
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_attention --skip at_scale --skip gathered --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
for tool in memcheck synccheck; do
  (cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 70 compute-sanitizer --tool $tool /tmp/cuda_attention gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/$tool.log | grep -E "ERROR SUMMARY|test result" | tail -3
done
ab 2
