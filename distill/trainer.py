"""Distillation as a thin layer over transformers.Trainer: a collator and a compute_loss with KD terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill.config import LossSettings
from distill.losses import attention_mse, hidden_mse, kd_loss
from pipelines.evaluation import MODEL_INPUTS, PaddingCollator
from pipelines.sampling import LengthGroupedTrainer

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


class DistillTrainer(LengthGroupedTrainer):
    """Trainer whose training loss is soft KL + hard CE (+ hidden-state and attention MSE).

    Evaluation uses the plain cross-entropy of the student. The soft and hard parts are logged apart.
    Hidden-state projections (student width -> teacher width) live in `model.distill_projections`.
    """

    def __init__(self, *args, loss_settings: LossSettings, teacher=None, layer_pairs: LayerPairs | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_settings = loss_settings
        self.teacher = teacher
        self.layer_pairs = layer_pairs or LayerPairs()
        self._parts: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels", None)
        cached = inputs.pop("teacher_logits", None)
        teacher_inputs = {k[len(TEACHER_PREFIX):]: inputs.pop(k) for k in list(inputs) if k.startswith(TEACHER_PREFIX)}
        if not model.training:
            outputs = model(**inputs, labels=labels)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        settings = self.loss_settings
        want_hidden = settings.hidden_weight > 0 and self.layer_pairs.student
        want_attention = settings.attention_weight > 0 and self.layer_pairs.student
        outputs = model(**inputs, output_hidden_states=bool(want_hidden), output_attentions=bool(want_attention))
        teacher_out = None
        if cached is None or want_hidden or want_attention:
            if self.teacher is None:
                raise RuntimeError("online distillation needs a teacher model")
            with torch.no_grad():
                teacher_out = self.teacher(**(teacher_inputs or inputs), output_hidden_states=bool(want_hidden),
                                           output_attentions=bool(want_attention))
        teacher_logits = cached if cached is not None else teacher_out.logits
        total, soft, hard = kd_loss(outputs.logits, teacher_logits, labels, settings.temperature, settings.soft_weight)
        parts = {"loss_soft": soft, "loss_hard": hard}
        mask = inputs["attention_mask"]
        if want_hidden:
            projections = getattr(model, "distill_projections", None)
            hidden = sum(
                hidden_mse(outputs.hidden_states[s], teacher_out.hidden_states[t], mask,
                           projections[i] if projections is not None else None)
                for i, (s, t) in enumerate(zip(self.layer_pairs.student, self.layer_pairs.teacher, strict=True))
            ) / len(self.layer_pairs.student)
            total = total + settings.hidden_weight * hidden
            parts["loss_hidden"] = hidden
        if want_attention:
            attention = sum(
                attention_mse(outputs.attentions[s - 1], teacher_out.attentions[t - 1], mask)
                for s, t in zip(self.layer_pairs.student, self.layer_pairs.teacher, strict=True) if s > 0 and t > 0
            ) / len(self.layer_pairs.student)
            total = total + settings.attention_weight * attention
            parts["loss_attention"] = attention
        for name, value in parts.items():
            self._parts.setdefault(name, []).append(float(value.detach()))
        return (total, outputs) if return_outputs else total

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._parts:
            logs.update({name: round(sum(v) / len(v), 6) for name, v in self._parts.items()})
            self._parts = {}
        super().log(logs, *args, **kwargs)
