#!/usr/bin/env bash
# The device run of the sparse-attention comparison: our bench and every peer at its best, the
# README table from one call. Run from the repository root on the GPU machine, two calls back
# to back (FA4's wheels are too large for one call, see fa4-wheels.sh):
#
#   bash benches/peers/run-all.sh stage [--no-flex]   # call 1, carry .whl/fa4a and .gpu-peers
#   bash benches/peers/run-all.sh run                 # call 2, carry .whl/fa4b and .gpu-peers
#
# stage: unpacks FA4 part A (the CuTe DSL compiler library) into $FA4_SITE, then (unless
#   --no-flex) runs our bench, the ceilings, SDPA and the full FlexAttention search (tiles and
#   kernel options), whose table (without FA4) is stage-table.md.
# run: unpacks FA4 part B, runs our bench, the ceilings, SDPA, FA4, and Flex again: first the
#   fastest configurations the stage call found (their kernels come from Inductor's cache on
#   this machine), then more candidates while its budget lasts; table.md is the README table.
# Files under /tmp last while the machine is warm, about 30 s after a call: send `run` right
# after `stage` returns. If the machine went cold in between, `run` says so loudly, skips FA4
# and searches Flex from scratch within its budget.
#
# Inputs: BENCH, our gpu_sparse_attn bench binary, raw or .xz (default
#   .gpu-peers/gpu_sparse_attn.xz, from pack-bench.sh); .whl/fa4a, .whl/fa4b from fa4-wheels.sh.
# Budgets (seconds, environment): FLEX_STAGE_BUDGET_S (400), FA4_BUDGET_S (230),
#   FLEX_BUDGET_S (120 after a stage search, else 200), DEADLINE_S (560: no step may run
#   past it; each call's limit is 600).
# Writes to $OUT (at most 8 files): table.md, results.tar.gz (ours.json, peers.jsonl, a log
#   per step), run.log; the stage call stage-table.md, stage-results.tar.gz, stage.log.
set -uo pipefail

mode=${1:-}
[ "$mode" = stage ] || [ "$mode" = run ] || { echo "usage: run-all.sh stage [--no-flex] | run" >&2; exit 2; }
stage_flex=1; [ "${2:-}" = --no-flex ] && stage_flex=0
root=$(pwd)
[ -f "$root/benches/peers/sparse_attn_peer.py" ] || { echo "run-all: run from the repository root" >&2; exit 2; }
OUT=${OUT:-/tmp/peers-out}; mkdir -p "$OUT"
BENCH=${BENCH:-.gpu-peers/gpu_sparse_attn.xz}
FA4_SITE=${FA4_SITE:-/tmp/fa4-site}
STAGE=/tmp/peers-stage
FLEX_STAGE_BUDGET_S=${FLEX_STAGE_BUDGET_S:-400}; FA4_BUDGET_S=${FA4_BUDGET_S:-230}
DEADLINE_S=${DEADLINE_S:-560}
if [ "$mode" = stage ]; then RUN=$STAGE; LOG="$OUT/stage.log"; else RUN=/tmp/peers-run; LOG="$OUT/run.log"; fi
rm -rf "$RUN"; mkdir -p "$RUN"; : > "$LOG"
export PYTHONUNBUFFERED=1
peer="python3 $root/benches/peers/sparse_attn_peer.py"

say() { echo "$@" | tee -a "$LOG"; }
section() { say ""; say "=== $1 (t=${SECONDS}s)"; }
left() { local l=$((DEADLINE_S - SECONDS)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
step() {  # step NAME CAP_S CMD...: CMD under a timeout (its cap, or the deadline), logged and timed
  local name=$1 cap=$2; shift 2
  local t; t=$(left "$cap")
  if [ "$t" -le 5 ]; then say "!!! $name SKIPPED: the ${DEADLINE_S}s deadline is reached"; return 1; fi
  local s=$SECONDS
  timeout --signal=INT --kill-after=15 "$t" "$@" 2>&1 | tee -a "$LOG" "$RUN/$name.log"
  local rc=${PIPESTATUS[0]}
  say "--- $name: rc=$rc, $((SECONDS - s)) s$([ "$rc" = 124 ] && echo ", STOPPED at its ${t}s limit")"
  return "$rc"
}
unpack_part() {  # unpack_part a|b: checks and unpacks .whl/fa4<p> into $FA4_SITE
  local p=$1 dir=".whl/fa4$1"
  [ -f "$dir/fa4-part-$p.tar.xz" ] || { say "!!! FA4 part $p not carried ($dir/fa4-part-$p.tar.xz missing)"; return 1; }
  (cd "$dir" && sha256sum -c --quiet "fa4-part-$p.sha256") || { say "!!! FA4 part $p: checksum mismatch"; return 1; }
  mkdir -p "$FA4_SITE" && xz -dc "$dir/fa4-part-$p.tar.xz" | tar -xf - -C "$FA4_SITE" &&
    cp "$dir/fa4-part-$p.sha256" "$FA4_SITE/.part-$p.sha256" && say "FA4 part $p unpacked into $FA4_SITE"
}
run_bench() {  # our bench into $RUN (ours.json and the layouts)
  local b=$BENCH
  [ -f "$b" ] || { say "!!! our bench binary $b is missing (set BENCH; carry its folder)"; return 1; }
  case "$b" in *.xz) xz -dc "$b" > /tmp/gpu_sparse_attn && b=/tmp/gpu_sparse_attn ;; esac
  chmod +x "$b"
  section "ours: gpu_sparse_attn"
  LTD_BENCH_DIR=$RUN step bench 200 "$b" --bench || say "!!! our bench failed"
  [ -f "$RUN/ours.json" ] || { say "!!! our bench wrote no ours.json: nothing to compare"; return 1; }
}
dense_and_ceilings() {
  section "ceilings"; step ceilings 60 $peer "$RUN" --peer ceilings --out "$RUN/peers.jsonl"
  section "dense SDPA, each backend"; step sdpa 150 $peer "$RUN" --peer sdpa --out "$RUN/peers.jsonl"
}
finish() {  # finish PREFIX: the table and the archive
  section "table"
  python3 "$root/benches/peers/readme_table.py" "$RUN/ours.json" "$RUN/peers.jsonl" \
    --out "$OUT/${1}table.md" 2>&1 | tee -a "$LOG"
  cp "$OUT/${1}table.md" "$RUN/" 2>/dev/null
  tar -czf "$OUT/${1}results.tar.gz" -C "$RUN" --exclude='layout_*' . 2>&1 | tee -a "$LOG"
}

section "machine ($mode)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tee -a "$LOG"

if [ "$mode" = stage ]; then
  section "stage FA4 part A"
  rm -rf "$FA4_SITE"
  unpack_part a || say "!!! part A not staged: the run call will skip FA4"
  if [ "$stage_flex" = 1 ] && run_bench; then
    dense_and_ceilings
    section "FlexAttention search (tiles, kernel options)"
    step flex "$((FLEX_STAGE_BUDGET_S + 60))" $peer "$RUN" --peer flex \
      --budget-s "$FLEX_STAGE_BUDGET_S" --out "$RUN/peers.jsonl"
    finish stage-
  fi
  say ""; say "stage done at t=${SECONDS}s: send the run call now (the machine stays warm about 30 s)"
  exit 0
fi

section "FA4 part B"
fa4_ok=0
if [ -f "$FA4_SITE/.part-a.sha256" ]; then
  unpack_part b && fa4_ok=1
else
  say "!!! FA4 SKIPPED: part A is not on this machine ($FA4_SITE/.part-a.sha256 missing): the"
  say "!!! stage call did not run here or the machine went cold; send 'stage' then 'run' back to back"
fi
run_bench || { tar -czf "$OUT/results.tar.gz" -C "$RUN" --exclude='layout_*' .; exit 1; }
dense_and_ceilings
section "FlashAttention-4 block-sparse"
fa4_rc=skipped
if [ "$fa4_ok" = 1 ]; then
  PYTHONPATH="$FA4_SITE:$FA4_SITE/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}" \
    step fa4 "$((FA4_BUDGET_S + 60))" $peer "$RUN" --peer fa4 --budget-s "$FA4_BUDGET_S" \
    --out "$RUN/peers.jsonl"
  fa4_rc="rc=$?"
else
  python3 - "$RUN/ours.json" >> "$RUN/peers.jsonl" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["runs"]:
    print(json.dumps({"kind": "skip", "peer": "fa4", "layout": r["layout"], "seq": r["seq"],
                      "head_dim": r["head_dim"], "pass": "both", "config": "FA4 block-sparse",
                      "reason": "FA4 wheels not on the machine (part A missing)"}))
PY
fi
section "FlexAttention"
if [ -f "$STAGE/peers.jsonl" ]; then
  step flex "$((${FLEX_BUDGET_S:-120} + 60))" $peer "$RUN" --peer flex --budget-s "${FLEX_BUDGET_S:-120}" \
    --flex-prior "$STAGE/peers.jsonl" --out "$RUN/peers.jsonl"
else
  say "!!! no stage search on this machine: Flex searches from scratch"
  step flex "$((${FLEX_BUDGET_S:-200} + 60))" $peer "$RUN" --peer flex --budget-s "${FLEX_BUDGET_S:-200}" \
    --out "$RUN/peers.jsonl"
fi
finish ""
say ""; say "done at t=${SECONDS}s; FA4: $fa4_rc; files: $(ls "$OUT" | tr '\n' ' ')"
