"""Width pruning: start a narrow student from the teacher's own weights, cut to the student's width.

The most active hidden channels, attention heads and feed-forward neurons of the kept teacher layers are
measured on a sample of training texts and kept, everything else dropped (activation-based importance, as
in Minitron). The student keeps the teacher's head width, so it has hidden_size / head_dim heads.
BERT-style encoders (bert, roberta and relatives: blocks under `encoder.layer.N`) are supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from distill.architecture import head_width, narrow_config
from pipelines.errors import UserError

_BLOCK = re.compile(r"^(?P<prefix>(?:.*\.)?encoder\.layer)\.(?P<index>\d+)\.(?P<rest>.*)$")
# (slice of dim 0, slice of dim 1) per parameter of a BERT-style block: c = hidden channels,
# a = attention rows of the kept heads, n = feed-forward neurons; "-" keeps the dim whole.
_BLOCK_RULES = {
    "attention.self.query.weight": "ac", "attention.self.key.weight": "ac", "attention.self.value.weight": "ac",
    "attention.self.query.bias": "a", "attention.self.key.bias": "a", "attention.self.value.bias": "a",
    "attention.output.dense.weight": "ca", "attention.output.dense.bias": "c",
    "attention.output.LayerNorm.weight": "c", "attention.output.LayerNorm.bias": "c",
    "intermediate.dense.weight": "nc", "intermediate.dense.bias": "n",
    "output.dense.weight": "cn", "output.dense.bias": "c",
    "output.LayerNorm.weight": "c", "output.LayerNorm.bias": "c",
}
_OUTER_RULES = {  # key suffix -> slices, outside the blocks
    "embeddings.word_embeddings.weight": "-c", "embeddings.position_embeddings.weight": "-c",
    "embeddings.token_type_embeddings.weight": "-c",
    "embeddings.LayerNorm.weight": "c", "embeddings.LayerNorm.bias": "c",
    "pooler.dense.weight": "cc", "pooler.dense.bias": "c",
    "classifier.dense.weight": "cc", "classifier.dense.bias": "c",  # roberta's head
    "classifier.out_proj.weight": "-c", "classifier.weight": "-c",
    "classifier.out_proj.bias": "", "classifier.bias": "",
}


@dataclass
class Importance:
    """Mean activation magnitudes on the calibration texts (teacher layer index -> per-head / per-neuron)."""

    channels: torch.Tensor
    heads: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]


def supports_width_pruning(model) -> bool:
    keys = model.state_dict().keys()
    return any(_BLOCK.match(k) and k.endswith("attention.self.query.weight") for k in keys)


def measure_importance(teacher, batches, layer_map: list[int]) -> Importance:
    """Hidden-channel, head and neuron importance of the teacher's layers in layer_map, over real tokens.

    batches: tokenized teacher inputs (dicts of tensors with an attention_mask).
    """
    config = teacher.config
    head_dim = head_width(config)
    modules = dict(teacher.named_modules())
    prefix = next(m["prefix"] for name in modules if (m := _BLOCK.match(name + ".x")))
    channels = torch.zeros(config.hidden_size)
    heads = {i: torch.zeros(config.num_attention_heads) for i in layer_map}
    neurons = {i: torch.zeros(config.intermediate_size) for i in layer_map}
    state = {"mask": None, "tokens": 0.0}

    def token_mean(values: torch.Tensor) -> torch.Tensor:  # [B, T, ...] -> sum over real tokens
        mask = state["mask"].to(values.dtype).reshape(*state["mask"].shape, *([1] * (values.dim() - 2)))
        return (values * mask).sum(dim=(0, 1))

    def on_context(index):
        def hook(_module, args):
            context = args[0].float()
            per_head = context.reshape(*context.shape[:2], -1, head_dim).norm(dim=-1)
            heads[index] += token_mean(per_head)
        return hook

    def on_intermediate(index):
        def hook(_module, _args, output):
            neurons[index] += token_mean(output.float().abs())
        return hook

    handles = []
    for i in layer_map:
        handles.append(modules[f"{prefix}.{i}.attention.output.dense"].register_forward_pre_hook(on_context(i)))
        handles.append(modules[f"{prefix}.{i}.intermediate"].register_forward_hook(on_intermediate(i)))
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                state["mask"] = batch["attention_mask"]
                state["tokens"] += float(batch["attention_mask"].sum())
                out = teacher(**batch, output_hidden_states=True)
                for hidden in out.hidden_states:
                    channels += token_mean(hidden.float().abs())
    finally:
        for handle in handles:
            handle.remove()
        teacher.train(was_training)
    tokens = max(state["tokens"], 1.0)
    return Importance(channels / tokens, {i: v / tokens for i, v in heads.items()},
                      {i: v / tokens for i, v in neurons.items()})


def top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in their original order."""
    return torch.topk(scores, k).indices.sort().values


def prune_into(teacher, student, layer_map: list[int], importance: Importance) -> torch.Tensor:
    """Fill `student` (a narrower config of the teacher's architecture) with the teacher's most important
    weights: block j of the student is teacher block layer_map[j]. Returns the kept hidden channels."""
    t, s = teacher.config, student.config
    head_dim = head_width(t)
    if s.hidden_size // s.num_attention_heads != head_dim or s.hidden_size % s.num_attention_heads:
        raise UserError(f"a pruned student keeps the teacher's head width {head_dim}: set "
                        f"student.num_attention_heads to {s.hidden_size // head_dim} (hidden size {s.hidden_size})")
    if s.intermediate_size > t.intermediate_size or s.hidden_size > t.hidden_size:
        raise UserError(f"a pruned student cannot be wider than its teacher (hidden {t.hidden_size}, "
                        f"feed-forward {t.intermediate_size})")
    if len(layer_map) != s.num_hidden_layers:
        raise UserError(f"layer map {layer_map} does not match the student's {s.num_hidden_layers} layers")
    channels = top(importance.channels, s.hidden_size)
    new_index = {old: new for new, old in enumerate(layer_map)}
    block_picks = {}  # teacher layer -> its kept attention rows (whole heads) and feed-forward neurons
    for old in layer_map:
        kept_heads = top(importance.heads[old], s.num_attention_heads)
        block_picks[old] = {"c": channels, "a": (kept_heads[:, None] * head_dim + torch.arange(head_dim)).flatten(),
                            "n": top(importance.neurons[old], s.intermediate_size)}
    state = {}
    for key, value in teacher.state_dict().items():
        picks = {"c": channels}
        block = _BLOCK.match(key)
        if block is not None:
            old = int(block["index"])
            if old not in new_index:
                continue
            rule = _BLOCK_RULES.get(block["rest"])
            if rule is None:
                raise UserError(f"width pruning does not know the teacher weight {key}")
            picks = block_picks[old]
            key = f"{block['prefix']}.{new_index[old]}.{block['rest']}"
        else:
            rule = next((r for suffix, r in _OUTER_RULES.items() if key.endswith(suffix)), None)
            if rule is None and value.is_floating_point():
                raise UserError(f"width pruning does not know the teacher weight {key}")
            rule = rule or ""  # integer buffers (position ids) are copied as they are
        for dim, letter in enumerate(rule):
            if letter != "-":
                value = value.index_select(dim, picks[letter])
        state[key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserError(f"width pruning could not fill the student (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    return channels


def pruned_student(teacher, hidden_size: int, num_heads: int, intermediate_size: int, layer_map: list[int],
                   calibration_batches) -> tuple[object, torch.Tensor]:
    """(a narrow student whose blocks are teacher blocks layer_map cut to its width, the kept hidden channels)."""
    config = narrow_config(teacher, hidden_size, len(layer_map), num_heads, intermediate_size)
    student = type(teacher)(config)
    importance = measure_importance(teacher, calibration_batches, layer_map)
    return student, prune_into(teacher, student, layer_map, importance)
