"""The distillation objective, plugged into the project's Trainer as its loss term: soft KL + gold-label
cross-entropy (+ hidden-state and attention-map MSE), and the collator that brings the teacher's targets."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill.architecture import evenly_spaced, num_layers
from distill.config import LossSettings
from distill.losses import attention_mse, hidden_mse, kd_loss
from pipelines.inference import MODEL_INPUTS
from pipelines.training.trainer import PaddingCollator

TEACHER_PREFIX = "teacher_"


@dataclass
class DistillCollator:
    """Pads student inputs; carries cached teacher logits, and teacher inputs when tokenizers differ."""

    tokenizer: object
    teacher_tokenizer: object | None = None

    def __call__(self, features: list[dict]) -> dict:
        batch = PaddingCollator(self.tokenizer)(features)
        if "teacher_logits" in features[0]:
            batch["teacher_logits"] = torch.tensor([f["teacher_logits"] for f in features], dtype=torch.float32)
        if self.teacher_tokenizer is not None and TEACHER_PREFIX + "input_ids" in features[0]:
            teacher = [{k: f[TEACHER_PREFIX + k] for k in MODEL_INPUTS if TEACHER_PREFIX + k in f} for f in features]
            padded = self.teacher_tokenizer.pad(teacher, padding=True, return_tensors="pt")
            batch.update({TEACHER_PREFIX + k: v for k, v in padded.items()})
        return batch


@dataclass
class LayerPairs:
    """Which student hidden state (index into hidden_states) is matched to which teacher one."""

    student: list[int] = field(default_factory=list)
    teacher: list[int] = field(default_factory=list)


def layer_pairs(student, teacher, layer_map: list[int] | None) -> LayerPairs:
    """Student hidden_states index -> teacher hidden_states index (0 = embeddings, i + 1 = after layer i)."""
    student_layers = num_layers(student.config)
    teacher_targets = layer_map or evenly_spaced(num_layers(teacher.config), student_layers)
    return LayerPairs(student=list(range(1, student_layers + 1)), teacher=[t + 1 for t in teacher_targets])


def attach_projections(student, teacher, pairs: LayerPairs, kept_channels=None) -> None:
    """Learned linear maps from the student's width to the teacher's, where they differ (hidden-state loss).

    For a width-pruned student they start by putting each kept channel back in its teacher position.
    """
    d_s, d_t = student.config.hidden_size, teacher.config.hidden_size
    if d_s == d_t:
        return
    student.distill_projections = torch.nn.ModuleList(torch.nn.Linear(d_s, d_t) for _ in pairs.student)
    if kept_channels is not None:
        with torch.no_grad():
            for projection in student.distill_projections:
                projection.weight.zero_()
                projection.bias.zero_()
                projection.weight[kept_channels, torch.arange(d_s)] = 1.0


@dataclass
class DistillationLoss:
    """The training loss of one batch: soft KL + hard CE (+ hidden-state and attention MSE), with its parts.

    The teacher runs on the batch (online) when there are no cached logits or when the hidden-state or
    attention losses need its hidden states. Hidden-state projections (student width -> teacher width) live
    in `model.distill_projections`.
    """

    settings: LossSettings
    label_smoothing: float = 0.0
    teacher: object | None = None
    pairs: LayerPairs = field(default_factory=LayerPairs)

    def __call__(self, model, inputs: dict):
        labels = inputs.pop("labels", None)
        cached = inputs.pop("teacher_logits", None)
        teacher_inputs = {k[len(TEACHER_PREFIX):]: inputs.pop(k) for k in list(inputs) if k.startswith(TEACHER_PREFIX)}
        settings = self.settings
        want_hidden = settings.hidden_weight > 0 and bool(self.pairs.student)
        want_attention = settings.attention_weight > 0 and bool(self.pairs.student)
        outputs = model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attention)
        teacher_out = None
        if cached is None or want_hidden or want_attention:
            if self.teacher is None:
                raise RuntimeError("online distillation needs a teacher model")
            with torch.no_grad():
                teacher_out = self.teacher(**(teacher_inputs or inputs), output_hidden_states=want_hidden,
                                           output_attentions=want_attention)
        teacher_logits = cached if cached is not None else teacher_out.logits
        total, soft, hard = kd_loss(outputs.logits, teacher_logits, labels, settings.temperature, settings.soft_weight,
                                    self.label_smoothing)
        parts = {"loss_soft": soft, "loss_hard": hard}
        mask = inputs["attention_mask"]
        if want_hidden:
            projections = getattr(model, "distill_projections", None)
            hidden = sum(
                hidden_mse(outputs.hidden_states[s], teacher_out.hidden_states[t], mask,
                           projections[i] if projections is not None else None)
                for i, (s, t) in enumerate(zip(self.pairs.student, self.pairs.teacher, strict=True))
            ) / len(self.pairs.student)
            total = total + settings.hidden_weight * hidden
            parts["loss_hidden"] = hidden
        if want_attention:
            attention = sum(
                attention_mse(outputs.attentions[s - 1], teacher_out.attentions[t - 1], mask)
                for s, t in zip(self.pairs.student, self.pairs.teacher, strict=True) if s > 0 and t > 0
            ) / len(self.pairs.student)
            total = total + settings.attention_weight * attention
            parts["loss_attention"] = attention
        return total, outputs, parts
