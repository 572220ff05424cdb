# Sourced by ab-call.sh and ab-all.sh: where the outputs go, unpacking .gpu-ab's binaries, and
# one A/B round of gpu_sparse_attn.
O=${OUT:-/tmp/out}
mkdir -p "$O"
# unpack NAME...: .gpu-ab/NAME.xz to an executable /tmp/NAME; a missing or bad pack stops the call.
unpack() {
  for n in "$@"; do
    xz -dc ".gpu-ab/$n.xz" > "/tmp/$n" && chmod +x "/tmp/$n" || { echo "unpack: .gpu-ab/$n.xz failed" >&2; exit 1; }
  done
}
# round R VERSION...: /tmp/bench-VERSION over every cell, each table under `== round R VERSION`
# in ab.log (ab_table.py's input).
round() {
  local r=$1 v
  shift
  for v in "$@"; do
    echo "== round $r $v" | tee -a "$O/ab.log"
    timeout 55 "/tmp/bench-$v" --bench 2>&1 | tee -a "$O/ab.log" | tail -20 | cut -c1-72
  done
}
# machine: the GPU and its clocks, appended to machine.txt.
machine() { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee -a "$O/machine.txt"; }
