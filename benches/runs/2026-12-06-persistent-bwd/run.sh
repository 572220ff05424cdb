#!/usr/bin/env bash
# Persistent Hopper backward (work counter) on the GPU, most important first, each step under its
# own timeout: the at-scale and gathered tests, the bench (old = 37c0ff3, new) alternately over
# every cell (two rounds), memcheck on the at-scale backward tests, then the rest of the tests.
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do xz -dc .gpu-ab/$n.xz > /tmp/$n && chmod +x /tmp/$n; done
for v in old new; do xz -dc .gpu-ab/bench-$v.xz > /tmp/bench-$v && chmod +x /tmp/bench-$v; done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee $O/machine.txt
(cd ltd-sparse-attn && timeout 80 /tmp/cuda_attention at_scale gathered --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
for r in 1 2; do for v in old new; do
  echo "== round $r $v" | tee -a $O/ab.log
  timeout 45 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab.log | tail -20 | cut -c1-72
done; done
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 70 compute-sanitizer --tool memcheck /tmp/cuda_attention gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_attention --skip at_scale --skip gathered --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*(ok|FAILED)|test result|panicked" | tail -16
