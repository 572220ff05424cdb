"""FlexAttention at its best on our layouts: the BlockMask at each tile size its kernels accept
for the layout (exact: full tiles only where the layout's blocks tile them, else coarse tiles
with a per-token `mask_mod` on the partial ones), then forward and backward kernel options
tuned on the fastest tile; every configuration is checked against the masked dense reference
before it is timed, and every one timed is written (the table keeps the fastest).

Passes: (0) with `prior`, an earlier run's fastest configurations of each cell (a cell the
prior lacks starts from its nearest sibling's: same layout and head dim, another sequence
length; `search.py`); (1) the first tile candidate of every cell with Flex's own H100 defaults
fitted to the tile (its block sizes alone if those fail; always, unless pass 0 gave the cell a
number for both passes), then while the budget lasts (2) the other tile candidates likewise and
(3) forward and backward kernel options on each cell's fastest tile (`flex_configs` lists them
and the constraints torch puts on them), round-robin over the cells, a sibling's winning options
first.

Every compile runs with `TileGateChoices`: torch 2.11 gates its backward on its heuristic
config dividing the tile, whatever `bwd_` options are passed, which refuses every backward at
tiles under 128 tokens on H100 (`flex_configs` says where).

Example (on a GPU):

    run_flex(bench_dir, cells, out, Budget(200))
"""
import contextlib

import torch
from torch._inductor import config as inductor_config
from torch._inductor.choices import InductorChoices
from torch._inductor.virtualized import V
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .common import load_layout, median_us
from .flex_configs import bwd_candidates, default_blocks, fwd_candidates, gate_bwd_configs
from .reference import compare, make_inputs, reference_rows, sample_rows
from .search import preferred_first, round_robin, siblings, with_borrowed
from .tiles import pack, tile_layout


def tile_candidates(blk):
    """BlockMask tiles `(Q, KV)` for a layout of `blk`-token blocks, likeliest fastest first:
    the layout's own blocks where the kernels take them (exact without a mask), then coarser
    tiles with `mask_mod`, then the layout's own small blocks (16 and 32 are legal Triton tiles
    but run narrow products)."""
    if blk >= 128:
        return [(128, 128), (128, 64)]
    if blk == 64:
        return [(64, 64), (128, 64), (128, 128)]
    return [(128, 64), (64, 64), (128, 128), (64, blk), (blk, blk)]


def base_options(tq, tk, d):
    """Flex's own H100 forward and backward defaults for head dim `d`, fitted to a `(tq, tk)`
    tile (its defaults may not divide 64- or 16-token tiles, and then it refuses the mask)."""
    return {**fwd_candidates(tq, tk, d)[0], **bwd_candidates(tq, tk, d)[0]}


def fwd_options(tq, tk, d):
    """Forward kernel options to try on a tile, best first (each divides the tile)."""
    return fwd_candidates(tq, tk, d)


def bwd_options(tq, tk, d):
    """Backward kernel options (dK/dV tile M1 x N1, dQ tile M2 x N2) to try on a tile."""
    return bwd_candidates(tq, tk, d)


class TileGateChoices(InductorChoices):
    """Inductor's choices with the backward configs gated for the tile being compiled: torch
    filters its heuristic configs (not the `bwd_` options that replace their values) by tile
    divisibility, so without this no backward compiles at tiles under 128 tokens on H100."""

    tile = None

    def get_flex_attention_bwd_configs(self, head_dim, dtype, device_type="cuda"):
        stock = super().get_flex_attention_bwd_configs(head_dim, dtype, device_type)
        tile = TileGateChoices.tile
        return stock if tile is None else gate_bwd_configs(stock, *tile)


@contextlib.contextmanager
def gated_tile(tile):
    """Compiles inside see `tile` in `TileGateChoices` (a class attribute, so the autograd
    thread that may compile the backward sees it too)."""
    TileGateChoices.tile = tuple(tile)
    try:
        yield
    finally:
        TileGateChoices.tile = None


def install_tile_gate():
    """Makes every Inductor compile in this process use `TileGateChoices`."""
    inductor_config.inductor_choices_class = TileGateChoices
    V.set_choices_handler(TileGateChoices())


def block_mask(lay, blk, tq, tk, seq):
    """An exact BlockMask of the layout at `(tq, tk)` tiles, built from block lists (no S x S
    mask): full tiles skip `mask_mod`; partial ones (only where tiles are coarser than the
    layout's blocks) apply it per token. Returns `(mask, description)`."""
    full, partial = tile_layout(lay, blk, tq, tk)
    kv_num, kv_idx = pack(partial)
    f_num, f_idx = pack(full)

    def dev(a):
        return torch.from_numpy(a)[None].cuda()

    if partial.any():
        lay_t = torch.from_numpy(lay).cuda()

        def mask_mod(b, h, q, k):
            return lay_t[h, q // blk, k // blk]

        how = f"BlockMask {tq}x{tk}, {int(full.sum())} full + {int(partial.sum())} partial tiles, mask_mod per token"
    else:
        def mask_mod(b, h, q, k):
            return q >= 0

        how = f"BlockMask {tq}x{tk}, {int(full.sum())} full tiles (exact, no mask applied)"
    bm = BlockMask.from_kv_blocks(dev(kv_num), dev(kv_idx), dev(f_num), dev(f_idx),
                                  BLOCK_SIZE=(tq, tk), mask_mod=mask_mod,
                                  seq_lengths=(seq, seq))
    return bm, how


def _opts_text(opts):
    """Kernel options in short: `fwd 128x64 w4 s3 TMA; bwd dKV 64x128 dQ 128x64 w8 s3`; warps
    and stages left to Flex read `Flex's w/s`."""
    if not opts:
        return "Flex's default kernel options"
    o = dict(opts)

    def ws(pre):
        if f"{pre}_num_warps" not in o:
            return "Flex's w/s"
        return f"w{o[pre + '_num_warps']} s{o.get(pre + '_num_stages')}"

    parts = []
    if "fwd_BLOCK_M" in o:
        parts.append(f"fwd {o['fwd_BLOCK_M']}x{o['fwd_BLOCK_N']} {ws('fwd')}"
                     + (" TMA" if o.get("fwd_USE_TMA", o.get("USE_TMA")) else ""))
    if "bwd_BLOCK_M1" in o:
        parts.append(f"bwd dKV {o['bwd_BLOCK_M1']}x{o['bwd_BLOCK_N1']} dQ {o['bwd_BLOCK_M2']}x"
                     f"{o['bwd_BLOCK_N2']} {ws('bwd')}")
    return "; ".join(parts) or ", ".join(f"{k}={v}" for k, v in sorted(o.items()))


class FlexCell:
    """One cell's inputs, reference and BlockMasks, kept across passes."""

    def __init__(self, bench_dir, cell, flex):
        self.cell, self.flex = cell, flex
        self.lay = load_layout(bench_dir, cell)
        self.masks = {}
        self.best = {"fwd": (float("inf"), None), "fwdbwd": (float("inf"), None)}
        self.tried = set()

    def inputs(self):
        q, k, v, dout = make_inputs(self.cell)
        rows = sample_rows(self.cell.seq)
        ref = reference_rows(q, k, v, dout, self.lay, self.cell.block, rows)
        return q, k, v, dout, rows, ref

    def mask(self, tile):
        if tile not in self.masks:
            self.masks[tile] = block_mask(self.lay, self.cell.block, *tile, self.cell.seq)
        return self.masks[tile]

    def try_config(self, out, tile, opts, passes):
        """Checks and times one (tile, options) configuration for `passes`."""
        passes = [p for p in passes if (tile, _opts_text(opts), p) not in self.tried]
        timed = set()
        if not passes:
            return timed
        self.tried.update((tile, _opts_text(opts), p) for p in passes)
        bm, how = self.mask(tile)
        cfg = f"{how}; {_opts_text(opts)}"
        q, k, v, dout, rows, ref = self.inputs()
        flex, cell = self.flex, self.cell
        with gated_tile(tile):  # the backward compiles inside these calls
            for p in passes:
                try:
                    if p == "fwd":
                        o = flex(q, k, v, block_mask=bm, kernel_options=opts or None)
                        ok, why = compare(ref, o[:, :, rows])
                        if not ok:
                            out.skip("flex", cell, cfg, p, f"failed the reference check: {why}")
                            continue
                        us = median_us(
                            lambda: flex(q, k, v, block_mask=bm, kernel_options=opts or None))
                    else:
                        qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))

                        def fb():
                            o = flex(qg, kg, vg, block_mask=bm, kernel_options=opts or None)
                            return torch.autograd.grad(o, (qg, kg, vg), dout)

                        o = flex(qg, kg, vg, block_mask=bm, kernel_options=opts or None)
                        (dq,) = torch.autograd.grad(o, (qg,), dout)
                        ok, why = compare(ref, o.detach()[:, :, rows], dq[:, :, rows])
                        if not ok:
                            out.skip("flex", cell, cfg, p, f"failed the reference check: {why}")
                            continue
                        us = median_us(fb)
                except Exception as e:  # a config the kernels reject (compile, OOM) is skipped
                    out.skip("flex", cell, cfg, p, f"{type(e).__name__}: {e}")
                    torch.cuda.empty_cache()
                    continue
                out.time("flex", cell, cfg, p, us, tile=list(tile), options=opts, check=why)
                timed.add(p)
                if us < self.best[p][0]:
                    self.best[p] = (us, (tile, opts))
        torch.cuda.empty_cache()
        return timed


def load_prior(path):
    """The fastest checked Flex configuration per cell and pass in an earlier run's JSON lines:
    `{cell key: {pass: (tile, options)}}` (empty if the file is missing)."""
    import json

    best = {}
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except OSError:
        print(f"flex: no earlier run at {path}: searching from scratch")
        return {}
    for r in rows:
        if r.get("kind") != "time" or r.get("peer") != "flex" or "tile" not in r:
            continue
        key = f"{r['layout']}_s{r['seq']}_d{r['head_dim']}"
        got = best.setdefault(key, {})
        if r["pass"] not in got or r["us"] < got[r["pass"]][0]:
            got[r["pass"]] = (r["us"], tuple(r["tile"]), r.get("options") or {})
    return {k: {p: v[1:] for p, v in d.items()} for k, d in best.items()}


def run_flex(bench_dir, cells, out, budget, mode=None, prior=None):
    """All passes over `cells` within `budget`; `mode` is torch.compile's (e.g.
    "max-autotune-no-cudagraphs", far slower to compile). `prior` (from `load_prior`) puts an
    earlier run's fastest configurations first, each cell's timed before anything else (their
    compiled kernels are found in Inductor's cache when that run was on the same machine)."""
    for knob in ("recompile_limit", "accumulated_recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):  # names differ across torch versions
            setattr(torch._dynamo.config, knob, 4096)
    install_tile_gate()
    flex = torch.compile(flex_attention, dynamic=False, mode=mode)
    state = [FlexCell(bench_dir, c, flex) for c in cells]

    def guarded(fc, tile, opts, passes, required=False):
        """Tries one configuration unless the budget is spent; returns the passes timed."""
        if budget.spent() and not required:
            for p in passes:
                out.skip("flex", fc.cell, f"BlockMask {tile[0]}x{tile[1]}; {_opts_text(opts)}", p,
                         "peer time budget spent (raise --budget-s)")
            return set(passes)  # nothing more to try for these passes
        return fc.try_config(out, tile, opts, passes)

    def first_working(fc, tile, required):
        """Flex's H100 defaults fitted to the tile, else its block sizes alone (warps and stages
        from Flex's heuristics), until each pass ran."""
        todo = ["fwd", "fwdbwd"]
        d = fc.cell.head_dim
        for opts in (base_options(*tile, d), default_blocks(*tile, d)):
            ran = guarded(fc, tile, opts, todo, required)  # once: a repeat would find it tried
            todo = [p for p in todo if p not in ran]
            if not todo:
                break

    keys = [fc.cell.key for fc in state]
    prior, borrowed = with_borrowed(prior or {}, keys)
    for fc in state:
        for p, (tile, opts) in sorted(prior.get(fc.cell.key, {}).items()):
            guarded(fc, tile, opts, [p], required=True)
    for fc in state:
        missing = any(fc.best[p][1] is None for p in ("fwd", "fwdbwd"))
        first_working(fc, tile_candidates(fc.cell.block)[0], missing)
    for fc in state:
        for tile in tile_candidates(fc.cell.block)[1:]:
            first_working(fc, tile, False)

    def sibling_options(fc, p, part):
        """The `part` ("fwd" or "bwd") options with which the cell's siblings' pass `p` won."""
        won = [prior[s][p][1] for s in siblings(fc.cell.key, list(prior)) if p in prior[s]]
        return [{k: v for k, v in o.items() if k.startswith("bwd_") == (part == "bwd")} for o in won]

    def option_candidates(fc):
        """The cell's kernel-option candidates, lazily: forward options on its fastest forward
        tile, then backward options on its fastest forward + backward tile (read after the
        forward ones ran); options that won for a sibling cell first."""
        best_fwd = fc.best["fwd"][1]
        if best_fwd:
            tile, opts = best_fwd
            bwd_part = {k: v for k, v in opts.items() if k.startswith("bwd_")}
            for fo in preferred_first(fwd_options(*tile, fc.cell.head_dim),
                                      sibling_options(fc, "fwd", "fwd")):
                yield fc, tile, {**bwd_part, **fo}, ["fwd"]
        best_fb = fc.best["fwdbwd"][1]
        if best_fb:
            tile, opts = best_fb
            fwd_best = fc.best["fwd"][1]
            fwd_part = ({k: v for k, v in fwd_best[1].items() if not k.startswith("bwd_")}
                        if fwd_best and fwd_best[0] == tile else
                        {k: v for k, v in opts.items() if not k.startswith("bwd_")})
            for bo in preferred_first(bwd_options(*tile, fc.cell.head_dim),
                                      sibling_options(fc, "fwdbwd", "bwd")):
                yield fc, tile, {**fwd_part, **bo}, ["fwdbwd"]

    # Round-robin over the cells, so a spent budget cuts every cell's least likely options.
    for fc, tile, opts, passes in round_robin([option_candidates(fc) for fc in state]):
        guarded(fc, tile, opts, passes)
    if borrowed:
        print(f"flex: started {len(borrowed)} (cell, pass) searches from a sibling cell's fastest "
              "configuration (same layout and head dim, another sequence length)")
    for fc in state:
        for p in ("fwd", "fwdbwd"):
            us, conf = fc.best[p]
            if conf:
                print(f"flex best {fc.cell.key} {p}: {us:.1f} us, tile {conf[0]}, {_opts_text(conf[1])}")
            else:
                print(f"flex best {fc.cell.key} {p}: NONE RAN (see the skips above)")
