#!/usr/bin/env bash
# Call 2, right after call 1 (carry .whl/fa4b, .gpu-peers): ours, the ceilings, SDPA, FA4
# (230 s) and Flex (100 s, the prior's fastest configurations first), then Nsight Compute over
# the six cells whose backward `Auto` now runs on the warp-specialised kernel (D 128, every
# layout but Fixed b16 and BigBird b128).
OUT=${OUT:-/tmp/out}
FLEX_BUDGET_S=100 DEADLINE_S=470 bash benches/peers/run-all.sh run | tail -4
OUT=$OUT/profile timeout 100 bash benches/profile/profile-cells.sh fixed_b64_s4096_d128 fixed_b64_s16384_d128 bigbird_b64_s4096_d128 bigbird_b64_s16384_d128 bslongformer_b64_s4096_d128 bslongformer_b64_s16384_d128 > /dev/null 2>&1
tail -2 $OUT/profile/profile.log
