#!/usr/bin/env bash
# Persistent Hopper backward on the GPU, most important first (each step under its own timeout so
# a cut call keeps what ran): the at-scale and gathered tests, the bench (old = 37c0ff3, new =
# persistent) alternately over every cell, the rest of the tests, the sanitizers, a bias A/B.
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do xz -dc .gpu-ab/$n.xz > /tmp/$n && chmod +x /tmp/$n; done
for v in old new; do xz -dc .gpu-ab/bench-$v.xz > /tmp/bench-$v && chmod +x /tmp/bench-$v; done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee $O/machine.txt
(cd ltd-sparse-attn && timeout 150 /tmp/cuda_attention at_scale gathered --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "^test |test result|panicked" | tail -12
for r in 1 2; do for v in old new; do
  echo "== round $r $v" | tee -a $O/ab.log
  timeout 100 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab.log | tail -21 | cut -c1-90
done; done
(cd ltd-sparse-attn && timeout 120 /tmp/cuda_attention --skip at_scale --skip gathered --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -6
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_hardening --test-threads 1 2>&1) | tee -a $O/tests_rest.log | grep -E "test result|panicked|FAILED" | tail -4
for tool in memcheck racecheck; do
  (cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 100 compute-sanitizer --tool $tool /tmp/cuda_attention gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/$tool.log | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" | tail -4
done
for v in old new; do echo "== bias $v" | tee -a $O/ab_bias.log; LTD_BENCH_BIAS=1 LTD_BENCH_FILTER=s4096 timeout 60 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab_bias.log | tail -10 | cut -c1-90; done
