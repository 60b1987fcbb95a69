"""Distillation losses and augmentation by hand."""

from __future__ import annotations

import math

import pytest
import torch

from distill.augment import augment_rows
from distill.config import AugmentSettings
from distill.losses import attention_mse, hard_ce, hidden_mse, kd_loss, soft_kl
from pipelines.errors import UserError

KL_75_25 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([.75, .25] || [.5, .5])


def test_soft_kl_by_hand():
    student = torch.zeros(1, 2)
    assert soft_kl(student, torch.tensor([[math.log(3.0), 0.0]]), 1.0).item() == pytest.approx(KL_75_25, abs=1e-6)
    # at T = 2 the same softened distributions, and the T² factor
    assert soft_kl(student, torch.tensor([[2 * math.log(3.0), 0.0]]), 2.0).item() == pytest.approx(4 * KL_75_25,
                                                                                                     abs=1e-6)
    assert soft_kl(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, -2.0]]), 3.0).item() == pytest.approx(0, abs=1e-7)


def test_hard_and_mixed_losses_by_hand():
    student, teacher = torch.zeros(2, 2), torch.tensor([[math.log(3.0), 0.0]] * 2)
    labels = torch.tensor([0, 1])
    assert hard_ce(student, labels).item() == pytest.approx(math.log(2), abs=1e-6)
    total, soft, hard = kd_loss(student, teacher, labels, 1.0, 0.25)
    assert soft.item() == pytest.approx(KL_75_25, abs=1e-6)
    assert hard.item() == pytest.approx(math.log(2), abs=1e-6)
    assert total.item() == pytest.approx(0.25 * KL_75_25 + 0.75 * math.log(2), abs=1e-6)
    # rows labelled -100 (augmented texts) get no hard loss; none labelled: hard is 0, not NaN
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    _, _, hard = kd_loss(logits, teacher, torch.tensor([-100, 1]), 1.0, 0.5)
    assert hard.item() == pytest.approx(math.log(2), abs=1e-6)
    total, _, hard = kd_loss(logits, teacher, torch.tensor([-100, -100]), 1.0, 0.5)
    assert hard.item() == 0 and torch.isfinite(total)


def test_hidden_and_attention_mse_by_hand():
    student = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 0]])  # the second position is padding
    assert hidden_mse(student, teacher, mask).item() == pytest.approx((1 + 4) / 2)
    double = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        double.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert hidden_mse(student, torch.zeros(1, 2, 3), mask, double).item() == pytest.approx((4 + 16) / 3)
    assert hidden_mse(student, teacher, torch.zeros(1, 2)).item() == 0
    attention = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])
    assert attention_mse(attention, torch.zeros_like(attention), mask).item() == pytest.approx(0.25)


def test_augmentation_copies_only_texts_long_enough():
    texts, pairs = ["great", "a dull and lifeless film", "fine film"], ["ok", "yes", "a b c"]
    copies, _ = augment_rows(texts, None, copies=2, prob=0.3, seed=0, mask_token="[MASK]", min_words=3)
    assert len(copies) == 2 and all(len(copy.split()) <= 5 for copy in copies)
    assert copies == augment_rows(texts[1:2], None, 2, 0.3, 0, "[MASK]")[0]  # deterministic, same draws
    with_pairs, copied_pairs = augment_rows(texts, pairs, copies=1, prob=0.3, seed=0, mask_token=None, min_words=3)
    assert len(with_pairs) == len(copied_pairs) == 2  # text and pair words counted together: "fine film" + "a b c"
    assert len(augment_rows(texts, None, copies=1, prob=0.3, seed=0, mask_token=None)[0]) == 3  # default: all
    with pytest.raises(UserError, match="augment.min_words must be >= 0"):
        AugmentSettings(min_words=-1)




def test_label_smoothing_applies_to_the_gold_labels_only():
    student, teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, -100])
    _, soft, hard = kd_loss(student, teacher, labels, 2.0, 0.5, label_smoothing=0.2)
    _, soft_plain, _ = kd_loss(student, teacher, labels, 2.0, 0.5)
    p = torch.log_softmax(student[0], -1)
    assert hard.item() == pytest.approx(-(0.9 * p[0] + 0.1 * p[1]).item(), abs=1e-6)  # 0.2 spread over 2 labels
    assert soft.item() == pytest.approx(soft_plain.item())
