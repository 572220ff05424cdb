"""ltd: block-sparse attention and Random-LTD (random layerwise token dropping).

The PyTorch API is :mod:`ltd.torch` (``import ltd.torch``); this top-level package imports no
framework. ``ltd.HAS_CUDA`` tells whether the wheel was built with its CUDA kernels (the driver is
still loaded only when a CUDA tensor reaches an op).
"""

from ._ltd import HAS_CUDA

__all__ = ["HAS_CUDA"]
