"""Length-grouped training batches in shuffled order, and the Trainer that uses them (and evaluates the
weight average of `pipelines.averaging` when one is kept, and trains with the R-Drop loss of `pipelines.rdrop`
and the sharpness-aware steps of `pipelines.sam` when asked).

transformers' `LengthGroupedSampler` cuts a random permutation into mega-batches of up to 50 batches and
sorts each one by length, longest first. Padding shrinks, but the batches then arrive in descending
length: every 50 steps training slides from full sentences down to one-word phrases, and an evaluation
on a mega-batch boundary always sees a model that has just trained on the shortest texts. Here the same
batches are kept (same padding, same speed) and only their order is shuffled; the longest batch stays
first, so memory runs out at once or not at all, and a short last batch stays last, so the data loader's
cuts still fall on batch boundaries.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from pipelines.averaging import WeightAverage
from pipelines.rdrop import rdrop_step_loss
from pipelines.sam import ascended


def shuffled_length_grouped_indices(lengths: list[int], batch_size: int,
                                    generator: torch.Generator | None = None) -> list[int]:
    """Indices whose consecutive `batch_size` slices hold texts of similar length, slices in random order."""
    order = get_length_grouped_indices(lengths, batch_size, generator=generator)
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) <= 2:
        return order
    last_is_short = len(batches[-1]) < batch_size
    middle = batches[1:-1] if last_is_short else batches[1:]
    shuffled = [middle[i] for i in torch.randperm(len(middle), generator=generator).tolist()]
    tail = [batches[-1]] if last_is_short else []
    return [index for batch in [batches[0], *shuffled, *tail] for index in batch]


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` with its batches in random order (see the module docstring)."""

    def __iter__(self):
        return iter(shuffled_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator))


class LengthGroupedTrainer(Trainer):
    """A Trainer whose `group_by_length` batches come in shuffled order, whose evaluations run on the
    averaged weights when a `WeightAverage` callback is among its callbacks, and whose training loss is
    R-Drop's when `rdrop_alpha` > 0, and whose steps are sharpness-aware when `sam_rho` > 0 (the gradient taken
    again with the weights moved `sam_rho` up the first one, relative to their size when `sam_adaptive`; the loss
    reported is the first)."""

    def __init__(self, *args, rdrop_alpha: float = 0.0, sam_rho: float = 0.0, sam_adaptive: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.rdrop_alpha = rdrop_alpha
        self.sam_rho = sam_rho
        self.sam_adaptive = sam_adaptive
        if rdrop_alpha:
            self.loss_is_scaled_for_ga = False  # a per-batch mean, as the model's own loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (self.rdrop_alpha and model.training and "labels" in inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = rdrop_step_loss(model, inputs, self.rdrop_alpha)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, dict(inputs), num_items_in_batch)
        if self.sam_rho:
            with ascended(model, self.sam_rho, self.sam_adaptive):
                super().training_step(model, dict(inputs), num_items_in_batch)
        return loss

    def evaluate(self, *args, **kwargs):
        average = next((c for c in self.callback_handler.callbacks if isinstance(c, WeightAverage)), None)
        with average.applied(self.model) if average else contextlib.nullcontext():
            return super().evaluate(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            # The Trainer hands over the dataset's length column, a lazy `datasets.Column`: indexing it one row at
            # a time in the sort took 25-35 s per epoch on SST-2's 67k rows. Read it once into a list.
            return ShuffledLengthGroupedSampler(sampler.batch_size, lengths=list(sampler.lengths),
                                                generator=sampler.generator)
        return sampler
