"""The project's one Trainer, and the single place where a stage plugs into it.

`build_trainer` is the seam: a stage hands it the model, the datasets and what it adds to plain training,
each in one slot:

- `loss_term`: replaces the model's own loss while training (distillation's KD loss). It returns the total
  and named parts, which are averaged and logged beside the loss. Evaluation keeps the model's own loss.
- `optimizer`: replaces the Trainer's AdamW (LoRA+'s per-matrix learning rates).
- `callbacks`: transformers TrainerCallbacks (progress hooks, tests).
- the settings' `fast_dropout` swaps the model's CPU dropout before training; `label_smoothing`, `bf16`
  and the schedule go to the TrainingArguments.

Batches are length-grouped in shuffled order (`pipelines.training.sampling`) when `group_by_length` is on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipelines.inference import MODEL_INPUTS
from pipelines.metrics import trainer_metrics
from pipelines.training.dropout import use_fast_dropout
from pipelines.training.sampling import ShuffledLengthGroupedSampler
from pipelines.training.settings import TrainSettings

log = logging.getLogger(__name__)


class LossTerm(Protocol):
    """A training loss: (total, the model's outputs, named parts to log) for one batch of inputs."""

    def __call__(self, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]: ...


@dataclass
class PaddingCollator:
    """Pad model inputs at batch time (dynamic padding); keep `label` as `labels`, drop other columns."""

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        batch = self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of,
                                   return_tensors="pt")
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch


class StageTrainer(Trainer):
    """A Trainer with shuffled length-grouped batches and an optional loss term (see the module docstring)."""

    def __init__(self, *args, loss_term: LossTerm | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_term = loss_term
        self._parts: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_term is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs, parts = self.loss_term(model, inputs)
        for name, value in parts.items():
            self._parts.setdefault(name, []).append(float(value.detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._parts:
            logs.update({name: round(sum(v) / len(v), 6) for name, v in self._parts.items()})
            self._parts = {}
        super().log(logs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            # The Trainer hands over the dataset's length column, a lazy `datasets.Column`: indexing it one row at
            # a time in the sort took 25-35 s per epoch on SST-2's 67k rows. Read it once into a list.
            return ShuffledLengthGroupedSampler(sampler.batch_size, lengths=list(sampler.lengths),
                                                generator=sampler.generator)
        return sampler


def build_trainer(model, args, settings: TrainSettings, train_dataset, eval_dataset, tokenizer, *,
                  compute_metrics=None, collator=None, loss_term: LossTerm | None = None, optimizer=None,
                  callbacks: list | None = None) -> StageTrainer:
    """The Trainer for one stage's training run (see the module docstring for the slots)."""
    if settings.fast_dropout:
        log.info("dropout masks drawn by numpy's SFC64 in %d modules (train.fast_dropout)", use_fast_dropout(model))
    return StageTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if settings.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=collator or PaddingCollator(tokenizer),
        compute_metrics=compute_metrics or trainer_metrics,
        callbacks=callbacks,
        optimizers=(optimizer, None),
        loss_term=loss_term,
    )
