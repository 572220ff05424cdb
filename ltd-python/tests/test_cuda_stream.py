"""CUDA work is queued on torch's current stream, also a non-default one: ops launched inside
``torch.cuda.stream(s)`` read inputs that busy work on ``s`` produces last, so running on any
other stream would read them early."""

import pytest
import torch

import ltd.torch as lt

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def busy_zero(stream):
    """A zero scalar that ``stream`` computes after a few large matmuls."""
    with torch.cuda.stream(stream):
        x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
        for _ in range(8):
            x = torch.tanh(x @ x)
        return x[0, 0] * 0


def test_attention_forward_and_backward_on_a_side_stream():
    attn = lt.SparseSelfAttention(lt.BigBirdSparsityConfig(num_heads=4, seed=1))
    q, k, v = (torch.randn(2, 4, 512, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    dout = torch.randn_like(q)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = attn(*leaves)
    ref.backward(dout)
    ref_grads = [t.grad for t in leaves]
    torch.cuda.synchronize()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    zero = busy_zero(side)
    with torch.cuda.stream(side):
        assert torch.cuda.current_stream().cuda_stream != 0
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attn(leaves[0] + zero, leaves[1], leaves[2])
        out.backward(dout + zero)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    dq, dk, dv = (t.grad for t in leaves)
    # dQ sums key-column pieces by f32 reductions whose order varies from run to run: a bf16
    # rounding step apart at most (inputs read early would be off by far more).
    torch.testing.assert_close(dq, ref_grads[0], atol=0, rtol=2**-6)
    torch.testing.assert_close(dk, ref_grads[1], atol=0, rtol=0)
    torch.testing.assert_close(dv, ref_grads[2], atol=0, rtol=0)


def test_token_ops_on_a_side_stream():
    B, S, C, r = 4, 1024, 256, 300
    h = torch.randn(B, S, C, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    zero = busy_zero(side)
    with torch.cuda.stream(side):
        torch.manual_seed(3)
        idx, _ = lt.gpt_sample_tokens(r, S, B, 1, "cuda")
        hh = h + zero.float()
        _, part = lt.GatherTokens.apply(hh, idx[0], True)
        y = lt.ScatterTokens.apply(hh, part * 2, idx[0], True)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    torch.manual_seed(3)
    cpu_idx, _ = lt.gpt_sample_tokens(r, S, B, 1, "cpu")
    assert torch.equal(idx.cpu(), cpu_idx)
    sel = idx[0].long()
    expected = h.clone()
    for b in range(B):
        expected[b, sel[b]] = h[b, sel[b]] * 2
    torch.testing.assert_close(y, expected, atol=0, rtol=0)


def test_matmul_and_softmax_on_a_side_stream():
    """Upstream's attention from its primitives (sdd, softmax, dsd), forward and backward, on a
    side stream whose inputs come last from busy work on that stream."""
    torch.manual_seed(5)
    layout = (torch.rand(2, 16, 16) < 0.4).long()
    layout[:, torch.arange(16), torch.arange(16)] = 1
    sdd = lt.MatMul(layout, 32, "sdd", trans_b=True)
    softmax = lt.Softmax(layout, 32)
    dsd = lt.MatMul(layout, 32, "dsd")
    q, k, v = (torch.randn(2, 2, 512, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    dout = torch.randn_like(q)

    def run(zero):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = dsd(softmax(sdd(leaves[0] + zero, leaves[1]), scale=0.125), leaves[2])
        out.backward(dout + zero)
        return [out] + [t.grad for t in leaves]

    ref = run(torch.zeros((), device="cuda", dtype=torch.float16))
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    zero = busy_zero(side)
    with torch.cuda.stream(side):
        ours = run(zero)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r)
