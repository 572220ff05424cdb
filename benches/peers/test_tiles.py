"""Tests of the layout tiling the sparse peers build their block lists from (needs numpy):

    python3 -m unittest benches/peers/test_tiles.py
"""
import doctest
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from attn_peers import tiles  # noqa: E402
from attn_peers.tiles import pack, tile_layout  # noqa: E402


def token_mask(lay, blk):
    return lay.repeat(blk, axis=1).repeat(blk, axis=2)


class TilesTest(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(3)
        self.lay = rng.random((3, 16, 16)) < 0.25  # 16 blocks of 32 tokens: S = 512

    def test_tiles_cover_exactly_the_layout(self):
        dense = token_mask(self.lay, 32)
        for tq, tk in [(32, 32), (64, 64), (128, 64), (64, 16), (16, 16), (128, 128)]:
            full, partial = tile_layout(self.lay, 32, tq, tk)
            self.assertFalse((full & partial).any())
            touched = token_mask(full | partial, 1).repeat(tq, axis=1).repeat(tk, axis=2)
            fully = (full.repeat(tq, axis=1).repeat(tk, axis=2))
            self.assertTrue((dense <= touched).all(), (tq, tk))  # every active pair is in a tile
            self.assertTrue((fully <= dense).all(), (tq, tk))    # a full tile is all active

    def test_native_and_finer_tiles_need_no_mask(self):
        for tq, tk in [(32, 32), (16, 16), (32, 16)]:
            self.assertFalse(tile_layout(self.lay, 32, tq, tk)[1].any())
        self.assertTrue(tile_layout(self.lay, 32, 64, 64)[1].any())

    def test_pack_lists_active_columns_first(self):
        sel = np.array([[[False, True, False, True], [False, False, False, False]]])
        num, idx = pack(sel)
        self.assertEqual(num.tolist(), [[2, 0]])
        self.assertEqual(idx.tolist(), [[[1, 3, 0, 0], [0, 0, 0, 0]]])
        self.assertEqual(idx.dtype, np.int32)

    def test_doc_examples(self):
        self.assertEqual(doctest.testmod(tiles).failed, 0)


if __name__ == "__main__":
    unittest.main()
