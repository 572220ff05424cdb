#!/usr/bin/env python3
"""FlexAttention (on our exported layouts) and dense SDPA peers for the GPU sparse-attention
bench, with our/peer ratios.

    LTD_BENCH_DIR=dir <gpu_sparse_attn bench binary> --bench
    python3 benches/peers/sparse_attn_peer.py dir

Effective TFLOP/s for everyone: 4 * B * active_blocks * block^2 * D / t (active blocks of our
layout summed over heads); dense SDPA is also shown on its own dense FLOPs (4 * B * H * S^2 * D).

Ceilings measured in the same run: copy bandwidth (device-to-device clone of 1 GiB, read + write
bytes / t) and the dense bf16 matrix rate (torch.matmul 8192^3). For our forward the table also
gives the share of each it reaches: bytes = Q read + O write + K and V of every active 64 x 64
kernel tile; issued FLOPs = 4 * B * kernel_tiles * 64 * 64 * D (what the tensor cores execute,
inactive 16 x 16 sub-blocks included).
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention


def median_us(fn, iters=5, reps=7, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(iters):
            fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1000.0 / iters)
    times.sort()
    return times[len(times) // 2]


FLEX_BLOCK = 128


def block_mask_from_layout(lay, blk, seq, dev):
    """A FlexAttention BlockMask at 128 x 128 granularity built directly from our [H, nb, nb]
    layout (no S x S mask is materialised): a 128-tile is "full" when every layout block in it
    is active, "partial" (mask_mod decides per token) when some are."""
    h, nb, _ = lay.shape
    f = FLEX_BLOCK // blk
    nt = -(-nb // f)
    padded = np.zeros((h, nt * f, nt * f), dtype=bool)
    padded[:, :nb, :nb] = lay
    tiles = padded.reshape(h, nt, f, nt, f)
    any_ = tiles.any(axis=(2, 4))
    all_ = tiles.all(axis=(2, 4))
    partial = any_ & ~all_

    def pack(sel):
        num = sel.sum(-1).astype(np.int32)
        idx = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)
        return torch.from_numpy(num)[None].to(dev), torch.from_numpy(idx)[None].to(dev)

    kv_num, kv_idx = pack(partial)
    full_num, full_idx = pack(all_)
    lay_t = torch.from_numpy(lay).to(dev)

    def mask_mod(b, hh, q, k):
        return lay_t[hh, q // blk, k // blk]

    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=FLEX_BLOCK,
                                    mask_mod=mask_mod, seq_lengths=(seq, seq))


def main():
    d = sys.argv[1]
    ours = json.load(open(f"{d}/ours.json"))
    dev = torch.device("cuda")
    print(f"peer: torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    torch._dynamo.config.recompile_limit = 64
    big = torch.empty(1 << 29, device=dev, dtype=torch.bfloat16)
    copy_gbs = 2 * big.numel() * 2 / median_us(lambda: big.clone()) / 1e3
    del big
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    mm_tf = 2 * 8192 ** 3 / median_us(lambda: a @ a) / 1e6
    del a
    torch.cuda.empty_cache()
    print(f"ceilings (same run): copy {copy_gbs:.0f} GB/s, dense bf16 matmul {mm_tf:.0f} TFLOP/s")
    flex = torch.compile(flex_attention)
    print(f"\n{'layout':<18} {'S':>6} {'D':>4} {'dens':>6} {'ours us':>9} {'flex us':>9} {'sdpa us':>9} "
          f"{'ours TF':>8} {'flex TF':>8} {'sdpa TF':>8} {'vs flex':>8} {'TF/sdpaTF':>9} {'vs sdpa t':>9}")
    masks = {}
    fb_rows = []
    for run in ours["runs"]:
        name, seq, b, h, hd = run["layout"], run["seq"], run["batch"], run["heads"], run["head_dim"]
        blk, nb = run["block"], run["nb"]
        key = (name, seq)
        if key not in masks:
            lay = np.fromfile(f"{d}/layout_{name}_s{seq}.u8", dtype=np.uint8).reshape(h, nb, nb).astype(bool)
            masks[key] = block_mask_from_layout(lay, blk, seq, dev)
        bm = masks[key]
        q = torch.randn(b, h, seq, hd, device=dev, dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn_like(q)
        try:
            flex_us = median_us(lambda: flex(q, k, v, block_mask=bm))
        except torch.OutOfMemoryError:
            flex_us = float("nan")
            torch.cuda.empty_cache()
        sdpa_us = median_us(lambda: F.scaled_dot_product_attention(q, k, v))
        qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
        dout = torch.randn_like(q)

        def flex_fb():
            flex(qg, kg, vg, block_mask=bm).backward(dout)

        def sdpa_fb():
            F.scaled_dot_product_attention(qg, kg, vg).backward(dout)

        try:
            flex_fb_us = median_us(flex_fb)
        except torch.OutOfMemoryError:  # FlexAttention's backward materialises [H, S, S] at 16k
            flex_fb_us = float("nan")
        qg.grad = kg.grad = vg.grad = None
        torch.cuda.empty_cache()
        sdpa_fb_us = median_us(sdpa_fb)
        del qg, kg, vg, dout
        torch.cuda.empty_cache()
        fb_rows.append((name, seq, hd, run["fwdbwd_us"], flex_fb_us, sdpa_fb_us))
        eff = 4.0 * b * run["nnz"] * blk * blk * hd
        dense = 4.0 * b * h * seq * seq * hd
        ours_tf, flex_tf = eff / run["fwd_us"] / 1e6, eff / flex_us / 1e6
        sdpa_tf = dense / sdpa_us / 1e6
        print(f"{name:<18} {seq:>6} {hd:>4} {run['density']:>6.3f} {run['fwd_us']:>9.1f} {flex_us:>9.1f} {sdpa_us:>9.1f} "
              f"{ours_tf:>8.1f} {flex_tf:>8.1f} {sdpa_tf:>8.1f} {flex_us / run['fwd_us']:>8.2f} {ours_tf / sdpa_tf:>9.2f} "
              f"{sdpa_us / run['fwd_us']:>9.2f}")

    print(f"\nours vs the ceilings ({copy_gbs:.0f} GB/s, {mm_tf:.0f} TFLOP/s) and the mma.sync kernel")
    print(f"{'layout':<18} {'S':>6} {'D':>4} {'kernel':>10} {'GB/s':>7} {'of copy':>8} {'issued TF':>9} {'of mm':>6} {'mma.sync us':>11} {'speedup':>8} {'other sm90':>10}")
    for run in ours["runs"]:
        b, h, seq, hd = run["batch"], run["heads"], run["seq"], run["head_dim"]
        byts = b * (2 * h * seq * hd * 2 + run["kernel_tiles"] * 2 * 64 * hd * 2)
        gbs = byts / run["fwd_us"] / 1e3
        issued = 4.0 * b * run["kernel_tiles"] * 64 * 64 * hd / run["fwd_us"] / 1e6
        print(f"{run['layout']:<18} {seq:>6} {hd:>4} {run['fwd_kernel']:>10} {gbs:>7.0f} {gbs / copy_gbs:>8.2f} {issued:>9.1f} "
              f"{issued / mm_tf:>6.2f} {run['fwd_mma_sync_us']:>11.1f} {run['fwd_mma_sync_us'] / run['fwd_us']:>8.2f} "
              f"{run.get('fwd_other_hopper_us', float('nan')):>10.1f}")

    print(f"\n{'fwd+bwd':<18} {'S':>6} {'D':>4} {'ours us':>9} {'flex us':>9} {'sdpa us':>9} {'vs flex':>8} {'vs sdpa t':>9} {'mma.sync us':>11} {'speedup':>8}")
    for (name, seq, hd, o, fl, sd), run in zip(fb_rows, ours["runs"]):
        ms = run.get("fwdbwd_mma_sync_us", float("nan"))
        print(f"{name:<18} {seq:>6} {hd:>4} {o:>9.1f} {fl:>9.1f} {sd:>9.1f} {fl / o:>8.2f} {sd / o:>9.2f} {ms:>11.1f} {ms / o:>8.2f}")


if __name__ == "__main__":
    main()
