"""Layer maps and configs of students cut from a teacher: which layers to keep, and narrower configs."""

from __future__ import annotations

import copy
import re

from pipelines.errors import UserError

# The transformer-block list in a sequence classifier's state dict, per architecture family:
# bert/roberta "encoder.layer.N.", llama/mistral/qwen "layers.N.", gpt2 "h.N.".
LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?(?:encoder\.layer|layers|h))\.(?P<index>\d+)\.(?P<rest>.*)$")


def check_layer_count(num_teacher_layers: int, k: int) -> None:
    if not 1 <= k <= num_teacher_layers:
        raise UserError(f"a student needs 1 to {num_teacher_layers} layers (the teacher has {num_teacher_layers}); "
                        f"got {k}")


def evenly_spaced(num_teacher_layers: int, k: int) -> list[int]:
    """k layer indices spread over the teacher's, always keeping the first and the last (k=1: the last)."""
    check_layer_count(num_teacher_layers, k)
    if k == 1:
        return [num_teacher_layers - 1]
    return [round(i * (num_teacher_layers - 1) / (k - 1)) for i in range(k)]


def group_tops(num_teacher_layers: int, k: int) -> list[int]:
    """The teacher's layers cut into k consecutive groups, the last layer of each kept (6 -> 3: [1, 3, 5]).

    Each student block then stands for one group and, with the hidden-state loss, learns to give that group's
    output (TinyBERT's uniform map). The default for students kept from the teacher's layers: distilling
    all-MiniLM-L6-v2 on SST-2 (benchmarks/bench_distill.py), 2 layers [2, 5] beat [0, 5] by more than a point;
    3 layers [1, 3, 5] and [0, 2, 5] came within a few sentences of each other.
    """
    check_layer_count(num_teacher_layers, k)
    return [(i + 1) * num_teacher_layers // k - 1 for i in range(k)]


def num_layers(config) -> int:
    return int(config.num_hidden_layers)


def head_width(config) -> int:
    """Width of one attention head."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def narrow_config(teacher, hidden_size: int, num_hidden_layers: int, num_heads: int, intermediate_size: int):
    """The teacher's config, made narrower and shallower."""
    if hidden_size % num_heads:
        raise UserError(f"student hidden size {hidden_size} is not divisible by its {num_heads} attention heads")
    config = copy.deepcopy(teacher.config)
    config.hidden_size = hidden_size
    config.num_hidden_layers = num_hidden_layers
    config.num_attention_heads = num_heads
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = num_heads
    if hasattr(config, "head_dim"):
        config.head_dim = hidden_size // num_heads
    config.intermediate_size = intermediate_size
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:num_hidden_layers]
    return config
