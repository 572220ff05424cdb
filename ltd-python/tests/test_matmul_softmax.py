"""ltd.torch.MatMul and ltd.torch.Softmax (DeepSpeed's block-sparse primitives) against dense
torch references in float64, forward and gradients: the cases of DeepSpeed's
``tests/unit/ops/sparse_attention/test_sparse_attention.py`` (``test_matmul``, ``test_softmax``),
every mode and trans flag on square and rectangular layouts, gradcheck (float64 on the CPU, and
float32), upstream's argument errors, and the three primitives chained into attention against
``SparseSelfAttention``."""

import types
import warnings

import pytest
import torch

import ltd.torch as lt
from conftest import CUDA, DEVICES
from ltd.torch._blocksparse import check_operand

FLOATS = [torch.float32, torch.float16, torch.bfloat16]

# (rtol, atol) against float64; float32 and float16 are upstream's ``allclose`` tolerances;
# float64 (CPU only, computed in float64) differs from torch's float64 by summation order only.
TOL = {
    torch.float32: (5e-4, 5e-5),
    torch.float16: (3e-2, 2e-3),
    torch.bfloat16: (3e-2, 2e-2),
    torch.float64: (1e-12, 1e-12),
}

# gradcheck's tolerances in float64, far below its defaults (atol 1e-5, rtol 1e-3): central
# differences of these smooth ops in float64 are accurate well beyond them.
GRADCHECK_TOL = dict(atol=1e-8, rtol=1e-6)


def allclose(ours, ref):
    rtol, atol = TOL[ours.dtype]
    torch.testing.assert_close(ours.double(), ref, rtol=rtol, atol=atol)


def make_layout(rho, shape):
    """Upstream's layout: 0 with probability ``rho``, else 1."""
    probs = torch.tensor([rho, 1 - rho])
    return torch.distributions.categorical.Categorical(probs).sample(shape)


def tile_mask(layout, block):
    """The layout ``[H, R, C]`` as a dense bool ``[H, R*b, C*b]``."""
    return layout.bool().repeat_interleave(block, 1).repeat_interleave(block, 2)


def dense_to_sparse(w, layout, block):
    """The tiles of a dense ``[Z, H, R*b, C*b]`` at the layout's nonzeros, ``[Z, nnz, b, b]``."""
    z, heads, rows, cols = w.shape
    tiles = w.reshape(z, heads, rows // block, block, cols // block, block).transpose(3, 4)
    h, i, j = layout.nonzero(as_tuple=True)
    return tiles[:, h.to(w.device), i.to(w.device), j.to(w.device)]


def sparse_to_dense(w, layout, block, zero=0.0):
    """A dense ``[Z, H, R*b, C*b]`` with ``zero`` outside the layout's tiles."""
    return w.masked_fill(~tile_mask(layout, block).to(w.device), zero)


def rand(shape, dtype, device):
    return torch.rand(shape, device=device).to(dtype)


# DeepSpeed's test_matmul parameter sets: (block, dtype, mode, trans_a, trans_b).
UPSTREAM_MATMUL = [
    pytest.param(*case, id=f"{case[2]}-b{case[0]}-{str(case[1])[6:]}-ta{int(case[3])}-tb{int(case[4])}-{n}")
    for n, case in enumerate(
        [(16, torch.float16, mode, False, tb) for mode in ("sdd", "dds") for tb in (False, True)]
        + [(16, torch.float16, "dsd", ta, False) for ta in (False, True)]
        + [(16, torch.float32, mode, False, False) for mode in ("sdd", "dsd", "dds")]
        + [(block, torch.float16, mode, False, False) for block in (16, 32, 64) for mode in ("sdd", "dsd", "dds")]
    )
]


def matmul_reference(x, w, dy, mode, trans_a, trans_b, layout, block):
    """Upstream's ``run_matmul_reference`` in float64: dense ``torch.matmul`` on the densified
    operands, masked to the layout for ``sdd``; returns ``(y, dx, dw)`` in ours' formats."""
    x = x.double()
    w = w.double()
    x = (sparse_to_dense(x, layout, block) if mode == "dsd" else x).requires_grad_()
    w = (sparse_to_dense(w, layout, block) if mode == "dds" else w).requires_grad_()
    y = torch.matmul(x.transpose(2, 3) if trans_a else x, w.transpose(2, 3) if trans_b else w)
    y = sparse_to_dense(y, layout, block) if mode == "sdd" else y
    y.backward(dy.double())
    dx, dw = x.grad, w.grad
    if mode == "sdd":
        y = dense_to_sparse(y, layout, block)
    if mode == "dsd":
        dx = dense_to_sparse(dx, layout, block)
    if mode == "dds":
        dw = dense_to_sparse(dw, layout, block)
    return y.detach(), dx, dw


def run_matmul(x, w, dy, mode, trans_a, trans_b, layout, block):
    """Upstream's ``run_matmul_sparse``: ours on the sparse forms; returns ``(y, dx, dw)``."""
    x = (dense_to_sparse(x, layout, block) if mode == "dsd" else x).detach().requires_grad_()
    w = (dense_to_sparse(w, layout, block) if mode == "dds" else w).detach().requires_grad_()
    dy = dense_to_sparse(dy, layout, block) if mode == "sdd" else dy
    y = lt.MatMul(layout, block, mode, trans_a=trans_a, trans_b=trans_b)(x, w)
    y.backward(dy)
    return y, x.grad, w.grad


def matmul_inputs(Z, H, M, N, K, rho, mode, trans_a, trans_b, block, dtype, device, layout=None):
    """Upstream's ``init_matmul_inputs``; the layout is drawn first, right after
    ``manual_seed(1)``, as upstream's is (its inputs come from the CUDA generator)."""
    torch.manual_seed(1)
    AS0, AS1 = (K, M) if trans_a else (M, K)
    BS0, BS1 = (N, K) if trans_b else (K, N)
    shape = {"sdd": (M, N), "dsd": (AS0, AS1), "dds": (BS0, BS1)}[mode]
    if layout is None:
        layout = make_layout(rho, (H, shape[0] // block, shape[1] // block))
    x = rand((Z, H, AS0, AS1), dtype, device)
    w = rand((Z, H, BS0, BS1), dtype, device)
    dy = rand((Z, H, M, N), dtype, device)
    return x, w, dy, layout


def check_matmul(Z, H, M, N, K, rho, mode, trans_a, trans_b, block, dtype, device, layout=None):
    x, w, dy, layout = matmul_inputs(Z, H, M, N, K, rho, mode, trans_a, trans_b, block, dtype, device, layout)
    ref = matmul_reference(x, w, dy, mode, trans_a, trans_b, layout, block)
    ours = run_matmul(x, w, dy, mode, trans_a, trans_b, layout, block)
    for o, r in zip(ours, ref):
        assert o.dtype == dtype and o.shape == r.shape
        allclose(o, r)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("block, case_dtype, mode, trans_a, trans_b", UPSTREAM_MATMUL)
def test_upstream_matmul_cases(device, dtype, block, case_dtype, mode, trans_a, trans_b):
    """Every upstream case in all three dtypes on the CPU; on CUDA in upstream's dtype and
    bfloat16. Z = 3, H = 2, M = 128, N = 256, K = 192, rho = 0.5 (rectangular layouts)."""
    if device == "cuda" and dtype not in (case_dtype, torch.bfloat16):
        pytest.skip(f"CUDA runs upstream's {case_dtype} and bfloat16")
    check_matmul(3, 2, 128, 256, 192, 0.5, mode, trans_a, trans_b, block, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("blocks", [(4, 4), (2, 5), (5, 2)], ids=["square", "wide", "tall"])
def test_every_mode_and_transpose(device, mode, trans_a, trans_b, blocks):
    """All trans combinations (upstream tests a few), square layouts (zero-copy) and
    rectangular ones both ways (padded); an odd free size F = 40 / 24 (K of sdd need not be a
    multiple of 16)."""
    block = 16
    R, C = blocks  # the layout of the sparse operand (of C for sdd), in blocks
    M, N, K = {"sdd": (R * block, C * block, 40), "dsd": (R * block, 24, C * block), "dds": (40, C * block, R * block)}[mode]
    if mode == "dsd" and trans_a:
        M, K = C * block, R * block
    if mode == "dds" and trans_b:
        K, N = C * block, R * block
    check_matmul(2, 3, M, N, K, 0.3, mode, trans_a, trans_b, block, torch.float32, device)


@pytest.mark.parametrize("device", DEVICES)
def test_layout_2d_and_inputs_with_fewer_dims(device):
    """A 2-D layout is one head; inputs with fewer than 4 dims get leading singletons, which
    the output loses again (upstream's rule)."""
    block = 16
    layout = torch.tensor([[1, 0], [1, 1]])
    a, b = torch.randn(32, 8, device=device), torch.randn(8, 32, device=device)
    c = lt.MatMul(layout, block, "sdd")(a, b)
    assert c.shape == (3, block, block)
    ref = dense_to_sparse((a @ b)[None, None], layout[None], block)[0]
    torch.testing.assert_close(c, ref)
    v = torch.randn(1, 32, 5, device=device)
    out = lt.MatMul(layout, block, "dsd")(c, v)
    assert out.shape == (1, 32, 5)
    dense = sparse_to_dense((a @ b)[None, None], layout[None], block)
    torch.testing.assert_close(out, (dense[0] @ v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_matmul_with_empty_sizes(device):
    layout = torch.ones(1, 2, 2, dtype=torch.int64)
    a = torch.zeros(2, 1, 32, 0, device=device, requires_grad=True)
    b = torch.zeros(2, 1, 0, 32, device=device, requires_grad=True)
    c = lt.MatMul(layout, 16, "sdd")(a, b)
    assert c.shape == (2, 4, 16, 16) and not c.any()
    c.sum().backward()
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@pytest.mark.parametrize("device", DEVICES)
def test_matmul_gradcheck_on_exact_values(device):
    """float32 gradcheck of every mode: the product is bilinear, so finite differences are exact
    on values and a step that float32 represents exactly (multiples of 1/8, step 1/16): no
    rounding slack, on the CPU and CUDA (float64 runs on the CPU only)."""
    block = 16
    layout = torch.tensor([[[1, 0, 1], [0, 1, 1]]])  # 2 x 3 blocks

    def exact(*shape):
        return (torch.randint(-16, 16, shape, device=device) / 8).requires_grad_()

    nnz = int(layout.sum())
    cases = [
        ("sdd", False, False, exact(1, 1, 32, 3), exact(1, 1, 3, 48)),
        ("sdd", True, True, exact(1, 1, 3, 32), exact(1, 1, 48, 3)),
        ("dsd", False, False, exact(1, nnz, block, block), exact(1, 1, 48, 2)),
        ("dsd", True, True, exact(1, nnz, block, block), exact(1, 1, 2, 32)),
        ("dds", False, False, exact(1, 1, 2, 32), exact(1, nnz, block, block)),
        ("dds", True, True, exact(1, 1, 48, 2), exact(1, nnz, block, block)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gradcheck warns about float32 inputs
        for mode, ta, tb, a, b in cases:
            op = lt.MatMul(layout, block, mode, trans_a=ta, trans_b=tb)
            assert torch.autograd.gradcheck(op, (a, b), eps=1 / 16, atol=0, rtol=0), (mode, ta, tb)


# gradcheck in float64 (CPU): a square layout of 2 x 2 blocks of 16 (the smallest block) with a
# block row and a block column of two tiles, Z = H = 1 and a free size of 2: small Jacobians.
@pytest.mark.parametrize("mode", ["sdd", "dsd", "dds"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["ta0", "ta1"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["tb0", "tb1"])
def test_matmul_gradcheck_float64(mode, trans_a, trans_b):
    """Every mode and trans pair in float64: forward and gradients equal torch's float64 dense
    product to 1e-12, and gradcheck passes with tolerances far below its defaults."""
    block, F = 16, 2
    layout = torch.tensor([[[1, 0], [1, 1]]])
    M, N, K = {"sdd": (32, 32, F), "dsd": (32, F, 32), "dds": (F, 32, 32)}[mode]
    args = (1, 1, M, N, K, None, mode, trans_a, trans_b, block, torch.float64, "cpu", layout)
    check_matmul(*args)
    x, w, _, _ = matmul_inputs(*args)
    a = (dense_to_sparse(x, layout, block) if mode == "dsd" else x).requires_grad_()
    b = (dense_to_sparse(w, layout, block) if mode == "dds" else w).requires_grad_()
    op = lt.MatMul(layout, block, mode, trans_a=trans_a, trans_b=trans_b)
    assert op(a, b).dtype == torch.float64
    assert torch.autograd.gradcheck(op, (a, b), **GRADCHECK_TOL)


def test_matmul_errors_follow_upstream():
    layout = torch.tensor([[[1, 0], [1, 1]]])
    with pytest.raises(NotImplementedError, match="Supported modes"):
        lt.MatMul(layout, 16, "sss")
    with pytest.raises(ValueError, match="0 or 1"):
        lt.MatMul(torch.tensor([[[1, 2], [1, 1]]]), 16, "sdd")
    with pytest.raises(ValueError, match="layout"):
        lt.MatMul(torch.ones(1, 1, 2, 2), 16, "sdd")
    with pytest.raises(ValueError, match="block"):
        lt.MatMul(layout, 24, "sdd")
    sdd = lt.MatMul(layout, 16, "sdd")
    a, b = torch.randn(1, 1, 32, 8), torch.randn(1, 1, 8, 32)
    with pytest.raises(ValueError, match="same dtype"):
        sdd(a, b.half())
    with pytest.raises(ValueError, match="int32 is not supported on the CPU; expected float32, float16, bfloat16 or float64"):
        sdd(a.int(), b.int())
    with pytest.raises(ValueError, match="more than 4 dimensions"):
        sdd(a[None], b[None])
    with pytest.raises(ValueError, match="size 32 at dim 2"):
        sdd(torch.randn(1, 1, 48, 8), b)
    with pytest.raises(ValueError, match="inner size"):
        sdd(a, torch.randn(1, 1, 9, 32))
    with pytest.raises(ValueError, match="heads"):
        sdd(torch.randn(1, 2, 32, 8), torch.randn(1, 2, 8, 32))
    with pytest.raises(ValueError, match="batch"):
        sdd(torch.randn(2, 1, 32, 8), b)
    dsd = lt.MatMul(layout, 16, "dsd")
    with pytest.raises(ValueError, match="trailing dimensions"):
        dsd(torch.randn(1, 2, 16, 16), torch.randn(1, 1, 32, 4))
    with pytest.raises(ValueError, match="size 32 at dim 2"):
        dsd(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 4))
    if CUDA:
        with pytest.raises(ValueError, match="same device"):
            sdd(a, b.cuda())


# DeepSpeed's test_softmax: block {16, 32} x width {256, 576} x dtype {float16, float32}; here
# every dtype on both devices.
def softmax_inputs(Z, H, M, N, rho, block, dtype, device):
    """Upstream's ``init_softmax_inputs``: layout, dense x, its gradient, the bool and float
    attention masks and the {0, -inf} key-padding mask."""
    layout = make_layout(rho, (H, M // block, N // block))
    x = rand((Z, H, M, N), dtype, device)
    dx = rand((Z, H, M, N), dtype, device)
    bool_attn_mask = torch.randint(0, 2, (N, N), dtype=torch.bool, device=device)
    kp_mask = torch.randint(0, 2, (Z, N), device=device).to(dtype)
    kp_mask[kp_mask == 1.0] = float("-inf")
    return layout, x, dx, bool_attn_mask, bool_attn_mask.to(dtype), kp_mask


def softmax_reference(x, scale, dx, kp_mask, attn_mask, layout, block, rpe=None):
    """Upstream's ``run_softmax_reference`` in float64, with ltd's rule for a row with every
    key masked (zeros, not NaN); returns sparse ``(y, dx)``."""
    leaf = x.double().requires_grad_()
    s = sparse_to_dense(leaf, layout, block, zero=float("-inf"))
    if attn_mask is not None:
        s = s.masked_fill(attn_mask[None, None] == 0, float("-inf"))
    s = s * scale
    if rpe is not None:
        s = s + rpe.double()
    if kp_mask is not None:
        s = s + kp_mask.double()[:, None, None, :]
    dead = torch.isneginf(s).all(dim=-1, keepdim=True)
    y = torch.softmax(s.masked_fill(dead, 0.0), -1).masked_fill(dead, 0.0)
    y.backward(dx.double())
    return dense_to_sparse(y.detach(), layout, block), dense_to_sparse(leaf.grad, layout, block)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("width", [256, 576])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_upstream_softmax_cases(device, block, width, dtype):
    Z, H, scale, rho = 2, 4, 0.4, 0.4
    layout, x, dx, bool_attn, fp_attn, kp_mask = softmax_inputs(Z, H, width, width, rho, block, dtype, device)
    ref_y, ref_dx = softmax_reference(x, scale, dx, kp_mask, bool_attn, layout, block)
    xs = dense_to_sparse(x, layout, block).detach().requires_grad_()
    ys = xs.clone()
    y = lt.Softmax(layout, block)(ys, scale=scale, key_padding_mask=kp_mask, key_padding_mask_mode="add", attn_mask=fp_attn, attn_mask_mode="mul")
    assert y is ys  # in place, as upstream
    y.backward(dense_to_sparse(dx, layout, block))
    allclose(y, ref_y)
    allclose(xs.grad, ref_dx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_softmax_rpe_masks_and_fully_masked_rows(device, dtype):
    """rpe and an additive attention mask, a key-padding mask in ``mul`` mode hiding every key
    of batch row 1 (zeros, not NaN), and no gradient to rpe or the masks (as upstream)."""
    Z, H, L, block, scale = 2, 2, 96, 16, 0.7
    layout = make_layout(0.5, (H, L // block, L // block))
    layout[:, :, 0] = 1  # every block row has a tile
    x = torch.randn(Z, H, L, L, device=device).to(dtype)
    dx = torch.randn(Z, H, L, L, device=device).to(dtype)
    rpe = (torch.randn(Z, H, L, L, device=device) * 0.5).to(dtype).requires_grad_()
    keep = torch.ones(Z, L, device=device).to(dtype)
    keep[1] = 0
    keep[0, 40:50] = 0
    am = torch.zeros(L, L, device=device).masked_fill(torch.rand(L, L, device=device) < 0.2, float("-inf")).to(dtype)
    kpm_ref = torch.zeros(Z, L, device=device, dtype=torch.float64).masked_fill(keep == 0, float("-inf"))
    ref_y, ref_dx = softmax_reference(x, scale, dx, kpm_ref, None, layout, block, rpe=rpe.detach() + am.double())
    xs = dense_to_sparse(x, layout, block).detach().requires_grad_()
    y = lt.Softmax(layout, block)(xs.clone(), scale, rpe, keep, am, key_padding_mask_mode="mul", attn_mask_mode="add")
    y.backward(dense_to_sparse(dx, layout, block))
    allclose(y, ref_y)
    allclose(xs.grad, ref_dx)
    assert not y[1].any() and not xs.grad[1].any()
    assert rpe.grad is None


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_gradcheck(device):
    """float32 gradcheck with finite-difference slack (on the CPU and CUDA; the tight one is in
    float64 below): scale, rpe and a ``mul`` key-padding mask, on a non-leaf (the op works in
    place)."""
    block, H, nb = 16, 1, 2
    layout = torch.tensor([[[1, 0], [1, 1]]])
    S = nb * block
    x = (torch.randn(1, int(layout.sum()), block, block, device=device)).requires_grad_()
    rpe = torch.randn(1, H, S, S, device=device)
    kpm = torch.ones(1, S, device=device)
    kpm[0, 3] = 0
    sm = lt.Softmax(layout, block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.autograd.gradcheck(
            lambda t: sm(t.clone(), 0.5, rpe, kpm, key_padding_mask_mode="mul"), (x,), eps=1e-2, atol=1e-4, rtol=1e-3
        )


@pytest.mark.parametrize("kpm_mode, am_mode", [("add", "mul"), ("mul", "add")])
def test_softmax_gradcheck_float64(kpm_mode, am_mode):
    """float64 (CPU) with scale, rpe, a key-padding mask and an attention mask, each mode of
    both, and a query that sees no key: forward and gradient equal torch's float64 dense softmax
    to 1e-12, and gradcheck passes with tolerances far below its defaults. Layout and sizes as
    the matmul's float64 gradcheck."""
    block = 16
    layout = torch.tensor([[[1, 0], [1, 1]]])
    S, scale = 2 * block, 0.625  # a scale float32 holds exactly: the op takes it as float32
    x, dy, rpe = (torch.randn(1, 1, S, S, dtype=torch.float64) for _ in range(3))
    hidden = torch.zeros(1, S, dtype=torch.bool)
    hidden[0, [3, 17, 30]] = True
    blocked = torch.rand(S, S) < 0.2
    blocked[5] = True  # query 5 sees no key: zeros, and no gradient

    def mask(off, mode):
        zeros = torch.zeros(off.shape, dtype=torch.float64)
        return zeros.masked_fill(off, float("-inf")) if mode == "add" else (~off).double()

    kpm, am = mask(hidden, kpm_mode), mask(blocked, am_mode)
    ref_y, ref_dx = softmax_reference(x, scale, dy, mask(hidden, "add"), mask(blocked, "mul"), layout, block, rpe=rpe)
    sm = lt.Softmax(layout, block)

    def f(t):
        return sm(t.clone(), scale, rpe, kpm, am, key_padding_mask_mode=kpm_mode, attn_mask_mode=am_mode)

    xs = dense_to_sparse(x, layout, block).detach().requires_grad_()
    y = f(xs)
    y.backward(dense_to_sparse(dy, layout, block))
    allclose(y, ref_y)
    allclose(xs.grad, ref_dx)
    assert y.dtype == torch.float64 and not y[0, 0, 5].any() and not xs.grad[0, 0, 5].any()
    assert torch.autograd.gradcheck(f, (xs.detach().requires_grad_(),), **GRADCHECK_TOL)


def test_float64_runs_on_the_cpu_only():
    """CUDA float64 is a ``ValueError`` naming float64 and the CPU: the operand check on a
    stand-in for a CUDA tensor, and, with a GPU, both ops."""
    cuda64 = types.SimpleNamespace(device=torch.device("cuda", 0), is_cuda=True, dtype=torch.float64)
    with pytest.raises(ValueError, match="a: dtype torch.float64 is not supported on CUDA; .*float64 runs on the CPU only"):
        check_operand(cuda64, "a")
    check_operand(torch.zeros(1, dtype=torch.float64), "a")
    if not CUDA:
        return
    layout = torch.tensor([[[1, 0], [1, 1]]])
    a, b = (torch.randn(1, 1, 32, 32, dtype=torch.float64, device="cuda") for _ in range(2))
    with pytest.raises(ValueError, match="float64 runs on the CPU only"):
        lt.MatMul(layout, 16, "sdd")(a, b)
    with pytest.raises(ValueError, match="float64 runs on the CPU only"):
        lt.Softmax(layout, 16)(torch.randn(1, 3, 16, 16, dtype=torch.float64, device="cuda"))


def test_softmax_errors_follow_upstream():
    layout = torch.tensor([[[1, 0], [1, 1]]])
    sm = lt.Softmax(layout, 16)
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="relative position embedding must be"):
        sm(x, rpe=torch.zeros(1, 1, 32, 32, dtype=torch.float16))
    with pytest.raises(ValueError, match="Attention mask must be"):
        sm(x, attn_mask=torch.zeros(32, 32, dtype=torch.float16))
    with pytest.raises(ValueError, match="Key padding mask must be"):
        sm(x, key_padding_mask=torch.zeros(1, 32, dtype=torch.float16))
    with pytest.raises(ValueError, match="attn_mask_mode"):
        sm(x, attn_mask=torch.zeros(32, 32), attn_mask_mode="xor")
    with pytest.raises(ValueError, match="int32 is not supported on the CPU; expected float32, float16, bfloat16 or float64"):
        sm(x.int())
    with pytest.raises(ValueError, match=r"\[Z, 3, 16, 16\]"):
        sm(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="key_padding_mask: shape"):
        sm(x, key_padding_mask=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="square"):
        lt.Softmax(torch.ones(1, 2, 3, dtype=torch.int64), 16)
    with pytest.raises(ValueError, match="0 or 1"):
        lt.Softmax(torch.full((1, 2, 2), 3), 16)


@pytest.mark.parametrize("device", DEVICES)
def test_primitives_chain_into_sparse_self_attention(device):
    """Upstream's attention as its three primitives (``sdd`` scores, softmax with a
    key-padding mask, ``dsd`` with v) equals ltd's fused ``SparseSelfAttention`` on the same
    layout, forward and gradients."""
    dtype = torch.float32 if device == "cpu" else torch.float16
    B, H, L, D = 2, 4, 128, 64
    cfg = lt.FixedSparsityConfig(num_heads=H, block=16, num_local_blocks=2)
    layout = cfg.make_layout(L)
    q, k, v = (torch.randn(B, H, L, D, device=device).to(dtype).requires_grad_() for _ in range(3))
    kpm = torch.zeros(B, L, device=device)
    kpm[1, 100:] = float("-inf")
    dout = torch.randn(B, H, L, D, device=device).to(dtype)
    scores = lt.MatMul(layout, 16, "sdd", trans_b=True)(q, k)
    probs = lt.Softmax(layout, 16)(scores, scale=D**-0.5, key_padding_mask=kpm.to(dtype))
    out = lt.MatMul(layout, 16, "dsd")(probs, v)
    out.backward(dout)
    grads = [t.grad for t in (q, k, v)]
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    fused = lt.SparseSelfAttention(cfg)(*leaves, key_padding_mask=kpm)
    fused.backward(dout)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out, fused, **tol)
    for ours, theirs in zip(grads, (t.grad for t in leaves)):
        torch.testing.assert_close(ours, theirs, **tol)
