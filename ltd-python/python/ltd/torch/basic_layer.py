"""The Random-LTD layer wrapper (``deepspeed.runtime.data_pipeline.data_routing.basic_layer``),
its scheduler (``...data_routing.scheduler.RandomLTDScheduler``) and the conversion helpers,
driven by DeepSpeed's ``random_ltd`` config dict (upstream-semantics.md §1.7 to §1.10).

Without DeepSpeed's engine, the training loop does the engine's two jobs: build the wrappers
with :func:`convert_to_random_ltd` (which matches layers by exact index, not upstream's
substring match) and call ``scheduler.update_seq(global_step)`` before each forward.
"""

import json

import torch
from torch import nn

from ._native import native
from .dropping_utils import GatherTokens, ScatterTokens, bert_sample_tokens, gpt_sample_tokens

RANDOM_LTD_SAMPLE_INDEX = "sample_idx"
RANDOM_LTD_ATTENTION_MASK = "attention_mask"


def _random_ltd_section(config):
    """The ``random_ltd`` section and the global batch size of a whole DeepSpeed config or of
    the section itself."""
    if "data_efficiency" in config:
        section = config["data_efficiency"].get("data_routing", {}).get("random_ltd", {})
        section = dict(section)
        if "train_batch_size" in config:
            section["global_batch_size"] = config["train_batch_size"]
        if "train_micro_batch_size_per_gpu" in config:
            section["micro_batch_size"] = config["train_micro_batch_size_per_gpu"]
        return section
    return dict(config)


class RandomLTDScheduler:
    """The reserved length ``r`` per step and the consumed layer-tokens, from the config.

    ``config`` is a whole DeepSpeed config dict or its ``random_ltd`` section (with
    ``global_batch_size``, as the engine injects it). ``state`` holds upstream's keys, including
    the step's ``sample_idx`` and ``attention_mask`` shared by the wrapped layers.
    """

    def __init__(self, config):
        section = _random_ltd_section(config)
        section.setdefault("enabled", True)
        self.config = section
        self._native = native.Scheduler(json.dumps(section))
        self.model_layer_num, self.random_ltd_layer_num = self._native.layer_counts()
        self.global_batch_size = section.get("global_batch_size")
        self.state = {}
        self._sync()

    def _sync(self):
        self.state.update(json.loads(self._native.state_dict()))

    def get_current_seq(self):
        """The current reserved length ``r``."""
        return self._native.current_value()

    def update_seq(self, global_steps):
        """Advances the schedule to ``global_steps`` (the engine calls this on every forward)."""
        value = self._native.update_seq(global_steps)
        self._sync()
        return value

    def get_random_ltd_layer_num(self):
        return self.random_ltd_layer_num

    def get_state(self):
        return self.state

    def state_dict(self):
        """Upstream's five persistent keys."""
        return json.loads(self._native.state_dict())

    def load_state_dict(self, state_dict):
        self._native.load_state_dict(json.dumps({k: int(v) for k, v in state_dict.items()}))
        self._sync()


class RandomLayerTokenDrop(nn.Module):
    """Wraps one transformer layer: in training, with ``r < S``, the layer runs on ``r`` random
    tokens of each sequence and its output is written back; the other tokens pass through.

    Call :meth:`init_config` (or :func:`convert_to_random_ltd`) before training; without a
    scheduler the wrapper is a passthrough. Only the hidden states may be positional; the
    layer's other arguments are keywords (the mask under ``model_mask_name``).
    """

    def __init__(self, layer):
        super().__init__()
        self.random_ltd_layer = layer
        self.reserved_length = -1
        self.random_ltd_scheduler = None
        self.max_length = None
        self.curr_seq = -1
        self.batch_first = False

    def init_config(self, config, scheduler, random_ltd_layer_id):
        """Attaches ``scheduler`` with this layer's compact LTD id (0 samples for all layers)."""
        config = _random_ltd_section(config)
        self.random_ltd_scheduler = scheduler
        self.random_ltd_layer_id = random_ltd_layer_id
        self.max_length = scheduler.state["max_value"]
        self.mask_name = config["model_mask_name"]
        self.micro_bs = config.get("micro_batch_size")
        self.random_ltd_num_layer = scheduler.random_ltd_layer_num
        hs_order = config["hidden_state_order"]
        self.model_type = config["model_type"]
        if hs_order == "batch_seq_dim":
            self.get_hidden_tensor_shape = self.get_bsh
            self.batch_first = True
        elif hs_order == "seq_batch_dim":
            self.get_hidden_tensor_shape = self.get_sbh
            self.batch_first = False
        else:
            raise NotImplementedError(f"hidden_state_order {hs_order!r}; expected 'batch_seq_dim' or 'seq_batch_dim'")
        if self.model_type == "encoder":
            self.index_generator = bert_sample_tokens
        elif self.model_type == "decoder":
            self.index_generator = gpt_sample_tokens
        else:
            raise NotImplementedError(f"model_type {self.model_type!r}; expected 'encoder' or 'decoder'")

    def get_bsh(self, hidden_stats_shape):
        self.curr_seq, self.curr_micro_batch = hidden_stats_shape[1], hidden_stats_shape[0]

    def get_sbh(self, hidden_stats_shape):
        self.curr_seq, self.curr_micro_batch = hidden_stats_shape[0], hidden_stats_shape[1]

    def forward(self, hidden_states, **kwargs):
        if self.random_ltd_scheduler is not None:
            self.reserved_length = self.random_ltd_scheduler.get_current_seq()
            self.get_hidden_tensor_shape(hidden_states.size())
        if not (self.training and self.random_ltd_scheduler is not None and self.reserved_length < self.curr_seq):
            return self.random_ltd_layer(hidden_states, **kwargs)
        mask = kwargs[self.mask_name] if self.mask_name is not None else None
        state = self.random_ltd_scheduler.state
        if self.random_ltd_layer_id == 0:
            sampled_indices, part_attention_mask = self.index_generator(
                self.reserved_length, self.curr_seq, self.curr_micro_batch,
                self.random_ltd_num_layer, hidden_states.device, mask,
            )
            state[RANDOM_LTD_SAMPLE_INDEX] = sampled_indices
            state[RANDOM_LTD_ATTENTION_MASK] = part_attention_mask
        else:
            sampled_indices = state[RANDOM_LTD_SAMPLE_INDEX]
            part_attention_mask = state[RANDOM_LTD_ATTENTION_MASK]
        idx = sampled_indices[self.random_ltd_layer_id, :, :]
        hidden_states, part_hidden_states = GatherTokens.apply(hidden_states, idx, self.batch_first)
        if self.mask_name is not None:
            if self.model_type == "encoder":
                kwargs[self.mask_name] = part_attention_mask[self.random_ltd_layer_id]
            else:
                kwargs[self.mask_name] = part_attention_mask
        outputs = self.random_ltd_layer(part_hidden_states, **kwargs)
        if isinstance(outputs, tuple):
            items = list(outputs)
            items[0] = ScatterTokens.apply(hidden_states, outputs[0], idx, self.batch_first)
            return tuple(items)
        if isinstance(outputs, torch.Tensor):
            return ScatterTokens.apply(hidden_states, outputs, idx, self.batch_first)
        raise NotImplementedError(f"the wrapped layer returned {type(outputs).__name__}; expected a tensor or a tuple")


def convert_to_random_ltd(model, convert_type, config):
    """Wraps every submodule of type ``convert_type`` in :class:`RandomLayerTokenDrop` and
    attaches a :class:`RandomLTDScheduler` of ``config`` to the ``random_ltd_layer_id`` ones.

    The n-th wrapped module (in ``model.named_modules()`` order) is model layer n; the selected
    layers get compact ids 0.. in ascending order. Returns ``(model, scheduler)``.
    """
    scheduler = RandomLTDScheduler(config)
    section = _random_ltd_section(config)
    targets = []
    for name, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, convert_type):
                wrapper = RandomLayerTokenDrop(sub)
                setattr(child, attr, wrapper)
                targets.append(wrapper)
    ids = scheduler._native.layer_ids()
    if len(ids) != scheduler.random_ltd_layer_num or any(i >= len(targets) for i in ids):
        raise ValueError(
            f"random_ltd_layer_id {ids}: expected {scheduler.random_ltd_layer_num} indices below the {len(targets)} layers of type {convert_type.__name__}"
        )
    for compact, layer_index in enumerate(ids):
        targets[layer_index].init_config(section, scheduler, compact)
    return model, scheduler


def remove_random_ltd_state_dict(state_dict):
    """Drops the ``.random_ltd_layer`` segment from every key (upstream's helper)."""
    return {key.replace(".random_ltd_layer", ""): value for key, value in state_dict.items()}


def save_without_random_ltd(model):
    """The model's state dict with the wrappers' key segment removed."""
    return remove_random_ltd_state_dict(model.state_dict())
