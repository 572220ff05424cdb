#!/usr/bin/env bash
# Old vs new `gpu_sparse_attn --bench`, alternating, ROUNDS rounds on one warm GPU; one file per
# binary in OUT. OLD / NEW: the two bench binaries (old: `cargo bench -p ltd-benches --features
# cuda --bench gpu_sparse_attn --no-run` in a worktree at fb8d988; new: the same at main).
set -u
ROUNDS=${ROUNDS:-3}
: > "$OUT/ab-old.txt"; : > "$OUT/ab-new.txt"
for r in $(seq 1 "$ROUNDS"); do
  for w in old new; do
    echo "### round $r" >> "$OUT/ab-$w.txt"
    if [ $w = old ]; then "$OLD" --bench >> "$OUT/ab-old.txt" 2>&1; else "$NEW" --bench >> "$OUT/ab-new.txt" 2>&1; fi
  done
done
