"""Label smoothing: the Trainer's loss is the smoothed cross-entropy; the setting is checked and refused elsewhere."""

from __future__ import annotations

import pytest
import torch

from pipelines.config import TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import training_arguments


def test_training_loss_is_the_smoothed_cross_entropy(tiny_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.sampling import LengthGroupedTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    batch = dict(tokenizer(["a fine film", "dull", "not good at all , sadly"], padding=True, return_tensors="pt"))
    labels = torch.tensor([2, 0, 0])
    with torch.no_grad():
        logits = model(**batch).logits
    plain = torch.nn.functional.cross_entropy(logits, labels)
    smoothed = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    assert not torch.isclose(plain, smoothed)

    for smoothing, expected in ((0.0, plain), (0.2, smoothed)):
        settings = TrainSettings(label_smoothing=smoothing, eval_strategy="no")
        args = training_arguments(settings, tmp_path / str(smoothing))
        trainer = LengthGroupedTrainer(model=model, args=args)
        with torch.no_grad():
            loss = trainer.compute_loss(model, {**batch, "labels": labels})
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_smoothing_is_checked_and_refused_where_it_does_not_apply():
    from distill.config import DistillConfig

    for bad in (-0.1, 1.0):
        with pytest.raises(UserError, match=f"train.label_smoothing must lie in \\[0, 1\\), got {bad}"):
            TrainSettings(label_smoothing=bad)
    with pytest.raises(UserError, match="train.label_smoothing and train.rdrop_alpha cannot be combined"):
        TrainSettings(label_smoothing=0.1, rdrop_alpha=1.0)
    with pytest.raises(UserError, match="train.label_smoothing applies to fine-tuning only"):
        DistillConfig(train=TrainSettings(label_smoothing=0.1))
