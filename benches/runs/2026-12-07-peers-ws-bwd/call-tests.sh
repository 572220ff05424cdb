#!/usr/bin/env bash
# Call 4 (carry .gpu-ab): every cuda_attention and cuda_hardening test on the final binaries.
source "$(dirname "$0")/../2026-12-07-bwd-pdl/common.sh"
unpack cuda_attention cuda_hardening
machine
(cd ltd-sparse-attn && timeout 255 /tmp/cuda_attention --test-threads 1 2>&1) | tee $O/tests.log | grep -E "test result|panicked|FAILED" | tail -8
(cd ltd-sparse-attn && timeout 40 /tmp/cuda_hardening --test-threads 1 2>&1) | tee $O/hardening.log | grep -E "test result|panicked|FAILED" | tail -4
