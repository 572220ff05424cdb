"""Tests of the FlexAttention kernel options the Flex peer tries (no torch, no GPU):

    python3 -m unittest benches/peers/test_flex_configs.py

The constraints asserted are torch 2.11.0's (see `attn_peers/flex_configs.py`):
torch/_inductor/kernel/flex/flex_attention.py `flex_attention` (forward blocks divide the
BlockMask tile), `flex_attention_backward` (the heuristic config handed to its divisibility
filter divides the tile), and templates/flex_backwards.py.jinja (BLOCK_N1 % BLOCK_M1 == 0,
BLOCK_M2 % BLOCK_N2 == 0).
"""
import dataclasses
import doctest
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from attn_peers import flex_configs  # noqa: E402
from attn_peers.flex_configs import (  # noqa: E402
    BWD_KEYS, bwd_accepted, candidates, default_blocks, fwd_accepted, gate_bwd_configs,
    h100_bwd_default, h100_fwd_default)

# Every BlockMask tile `attn_peers.flex.tile_candidates` yields for 16-, 64- and 128-token blocks.
TILES = [(128, 128), (128, 64), (64, 64), (64, 16), (16, 16)]
HEAD_DIMS = [64, 128]


@dataclasses.dataclass
class BwdConfig:
    """Stand-in for torch's `FlexBwDConfig` (same field names)."""

    block_m1: int
    block_n1: int
    block_m2: int
    block_n2: int
    num_stages: int
    num_warps: int


class CandidateTest(unittest.TestCase):
    def test_every_candidate_is_accepted(self):
        for tile in TILES:
            for d in HEAD_DIMS:
                fwd, bwd = candidates(tile, d, "fwd"), candidates(tile, d, "bwd")
                self.assertTrue(fwd and bwd, (tile, d))
                for o in fwd:
                    self.assertTrue(fwd_accepted(*tile, o), (tile, d, o))
                    self.assertIn(o["fwd_num_warps"], (4, 8))
                for o in bwd:
                    self.assertTrue(bwd_accepted(*tile, o), (tile, d, o))
                    self.assertIn(o["bwd_num_warps"], (4, 8))
                    self.assertGreaterEqual(o["bwd_num_stages"], 1)

    def test_no_duplicates(self):
        for tile in TILES:
            for d in HEAD_DIMS:
                for p in ("fwd", "bwd"):
                    rows = [tuple(sorted(o.items())) for o in candidates(tile, d, p)]
                    self.assertEqual(len(rows), len(set(rows)), (tile, d, p))

    def test_first_candidates_are_flex_h100_defaults(self):
        # At 128-token tiles nothing needs fitting: the first candidates are Flex's own.
        for d in HEAD_DIMS:
            f = candidates((128, 128), d, "fwd")[0]
            self.assertEqual((f["fwd_BLOCK_M"], f["fwd_BLOCK_N"], f["fwd_num_stages"],
                              f["fwd_num_warps"]), h100_fwd_default(d))
            b = candidates((128, 128), d, "bwd")[0]
            self.assertEqual(tuple(b[k] for k in BWD_KEYS), h100_bwd_default(d))
        self.assertEqual(h100_bwd_default(128), (64, 128, 128, 64, 3, 8))
        self.assertEqual(h100_fwd_default(64), (128, 128, 3, 4))

    def test_64_tiles_get_64_blocks(self):
        b = candidates((64, 64), 128, "bwd")[0]
        self.assertEqual(tuple(b[k] for k in BWD_KEYS), (64, 64, 64, 64, 3, 8))
        f = candidates((64, 64), 64, "fwd")[0]
        self.assertEqual((f["fwd_BLOCK_M"], f["fwd_BLOCK_N"]), (64, 64))

    def test_the_failed_options_are_valid_options(self):
        # The H100 run's refused options satisfy every kernel constraint: the refusal was the
        # heuristic-config gate, which `gate_bwd_configs` answers.
        o = dict(zip(BWD_KEYS, (64, 64, 64, 64, 3, 8)))
        self.assertTrue(bwd_accepted(64, 64, o))
        self.assertEqual(gate_bwd_configs([BwdConfig(64, 128, 128, 64, 3, 8)], 64, 64),
                         [BwdConfig(64, 64, 64, 64, 3, 8)])

    def test_constraints_reject_what_torch_rejects(self):
        bad = [(64, 128, 128, 64), (128, 64, 64, 64), (64, 64, 32, 64), (32, 64, 64, 128)]
        for blocks in bad:
            o = dict(zip(BWD_KEYS, blocks + (3, 4)))
            self.assertFalse(bwd_accepted(64, 64, o), blocks)
        self.assertFalse(fwd_accepted(64, 64, {"fwd_BLOCK_M": 128, "fwd_BLOCK_N": 64}))

    def test_default_blocks_fit(self):
        for tile in TILES:
            for d in HEAD_DIMS:
                o = default_blocks(*tile, d)
                self.assertTrue(fwd_accepted(*tile, o), (tile, d, o))
                self.assertTrue(bwd_accepted(*tile, {**o, "bwd_num_stages": 3}), (tile, d, o))
                self.assertNotIn("bwd_num_warps", o)


class GateTest(unittest.TestCase):
    def test_gate_passes_each_tile(self):
        stock = [BwdConfig(*h100_bwd_default(128))]
        for tile in TILES:
            got = gate_bwd_configs(stock, *tile)
            self.assertEqual(len(got), 1, tile)
            c = got[0]
            o = dict(zip(BWD_KEYS, (c.block_m1, c.block_n1, c.block_m2, c.block_n2,
                                    c.num_stages, c.num_warps)))
            self.assertTrue(bwd_accepted(*tile, o), (tile, c))
            self.assertEqual((c.num_stages, c.num_warps), (3, 8))

    def test_gate_keeps_fitting_stock_configs(self):
        stock = [BwdConfig(32, 64, 64, 32, 3, 4), BwdConfig(64, 128, 128, 64, 3, 8)]
        self.assertEqual(gate_bwd_configs(stock, 128, 128), stock)
        self.assertEqual(gate_bwd_configs(stock, 64, 64), stock[:1])
        self.assertEqual(gate_bwd_configs([], 64, 64), [])


def load_tests(loader, tests, ignore):
    tests.addTests(doctest.DocTestSuite(flex_configs))
    return tests


if __name__ == "__main__":
    unittest.main()
