# Sourced by pair-call.sh: the pair forward's steps on the unpacked binaries
# (/tmp/cuda_attention-fpair, /tmp/cuda_hardening-fpair, /tmp/bench-fpair), each under its own
# timeout, output under $O (../2026-12-07-bwd-pdl/common.sh, sourced first).
T=/tmp/cuda_attention-fpair
# The at-scale and split-row tests (90 s).
pair_first_tests() {
  (cd ltd-sparse-attn && timeout 90 $T at_scale split_rows --test-threads 1 2>&1) | tee $O/tests_first.log | grep -E "test result|panicked|FAILED" | tail -6
}
# pair_bench N: one gpu_sparse_attn run under `== run N` in bench.log (55 s).
pair_bench() {
  echo "== run $1" | tee -a $O/bench.log
  timeout 55 /tmp/bench-fpair --bench 2>&1 | tee -a $O/bench.log | tail -22 | cut -c1-72
}
# Memcheck on the split-row, past-the-end and masked-row tests (90 s), racecheck on the
# split-row tests (100 s).
pair_sanitizers() {
  (cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 90 compute-sanitizer --tool memcheck $T split_rows query_tile_past_the_end fully_masked --test-threads 1 2>&1) | tee $O/memcheck.log | grep -E "ERROR SUMMARY|test result" | tail -3
  (cd ltd-sparse-attn && LTD_GPU_CASES=1 timeout 100 compute-sanitizer --tool racecheck $T split_rows --test-threads 1 2>&1) | tee $O/racecheck.log | grep -E "RACECHECK SUMMARY|test result" | tail -3
}
