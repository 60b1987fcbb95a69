"""Length-grouped batches in shuffled order: same batches as transformers' sampler, not in sorted order."""

from __future__ import annotations

import random

import datasets
import torch
from torch.utils.data import RandomSampler
from transformers import AutoModelForSequenceClassification, TrainingArguments
from transformers.trainer_pt_utils import get_length_grouped_indices

from pipelines.training.sampling import ShuffledLengthGroupedSampler, shuffled_length_grouped_indices
from pipelines.training.trainer import StageTrainer


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 120) for _ in range(n)]


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def test_same_batches_as_transformers_in_another_order():
    lengths, batch_size = _lengths(1003), 8  # 1003 = 125 full batches + a short one
    ours = shuffled_length_grouped_indices(lengths, batch_size, torch.Generator().manual_seed(3))
    theirs = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(3))
    assert sorted(ours) == list(range(len(lengths)))
    ours_batches, their_batches = _batches(ours, batch_size), _batches(theirs, batch_size)
    assert sorted(map(sorted, ours_batches)) == sorted(map(sorted, their_batches))
    assert ours_batches[0] == their_batches[0] and max(lengths[i] for i in ours_batches[0]) == max(lengths)
    assert len(ours_batches[-1]) == 3 and ours_batches[-1] == their_batches[-1]
    assert ours_batches != their_batches


def test_batch_lengths_do_not_slide_from_long_to_short():
    lengths, batch_size = _lengths(4000, seed=1), 16
    order = shuffled_length_grouped_indices(lengths, batch_size, torch.Generator().manual_seed(0))
    theirs = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(0))

    def share_of_steps_down(indices: list[int]) -> float:
        longest = [max(lengths[i] for i in batch) for batch in _batches(indices, batch_size)]
        return sum(b < a for a, b in zip(longest, longest[1:], strict=False)) / (len(longest) - 1)

    assert share_of_steps_down(theirs) > 0.8  # descending inside every mega-batch of 50 batches
    assert 0.3 < share_of_steps_down(order) < 0.7
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in _batches(order, batch_size))
    assert padded < 1.15 * sum(lengths)  # still tightly grouped


def test_trainer_uses_shuffled_groups_only_when_grouping(tiny_bert, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    data = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in _lengths(64)], "length": _lengths(64),
                                       "labels": [0, 1] * 32})
    for strategy, expected in (("group_by_length", ShuffledLengthGroupedSampler), ("random", RandomSampler)):
        args = TrainingArguments(output_dir=str(tmp_path / strategy), train_sampling_strategy=strategy,
                                 length_column_name="length", use_cpu=True, report_to=[])
        trainer = StageTrainer(model=model, args=args, train_dataset=data)
        sampler = trainer._get_train_sampler()
        assert isinstance(sampler, expected)
        if strategy == "group_by_length":  # read once, not a lazy column indexed row by row in every epoch's sort
            assert type(sampler.lengths) is list and sampler.lengths == data["length"][:]
