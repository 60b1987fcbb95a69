"""Length-grouped training batches in shuffled order.

transformers' `LengthGroupedSampler` cuts a random permutation into mega-batches of up to 50 batches and
sorts each one by length, longest first. Padding shrinks, but the batches then arrive in descending
length: every 50 steps training slides from full sentences down to one-word phrases, and an evaluation
on a mega-batch boundary always sees a model that has just trained on the shortest texts. Here the same
batches are kept (same padding, same speed) and only their order is shuffled; the longest batch stays
first, so memory runs out at once or not at all, and a short last batch stays last, so the data loader's
cuts still fall on batch boundaries.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


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
