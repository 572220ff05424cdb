"""ltd.torch.SparseSelfAttention against torch's dense masked attention (float64), forward and
gradients, on every sparsity family, mask mode and device; plus the cases of DeepSpeed's
``tests/unit/ops/sparse_attention/test_sparse_attention.py`` that apply to the fused op."""

import pytest
import torch

import ltd.torch as lt
from conftest import ATTN_DTYPES, DEVICES
from reference import dense_attention

# (atol, rtol) of the output and of the gradients, per dtype, against float64.
TOL = {
    torch.float32: ((2e-5, 1e-4), (5e-5, 1e-3)),
    torch.float16: ((2e-3, 3e-2), (1e-2, 5e-2)),
    torch.bfloat16: ((2e-2, 5e-2), (6e-2, 1e-1)),
    torch.float64: ((1e-12, 1e-10), (1e-12, 1e-10)),
}


def configs(heads):
    return {
        "dense": lt.DenseSparsityConfig(num_heads=heads),
        "fixed": lt.FixedSparsityConfig(num_heads=heads),
        "fixed_uni": lt.FixedSparsityConfig(num_heads=heads, attention="unidirectional", num_local_blocks=2),
        "variable": lt.VariableSparsityConfig(num_heads=heads, num_random_blocks=1, local_window_blocks=[2, 3], seed=7),
        "bigbird": lt.BigBirdSparsityConfig(num_heads=heads, block=32, different_layout_per_head=True, seed=3),
        "bslongformer": lt.BSLongformerSparsityConfig(num_heads=heads, global_block_indices=[0, 5]),
        "local": lt.LocalSlidingWindowSparsityConfig(num_heads=heads, block=16),
    }


def inputs(shape, dtype, device, scale=1.0):
    return [(torch.randn(shape, device=device) * scale).to(dtype).requires_grad_() for _ in range(3)]


def check(ours, ref, dtype, which, low=None):
    """``ours`` against the float64 ``ref``: within ``TOL``, or, for float16 / bfloat16, with an
    error at most twice that of torch's own attention in that dtype (``low``) plus a floor."""
    atol, rtol = TOL[dtype][which]
    if low is not None:
        err = (ours.double() - ref).abs().max().item()
        torch_err = (low.double() - ref).abs().max().item()
        if err <= 2 * torch_err + atol / 4:
            return
    torch.testing.assert_close(ours.double(), ref, atol=atol, rtol=rtol)


def run_both(attn, cfg, q, k, v, causal=False, kpm_ref=None, bias_ref=None, **kwargs):
    """Forward and backward of ``attn`` and of the float64 reference; compares both."""
    out = attn(q, k, v, **kwargs)
    dout = torch.randn_like(out)
    out.backward(dout)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    L = q.shape[2]
    ref = dense_attention(q64, k64, v64, cfg.make_layout(L), cfg.block, kpm=kpm_ref, bias=bias_ref, causal=causal)
    ref.backward(dout.double())
    lows = [None] * 4
    if q.dtype not in (torch.float32, torch.float64):
        ql, kl, vl = (t.detach().clone().requires_grad_() for t in (q, k, v))
        low = dense_attention(ql, kl, vl, cfg.make_layout(L), cfg.block, kpm=kpm_ref, bias=bias_ref, causal=causal, dtype=q.dtype)
        low.backward(dout)
        lows = [low, ql.grad, kl.grad, vl.grad]
    check(out, ref, q.dtype, 0, lows[0])
    for ours, r, lo in zip((q.grad, k.grad, v.grad), (q64.grad, k64.grad, v64.grad), lows[1:]):
        check(ours, r, q.dtype, 1, lo)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", list(configs(2)))
def test_every_family_matches_dense(device, family):
    for dtype in ATTN_DTYPES[device]:
        cfg = configs(2)[family]
        attn = lt.SparseSelfAttention(cfg).to(device)
        q, k, v = inputs((2, 2, 160, 64), dtype, device)
        run_both(attn, cfg, q, k, v)


@pytest.mark.parametrize("device", DEVICES)
def test_length_not_a_multiple_of_the_block(device):
    dtype = ATTN_DTYPES[device][0]
    cfg = lt.FixedSparsityConfig(num_heads=2, num_local_blocks=2)
    q, k, v = inputs((1, 2, 75, 64), dtype, device)
    run_both(lt.SparseSelfAttention(cfg), cfg, q, k, v)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["add", "mul"])
def test_key_padding_mask_modes(device, mode):
    dtype = ATTN_DTYPES[device][0]
    B, H, L = 2, 2, 96
    cfg = lt.BSLongformerSparsityConfig(num_heads=H)
    attn = lt.SparseSelfAttention(cfg, key_padding_mask_mode=mode)
    keep = torch.ones(B, L, device=device)
    keep[0, 70:] = 0
    keep[1, 5:9] = 0
    if mode == "add":
        mask = (1.0 - keep) * -10000.0
        kpm_ref = mask
    else:
        mask = keep
        kpm_ref = torch.zeros(B, L, device=device).masked_fill(keep == 0, float("-inf"))
    q, k, v = inputs((B, H, L, 64), dtype, device)
    # Upstream's BERT shape [B, 1, 1, L] is squeezed to [B, L].
    run_both(attn, cfg, q, k, v, kpm_ref=kpm_ref, key_padding_mask=mask[:, None, None, :])


@pytest.mark.parametrize("device", DEVICES)
def test_causal_attn_mask_in_mul_mode(device):
    dtype = ATTN_DTYPES[device][0]
    L = 128
    cfg = lt.FixedSparsityConfig(num_heads=2, attention="unidirectional")
    attn = lt.SparseSelfAttention(cfg)  # attn_mask_mode="mul" (upstream's default)
    tril = torch.ones(L, L, device=device).tril()
    q, k, v = inputs((2, 2, L, 64), dtype, device)
    run_both(attn, cfg, q, k, v, causal=True, attn_mask=tril)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["add", "mul"])
def test_general_attn_mask(device, mode):
    dtype = ATTN_DTYPES[device][0]
    L = 64
    cfg = lt.DenseSparsityConfig(num_heads=2)
    attn = lt.SparseSelfAttention(cfg, attn_mask_mode=mode)
    allowed = torch.rand(L, L, device=device) > 0.3
    allowed |= torch.eye(L, dtype=torch.bool, device=device)
    additive = torch.zeros(L, L, device=device).masked_fill(~allowed, float("-inf"))
    mask = additive if mode == "add" else allowed.float()
    q, k, v = inputs((2, 2, L, 64), dtype, device)
    run_both(attn, cfg, q, k, v, bias_ref=additive.expand(2, 2, L, L), attn_mask=mask)


@pytest.mark.parametrize("device", DEVICES)
def test_rpe_gets_a_gradient(device):
    dtype = ATTN_DTYPES[device][0]
    B, H, L = 1, 2, 64
    cfg = lt.BigBirdSparsityConfig(num_heads=H, num_random_blocks=0)
    attn = lt.SparseSelfAttention(cfg)
    q, k, v = inputs((B, H, L, 64), dtype, device)
    rpe = (torch.randn(B, H, L, L, device=device) * 0.5).to(dtype).requires_grad_()
    out = attn(q, k, v, rpe=rpe)
    dout = torch.randn_like(out)
    out.backward(dout)
    rpe64 = rpe.detach().double().requires_grad_()
    q64, k64, v64 = (t.detach().double() for t in (q, k, v))
    ref = dense_attention(q64, k64, v64, cfg.make_layout(L), cfg.block, bias=rpe64)
    ref.backward(dout.double())
    check(out, ref, dtype, 0)
    # Outside the layout the bias does not reach the output: both gradients are zero there.
    check(rpe.grad, rpe64.grad, dtype, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_key_given_transposed(device):
    dtype = ATTN_DTYPES[device][0]
    cfg = lt.FixedSparsityConfig(num_heads=2)
    attn = lt.SparseSelfAttention(cfg)
    q, k, v = (torch.randn(1, 2, 96, 64, device=device).to(dtype) for _ in range(3))
    a = attn(q, k, v)
    b = attn(q, k.transpose(-2, -1), v)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_unsupported_dtypes_raise_value_error(device):
    attn = lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=2))
    bad = [torch.int32, torch.int64] + ([torch.float64, torch.float32] if device == "cuda" else [])
    for dtype in bad:
        q = torch.ones(1, 2, 32, 64, device=device).to(dtype)
        with pytest.raises(ValueError, match="dtype"):
            attn(q, q, q)
    if device == "cuda":
        q = torch.ones(1, 2, 32, 64, device=device, dtype=torch.float64)
        with pytest.raises(ValueError, match="float64 runs on the CPU"):
            attn(q, q, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_head_dim_outside_64_or_128_raises_value_error():
    attn = lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=2))
    q = torch.ones(1, 2, 32, 32, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError):
        attn(q, q, q)


def test_cpu_takes_any_head_dim():
    cfg = lt.VariableSparsityConfig(num_heads=3, local_window_blocks=[1, 2], seed=1)
    q, k, v = inputs((2, 3, 50, 7), torch.float32, "cpu")
    run_both(lt.SparseSelfAttention(cfg), cfg, q, k, v)


def test_mixed_devices_raise_value_error():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    attn = lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=2))
    q = torch.ones(1, 2, 32, 64, dtype=torch.float16)
    with pytest.raises(ValueError):
        attn(q, q.cuda(), q)


def test_errors_follow_upstream():
    with pytest.raises(NotImplementedError):
        lt.SparseSelfAttention()  # the base SparsityConfig has no layout
    with pytest.raises(ValueError):
        lt.FixedSparsityConfig(num_heads=2, num_local_blocks=4, num_global_blocks=3)
    with pytest.raises(NotImplementedError):
        lt.FixedSparsityConfig(num_heads=2, attention="sideways")
    with pytest.raises(ValueError):
        lt.FixedSparsityConfig(num_heads=2, attention="unidirectional", horizontal_global_attention=True)
    with pytest.raises(ValueError):
        lt.FixedSparsityConfig(num_heads=2, num_different_global_patterns=2)
    with pytest.raises(ValueError):
        lt.VariableSparsityConfig(num_heads=2, global_block_indices=[0, 3], global_block_end_indices=[2])
    with pytest.raises(ValueError):
        lt.VariableSparsityConfig(num_heads=2, global_block_indices=[3], global_block_end_indices=[2])
    with pytest.raises(ValueError):
        lt.FixedSparsityConfig(num_heads=2, block=24)
    attn = lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=2))
    q = torch.ones(1, 2, 32, 16)
    with pytest.raises(NotImplementedError, match="only self-attention"):
        attn(q, q[:, :, :16], q[:, :, :16])


def test_layouts_match_upstream_examples():
    # upstream-semantics.md §2.3.2: nb = 8, nl = 4, ng = 1, bidirectional.
    fixed = lt.FixedSparsityConfig(num_heads=1).make_layout(128)[0]
    rows = ["".join("#" if x else "." for x in r) for r in fixed.tolist()]
    assert rows == ["####...#"] * 4 + ["...#####"] * 4
    # §2.3.5: BSLongformer nb = 6, nsw = 3, global [0].
    bsl = lt.BSLongformerSparsityConfig(num_heads=1).make_layout(96)[0]
    rows = ["".join("#" if x else "." for x in r) for r in bsl.tolist()]
    assert rows == ["######", "###...", "####..", "#.###.", "#..###", "#...##"]
    assert lt.SparseSelfAttention(lt.FixedSparsityConfig(num_heads=3)).master_layout.shape == (3, 128, 128)


# DeepSpeed's test_softmax cases (block 16/32 x width 256/576 x fp16/fp32; Z = 2, H = 4;
# random {0, -inf} key-padding mask in add mode, random bool attention mask in mul mode) on
# the fused op, which folds scores, softmax and the product with v: the layout is a random
# block pattern (BigBird, per-head random blocks) and the reference dense masked attention.
# The cases themselves, and upstream's matmul cases, run on the primitives in
# test_matmul_softmax.py.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("width", [256, 576])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_upstream_softmax_cases(device, block, width, dtype):
    if dtype not in ATTN_DTYPES[device]:
        pytest.skip(f"{dtype} attention does not run on {device}")
    Z, H = 2, 4
    cfg = lt.BigBirdSparsityConfig(num_heads=H, block=block, different_layout_per_head=True, num_random_blocks=3, seed=block + width)
    attn = lt.SparseSelfAttention(cfg, key_padding_mask_mode="add", attn_mask_mode="mul")
    kp_mask = torch.zeros(Z, width, device=device).masked_fill(torch.rand(Z, width, device=device) < 0.1, float("-inf"))
    attn_mask = (torch.rand(width, width, device=device) > 0.2).float()
    attn_ref = torch.zeros(width, width, device=device).masked_fill(attn_mask == 0, float("-inf"))
    q, k, v = [torch.rand(Z, H, width, 64, device=device).to(dtype).requires_grad_() for _ in range(3)]
    run_both(attn, cfg, q, k, v, kpm_ref=kp_mask, bias_ref=attn_ref.expand(Z, H, width, width), key_padding_mask=kp_mask, attn_mask=attn_mask)


# torch.autograd.gradcheck of the fused op in float64 (CPU): q, k, v (and rpe, which gets a
# gradient) against finite differences of the op itself, on blocks of 16 with L = 32 and with
# a partial last block (L = 40), with and without each mask. Tiny heads (D = 2) keep the full
# Jacobians cheap; ``fast`` (gradcheck's fast mode: a random projection of the Jacobian, with a
# looser tolerance) only where the full one is checked by another case.
def _gradcheck_case(L, causal=False, rpe=False, kpm=None, attn_mask=None, family="fixed", fast=False):
    B, H, D = (2 if kpm else 1), 2, 2
    if family == "fixed":
        cfg = lt.FixedSparsityConfig(num_heads=H, block=16, num_local_blocks=2, attention="unidirectional" if causal else "bidirectional")
    else:
        cfg = lt.BigBirdSparsityConfig(num_heads=H, block=16, num_random_blocks=1, num_sliding_window_blocks=1, different_layout_per_head=True, seed=4)
    attn = lt.SparseSelfAttention(cfg, key_padding_mask_mode=kpm or "add", attn_mask_mode=attn_mask or "mul")
    q, k, v = (torch.randn(B, H, L, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    tensors = [q, k, v]
    if rpe:
        tensors.append((torch.randn(B, H, L, L, dtype=torch.float64) * 0.5).requires_grad_())
    kw = {}
    if kpm is not None:
        keep = torch.rand(B, L) > 0.25
        keep[1] = False  # every key of batch 1 padded: its rows are zero, and so are their gradients
        kw["key_padding_mask"] = (
            torch.zeros(B, L, dtype=torch.float64).masked_fill(~keep, float("-inf")) if kpm == "add" else keep.double()
        )
    if causal:
        kw["attn_mask"] = torch.ones(L, L).tril()  # mul mode: runs as the causal flag
    elif attn_mask is not None:
        allowed = (torch.rand(L, L) > 0.3) | torch.eye(L, dtype=torch.bool)
        kw["attn_mask"] = torch.zeros(L, L).masked_fill(~allowed, float("-inf")) if attn_mask == "add" else allowed.double()

    def f(*xs):
        return attn(xs[0], xs[1], xs[2], rpe=xs[3] if rpe else None, **kw)

    assert f(*tensors).dtype == torch.float64
    # Tolerances far below gradcheck's defaults: central differences in float64 are good to
    # about 1e-10 here, so a gradient off by 1e-4 relative fails.
    assert torch.autograd.gradcheck(f, tuple(tensors), atol=1e-8, rtol=1e-6, fast_mode=fast)


@pytest.mark.parametrize("L", [32, 40])
@pytest.mark.parametrize("family", ["fixed", "bigbird"])
def test_gradcheck_float64(L, family):
    _gradcheck_case(L, family=family)


@pytest.mark.parametrize("L", [32, 40])
def test_gradcheck_float64_causal(L):
    _gradcheck_case(L, causal=True)


@pytest.mark.parametrize("L", [32, 40])
def test_gradcheck_float64_rpe(L):
    _gradcheck_case(L, rpe=True, family="bigbird")


@pytest.mark.parametrize("L", [32, 40])
@pytest.mark.parametrize("mode", ["add", "mul"])
def test_gradcheck_float64_key_padding_mask(L, mode):
    _gradcheck_case(L, kpm=mode)


@pytest.mark.parametrize("L", [32, 40])
@pytest.mark.parametrize("mode", ["add", "mul"])
def test_gradcheck_float64_attn_mask(L, mode):
    _gradcheck_case(L, attn_mask=mode)


@pytest.mark.parametrize("L", [32, 40])
def test_gradcheck_float64_everything(L):
    _gradcheck_case(L, causal=True, rpe=True, kpm="add", fast=True)


def test_float64_log_sum_exp_is_float64_and_matches_torch():
    cfg = lt.FixedSparsityConfig(num_heads=2, block=16, num_local_blocks=2)
    attn = lt.SparseSelfAttention(cfg)
    q, k, v = (torch.randn(1, 2, 40, 8, dtype=torch.float64) for _ in range(3))
    out = attn(q, k, v)
    ref = dense_attention(q, k, v, cfg.make_layout(40), cfg.block)
    torch.testing.assert_close(out, ref, atol=1e-13, rtol=1e-12)
    # A float32 lse with float64 inputs is refused by the native op.
    b, h, l, _ = q.shape
    with pytest.raises(ValueError, match="float64"):
        attn._op.forward(*(t.__dlpack__() for t in (q, k, v, torch.empty_like(q), torch.empty(b, h, l))))
