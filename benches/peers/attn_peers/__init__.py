"""Peers of the GPU sparse-attention bench (dense SDPA, FlexAttention, FlashAttention-4), each
at its best configuration, timed on the layouts `gpu_sparse_attn` exported in the same run.

`benches/peers/sparse_attn_peer.py` is the entry point; `benches/peers/README.md` says what each
peer runs.
"""
