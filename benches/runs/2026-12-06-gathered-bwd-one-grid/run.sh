#!/usr/bin/env bash
# One-grid gathered backward on the GPU, most important first: cuda_attention's gathered tests,
# the Fixed b16 bench cells with the old (two launches, 37d87f7) and new (one grid) binaries
# alternately (two rounds each), the gathered tests under memcheck and racecheck, the rest of
# cuda_attention and cuda_hardening, then the new binary's Fixed b16 cells under ncu.
O=${OUT:-/tmp/out}; mkdir -p $O
for n in cuda_attention cuda_hardening; do xz -dc .gpu-ab/$n.xz > /tmp/$n && chmod +x /tmp/$n; done
for v in old new; do xz -dc .gpu-ab/bench-$v.xz > /tmp/bench-$v && chmod +x /tmp/bench-$v; done
(cd ltd-sparse-attn && /tmp/cuda_attention gathered --test-threads 1 2>&1) | tee $O/cuda_attention_gathered.log | grep -E "^test |test result|panicked" | tail -12
for r in 1 2; do for v in old new; do
  echo "== round $r $v" | tee -a $O/ab.log
  LTD_BENCH_FILTER=fixed_b16 /tmp/bench-$v --bench 2>&1 | tee -a $O/ab.log | tail -4
done; done
for tool in memcheck racecheck; do
  (cd ltd-sparse-attn && LTD_GPU_CASES=${SAN_CASES:-1} compute-sanitizer --tool $tool /tmp/cuda_attention gathered --test-threads 1 2>&1) | tee $O/$tool.log | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" | tail -4
done
(cd ltd-sparse-attn && /tmp/cuda_attention --skip gathered --test-threads 1 2>&1) | tee $O/cuda_attention_rest.log | grep -E "test result|panicked|FAILED" | tail -6
(cd ltd-sparse-attn && /tmp/cuda_hardening --test-threads 1 2>&1) | tee $O/cuda_hardening.log | grep -E "test result|panicked|FAILED" | tail -4
OUT=/tmp/prof BENCH=.gpu-ab/bench-new.xz bash benches/profile/profile-cells.sh fixed_b16_s4096_d64 fixed_b16_s4096_d128 fixed_b16_s16384_d64 fixed_b16_s16384_d128 > /dev/null 2>&1
grep -E "^\| fixed_b16.*bwd" /tmp/prof/summary.md | cut -c1-120
tar czf $O/profile.tar.gz -C /tmp/prof .
