"""Trains a tiny byte-level GPT with ltd.torch: block-sparse causal attention
(``SparseSelfAttention``) and Random-LTD on the middle layers (``convert_to_random_ltd``),
for a few hundred steps; asserts that the loss goes down.

    python examples/train_tiny_gpt.py [--steps 300] [--device cuda]

On CUDA the model computes in bfloat16 autocast (the GPU attention takes float16 / bfloat16
with head dim 64 or 128); on the CPU in float32.
"""

import argparse
import math
import time

import torch
from torch import nn

import ltd.torch as lt

TEXT = (
    "Random layerwise token dropping trains the middle layers of a transformer on a random "
    "subset of the tokens of each sequence, and block-sparse attention computes only the "
    "blocks of the attention matrix that a layout keeps. Together they make training cheaper. "
)


class Block(nn.Module):
    def __init__(self, d_model, heads, sparsity):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        # "mul" mode with a lower-triangular mask: the op's token-level causal flag.
        self.attn = lt.SparseSelfAttention(sparsity, attn_mask_mode="mul")

    def forward(self, x):
        b, length, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        causal = torch.ones(length, length, device=x.device).tril()
        a = self.attn(q, k, v, attn_mask=causal).transpose(1, 2).reshape(b, length, c)
        x = x + self.proj(a.to(x.dtype))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, seq_len, d_model=128, heads=2, layers=4):
        super().__init__()
        self.tok = nn.Embedding(256, d_model)
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
        sparsity = lt.FixedSparsityConfig(num_heads=heads, block=16, num_local_blocks=4, attention="unidirectional")
        self.blocks = nn.ModuleList(Block(d_model, heads, sparsity) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 256)

    def forward(self, ids):
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def batches(data, batch, seq_len, device):
    while True:
        starts = torch.randint(0, len(data) - seq_len - 1, (batch,))
        chunk = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()]).to(device)
        yield chunk[:, :-1], chunk[:, 1:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    data = torch.tensor(list((TEXT * 64).encode()), dtype=torch.long)
    ltd_config = {
        "train_batch_size": args.batch,
        "data_efficiency": {"data_routing": {"random_ltd": {
            "enabled": True,
            "total_layer_num": 4,
            "random_ltd_layer_num": 2,
            "random_ltd_layer_id": [1, 2],
            "model_mask_name": None,
            "model_type": "decoder",
            "hidden_state_order": "batch_seq_dim",
            "random_ltd_schedule": {
                "min_value": args.seq_len // 2,
                "max_value": args.seq_len,
                "schedule_type": "fixed_linear",
                "schedule_config": {"require_steps": max(1, args.steps * 2 // 3), "seq_per_step": 16},
            },
        }}},
    }
    model, scheduler = lt.convert_to_random_ltd(TinyGPT(args.seq_len), Block, ltd_config)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    losses, start = [], time.time()
    for step, (x, y) in zip(range(args.steps), batches(data, args.batch, args.seq_len, device)):
        scheduler.update_seq(step)
        with autocast:
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  reserved length {scheduler.get_current_seq()}  {time.time() - start:.1f}s", flush=True)
    window = max(1, min(20, len(losses) // 4))
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"loss: first {window} steps {first:.4f}, last {window} steps {last:.4f} (uniform: {math.log(256):.4f})")
    assert all(math.isfinite(x) for x in losses), "the loss is not finite"
    assert last < 0.7 * first, f"the loss did not go down enough: {first:.4f} -> {last:.4f}"
    print("OK: the loss went down")


if __name__ == "__main__":
    main()
