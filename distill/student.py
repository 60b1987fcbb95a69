"""Student construction: keep k of the teacher's layers, or a smaller pretrained model, or a fresh narrow config."""

from __future__ import annotations

import copy
import re

import torch

from pipelines.errors import UserError

# The transformer-block list in a sequence classifier's state dict, per architecture family:
# bert/roberta "encoder.layer.N.", llama/mistral/qwen "layers.N.", gpt2 "h.N.".
_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?(?:encoder\.layer|layers|h))\.(?P<index>\d+)\.(?P<rest>.*)$")


def _check_layer_count(num_teacher_layers: int, k: int) -> None:
    if not 1 <= k <= num_teacher_layers:
        raise UserError(f"a student needs 1 to {num_teacher_layers} layers (the teacher has {num_teacher_layers}); "
                        f"got {k}")


def evenly_spaced(num_teacher_layers: int, k: int) -> list[int]:
    """k layer indices spread over the teacher's, always keeping the first and the last (k=1: the last)."""
    _check_layer_count(num_teacher_layers, k)
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
    _check_layer_count(num_teacher_layers, k)
    return [(i + 1) * num_teacher_layers // k - 1 for i in range(k)]


def num_layers(config) -> int:
    return int(config.num_hidden_layers)


def student_from_teacher_layers(teacher, layer_map: list[int]):
    """A copy of `teacher` keeping only the blocks in layer_map (in that order), with embeddings and head.

    Works for any architecture whose blocks sit in a numbered list (BERT-, Llama- and GPT-2-style).
    """
    total = num_layers(teacher.config)
    bad = [i for i in layer_map if not 0 <= i < total]
    if bad or not layer_map:
        raise UserError(f"layer map {layer_map} is out of range: the teacher has layers 0..{total - 1}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)
    if getattr(config, "layer_types", None):  # per-layer attention types (newer Llama-style configs)
        config.layer_types = [teacher.config.layer_types[i] for i in layer_map]
    student = type(teacher)(config)
    new_index = {old: new for new, old in enumerate(layer_map)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = value.clone()
        elif int(match["index"]) in new_index:
            state[f"{match['prefix']}.{new_index[int(match['index'])]}.{match['rest']}"] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "rotary_emb.inv_freq"))]
    if missing or unexpected:
        raise UserError(f"could not map the teacher's layers onto the student (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}); this architecture's block list is not recognised")
    return student


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


def fresh_student(teacher, hidden_size: int, num_hidden_layers: int, num_heads: int, intermediate_size: int):
    """A new, smaller model of the teacher's architecture (same tokenizer and labels), randomly initialised.

    Its word embeddings start from the teacher's, reduced to hidden_size by PCA, so tokens keep their
    learned neighbourhoods; everything else is trained by distillation.
    """
    student = type(teacher)(narrow_config(teacher, hidden_size, num_hidden_layers, num_heads, intermediate_size))
    init_embeddings_by_pca(teacher, student, hidden_size)
    return student


def init_embeddings_by_pca(teacher, student, width: int) -> None:
    """Start every embedding table of the student (words, positions, token types) from the teacher's,
    projected onto the top `width` principal directions of the teacher's word embeddings."""
    words = teacher.get_input_embeddings().weight.detach().float()
    mean = words.mean(dim=0, keepdim=True)
    _, _, v = torch.pca_lowrank(words - mean, q=min(width, *words.shape), center=False, niter=4)
    projection = v[:, :width]
    student_modules = dict(student.named_modules())
    with torch.no_grad():
        for name, module in teacher.named_modules():
            target = student_modules.get(name)
            if not isinstance(module, torch.nn.Embedding) or not isinstance(target, torch.nn.Embedding):
                continue
            if module.weight.shape[0] != target.weight.shape[0] or target.weight.shape[1] != projection.shape[1]:
                continue
            reduced = (module.weight.float() - mean) @ projection
            scale = module.weight.float().norm(dim=1).mean() / reduced.norm(dim=1).mean().clamp(min=1e-8)
            target.weight.copy_(reduced * scale)
