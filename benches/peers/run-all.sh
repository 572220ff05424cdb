#!/usr/bin/env bash
# One device run of the sparse-attention comparison: our bench and every peer at its best in
# the same call, then the README table. Run from the repository root on the GPU machine.
#
#   bash benches/peers/run-all.sh stage [--warm-flex]   # call 1: unpack FA4 part A (+ warm Flex)
#   bash benches/peers/run-all.sh run                   # call 2: everything, one run
#
# Inputs (paths relative to the repository root, carried into the call):
#   BENCH      our gpu_sparse_attn bench binary, raw or .xz (default .gpu-peers/gpu_sparse_attn.xz),
#              built with `cargo bench -p ltd-benches --features cuda --bench gpu_sparse_attn --no-run`
#   .whl/fa4a/fa4-part-a.tar.xz, .whl/fa4b/fa4-part-b.tar.xz   from benches/peers/fa4-wheels.sh
# FA4's compiler library (part A) is too large to travel with the rest in one call, so `stage`
# unpacks it into $FA4_SITE (default /tmp/fa4-site), which lasts while the machine stays warm
# (about 30 s after a call ends): send `run` right after `stage` returns. If part A is gone,
# `run` still runs our bench, SDPA and Flex and says loudly that FA4 was skipped.
# `--warm-flex` also runs our bench and the Flex peer once in `stage` (results kept as
# warm-*.jsonl), so `run` finds Inductor's compiled kernels in its cache.
#
# Writes to $OUT (at most 8 files): results.tar.gz (ours.json, peers.jsonl, logs), table.md,
# run.log. Budgets in seconds (environment): FA4_BUDGET_S (170), FLEX_BUDGET_S (200),
# DEADLINE_S (560: no section starts a step that could end past it).
set -uo pipefail

mode=${1:-}
[ "$mode" = stage ] || [ "$mode" = run ] || { echo "usage: run-all.sh stage [--warm-flex] | run" >&2; exit 2; }
warm_flex=0; [ "${2:-}" = --warm-flex ] && warm_flex=1
root=$(pwd)
[ -f "$root/benches/peers/sparse_attn_peer.py" ] || { echo "run-all: run from the repository root" >&2; exit 2; }
OUT=${OUT:-/tmp/peers-out}; mkdir -p "$OUT"
BENCH=${BENCH:-.gpu-peers/gpu_sparse_attn.xz}
FA4_SITE=${FA4_SITE:-/tmp/fa4-site}
FA4_BUDGET_S=${FA4_BUDGET_S:-170}; FLEX_BUDGET_S=${FLEX_BUDGET_S:-200}; DEADLINE_S=${DEADLINE_S:-560}
RUN=/tmp/peers-run; rm -rf "$RUN"; mkdir -p "$RUN"
LOG="$OUT/run.log"; : > "$LOG"
export PYTHONUNBUFFERED=1
peer="python3 $root/benches/peers/sparse_attn_peer.py"

say() { echo "$@" | tee -a "$LOG"; }
section() { say ""; say "=== $1 (t=${SECONDS}s)"; }
# time left before the deadline, capped at $1
left() { local l=$((DEADLINE_S - SECONDS)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
step() {  # step NAME CAP_S CMD...: runs CMD under a timeout, logs it, says how long it took
  local name=$1 cap=$2; shift 2
  local t; t=$(left "$cap")
  if [ "$t" -le 5 ]; then say "!!! $name SKIPPED: deadline (${DEADLINE_S}s) reached"; return 1; fi
  local s=$SECONDS
  timeout --signal=INT --kill-after=15 "$t" "$@" 2>&1 | tee -a "$LOG" "$RUN/$name.log"
  local rc=${PIPESTATUS[0]}
  say "--- $name: rc=$rc, $((SECONDS - s)) s$([ "$rc" = 124 ] && echo ", STOPPED at its ${t}s limit")"
  return "$rc"
}

section "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "dlpack exchange api:", hasattr(torch.Tensor, "__dlpack_c_exchange_api__"))' 2>&1 | tee -a "$LOG"

unpack_part() {  # unpack_part a|b: verifies and unpacks .whl/fa4<p> into $FA4_SITE
  local p=$1 dir=".whl/fa4$1"
  if [ ! -f "$dir/fa4-part-$p.tar.xz" ]; then say "!!! FA4 part $p not carried ($dir/fa4-part-$p.tar.xz missing)"; return 1; fi
  (cd "$dir" && sha256sum -c --quiet "fa4-part-$p.sha256") || { say "!!! FA4 part $p: checksum mismatch"; return 1; }
  mkdir -p "$FA4_SITE" && xz -dc "$dir/fa4-part-$p.tar.xz" | tar -xf - -C "$FA4_SITE" &&
    cp "$dir/fa4-part-$p.sha256" "$FA4_SITE/.part-$p.sha256" && say "FA4 part $p unpacked into $FA4_SITE"
}

bench_bin() {  # prints the path of a runnable bench binary
  local b=$BENCH
  [ -f "$b" ] || { say "!!! our bench binary $b is missing (set BENCH, carry its folder)" >&2; return 1; }
  case "$b" in *.xz) xz -dc "$b" > /tmp/gpu_sparse_attn && b=/tmp/gpu_sparse_attn ;; esac
  chmod +x "$b" && echo "$b"
}

run_bench() {
  local b; b=$(bench_bin) || return 1
  section "ours: gpu_sparse_attn"
  LTD_BENCH_DIR=$RUN step bench 200 "$b" --bench || say "!!! our bench failed"
  [ -f "$RUN/ours.json" ] || { say "!!! our bench wrote no ours.json: nothing to compare"; return 1; }
}

if [ "$mode" = stage ]; then
  section "stage FA4 part A"
  rm -rf "$FA4_SITE"
  unpack_part a || say "!!! part A not staged: the run call will skip FA4"
  if [ "$warm_flex" = 1 ]; then
    run_bench && { section "warm Flex's compile cache"
      step flex-warm "$FLEX_BUDGET_S" $peer "$RUN" --peer flex --budget-s "$((FLEX_BUDGET_S - 30))" --out "$RUN/warm-flex.jsonl"; }
  fi
  tar -czf "$OUT/results.tar.gz" -C "$RUN" --exclude='layout_*' . 2>/dev/null
  say ""; say "stage done at t=${SECONDS}s: send the run call now (the machine stays warm ~30 s)"
  exit 0
fi

section "FA4 part B"
fa4_ok=0
if [ -f "$FA4_SITE/.part-a.sha256" ]; then
  unpack_part b && fa4_ok=1
else
  say "!!! FA4 SKIPPED: part A is not on this machine ($FA4_SITE/.part-a.sha256 missing):"
  say "!!! the stage call did not run here or the machine went cold; run 'stage' then 'run' back to back"
fi

run_bench || { tar -czf "$OUT/results.tar.gz" -C "$RUN" --exclude='layout_*' .; exit 1; }
section "ceilings"; step ceilings 60 $peer "$RUN" --peer ceilings --out "$RUN/peers.jsonl"
section "dense SDPA, each backend"; step sdpa 150 $peer "$RUN" --peer sdpa --out "$RUN/peers.jsonl"
section "FlashAttention-4 block-sparse"
if [ "$fa4_ok" = 1 ]; then
  PYTHONPATH="$FA4_SITE:$FA4_SITE/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}" \
    step fa4 "$((FA4_BUDGET_S + 60))" $peer "$RUN" --peer fa4 --budget-s "$FA4_BUDGET_S" --out "$RUN/peers.jsonl"
else
  python3 -c "import json,sys; [print(json.dumps(dict(kind='skip', peer='fa4', layout=r['layout'], seq=r['seq'], head_dim=r['head_dim'], config='FA4 block-sparse', reason='FA4 wheels not on the machine (part A missing)', **{'pass': 'both'}))) for r in json.load(open(sys.argv[1]))['runs']]" "$RUN/ours.json" >> "$RUN/peers.jsonl"
fi
section "FlexAttention"
step flex "$((FLEX_BUDGET_S + 60))" $peer "$RUN" --peer flex --budget-s "$FLEX_BUDGET_S" --out "$RUN/peers.jsonl"
section "table"
python3 "$root/benches/peers/readme_table.py" "$RUN/ours.json" "$RUN/peers.jsonl" --out "$OUT/table.md" 2>&1 | tee -a "$LOG"
cp "$OUT/table.md" "$RUN/" 2>/dev/null
tar -czf "$OUT/results.tar.gz" -C "$RUN" --exclude='layout_*' .
say ""; say "done at t=${SECONDS}s; FA4 $([ $fa4_ok = 1 ] && echo ran || echo SKIPPED); files: $(ls "$OUT" | tr '\n' ' ')"
