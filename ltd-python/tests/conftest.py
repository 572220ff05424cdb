"""Shared fixtures: every test runs on the CPU and, where torch sees a GPU, on CUDA."""

import pytest
import torch

CUDA = torch.cuda.is_available()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]

# The attention's dtypes per device (CPU: also float64, computed in float64; CUDA: float16 /
# bfloat16, head dim 64 or 128).
ATTN_DTYPES = {
    "cpu": [torch.float32, torch.float16, torch.bfloat16, torch.float64],
    "cuda": [torch.float16, torch.bfloat16],
}

# Random-LTD token ops: the same three dtypes on both devices, and float64 on the CPU only.
TOKEN_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield
