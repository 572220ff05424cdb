#!/usr/bin/env python3
"""PyTorch peers for the GPU Random-LTD bench, on exactly the shapes of
benches/benches/gpu_random_ltd.rs, and our/peer ratios.

    LTD_BENCH_JSON=ours.json <gpu_random_ltd bench binary> --bench
    python3 benches/peers/random_ltd_peer.py --ours ours.json

Peers: gather = index_select on the flattened rows (and torch.gather), scatter = index_copy_,
upstream's scatter = clone + index_copy_ (compared with our out-of-place route), sampler =
multinomial + sort (upstream's path, with torch's sort standing in for its token_sort kernel)
and rand + argsort. A ratio > 1 means we are faster.
"""
import argparse
import json

import torch

from attn_peers.common import median_us as common_median_us


def median_us(fn):
    """The timing scheme of the attention peers (attn_peers.common), 10 calls per repetition."""
    return common_median_us(fn, iters=10)


def sorted_indices(b, s, r, dev):
    w = torch.ones(b, s, device=dev)
    return torch.multinomial(w, r, replacement=False).sort(dim=1).values


def bench_shape(b, s, c, r, dtype, seq_major, dev):
    h = torch.randn(b, s, c, device=dev).to(dtype)
    part = torch.randn(b, r, c, device=dev).to(dtype)
    idx = sorted_indices(b, s, r, dev)
    if seq_major:  # [S,B,C] storage: row (b, s) is flat row s*B + b
        h_rows = h.transpose(0, 1).contiguous().view(s * b, c)
        part_rows = part.transpose(0, 1).contiguous().view(r * b, c)
        flat = (idx * b + torch.arange(b, device=dev)[:, None]).transpose(0, 1).reshape(-1)
    else:
        h_rows = h.view(b * s, c)
        part_rows = part.view(b * r, c)
        flat = (idx + s * torch.arange(b, device=dev)[:, None]).reshape(-1)
    out_part = torch.empty_like(part_rows)
    y = torch.empty_like(h_rows)
    res = {}
    res["copy_part"] = median_us(lambda: out_part.copy_(h_rows[: b * r]))
    res["copy_full"] = median_us(lambda: y.copy_(h_rows))
    res["gather_index_select"] = median_us(lambda: torch.index_select(h_rows, 0, flat, out=out_part))
    if not seq_major:
        g_idx = idx[:, :, None].expand(-1, -1, c)
        res["gather_torch_gather"] = median_us(lambda: torch.gather(h, 1, g_idx))
    res["scatter_index_copy"] = median_us(lambda: y.index_copy_(0, flat, part_rows))
    res["scatter_clone_index_copy"] = median_us(lambda: h_rows.clone().index_copy_(0, flat, part_rows))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", help="JSON written by the Rust bench (LTD_BENCH_JSON)")
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"peer: torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    ours = json.load(open(args.ours)) if args.ours else None
    ours_ops = {}
    if ours:
        for row in ours["ops"]:
            ours_ops[(row["shape"], row["order"], row["op"])] = row
    shapes = [(8, 2048, 4096, 1024, torch.bfloat16, "bf16"), (16, 2048, 2048, 1536, torch.float16, "f16"),
              (4, 8192, 4096, 2048, torch.bfloat16, "bf16")]
    print(f"\n{'shape':<28} {'order':<8} {'op':<8} {'ours us':>9} {'peer':<26} {'peer us':>9} {'ours/copy':>10} {'peer/copy':>10} {'speedup':>8}")
    for seq_major in (False, True):
        order = "[S,B,C]" if seq_major else "[B,S,C]"
        for b, s, c, r, dtype, name in shapes:
            shape = f"B{b} S{s} C{c} r{r} {name}"
            p = bench_shape(b, s, c, r, dtype, seq_major, dev)
            pairs = [("gather", "gather_index_select", "copy_part"), ("gather", "gather_torch_gather", "copy_part"),
                     ("scatter", "scatter_index_copy", "copy_part"), ("route", "scatter_clone_index_copy", "copy_full")]
            for op, peer, copy in pairs:
                if peer not in p:
                    continue
                o = ours_ops.get((shape, order, op))
                ours_us = o["ours_us"] if o else float("nan")
                # Bandwidth fraction of copy for gather/scatter; time ratio to copy for route.
                if op == "route":
                    ours_rel = ours_us / o["copy_us"] if o else float("nan")
                    peer_rel = p[peer] / p[copy]
                else:
                    ours_rel = o["copy_us"] / ours_us if o else float("nan")
                    peer_rel = p[copy] / p[peer]
                print(f"{shape:<28} {order:<8} {op:<8} {ours_us:>9.1f} {peer:<26} {p[peer]:>9.1f} {ours_rel:>10.3f} {peer_rel:>10.3f} {p[peer] / ours_us:>8.2f}")
    print(f"\n{'sampler':<28} {'ours us':>9} {'multinomial+sort us':>20} {'rand+argsort us':>16} {'speedup':>8}")
    for case in (ours or {}).get("sampler", []) or [{"layers": 22, "batch": 8, "seq": 2048, "reserved": 1024, "ours_us": float("nan")}]:
        l, b, s, r = case["layers"], case["batch"], case["seq"], case["reserved"]
        w = torch.ones(l * b, s, device=dev)
        mult = median_us(lambda: torch.multinomial(w, r, replacement=False).sort(dim=1))
        ras = median_us(lambda: torch.rand(l * b, s, device=dev).argsort(dim=1)[:, :r].sort(dim=1))
        print(f"{f'{l} x {b} x {s} -> {r}':<28} {case['ours_us']:>9.1f} {mult:>20.1f} {ras:>16.1f} {mult / case['ours_us']:>8.1f}")


if __name__ == "__main__":
    main()
