#!/usr/bin/env bash
# Persistent Hopper backward (work counter) on the GPU, most important first, each step under its
# own timeout (a cut call keeps what ran): the at-scale and gathered tests, one A/B round (old =
# 37c0ff3, new) over every cell, the rest of the tests, memcheck on the at-scale backward tests,
# a second A/B round, racecheck on the several-items-per-CTA test.
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do xz -dc .gpu-ab/$n.xz > /tmp/$n && chmod +x /tmp/$n; done
for v in old new; do xz -dc .gpu-ab/bench-$v.xz > /tmp/bench-$v && chmod +x /tmp/bench-$v; done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee $O/machine.txt
(cd ltd-sparse-attn && timeout 80 /tmp/cuda_attention at_scale gathered --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
ab() { for v in old new; do
  echo "== round $1 $v" | tee -a $O/ab.log
  timeout 45 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab.log | tail -20 | cut -c1-72
done; }
ab 1
(cd ltd-sparse-attn && timeout 60 /tmp/cuda_attention --skip at_scale --skip gathered --test-threads 1 2>&1) | tee $O/tests_rest.log | grep -E "^test .*(ok|FAILED)|test result|panicked" | tail -16
(cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 70 compute-sanitizer --tool memcheck /tmp/cuda_attention gpu_backward_kernels_agree_at_scale gpu_gathered_backward --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
ab 2
(cd ltd-sparse-attn && LTD_GPU_CASES=2 timeout 120 compute-sanitizer --tool racecheck /tmp/cuda_attention more_items_than_resident --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
