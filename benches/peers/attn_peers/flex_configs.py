"""FlexAttention kernel options that torch 2.11's Inductor accepts on a BlockMask tile, and the
candidates the Flex peer tries, best first by Flex's own H100 heuristics (pure Python, no torch).

What torch 2.11.0 requires (files under torch/_inductor/):
- kernel/flex/flex_attention.py, `flex_attention` (forward lowering): `fwd_` keys lose the
  prefix, `bwd_` keys are dropped, then the effective BLOCK_M / BLOCK_N must divide the tile:
  SPARSE_Q_BLOCK_SIZE % BLOCK_M == 0 and SPARSE_KV_BLOCK_SIZE % BLOCK_N == 0 (with a single
  heuristic config, as without max-autotune, it raises "Q and KV block size must be divisible");
  templates/flex_attention.py.jinja asserts SPARSE >= BLOCK as well.
- same file, `flex_attention_backward`: each *heuristic* config must divide the tile
  (SPARSE_KV % block_n1, SPARSE_Q % block_m1, SPARSE_KV % block_n2, SPARSE_Q % block_m2) before
  the `bwd_` options replace its values, so valid user blocks are refused when the heuristic's
  own are too big ("NoValidChoicesError: No choices to select"; pytorch/pytorch#176025).
  `gate_bwd_configs` below is what the peer gives that filter instead.
- kernel/flex/templates/flex_backwards.py.jinja: static_assert BLOCK_N1 % BLOCK_M1 == 0 and
  BLOCK_M2 % BLOCK_N2 == 0.
- template_heuristics/triton.py, `CUDAConfigHeuristic`: the H100 (sm90) defaults mirrored in
  `H100_FWD_DEFAULT` / `h100_bwd_default` and the max-autotune spaces; num_warps and
  num_stages are free (no shared-memory pruning applies to the flex templates: the
  `max_autotune_prune_choices_based_on_shared_mem` check covers matmul configs only, so a
  config too big for shared memory fails when Triton compiles it, and the peer skips it).

Example:

    >>> sorted(bwd_candidates(64, 64, 128)[0].values())
    [3, 8, 64, 64, 64, 64]
    >>> fwd_candidates(64, 64, 64)[0]["fwd_BLOCK_M"]
    64
"""
import dataclasses

# CUDAConfigHeuristic.h100_default_flex_config, bf16: head dim -> (BLOCK_M, BLOCK_N, stages, warps).
H100_FWD_DEFAULT = {64: (128, 128, 3, 4), 128: (128, 64, 3, 8), 256: (64, 32, 3, 4)}
# CUDAConfigHeuristic.get_flex_attn_fwd_configs: the default for head dims not in that table.
FWD_FALLBACK_DEFAULT = (64, 64, 3, 4)
# BaseConfigHeuristic.flex_attn_fwd_autotune_configs: (BLOCK_M, BLOCK_N, stages, warps).
FWD_AUTOTUNE = [(128, 64, 3, 4), (128, 128, 3, 4), (128, 128, 2, 8), (128, 128, 1, 8),
                (64, 128, 3, 4), (64, 64, 3, 4)]
# CUDAConfigHeuristic.flex_attn_bwd_autotune_configs: (M1, N1, M2, N2, stages, warps).
BWD_AUTOTUNE = [(m, n, n, m, s, 4) for m in (32, 64) for n in (32, 64) for s in (1, 3, 4, 5)
                if n % m == 0]
FWD_KEYS = ("fwd_BLOCK_M", "fwd_BLOCK_N", "fwd_num_stages", "fwd_num_warps")
BWD_KEYS = ("bwd_BLOCK_M1", "bwd_BLOCK_N1", "bwd_BLOCK_M2", "bwd_BLOCK_N2", "bwd_num_stages",
            "bwd_num_warps")


def h100_fwd_default(d):
    """Flex's bf16 forward default on H100 for head dim `d`: `(BLOCK_M, BLOCK_N, stages, warps)`.

    >>> h100_fwd_default(128)
    (128, 64, 3, 8)
    """
    if d > 256:
        return (64, 32, 3, 4)
    return H100_FWD_DEFAULT.get(d, FWD_FALLBACK_DEFAULT)


def h100_bwd_default(d):
    """Flex's bf16 backward default on H100 (the "sm90" entry of
    `CUDAConfigHeuristic.get_flex_attn_bwd_configs`): `(M1, N1, M2, N2, stages, warps)`.

    >>> h100_bwd_default(64)
    (64, 128, 128, 64, 3, 8)
    """
    if d < 64:
        return (64, 64, 64, 64, 3, 4)
    if d <= 128:
        return (64, 128, 128, 64, 3, 8)
    if d <= 256:
        return (64, 64, 64, 64, 2, 4)
    return (16, 16, 16, 16, 1, 4)


def fit_fwd(bm, bn, tq, tk):
    """Forward blocks shrunk to divide a `(tq, tk)` tile (all powers of two).

    >>> fit_fwd(128, 128, 64, 16)
    (64, 16)
    """
    return min(bm, tq), min(bn, tk)


def fit_bwd(m1, n1, m2, n2, tq, tk):
    """Backward blocks shrunk to divide a `(tq, tk)` tile, keeping N1 a multiple of M1 and M2 a
    multiple of N2 (all powers of two).

    >>> fit_bwd(64, 128, 128, 64, 64, 16)
    (16, 16, 64, 16)
    """
    n1, m2 = min(n1, tk), min(m2, tq)
    return min(m1, tq, n1), n1, m2, min(n2, tk, m2)


def fwd_accepted(tq, tk, o):
    """Whether torch 2.11 takes forward options `o` on a `(tq, tk)` tile (see the module doc).

    >>> fwd_accepted(64, 64, {"fwd_BLOCK_M": 128, "fwd_BLOCK_N": 64})
    False
    """
    bm, bn = o["fwd_BLOCK_M"], o["fwd_BLOCK_N"]
    return bm >= 16 and bn >= 16 and tq % bm == 0 and tk % bn == 0


def bwd_accepted(tq, tk, o):
    """Whether torch 2.11's backward template takes options `o` on a `(tq, tk)` tile.

    >>> bwd_accepted(64, 64, dict(zip(BWD_KEYS, (64, 64, 64, 64, 3, 8))))
    True
    """
    m1, n1, m2, n2 = (o[k] for k in BWD_KEYS[:4])
    return (min(m1, n1, m2, n2) >= 16 and tq % m1 == 0 and tk % n1 == 0 and tq % m2 == 0
            and tk % n2 == 0 and n1 % m1 == 0 and m2 % n2 == 0)


def _unique(rows):
    seen, out = set(), []
    for r in rows:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def fwd_candidates(tq, tk, d):
    """Forward options to try on a tile, best first: Flex's H100 default fitted to the tile,
    then its max-autotune space fitted, then the default with TMA loads.

    >>> [(o["fwd_BLOCK_M"], o["fwd_BLOCK_N"]) for o in fwd_candidates(64, 64, 64)][:2]
    [(64, 64), (64, 64)]
    """
    rows = []
    for bm, bn, s, w in [h100_fwd_default(d)] + FWD_AUTOTUNE:
        rows.append((*fit_fwd(bm, bn, tq, tk), s, w))
    # `fwd_USE_TMA`, not `USE_TMA`: unprefixed keys reach the backward kernel too.
    opts = [dict(zip(FWD_KEYS, r), fwd_USE_TMA=False) for r in _unique(rows)]
    opts.append({**opts[0], "fwd_USE_TMA": True})
    return opts


def bwd_candidates(tq, tk, d):
    """Backward options to try on a tile, best first: Flex's H100 default fitted to the tile,
    then its max-autotune space fitted (larger blocks first, the default's stage count first).

    >>> len(bwd_candidates(16, 16, 64)) >= 1
    True
    """
    dm1, dn1, dm2, dn2, ds, dw = h100_bwd_default(d)
    first = (*fit_bwd(dm1, dn1, dm2, dn2, tq, tk), ds, dw)
    stage_rank = {s: i for i, s in enumerate([ds, 3, 4, 1, 5, 2])}
    rest = sorted(((*fit_bwd(m1, n1, m2, n2, tq, tk), s, w)
                   for m1, n1, m2, n2, s, w in BWD_AUTOTUNE),
                  key=lambda r: (-r[0] * r[1] - r[2] * r[3], stage_rank.get(r[4], 9)))
    return [dict(zip(BWD_KEYS, r)) for r in _unique([first] + rest)]


def candidates(tile, head_dim, pass_):
    """Kernel options to try for `pass_` ("fwd" or "bwd") on `tile` = `(tq, tk)`.

    >>> candidates((128, 128), 64, "bwd")[0]["bwd_BLOCK_N1"]
    128
    """
    tq, tk = tile
    return fwd_candidates(tq, tk, head_dim) if pass_ == "fwd" else bwd_candidates(tq, tk, head_dim)


def default_blocks(tq, tk, d):
    """Flex's H100 default block sizes fitted to a tile, warps and stages left to Flex: the
    "Flex's defaults" configuration a tile smaller than those blocks needs.

    >>> default_blocks(64, 64, 64)["fwd_BLOCK_M"], default_blocks(64, 64, 64)["bwd_BLOCK_N1"]
    (64, 64)
    """
    bm, bn, _, _ = h100_fwd_default(d)
    m1, n1, m2, n2, _, _ = h100_bwd_default(d)
    fwd = dict(zip(FWD_KEYS[:2], fit_fwd(bm, bn, tq, tk)))
    return {**fwd, **dict(zip(BWD_KEYS[:4], fit_bwd(m1, n1, m2, n2, tq, tk)))}


def gate_bwd_configs(stock, tq, tk):
    """What the backward lowering's divisibility filter should see for a `(tq, tk)` tile: the
    heuristic configs `stock` (objects with block_m1 / block_n1 / block_m2 / block_n2, the
    default last, as `get_flex_attn_bwd_configs` returns them) that divide the tile, else the
    default shrunk to divide it. The `bwd_` kernel options still override every value.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     block_m1: int; block_n1: int; block_m2: int; block_n2: int; num_warps: int
    >>> gate_bwd_configs([C(64, 128, 128, 64, 8)], 64, 64)
    [C(block_m1=64, block_n1=64, block_m2=64, block_n2=64, num_warps=8)]
    """
    fits = [c for c in stock
            if tk % c.block_n1 == 0 and tq % c.block_m1 == 0 and tk % c.block_n2 == 0
            and tq % c.block_m2 == 0]
    if fits or not stock:
        return fits
    d = stock[-1]
    m1, n1, m2, n2 = fit_bwd(d.block_m1, d.block_n1, d.block_m2, d.block_n2, tq, tk)
    return [dataclasses.replace(d, block_m1=m1, block_n1=n1, block_m2=m2, block_n2=n2)]
