"""FlashAttention-4 (`flash-attn-4`, CuTe DSL) block-sparse on our layouts, exact: block lists at
its native tiles where the layout's blocks tile them (full tiles, no mask), else coarse tiles
plus a `mask_mod` that reads the layout per token on the partial ones. On SM90 its forward takes
Q tiles of 64 / 128 and KV tiles of 16-128, its backward KV tiles of 128 (so a backward of a
block-64 or finer layout runs 128 x 128 tiles with the mask). Each configuration is checked
against the masked dense reference before it is timed; every one timed is written.

Example (on a GPU, with the wheels of `fa4-wheels.sh` on the path):

    run_fa4(bench_dir, cells, out, Budget(200))
"""
import numpy as np
import torch

from .common import load_layout, median_us
from .reference import compare, make_inputs, reference_rows, sample_rows
from .tiles import pack, tile_layout

BWD_TILE = (128, 128)


def load_fa4():
    """`(api, None)` with the FA4 entry points, or `(None, reason)` when it cannot run here."""
    try:
        import cutlass
        import cutlass.cute as cute
        from flash_attn.cute import flash_attn_func, utils
        from flash_attn.cute.block_sparsity import BlockSparseTensorsTorch
    except Exception as e:  # any import failure means: not installed or not usable here
        return None, f"flash_attn.cute does not import: {type(e).__name__}: {e}"
    import os

    arch = os.environ.get("FLASH_ATTENTION_ARCH")  # FA4's own override, for compiling on a CPU
    major = int(arch.removeprefix("sm_")[:-1]) if arch else torch.cuda.get_device_capability()[0]
    if major != 9:
        return None, f"FA4's SM90 block-sparse path needs compute capability 9.x, got {major}.x"
    import importlib.metadata as md

    versions = {}
    for dist in ("flash-attn-4", "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-cu13", "quack-kernels"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "?"
    return {"cutlass": cutlass, "cute": cute, "utils": utils, "func": flash_attn_func,
            "BST": BlockSparseTensorsTorch, "versions": versions, "masks": {}}, None


def layout_mask_mod(api, blk):
    """The CuTe `mask_mod` for layouts of `blk`-token blocks: `aux_tensors[0][h, q/blk, k/blk]`
    (the layout as int32 `[H, nb, nb]`). One function per block size, so compiles are shared."""
    if blk in api["masks"]:
        return api["masks"][blk]
    cutlass, cute, utils = api["cutlass"], api["cute"], api["utils"]

    @cute.jit
    def layout_mask(batch, head, m_idx, n_idx, seqlen_info, aux_tensors):
        lay = aux_tensors[0]
        blk_ssa = utils.scalar_to_ssa(blk, cutlass.Int32)
        qb = m_idx // blk_ssa
        kb = n_idx // blk_ssa
        active = utils.scalar_to_ssa(lay[head[0], qb[0], kb[0]], cutlass.Int32)
        return active != utils.scalar_to_ssa(0, cutlass.Int32)

    api["masks"][blk] = layout_mask
    return layout_mask


def fwd_tiles(blk):
    """Forward sparse tiles `(Q, KV)` to try, likeliest fastest first."""
    if blk >= 128:
        return [(128, 128), (64, 128)]
    if blk == 64:
        return [(64, 64), (128, 64), (128, 128)]
    return [(64, 64), (128, 128), (128, 64), (64, blk)]


def sparse_tensors(api, lay, blk, tile, transposed):
    """FA4 block lists of the layout at `tile`: forward lists per Q tile, or (`transposed`) the
    backward's per KV tile. Returns `(tensors, n_full, n_partial)`."""
    full, partial = tile_layout(lay, blk, *tile)
    if transposed:
        full, partial = full.transpose(0, 2, 1), partial.transpose(0, 2, 1)
    m_num, m_idx = pack(partial)
    f_num, f_idx = pack(full)

    def dev(a):
        return torch.from_numpy(np.ascontiguousarray(a))[None].cuda()

    t = api["BST"](mask_block_cnt=dev(m_num), mask_block_idx=dev(m_idx),
                   full_block_cnt=dev(f_num), full_block_idx=dev(f_idx), block_size=tile)
    return t, int(full.sum()), int(partial.sum())


class Fa4Cell:
    """One cell's layout, inputs in FA4's `[B, S, H, D]` order and best times, across passes."""

    def __init__(self, api, cell, lay):
        self.api, self.cell, self.lay = api, cell, lay
        lay_i32 = torch.from_numpy(lay.astype(np.int32)).cuda()
        lay_i32.__leading_dim__ = 2
        self.aux = [lay_i32]
        self.best_fwd = (float("inf"), None)

    def call_args(self, fwd_tile, with_bwd):
        """kwargs of `flash_attn_func` and the configuration text."""
        api, cell = self.api, self.cell
        fwd_t, nf, np_ = sparse_tensors(api, self.lay, cell.block, fwd_tile, False)
        text = f"FA4 fwd tiles {fwd_tile[0]}x{fwd_tile[1]} ({nf} full + {np_} partial)"
        needs_mask = np_ > 0
        kw = {"block_sparse_tensors": fwd_t}
        if with_bwd:
            bwd_t, bf, bp = sparse_tensors(api, self.lay, cell.block, BWD_TILE, True)
            kw["block_sparse_tensors_bwd"] = bwd_t
            text += f"; bwd tiles {BWD_TILE[0]}x{BWD_TILE[1]} ({bf} full + {bp} partial)"
            needs_mask = needs_mask or bp > 0
        if needs_mask:
            kw["mask_mod"] = layout_mask_mod(api, cell.block)
            kw["aux_tensors"] = self.aux
            text += "; mask_mod reads the layout on partial tiles"
        else:
            text += "; exact without a mask"
        return kw, text

    def try_config(self, out, fwd_tile, pass_):
        """Checks and times one forward tile for `pass_` ("fwd" or "fwdbwd")."""
        cell, func = self.cell, self.api["func"]
        kw, cfg = self.call_args(fwd_tile, pass_ == "fwdbwd")
        q, k, v, dout = make_inputs(cell)
        rows = sample_rows(cell.seq)
        ref = reference_rows(q, k, v, dout, self.lay, cell.block, rows)
        qf, kf, vf, df = (x.transpose(1, 2).contiguous() for x in (q, k, v, dout))
        del q, k, v, dout

        def first(r):
            return r[0] if isinstance(r, tuple) else r

        try:
            if pass_ == "fwd":
                o = first(func(qf, kf, vf, **kw))
                ok, why = compare(ref, o.transpose(1, 2)[:, :, rows])
                if ok:
                    us = median_us(lambda: func(qf, kf, vf, **kw))
            else:
                qg, kg, vg = (x.detach().requires_grad_() for x in (qf, kf, vf))
                o = first(func(qg, kg, vg, **kw))
                (dq,) = torch.autograd.grad(o, (qg,), df)
                ok, why = compare(ref, o.detach().transpose(1, 2)[:, :, rows],
                                  dq.transpose(1, 2)[:, :, rows])

                def fb():
                    o = first(func(qg, kg, vg, **kw))
                    return torch.autograd.grad(o, (qg, kg, vg), df)

                if ok:
                    us = median_us(fb)
        except Exception as e:  # a configuration FA4 rejects (or fails to compile) is skipped
            out.skip("fa4", cell, cfg, pass_, f"{type(e).__name__}: {e}")
            torch.cuda.empty_cache()
            return
        if not ok:
            out.skip("fa4", cell, cfg, pass_, f"failed the reference check: {why}")
        else:
            out.time("fa4", cell, cfg, pass_, us, tile=list(fwd_tile), check=why)
            if pass_ == "fwd" and us < self.best_fwd[0]:
                self.best_fwd = (us, fwd_tile)
        torch.cuda.empty_cache()


def run_fa4(bench_dir, cells, out, budget):
    """Both passes over `cells` within `budget`, or one skip row per cell saying why FA4 could
    not run."""
    api, why = load_fa4()
    if api is None:
        print(f"fa4: SKIPPED: {why}")
        for cell in cells:
            out.skip("fa4", cell, "FA4 block-sparse", "both", why)
        return
    print(f"fa4: {api['versions']}")
    out.meta(peer="fa4", versions=api["versions"])
    state = [Fa4Cell(api, c, load_layout(bench_dir, c)) for c in cells]

    def guarded(fc, tile, pass_, required=False):
        if budget.spent() and not required:
            out.skip("fa4", fc.cell, f"FA4 fwd tiles {tile[0]}x{tile[1]}", pass_,
                     "peer time budget spent (raise --budget-s)")
            return
        fc.try_config(out, tile, pass_)

    for fc in state:
        first = fwd_tiles(fc.cell.block)[0]
        guarded(fc, first, "fwd", required=True)
        guarded(fc, first, "fwdbwd", required=True)
    for fc in state:
        tried_fb = fwd_tiles(fc.cell.block)[0]
        for tile in fwd_tiles(fc.cell.block)[1:]:
            guarded(fc, tile, "fwd")
        best = fc.best_fwd[1]
        if best and best != tried_fb:
            guarded(fc, best, "fwdbwd")
    for fc in state:
        us, tile = fc.best_fwd
        print(f"fa4 best {fc.cell.key} fwd: " + (f"{us:.1f} us, tiles {tile}" if tile else
                                                  "NONE RAN (see the skips above)"))
