"""Tests of the Flex search order (`attn_peers/search.py`; no GPU):

    python3 -m unittest benches/peers/test_search.py

The `run_flex` test needs torch importable (CPU torch will do): it replaces the compiled Flex
and the per-cell timing with a scripted fake, so it checks only the order of the passes.
"""
import doctest
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from attn_peers import search  # noqa: E402
from attn_peers.search import (  # noqa: E402
    preferred_first, round_robin, siblings, split_key, with_borrowed)


def load_tests(loader, tests, ignore):
    tests.addTests(doctest.DocTestSuite(search))
    return tests


class KeysAndSiblings(unittest.TestCase):
    def test_layout_names_with_underscores_and_digits(self):
        self.assertEqual(split_key("bslongformer_b64_s4096_d128"), ("bslongformer_b64", 4096, 128))

    def test_bad_key_names_itself(self):
        with self.assertRaisesRegex(ValueError, "'fixed_b64' is not <layout>_s<seq>_d<head_dim>"):
            split_key("fixed_b64")

    def test_siblings_keep_layout_and_head_dim(self):
        keys = ["fixed_b64_s4096_d64", "fixed_b64_s4096_d128", "fixed_b16_s4096_d64",
                "fixed_b64_s16384_d64", "fixed_b64_s2048_d64"]
        # s8192: 4096 is 4096 away, 2048 6144, 16384 8192.
        self.assertEqual(siblings("fixed_b64_s8192_d64", keys),
                         ["fixed_b64_s4096_d64", "fixed_b64_s2048_d64", "fixed_b64_s16384_d64"])
        self.assertEqual(siblings("fixed_b64_s3072_d64", keys),
                         ["fixed_b64_s2048_d64", "fixed_b64_s4096_d64", "fixed_b64_s16384_d64"],
                         "a tie goes to the shorter sequence")
        self.assertEqual(siblings("bigbird_b64_s4096_d64", keys), [])


class Borrowing(unittest.TestCase):
    def test_own_entries_win_and_nearest_sibling_fills_the_rest(self):
        own = ((64, 64), {"fwd_num_warps": 8})
        near = ((128, 64), {"fwd_num_warps": 4})
        far = ((128, 128), {"bwd_num_warps": 4})
        prior = {
            "fixed_b64_s16384_d64": {"fwd": own},
            "fixed_b64_s8192_d64": {"fwdbwd": near},
            "fixed_b64_s2048_d64": {"fwd": far, "fwdbwd": far},
        }
        full, borrowed = with_borrowed(prior, ["fixed_b64_s16384_d64", "fixed_b64_s4096_d64"])
        self.assertEqual(full["fixed_b64_s16384_d64"], {"fwd": own, "fwdbwd": near})
        # s4096: s2048 (2048 away) is nearer than s8192 (4096 away) and lends both passes.
        self.assertEqual(full["fixed_b64_s4096_d64"], {"fwd": far, "fwdbwd": far})
        self.assertEqual(borrowed, {("fixed_b64_s16384_d64", "fwdbwd"),
                                    ("fixed_b64_s4096_d64", "fwd"),
                                    ("fixed_b64_s4096_d64", "fwdbwd")})
        self.assertEqual(prior["fixed_b64_s16384_d64"], {"fwd": own}, "the input is not changed")

    def test_no_sibling_no_entry(self):
        full, borrowed = with_borrowed({}, ["fixed_b16_s4096_d64"])
        self.assertEqual((full, borrowed), ({}, set()))


class Ordering(unittest.TestCase):
    def test_preferred_first_keeps_the_rest_in_order(self):
        c = [{"w": 4}, {"w": 8}, {"w": 2}]
        self.assertEqual(preferred_first(c, [{"w": 2}, {"w": 2}]), [{"w": 2}, {"w": 4}, {"w": 8}])
        self.assertEqual(preferred_first(c, []), c)

    def test_round_robin_is_lazy(self):
        """Each cell's next candidate is asked for only after the previous one was used, so a
        generator can read what the earlier candidates measured."""
        seen = []

        def cell(name, n):
            for i in range(n):
                seen.append(f"gen {name}{i}")
                yield f"{name}{i}"

        for item in round_robin([cell("a", 2), cell("b", 1), cell("c", 3)]):
            seen.append(f"use {item}")
        self.assertEqual(seen, ["gen a0", "use a0", "gen b0", "use b0", "gen c0", "use c0",
                                "gen a1", "use a1", "gen c1", "use c1", "gen c2", "use c2"])


try:
    from attn_peers import flex as flex_mod
except Exception as e:  # torch missing: the orchestration test cannot import the module
    flex_mod = None
    FLEX_IMPORT_ERROR = e


class FakeCell:
    """Stands in for `FlexCell`: every configuration "runs", in a time the test scripts."""

    def __init__(self, bench_dir, cell, flex):
        self.cell = cell
        self.best = {"fwd": (float("inf"), None), "fwdbwd": (float("inf"), None)}
        self.calls = []

    def try_config(self, out, tile, opts, passes):
        for p in passes:
            self.calls.append((p, tile, dict(opts)))
            us = 100.0 - len(self.calls)  # each later configuration a little faster
            if us < self.best[p][0]:
                self.best[p] = (us, (tile, opts))
        return set(passes)


class NeverSpent:
    def spent(self):
        return False


class SpentAfter:
    """A budget spent after `n` checks."""

    def __init__(self, n):
        self.n = n

    def spent(self):
        self.n -= 1
        return self.n < 0


class Out:
    def __init__(self):
        self.skips = []

    def skip(self, peer, cell, config, pass_, reason):
        self.skips.append((cell.key, pass_))


class Cell:
    def __init__(self, layout, seq, d, block):
        self.layout, self.seq, self.head_dim, self.block = layout, seq, d, block

    @property
    def key(self):
        return f"{self.layout}_s{self.seq}_d{self.head_dim}"


@unittest.skipIf(flex_mod is None, "attn_peers.flex needs torch")
class RunFlexOrder(unittest.TestCase):
    def run_flex(self, cells, budget, prior):
        made = []

        def make(bench_dir, cell, flex):
            made.append(FakeCell(bench_dir, cell, flex))
            return made[-1]

        with mock.patch.object(flex_mod, "FlexCell", make), \
                mock.patch.object(flex_mod, "install_tile_gate", lambda: None), \
                mock.patch.object(flex_mod.torch, "compile", lambda f, **kw: None):
            out = Out()
            flex_mod.run_flex("unused", cells, out, budget, prior=prior)
        return {fc.cell.key: fc for fc in made}, out

    def test_a_cell_without_prior_starts_from_its_sibling(self):
        cells = [Cell("fixed_b64", 4096, 64, 64), Cell("fixed_b64", 16384, 64, 64)]
        won = ((128, 64), {"fwd_BLOCK_M": 128, "fwd_BLOCK_N": 64, "fwd_num_warps": 4,
                           "fwd_num_stages": 3})
        prior = {"fixed_b64_s4096_d64": {"fwd": won}}
        got, _ = self.run_flex(cells, NeverSpent(), prior)
        first = got["fixed_b64_s16384_d64"].calls[0]
        self.assertEqual(first, ("fwd", (128, 64), won[1]))

    def test_tile_defaults_run_once_and_block_sizes_only_for_what_failed(self):
        """Pass 1 tries Flex's defaults on the first tile and falls back to its block sizes
        alone only for the passes the defaults did not run."""
        cells = [Cell("fixed_b64", 4096, 64, 64)]
        tile = flex_mod.tile_candidates(64)[0]
        defaults = flex_mod.base_options(*tile, 64)
        real_try = FakeCell.try_config

        def fwdbwd_fails_with_defaults(self, out, t, opts, passes):
            if t == tile and opts == defaults:
                passes = [p for p in passes if p != "fwdbwd"]
            return real_try(self, out, t, opts, passes)

        with mock.patch.object(FakeCell, "try_config", fwdbwd_fails_with_defaults):
            got, _ = self.run_flex(cells, SpentAfter(1), None)
        calls = [(p, opts) for p, t, opts in got["fixed_b64_s4096_d64"].calls if t == tile]
        self.assertEqual(calls, [("fwd", defaults),
                                 ("fwdbwd", flex_mod.default_blocks(*tile, 64))])

    def test_spent_budget_leaves_every_cell_its_first_options(self):
        """With the budget spent part-way through the option pass, the option candidates that
        ran are spread over the cells instead of all going to the first ones."""
        cells = [Cell("fixed_b64", 4096, 64, 64), Cell("bigbird_b64", 4096, 64, 64),
                 Cell("fixed_b64", 16384, 64, 64)]
        tiles = len(flex_mod.tile_candidates(64))
        got, out = self.run_flex(cells, SpentAfter(3 * tiles + 3), None)
        # Passes 1 and 2: every tile of every cell, both passes in one budget check per tile
        # (the defaults ran both); then three option candidates, one per cell.
        for key, fc in got.items():
            self.assertEqual(len(fc.calls), 2 * tiles + 1, key)
            self.assertEqual(fc.calls[-1][0], "fwd", key)
        self.assertTrue(out.skips, "the rest was skipped, and said so")
        self.assertEqual({k for k, _ in out.skips}, set(got), "every cell has skipped options")


if __name__ == "__main__":
    unittest.main()
