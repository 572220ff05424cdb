"""PyTorch API of ltd: DeepSpeed's block-sparse attention and Random-LTD, same names and
signatures, running ltd's CPU and CUDA kernels through DLPack (zero-copy, on torch's current
CUDA stream).

Supported: sparse attention on CPU float32 / float16 / bfloat16 / float64 and CUDA float16 /
bfloat16 (head dim 64 or 128); the block-sparse ``MatMul`` and ``Softmax`` primitives and the
Random-LTD token ops on CPU and CUDA float32 / float16 / bfloat16, and CPU float64 (computed in
float64). Other dtypes and devices (CUDA float64 included) raise ``ValueError``.
"""

from .basic_layer import (
    RandomLayerTokenDrop,
    RandomLTDScheduler,
    convert_to_random_ltd,
    remove_random_ltd_state_dict,
    save_without_random_ltd,
)
from .dropping_utils import GatherTokens, ScatterTokens, bert_sample_tokens, gpt_sample_tokens
from .matmul import MatMul
from .softmax import Softmax
from .sparse_self_attention import SparseSelfAttention
from .sparsity_config import (
    BigBirdSparsityConfig,
    BSLongformerSparsityConfig,
    DenseSparsityConfig,
    FixedSparsityConfig,
    LocalSlidingWindowSparsityConfig,
    SparsityConfig,
    VariableSparsityConfig,
)

__all__ = [
    "BigBirdSparsityConfig",
    "BSLongformerSparsityConfig",
    "DenseSparsityConfig",
    "FixedSparsityConfig",
    "GatherTokens",
    "LocalSlidingWindowSparsityConfig",
    "MatMul",
    "RandomLayerTokenDrop",
    "RandomLTDScheduler",
    "ScatterTokens",
    "Softmax",
    "SparseSelfAttention",
    "SparsityConfig",
    "VariableSparsityConfig",
    "bert_sample_tokens",
    "convert_to_random_ltd",
    "gpt_sample_tokens",
    "remove_random_ltd_state_dict",
    "save_without_random_ltd",
]
