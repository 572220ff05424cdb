"""ltd.torch's Random-LTD ops against torch equivalents (index_select / index_copy), their
gradients, the wrapper, and the cases of DeepSpeed's Random-LTD unit tests."""

import warnings

import pytest
import torch
from torch import nn

import ltd.torch as lt
from conftest import DEVICES, TOKEN_DTYPES


def ref_gather(h, idx, batch_first):
    """``part[b, k] = h[b, idx[b, k]]`` with index_select, per batch row."""
    idx = idx.long()
    if batch_first:
        return torch.stack([h[b].index_select(0, idx[b]) for b in range(h.shape[0])])
    return torch.stack([h[:, b].index_select(0, idx[b]) for b in range(h.shape[1])], dim=1)


def ref_scatter(h, part, idx, batch_first):
    """``y = h`` with the kept rows replaced by ``part``, with index_copy, per batch row."""
    idx = idx.long()
    if batch_first:
        return torch.stack([h[b].index_copy(0, idx[b], part[b]) for b in range(h.shape[0])])
    return torch.stack([h[:, b].index_copy(0, idx[b], part[:, b]) for b in range(h.shape[1])], dim=1)


@pytest.mark.parametrize("device", DEVICES)
def test_samplers_give_sorted_distinct_positions(device):
    for layers, batch, seq, r in [(1, 1, 1, 1), (3, 4, 2048, 511), (2, 2, 4100, 2049), (1, 3, 7, 7)]:
        idx, mask = lt.gpt_sample_tokens(r, seq, batch, layers, device)
        assert idx.shape == (layers, batch, r) and idx.dtype == torch.int32 and mask is None
        assert idx.device.type == device
        diffs = idx[..., 1:] - idx[..., :-1]
        assert bool((diffs > 0).all()) and int(idx.min()) >= 0 and int(idx.max()) < seq


def test_samplers_follow_torch_manual_seed():
    torch.manual_seed(5)
    a, _ = lt.gpt_sample_tokens(16, 64, 2, 2)
    torch.manual_seed(5)
    b, _ = lt.gpt_sample_tokens(16, 64, 2, 2)
    c, _ = lt.gpt_sample_tokens(16, 64, 2, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_samplers_agree():
    torch.manual_seed(9)
    a, _ = lt.gpt_sample_tokens(100, 300, 3, 2, "cpu")
    torch.manual_seed(9)
    b, _ = lt.gpt_sample_tokens(100, 300, 3, 2, "cuda")
    assert torch.equal(a, b.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_gpt_mask_is_the_top_left_corner(device):
    mask = torch.randn(2, 1, 32, 32, device=device)
    _, m = lt.gpt_sample_tokens(8, 32, 2, 1, device, mask)
    assert torch.equal(m, mask[:, :, :8, :8])


@pytest.mark.parametrize("device", DEVICES)
def test_bert_masks_match_upstream_loop(device):
    B, H, S, r, L = 3, 2, 20, 7, 2
    mask = torch.randn(B, H, S, S, device=device)
    idx, masks = lt.bert_sample_tokens(r, S, B, L, device, mask)
    assert len(masks) == L
    for layer in range(L):
        rows = []
        for i in range(B):
            sel = idx[layer][i].long()
            rows.append(mask[i : i + 1, :, sel, :][:, :, :, sel])
        assert torch.equal(masks[layer], torch.cat(rows))
    with pytest.raises(ValueError):
        lt.bert_sample_tokens(r, S, B, L, device, None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", TOKEN_DTYPES)
def test_gather_scatter_match_index_select_and_index_copy(device, batch_first, dtype):
    if dtype == torch.float64 and device == "cuda":
        pytest.skip("float64 token ops run on the CPU only")
    B, S, C, r = 3, 40, 24, 13
    idx, _ = lt.gpt_sample_tokens(r, S, B, 1, device)
    idx = idx[0]
    shape = (B, S, C) if batch_first else (S, B, C)
    h = torch.randn(shape, device=device).to(dtype)
    passthrough, part = lt.GatherTokens.apply(h, idx, batch_first)
    assert passthrough is h or torch.equal(passthrough, h)
    assert torch.equal(part, ref_gather(h, idx, batch_first))
    new = torch.randn(part.shape, device=device).to(dtype)
    y = lt.ScatterTokens.apply(h, new, idx, batch_first)
    assert torch.equal(y, ref_scatter(h, new, idx, batch_first))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_first", [True, False])
def test_wrapped_layer_gradients_match_the_dense_oracle(device, batch_first):
    """Gather -> layer -> scatter: dL/dh is g on dropped rows and the layer's vjp on kept rows
    (upstream-semantics.md §1.4), the gradient torch gives ``index_copy(h, idx, layer(h[idx]))``."""
    B, S, C, r = 2, 30, 16, 11
    layer = nn.Linear(C, C).to(device)
    idx = lt.gpt_sample_tokens(r, S, B, 1, device)[0][0]
    shape = (B, S, C) if batch_first else (S, B, C)
    h = torch.randn(shape, device=device, requires_grad=True)
    g = torch.randn(shape, device=device)
    passthrough, part = lt.GatherTokens.apply(h, idx, batch_first)
    y = lt.ScatterTokens.apply(passthrough, layer(part), idx, batch_first)
    y.backward(g)
    ours_h, ours_w = h.grad.clone(), layer.weight.grad.clone()
    h.grad, layer.weight.grad = None, None
    y_ref = ref_scatter(h, layer(ref_gather(h, idx, batch_first)), idx, batch_first)
    y_ref.backward(g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(ours_h, h.grad)
    torch.testing.assert_close(ours_w, layer.weight.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_on_exact_values(device):
    """gradcheck of gather, and of gather -> layer -> scatter (the wrapper's graph). Both are
    copies and an affine layer, so finite differences are exact on values and a step that
    float32 represents exactly (multiples of 1/8, step 1/16, weights 1/2 and 2): the check has
    no rounding slack to hide in, in float32 (CUDA's dtypes). ScatterTokens alone is not
    checked: by upstream's rule it passes all of y's gradient to ``all_activations`` and relies
    on GatherTokens' backward to overwrite the kept rows, so only the composition is exact."""
    B, S, C, r = 2, 9, 3, 4
    idx = lt.gpt_sample_tokens(r, S, B, 1, device)[0][0]
    h = (torch.randint(-16, 16, (B, S, C), device=device) / 8).requires_grad_()
    bias = (torch.randint(-16, 16, (B, r, C), device=device) / 8).requires_grad_()

    def wrapped(x, b):
        passthrough, part = lt.GatherTokens.apply(x, idx, True)
        return lt.ScatterTokens.apply(passthrough, part * 0.5 + b * 2, idx, True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gradcheck warns about float32 inputs
        assert torch.autograd.gradcheck(
            lambda x: lt.GatherTokens.apply(x, idx, True)[1], (h,), eps=1 / 16, atol=0, rtol=0
        )
        assert torch.autograd.gradcheck(wrapped, (h, bias), eps=1 / 16, atol=0, rtol=0)


def test_gradcheck_float64_cpu():
    """gradcheck in float64 (CPU) with torch's default tolerances: gather, gather -> layer ->
    scatter, both hidden orders."""
    B, S, C, r = 2, 9, 3, 4
    idx = lt.gpt_sample_tokens(r, S, B, 1)[0][0]
    for batch_first in (True, False):
        shape = (B, S, C) if batch_first else (S, B, C)
        h = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        w = torch.randn(C, C, dtype=torch.float64, requires_grad=True)

        def wrapped(x, w, bf=batch_first):
            passthrough, part = lt.GatherTokens.apply(x, idx, bf)
            return lt.ScatterTokens.apply(passthrough, torch.tanh(part @ w), idx, bf)

        gathered = lt.GatherTokens.apply(h, idx, batch_first)[1]
        assert gathered.dtype == torch.float64
        assert torch.equal(gathered, ref_gather(h, idx, batch_first))
        gather = lambda x, bf=batch_first: lt.GatherTokens.apply(x, idx, bf)[1]  # noqa: E731
        assert torch.autograd.gradcheck(gather, (h,), atol=1e-8, rtol=1e-6)
        assert torch.autograd.gradcheck(wrapped, (h, w), atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_arguments_raise_value_error(device):
    idx = lt.gpt_sample_tokens(4, 8, 2, 1, device)[0][0]
    with pytest.raises(ValueError, match="int32"):
        lt.GatherTokens.apply(torch.zeros(2, 8, 4, dtype=torch.int32, device=device), idx, True)
    if device == "cuda":
        with pytest.raises(ValueError, match="float64 runs on the CPU"):
            lt.GatherTokens.apply(torch.zeros(2, 8, 4, dtype=torch.float64, device=device), idx, True)
    with pytest.raises(ValueError, match="shape"):
        lt.GatherTokens.apply(torch.zeros(2, 8, device=device), idx, True)
    with pytest.raises(ValueError, match="batch"):
        lt.GatherTokens.apply(torch.zeros(3, 8, 4, device=device), idx, True)
    with pytest.raises(ValueError, match="dtype"):
        lt.ScatterTokens.apply(torch.zeros(2, 8, 4, device=device), torch.zeros(2, 4, 4, dtype=torch.float16, device=device), idx, True)
    with pytest.raises(ValueError):
        lt.gpt_sample_tokens(9, 8, 2, 1, device)  # r > S


def test_unsorted_indices_raise_value_error_on_the_cpu():
    idx = torch.tensor([[3, 1]], dtype=torch.int32)
    with pytest.raises(ValueError):
        lt.ScatterTokens.apply(torch.zeros(1, 5, 2), torch.zeros(1, 2, 2), idx, True)


# DeepSpeed (later revision, tests/unit/runtime/...): the schedule never rounds below its minimum.
@pytest.mark.parametrize("min_value,seq_per_step,expected", [(8, 16, 16), (10, 8, 16), (16, 8, 16)])
def test_random_ltd_respects_minimum_sequence_length(min_value, seq_per_step, expected):
    config = ltd_section(min_value=min_value, seq_per_step=seq_per_step, layer_num=4, ids=[1, 2])
    config["global_batch_size"] = 2
    scheduler = lt.RandomLTDScheduler(config)
    scheduler.update_seq(0)
    assert scheduler.get_current_seq() == expected
    assert scheduler.state["consumed_layer_tokens"] == 2 * (2 * expected + 2 * 64)
    values = []
    for step in range(101):
        scheduler.update_seq(step)
        values.append(scheduler.get_current_seq())
    assert min(values) >= min_value and all(v % seq_per_step == 0 for v in values) and values[-1] == 64


def ltd_section(min_value=8, seq_per_step=16, layer_num=4, ids=(1, 2), model_type="decoder", order="batch_seq_dim", mask=None):
    return {
        "enabled": True,
        "total_layer_num": layer_num,
        "random_ltd_layer_num": len(ids),
        "random_ltd_layer_id": list(ids),
        "model_mask_name": mask,
        "model_type": model_type,
        "hidden_state_order": order,
        "random_ltd_schedule": {
            "min_value": min_value,
            "max_value": 64,
            "schedule_type": "fixed_linear",
            "schedule_config": {"require_steps": 100, "seq_per_step": seq_per_step},
        },
    }


class Recorder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.linear = nn.Linear(c, c)
        self.lengths = []

    def forward(self, x, **kwargs):
        self.lengths.append(x.shape[1])
        return self.linear(x)


class Stack(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.layers = nn.ModuleList(Recorder(c) for _ in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# DeepSpeed (later revision): test_random_ltd_minimum_in_training_loop, on a sequence of 64
# on every device (upstream runs 64 on CUDA only: its CPU run only saw the r == S passthrough).
@pytest.mark.parametrize("device", DEVICES)
def test_random_ltd_minimum_in_training_loop(device):
    ds_config = {
        "train_batch_size": 2,
        "train_micro_batch_size_per_gpu": 2,
        "data_efficiency": {"enabled": True, "data_routing": {"enabled": True, "random_ltd": ltd_section()}},
    }
    model, scheduler = lt.convert_to_random_ltd(Stack(4, 4), Recorder, ds_config)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(3):
        scheduler.update_seq(step)
        assert scheduler.get_current_seq() == 16
        x = torch.randn(2, 64, 4, device=device)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    inner = [m.random_ltd_layer if isinstance(m, lt.RandomLayerTokenDrop) else m for m in model.layers]
    seen = [n for layer in inner for n in layer.lengths]
    assert seen.count(16) == 6 and seen.count(64) == 6
    assert [layer.lengths for layer in inner][1:3] == [[16, 16, 16], [16, 16, 16]]
    assert scheduler.state["consumed_layer_tokens"] == 3 * 2 * (2 * 16 + 2 * 64)
    keys = lt.save_without_random_ltd(model).keys()
    assert "layers.1.linear.weight" in keys and not any("random_ltd_layer" in k for k in keys)


@pytest.mark.parametrize("device", DEVICES)
def test_encoder_wrapper_passes_each_layer_its_mask(device):
    B, S, C = 2, 32, 8

    class MaskedLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(C, C)
            self.masks = []

        def forward(self, x, attention_mask=None):
            self.masks.append(attention_mask)
            return (self.linear(x), x.shape[0])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(MaskedLayer() for _ in range(3))

        def forward(self, x, mask):
            for b in self.blocks:
                x = b(x, attention_mask=mask)[0]
            return x

    cfg = ltd_section(model_type="encoder", order="seq_batch_dim", mask="attention_mask", ids=[0, 2], layer_num=3)
    cfg["global_batch_size"] = B
    net, scheduler = lt.convert_to_random_ltd(Net(), MaskedLayer, cfg)
    net = net.to(device).train()
    scheduler.update_seq(0)
    mask = torch.randn(B, 1, S, S, device=device)
    y = net(torch.randn(S, B, C, device=device), mask)
    assert y.shape == (S, B, C)
    idx = scheduler.state["sample_idx"]
    inner = [b.random_ltd_layer if isinstance(b, lt.RandomLayerTokenDrop) else b for b in net.blocks]
    assert inner[1].masks[0] is mask
    for layer, compact in ((inner[0], 0), (inner[2], 1)):
        m = layer.masks[0]
        assert m.shape == (B, 1, 16, 16)
        sel = idx[compact][1].long()
        assert torch.equal(m[1, 0], mask[1, 0][sel][:, sel])
    net.eval()
    assert net(torch.randn(S, B, C, device=device), mask).shape == (S, B, C)
    assert inner[0].masks[-1] is mask  # eval: no dropping
