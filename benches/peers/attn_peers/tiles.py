"""A block layout seen at another tile size: which (tq x tk) tiles are full (every token pair
active), which partial (an exact kernel must mask inside them), and their packed index lists.

Example:

    >>> import numpy as np
    >>> lay = np.eye(4, dtype=bool)[None]              # 1 head, 4 x 4 blocks of 16
    >>> full, partial = tile_layout(lay, 16, 32, 32)
    >>> int(full.sum()), int(partial.sum())
    (0, 2)
    >>> full, partial = tile_layout(lay, 16, 16, 16)
    >>> int(full.sum()), int(partial.sum())
    (4, 0)
"""
import numpy as np


def tile_layout(lay, blk, tq, tk):
    """`lay` is `[H, nb, nb]` bool at `blk` tokens a block; returns `(full, partial)`, each
    `[H, ceil(S / tq), ceil(S / tk)]` bool. Tile sizes and the block are powers of two."""
    h, nb, _ = lay.shape
    unit = min(blk, tq, tk)
    up = blk // unit
    fine = lay.repeat(up, axis=1).repeat(up, axis=2) if up > 1 else lay
    n = fine.shape[1]
    fq, fk = tq // unit, tk // unit
    mq, mk = -(-n // fq), -(-n // fk)
    padded = np.zeros((h, mq * fq, mk * fk), dtype=bool)
    padded[:, :n, :n] = fine
    tiles = padded.reshape(h, mq, fq, mk, fk)
    any_ = tiles.any(axis=(2, 4))
    all_ = tiles.all(axis=(2, 4))
    return all_, any_ & ~all_


def pack(sel):
    """Counts `[H, rows]` and column indices `[H, rows, cols]` (active ones first, ascending,
    the rest zero) of a `[H, rows, cols]` bool selection, as int32 numpy arrays."""
    num = sel.sum(-1).astype(np.int32)
    idx = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)
    cols = np.arange(sel.shape[-1])[None, None, :]
    idx = np.where(cols < num[..., None], idx, 0).astype(np.int32)
    return num, idx


def is_exact_without_mask(lay, blk, tq, tk):
    """Whether every touched tile is full, so a kernel needs no per-token mask to be exact."""
    _, partial = tile_layout(lay, blk, tq, tk)
    return not partial.any()
