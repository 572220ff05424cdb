"""DeepSpeed's sparsity configs (``deepspeed.ops.sparse_attention.sparsity_config``), with
upstream's constructors, defaults and validation errors; the layouts are built by ltd's Rust
builders (bit-identical to upstream for every deterministic pattern).

Differences from upstream (upstream-semantics.md §2.12):

- ``make_layout(seq_len)`` accepts any length (``ceil(seq_len / block)`` blocks); upstream
  raises unless ``seq_len % block == 0``.
- Random blocks (Variable, BigBird) come from ltd's seeded generator. The seed is drawn from
  Python's ``random`` module at construction (upstream draws the blocks from it), so
  ``random.seed(...)`` still makes layouts reproducible; pass ``seed=`` to fix it directly.
- Variable's random blocks stay causal when unidirectional (upstream leaks the future).
"""

import json
import random

import torch

from ._native import native


def _direction(attention, valid=("unidirectional", "bidirectional")):
    if attention not in valid:
        raise NotImplementedError("only '" + "' and '".join(valid) + "' attentions are supported")
    return attention


class SparsityConfig:
    """Base class (upstream: ``SparsityConfig(num_heads, block=16, different_layout_per_head=False)``).

    It has no layout of its own: ``SparseSelfAttention`` needs one of the subclasses.
    """

    _mode = None

    def __init__(self, num_heads, block=16, different_layout_per_head=False):
        self.num_heads = num_heads
        self.block = block
        self.different_layout_per_head = different_layout_per_head
        self.num_layout_heads = num_heads if different_layout_per_head else 1
        self._op = None

    def _params(self):
        return {
            "num_heads": self.num_heads,
            "block": self.block,
            "different_layout_per_head": self.different_layout_per_head,
        }

    def native(self):
        """The native op for this config (built once; validates the parameters)."""
        if self._mode is None:
            raise NotImplementedError(
                "SparsityConfig is the base class and has no layout; use DenseSparsityConfig, "
                "FixedSparsityConfig, VariableSparsityConfig, BigBirdSparsityConfig, "
                "BSLongformerSparsityConfig or LocalSlidingWindowSparsityConfig"
            )
        if self._op is None:
            self._op = native.SparseAttention(self._mode, json.dumps(self._params()))
        return self._op

    def setup_layout(self, seq_len):
        """An all-zero int64 layout ``[num_heads, nb, nb]`` (upstream's helper)."""
        if seq_len % self.block != 0:
            raise ValueError(f"Sequence Length, {seq_len}, needs to be dividable by Block size {self.block}!")
        nb = seq_len // self.block
        return torch.zeros((self.num_heads, nb, nb), dtype=torch.int64)

    def check_and_propagate_first_head_layout(self, layout):
        """Copies head 0's layout to every head unless each head has its own (upstream's helper)."""
        if not self.different_layout_per_head:
            layout[1 : self.num_heads, :, :] = layout[0, :, :]
        return layout

    def make_layout(self, seq_len):
        """The layout for ``seq_len`` tokens: int64 ``[num_heads, nb, nb]``, 1 = computed block."""
        heads, nb, mask = self.native().layout(seq_len)
        return torch.frombuffer(bytearray(mask), dtype=torch.uint8).reshape(heads, nb, nb).to(torch.int64)


class DenseSparsityConfig(SparsityConfig):
    """Every block computed: dense attention through the sparse op."""

    _mode = "dense"


class FixedSparsityConfig(SparsityConfig):
    """Sparse Transformers' "fixed" pattern: local windows plus global blocks."""

    _mode = "fixed"

    def __init__(
        self,
        num_heads,
        block=16,
        different_layout_per_head=False,
        num_local_blocks=4,
        num_global_blocks=1,
        attention="bidirectional",
        horizontal_global_attention=False,
        num_different_global_patterns=1,
    ):
        super().__init__(num_heads, block, different_layout_per_head)
        self.num_local_blocks = num_local_blocks
        if num_global_blocks <= 0 or num_local_blocks % num_global_blocks != 0:
            raise ValueError(
                f"Number of blocks in a local window, {num_local_blocks}, must be dividable by number of global blocks, {num_global_blocks}!"
            )
        self.num_global_blocks = num_global_blocks
        self.attention = _direction(attention)
        if attention != "bidirectional" and horizontal_global_attention:
            raise ValueError('only "bi-directional" attentions can support horizontal global attention!')
        self.horizontal_global_attention = horizontal_global_attention
        if num_different_global_patterns > 1 and not different_layout_per_head:
            raise ValueError(
                "Number of different layouts cannot be more than one when you have set a single layout for all heads! Set different_layout_per_head to True."
            )
        if num_different_global_patterns > (num_local_blocks // num_global_blocks):
            raise ValueError(
                f"Number of layout versions (num_different_global_patterns), {num_different_global_patterns}, cannot be larger than number of local window blocks divided by number of global blocks, {num_local_blocks} / {num_global_blocks} = {num_local_blocks // num_global_blocks}!"
            )
        self.num_different_global_patterns = num_different_global_patterns
        self.native()

    def _params(self):
        return dict(
            super()._params(),
            num_local_blocks=self.num_local_blocks,
            num_global_blocks=self.num_global_blocks,
            attention=self.attention,
            horizontal_global_attention=self.horizontal_global_attention,
            num_different_global_patterns=self.num_different_global_patterns,
        )


def _check_global_ends(global_block_indices, global_block_end_indices):
    if global_block_end_indices is None:
        return
    if len(global_block_indices) != len(global_block_end_indices):
        raise ValueError(
            f"Global block start indices length, {len(global_block_indices)}, must be same as global block end indices length, {len(global_block_end_indices)}!"
        )
    for start, end in zip(global_block_indices, global_block_end_indices):
        if start >= end:
            raise ValueError(f"Global block start index, {start}, must be smaller than global block end index, {end}!")


class VariableSparsityConfig(SparsityConfig):
    """Random blocks, variable-size local windows and global blocks (or spans)."""

    _mode = "variable"

    def __init__(
        self,
        num_heads,
        block=16,
        different_layout_per_head=False,
        num_random_blocks=0,
        local_window_blocks=[4],
        global_block_indices=[0],
        global_block_end_indices=None,
        attention="bidirectional",
        horizontal_global_attention=False,
        seed=None,
    ):
        super().__init__(num_heads, block, different_layout_per_head)
        self.num_random_blocks = num_random_blocks
        self.local_window_blocks = list(local_window_blocks)
        self.global_block_indices = list(global_block_indices)
        _check_global_ends(global_block_indices, global_block_end_indices)
        self.global_block_end_indices = None if global_block_end_indices is None else list(global_block_end_indices)
        self.attention = _direction(attention)
        if attention != "bidirectional" and horizontal_global_attention:
            raise ValueError('only "bi-directional" attentions can support horizontal global attention!')
        self.horizontal_global_attention = horizontal_global_attention
        self.seed = random.getrandbits(63) if seed is None else seed
        self.native()

    def _params(self):
        return dict(
            super()._params(),
            num_random_blocks=self.num_random_blocks,
            local_window_blocks=self.local_window_blocks,
            global_block_indices=self.global_block_indices,
            global_block_end_indices=self.global_block_end_indices,
            attention=self.attention,
            horizontal_global_attention=self.horizontal_global_attention,
            seed=self.seed,
        )


class BigBirdSparsityConfig(SparsityConfig):
    """BigBird: random blocks, a sliding window and global blocks."""

    _mode = "bigbird"

    def __init__(
        self,
        num_heads,
        block=16,
        different_layout_per_head=False,
        num_random_blocks=1,
        num_sliding_window_blocks=3,
        num_global_blocks=1,
        attention="bidirectional",
        seed=None,
    ):
        super().__init__(num_heads, block, different_layout_per_head)
        self.num_random_blocks = num_random_blocks
        self.num_sliding_window_blocks = num_sliding_window_blocks
        self.num_global_blocks = num_global_blocks
        self.attention = _direction(attention)
        self.seed = random.getrandbits(63) if seed is None else seed
        self.native()

    def _params(self):
        return dict(
            super()._params(),
            num_random_blocks=self.num_random_blocks,
            num_sliding_window_blocks=self.num_sliding_window_blocks,
            num_global_blocks=self.num_global_blocks,
            attention=self.attention,
            seed=self.seed,
        )


class BSLongformerSparsityConfig(SparsityConfig):
    """Longformer-style: a sliding window plus global blocks (or spans), rows and columns."""

    _mode = "bslongformer"

    def __init__(
        self,
        num_heads,
        block=16,
        different_layout_per_head=False,
        num_sliding_window_blocks=3,
        global_block_indices=[0],
        global_block_end_indices=None,
        attention="bidirectional",
    ):
        super().__init__(num_heads, block, different_layout_per_head)
        self.num_sliding_window_blocks = num_sliding_window_blocks
        self.global_block_indices = list(global_block_indices)
        self.attention = attention
        _check_global_ends(global_block_indices, global_block_end_indices)
        self.global_block_end_indices = None if global_block_end_indices is None else list(global_block_end_indices)
        self.native()

    def _params(self):
        return dict(
            super()._params(),
            num_sliding_window_blocks=self.num_sliding_window_blocks,
            global_block_indices=self.global_block_indices,
            global_block_end_indices=self.global_block_end_indices,
            # Upstream treats anything but "unidirectional" as bidirectional here.
            attention="unidirectional" if self.attention == "unidirectional" else "bidirectional",
        )


class LocalSlidingWindowSparsityConfig(SparsityConfig):
    """A plain sliding window (one layout for all heads)."""

    _mode = "local_sliding_window"

    def __init__(self, num_heads, block=16, num_sliding_window_blocks=3, attention="unidirectional"):
        super().__init__(num_heads, block)
        self.num_sliding_window_blocks = num_sliding_window_blocks
        self.attention = attention
        self.native()

    def _params(self):
        return {
            "num_heads": self.num_heads,
            "block": self.block,
            "num_sliding_window_blocks": self.num_sliding_window_blocks,
            # Upstream treats anything but "bidirectional" as unidirectional here.
            "attention": "bidirectional" if self.attention == "bidirectional" else "unidirectional",
        }
