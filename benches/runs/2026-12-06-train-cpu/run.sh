#!/usr/bin/env bash
# Random-LTD training target on the CPU (docs/design.md, "Performance targets"): a GPT with 6
# layers at S = 512 on the embedded corpus, baseline vs Random-LTD (layers 1-4, r from S/16 to S
# over 90% of the steps, upstream's fixed_linear shape), 3 seeds. Writes each seed's CSVs, PNGs and
# summary under OUT (default: benches/runs/2026-12-06-train-cpu/out), then prints the mean and
# spread.
#
#   bash benches/runs/2026-12-06-train-cpu/run.sh            # 3 seeds, 400 steps each
#   STEPS=200 SEEDS="1 2" bash benches/runs/2026-12-06-train-cpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=benches/runs/2026-12-06-train-cpu
OUT=${OUT:-$HERE/out}
STEPS=${STEPS:-400}
SEEDS=${SEEDS:-"1 2 3"}
cargo build --release --locked -p ltd-cli
mkdir -p "$OUT"
for seed in $SEEDS; do
  ./target/release/ltd train --compare --quiet \
    --layers 6 --width 64 --heads 2 --seq-len 512 --batch 8 --steps "$STEPS" \
    --eval-windows 32 --seed "$seed" --out "$OUT/seed-$seed" | tee "$OUT/seed-$seed.txt"
done
python3 - "$OUT" $SEEDS <<'PY'
import statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = {}
for s in seeds:
    for line in open(f"{out}/seed-{s}.txt"):
        f = line.split()
        if f and f[0] in ("baseline", "random-ltd") and len(f) >= 7 and f[1][0].isdigit():
            rows.setdefault(f[0], []).append((float(f[1]), int(f[3].replace(",", "")), float(f[5])))
def show(name):
    v = rows[name]
    loss = [x[0] for x in v]
    print(f"{name:<11} val loss mean {statistics.mean(loss):.4f} (min {min(loss):.4f}, max {max(loss):.4f}), "
          f"layer-tokens {v[0][1]:,}, wall mean {statistics.mean(x[2] for x in v):.1f} s")
show("baseline"); show("random-ltd")
b, r = rows["baseline"], rows["random-ltd"]
dl = [100 * (y[0] - x[0]) / x[0] for x, y in zip(b, r)]
print(f"random-ltd vs baseline: val loss {100*(statistics.mean(y[0] for y in r)/statistics.mean(x[0] for x in b)-1):+.2f}% "
      f"(per seed {', '.join(f'{d:+.2f}%' for d in dl)}), layer-tokens saved {100*(1-r[0][1]/b[0][1]):.1f}%, "
      f"wall-clock saved {100*(1-statistics.mean(y[2] for y in r)/statistics.mean(x[2] for x in b)):.1f}%")
PY
