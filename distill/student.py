"""Students: keep k of the teacher's layers, a smaller pretrained model, or a fresh narrow config."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from distill.architecture import (
    LAYER_KEY,
    check_layer_count,
    evenly_spaced,
    group_tops,
    head_width,
    narrow_config,
    num_layers,
)
from distill.config import StudentSettings
from distill.influence import block_influence, most_influential
from distill.pruning import pruned_student, supports_width_pruning
from pipelines.data import TEXT, TEXT_PAIR
from pipelines.errors import UserError
from pipelines.models import load_classifier, load_tokenizer, resolve_model

log = logging.getLogger(__name__)


@dataclass
class Student:
    model: object
    tokenizer: object
    layer_map: list[int] | None = None  # teacher layers the student's blocks come from
    kept_channels: object = None  # teacher hidden channels a width-pruned student kept


def calibration_batches(rows, tokenizer, max_length: int, has_pair: bool, seed: int, size: int = 512,
                        batch_size: int = 64) -> list[dict]:
    """A seeded sample of training rows, tokenized for the teacher, in batches of similar length."""
    sample = rows.shuffle(seed=seed).select(range(min(size, len(rows))))
    texts = list(sample[TEXT])
    pairs = list(sample[TEXT_PAIR]) if has_pair else None
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batches.append(dict(tokenizer([texts[i] for i in chunk], [pairs[i] for i in chunk] if pairs else None,
                                      padding=True, truncation=True, max_length=max_length, return_tensors="pt")))
    return batches


def student_layer_map(settings: StudentSettings, teacher, calibration: Callable[[], list[dict]],
                      decoder: bool) -> tuple[list[int], list[float] | None]:
    """The teacher layers a student of settings.layers keeps (settings.layer_map when given), and the block
    influence of every teacher layer when it chose them; `calibration` gives the teacher's input batches."""
    if settings.layer_map:
        return list(settings.layer_map), None
    total = num_layers(teacher.config)
    check_layer_count(total, settings.layers)
    how = settings.choose_layers if settings.choose_layers != "auto" else ("influence" if decoder else "groups")
    if how == "groups":
        return group_tops(total, settings.layers), None
    influence = block_influence(teacher, calibration())
    layer_map = most_influential(influence, settings.layers)
    log.info("student layers by block influence: %s (influence per teacher layer: %s)", layer_map,
             ", ".join(f"{x:.3f}" for x in influence))
    return layer_map, influence


def build_student(settings: StudentSettings, teacher, teacher_tokenizer, label_names: list[str], data,
                  seed: int) -> Student:
    """The configured kind of student; `data` (prepared train/eval splits) calibrates width pruning."""
    kind = settings.kind()
    if kind == "layers":
        layer_map, _ = student_layer_map(
            settings, teacher, lambda: calibration_batches(data.train, teacher_tokenizer, settings.max_length,
                                                           data.has_pair, seed), decoder=False)
        return Student(student_from_teacher_layers(teacher, layer_map), teacher_tokenizer, layer_map)
    if kind == "fresh":
        width = settings.hidden_size
        intermediate = settings.intermediate_size or 4 * width
        heads = settings.num_attention_heads or max(1, width // head_width(teacher.config))
        if settings.init == "prune" and not supports_width_pruning(teacher):
            log.warning("width pruning knows BERT-style encoders only: the %s student starts from PCA-reduced "
                        "embeddings and random blocks (student.init: pca)", teacher.config.model_type)
        elif settings.init == "prune":
            layer_map = evenly_spaced(num_layers(teacher.config), settings.num_hidden_layers)
            batches = calibration_batches(data.train, teacher_tokenizer, settings.max_length, data.has_pair, seed)
            model, channels = pruned_student(teacher, width, heads, intermediate, layer_map, batches)
            return Student(model, teacher_tokenizer, layer_map, channels)
        return Student(fresh_student(teacher, width, settings.num_hidden_layers, heads, intermediate),
                       teacher_tokenizer)
    source = resolve_model(settings.model)
    tokenizer = load_tokenizer(source)
    return Student(load_classifier(source, label_names, tokenizer), tokenizer)


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
        match = LAYER_KEY.match(key)
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
