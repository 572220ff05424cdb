#!/usr/bin/env python3
"""The README's sparse-attention table from one device run: our bench's `ours.json` and the
peers' `peers.jsonl` (`sparse_attn_peer.py`), as markdown. Standard library only.

    python3 benches/peers/readme_table.py ours.json peers.jsonl > table.md

Per cell: our forward and forward + backward times; each peer at its best (the fastest
configuration that passed its reference check; which one is listed under the table); ratios
(peer time / ours, > 1 means we are faster); and the efficiency columns of docs/design.md:
our TFLOP/s on active tiles over the best dense attention's TFLOP/s on the same shape, forward
(`4 B nnz b^2 D / t` against `4 B H S^2 D / t`) and backward (`(fwd+bwd) - fwd` for both, the
best dense backend for each pass chosen separately). Cells that miss a target are marked:
forward >= 0.9 and backward >= 0.85 at blocks 64 / 128, both >= 0.5 at blocks 16 / 32, and
faster than every block-sparse peer in forward and in forward + backward.
"""
import argparse
import json
import math
import sys

SPARSE_PEERS = [("flex", "Flex"), ("fa4", "FA4")]


def targets(block):
    """(forward, backward) efficiency targets for a layout block size."""
    return (0.9, 0.85) if block >= 64 else (0.5, 0.5)


def load_peers(path):
    """`(meta rows, best, skips)`: best[(cell key, peer, pass)] = (us, row), the fastest time
    row (for "sdpa" over its backends; best[(cell key, "sdpa:<backend>", pass)] keeps each
    backend too); skips[(cell key, peer)] counts the skipped configurations."""
    metas, best, skips = [], {}, {}
    try:
        f = open(path)
    except OSError as e:
        print(f"readme_table: no peer rows ({e}); the peer columns stay empty", file=sys.stderr)
        return metas, best, skips
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                sys.exit(f"readme_table: {path}:{n} is not JSON: {e}")
            kind = row.get("kind")
            if kind == "meta":
                metas.append(row)
                continue
            key = (row["layout"], row["seq"], row["head_dim"]) if "layout" in row else None
            if kind == "skip" and key:
                skips[(key, row["peer"])] = skips.get((key, row["peer"]), 0) + 1
            elif kind == "time":
                peers = [row["peer"]]
                if row["peer"] == "sdpa":
                    peers.append(f"sdpa:{row.get('backend')}")
                for peer in peers:
                    k = (key, peer, row["pass"])
                    if k not in best or row["us"] < best[k][0]:
                        best[k] = (row["us"], row)
    return metas, best, skips


def fmt(x, spec=".1f"):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def ratio(peer_us, ours_us):
    if peer_us is None or not ours_us or math.isnan(ours_us):
        return None
    return peer_us / ours_us


def cell_rows(run, best, skips):
    """The numbers of one cell: a dict used by both tables and the miss list."""
    key = (run["layout"], run["seq"], run["head_dim"])
    b, h, s, d = run["batch"], run["heads"], run["seq"], run["head_dim"]
    eff_flops = 4.0 * b * run["nnz"] * run["block"] ** 2 * d
    dense_flops = 4.0 * b * h * s * s * d
    fwd, fb = run["fwd_us"], run["fwdbwd_us"]
    r = {"key": key, "run": run, "fwd": fwd, "fb": fb, "bwd": fb - fwd}
    r["tf"] = eff_flops / fwd / 1e6
    r["bwd_tf"] = 2.5 * eff_flops / r["bwd"] / 1e6 if r["bwd"] > 0 else None
    sd_f = best.get((key, "sdpa", "fwd"))
    r["dense_fwd"] = sd_f
    r["dense_tf"] = dense_flops / sd_f[0] / 1e6 if sd_f else None
    # the best dense backward over backends: each backend's (fwd+bwd) - fwd
    per_backend = {}
    for (k, peer, p), (us, row) in best.items():
        if k == key and peer.startswith("sdpa:"):
            per_backend.setdefault(peer[5:], {})[p] = us
    dense_bwd = [(v["fwdbwd"] - v["fwd"], name) for name, v in per_backend.items()
                 if "fwd" in v and "fwdbwd" in v]
    dense_bwd = min(dense_bwd) if dense_bwd else None
    r["dense_bwd"] = dense_bwd
    r["dense_bwd_tf"] = 2.5 * dense_flops / dense_bwd[0] / 1e6 if dense_bwd else None
    r["eff_fwd"] = r["tf"] / r["dense_tf"] if r["dense_tf"] else None
    r["eff_bwd"] = r["bwd_tf"] / r["dense_bwd_tf"] if r["dense_bwd_tf"] and r["bwd_tf"] else None
    for peer, _name in SPARSE_PEERS:
        for p in ("fwd", "fwdbwd"):
            got = best.get((key, peer, p))
            r[f"{peer}_{p}"] = got
        r[f"{peer}_skips"] = skips.get((key, peer), 0)
    return r


def misses(r):
    """The targets this cell misses, as short phrases."""
    tf, tb = targets(r["run"]["block"])
    out = []
    if r["eff_fwd"] is None:
        out.append("fwd efficiency unmeasured")
    elif r["eff_fwd"] < tf:
        out.append(f"fwd eff {r['eff_fwd']:.2f} < {tf}")
    if r["eff_bwd"] is None:
        out.append("bwd efficiency unmeasured")
    elif r["eff_bwd"] < tb:
        out.append(f"bwd eff {r['eff_bwd']:.2f} < {tb}")
    for peer, name in SPARSE_PEERS:
        for p, label in (("fwd", "fwd"), ("fwdbwd", "f+b")):
            got = r[f"{peer}_{p}"]
            if got is None:
                out.append(f"{name} {label} not measured")
            elif got[0] <= (r["fwd"] if p == "fwd" else r["fb"]):
                out.append(f"{label} behind {name}")
    return out


def layout_name(run):
    name = run["layout"]
    for suffix in ("_b16", "_b32", "_b64", "_b128"):
        if name.endswith(suffix):
            return f"{name[: -len(suffix)]} b{suffix[2:]}"
    return name


def render(ours, metas, best, skips):
    lines = []
    meta = {}
    for m in metas:
        meta.setdefault(m.get("peer"), {}).update(m)
    any_meta = next(iter(meta.values()), {})
    ceil = meta.get("ceilings", {})
    lines.append(f"Device: {ours.get('device', '?')}; peers: torch {any_meta.get('torch', '?')} on "
                 f"{any_meta.get('device', '?')}"
                 + (f"; FA4 {meta['fa4'].get('versions')}" if meta.get("fa4", {}).get("versions") else "")
                 + (f"; ceilings: copy {ceil['copy_gbs']:.0f} GB/s, dense bf16 matmul "
                    f"{ceil['matmul_tflops']:.0f} TFLOP/s" if "copy_gbs" in ceil else "") + ".")
    lines.append("")
    rows = [cell_rows(run, best, skips) for run in ours["runs"]]
    lines.append("Forward (µs; ratios are peer time ÷ ours, > 1 = we are faster; efficiency = our "
                 "TFLOP/s on active tiles ÷ the best dense backend's TFLOP/s):")
    lines.append("")
    lines.append("| layout | S | D | density | ours µs | ours TFLOP/s | dense TFLOP/s (backend) | "
                 "efficiency | Flex µs | Flex ÷ ours | FA4 µs | FA4 ÷ ours |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        run = r["run"]
        dense = (f"{fmt(r['dense_tf'])} ({r['dense_fwd'][1].get('backend')})"
                 if r["dense_fwd"] else "—")
        fl, fa = r["flex_fwd"], r["fa4_fwd"]
        lines.append(
            f"| {layout_name(run)} | {run['seq']} | {run['head_dim']} | {run['density']:.3f} | "
            f"{fmt(r['fwd'])} | {fmt(r['tf'])} | {dense} | {fmt(r['eff_fwd'], '.2f')} | "
            f"{fmt(fl[0] if fl else None)} | {fmt(ratio(fl[0] if fl else None, r['fwd']), '.2f')} | "
            f"{fmt(fa[0] if fa else None)} | {fmt(ratio(fa[0] if fa else None, r['fwd']), '.2f')} |")
    lines.append("")
    lines.append("Backward (ours: forward + backward minus forward; dense likewise, best backend):")
    lines.append("")
    lines.append("| layout | S | D | ours f+b µs | ours bwd µs | ours bwd TFLOP/s | dense bwd TFLOP/s "
                 "(backend) | efficiency | Flex f+b µs | Flex ÷ ours | FA4 f+b µs | FA4 ÷ ours |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        run = r["run"]
        dense = (f"{fmt(r['dense_bwd_tf'])} ({r['dense_bwd'][1]})" if r["dense_bwd"] else "—")
        fl, fa = r["flex_fwdbwd"], r["fa4_fwdbwd"]
        lines.append(
            f"| {layout_name(run)} | {run['seq']} | {run['head_dim']} | {fmt(r['fb'])} | "
            f"{fmt(r['bwd'])} | {fmt(r['bwd_tf'])} | {dense} | {fmt(r['eff_bwd'], '.2f')} | "
            f"{fmt(fl[0] if fl else None)} | {fmt(ratio(fl[0] if fl else None, r['fb']), '.2f')} | "
            f"{fmt(fa[0] if fa else None)} | {fmt(ratio(fa[0] if fa else None, r['fb']), '.2f')} |")
    lines.append("")
    missed = [(r, misses(r)) for r in rows]
    n_miss = sum(1 for _, m in missed if m)
    lines.append(f"Targets (docs/design.md): {len(rows) - n_miss} of {len(rows)} cells meet all; "
                 "misses:" if n_miss else f"Targets (docs/design.md): all {len(rows)} cells meet all.")
    lines.append("")
    for r, m in missed:
        if m:
            run = r["run"]
            lines.append(f"- {layout_name(run)} S {run['seq']} D {run['head_dim']}: {'; '.join(m)}")
    lines.append("")
    lines.append("What each peer ran (the fastest checked configuration per cell and pass; "
                 "all the others tried are in peers.jsonl):")
    lines.append("")
    lines.append("| layout | S | D | peer | pass | µs | configuration |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        run = r["run"]
        picks = [("dense", "fwd", r["dense_fwd"])]
        for peer, name in SPARSE_PEERS:
            for p in ("fwd", "fwdbwd"):
                picks.append((name, p, r[f"{peer}_{p}"]))
        if r["dense_bwd"]:
            lines.append(f"| {layout_name(run)} | {run['seq']} | {run['head_dim']} | dense | bwd | "
                         f"{r['dense_bwd'][0]:.1f} | SDPA {r['dense_bwd'][1]} backend: its "
                         "forward + backward minus its forward |")
        for name, p, got in picks:
            label = "f+b" if p == "fwdbwd" else p
            if got:
                conf = got[1]["config"].replace("|", "/")
                lines.append(f"| {layout_name(run)} | {run['seq']} | {run['head_dim']} | {name} | "
                             f"{label} | {got[0]:.1f} | {conf} |")
            else:
                n = r.get(f"{name.lower()}_skips", 0) if name != "dense" else 0
                lines.append(f"| {layout_name(run)} | {run['seq']} | {run['head_dim']} | {name} | "
                             f"{label} | — | none ran ({n} configurations skipped; see peers.jsonl) |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours", help="ours.json of gpu_sparse_attn (LTD_BENCH_DIR)")
    ap.add_argument("peers", help="peers.jsonl of sparse_attn_peer.py, same device call")
    ap.add_argument("--out", help="write the markdown here instead of stdout")
    args = ap.parse_args()
    try:
        with open(args.ours) as f:
            ours = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"readme_table: cannot read {args.ours}: {e}")
    metas, best, skips = load_peers(args.peers)
    text = render(ours, metas, best, skips)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
