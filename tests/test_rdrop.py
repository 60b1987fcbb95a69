"""R-Drop: the loss (cross-entropy of two dropout passes + symmetric KL), the Trainer's doubled batch, the wiring."""

from __future__ import annotations

import json

import pytest
import torch
from test_finetune import tiny_config

from pipelines.config import TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import run_finetune
from pipelines.rdrop import rdrop_loss, rdrop_step_loss


def test_rdrop_loss_is_the_mean_cross_entropy_plus_alpha_times_the_symmetric_kl():
    torch.manual_seed(0)
    first, second = torch.randn(5, 3), torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    p, q = first.softmax(-1), second.softmax(-1)
    kl_pq = (p * (p.log() - q.log())).sum(-1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(-1).mean()
    cross_entropy = (-p.log()[range(5), labels].mean() - q.log()[range(5), labels].mean()) / 2
    assert rdrop_loss(first, second, labels, 0.7).item() == pytest.approx((cross_entropy + 0.7 * (kl_pq + kl_qp) / 2)
                                                                          .item(), rel=1e-5)
    assert rdrop_loss(first, first, labels, 5.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(first, labels).item(), rel=1e-6)


def test_rdrop_step_loss_feeds_the_batch_twice_and_scores_each_half():
    from transformers.modeling_outputs import SequenceClassifierOutput

    torch.manual_seed(0)
    logits = torch.randn(6, 3)  # what the two passes of 3 rows give: rows 0-2, then rows 0-2 again

    class TwoPasses(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            assert input_ids.shape[0] == 6 and torch.equal(input_ids[:3], input_ids[3:])
            return SequenceClassifierOutput(logits=logits)

    inputs = {"input_ids": torch.arange(12).view(3, 4), "attention_mask": torch.ones(3, 4),
              "labels": torch.tensor([0, 1, 2])}
    loss, outputs = rdrop_step_loss(TwoPasses(), inputs, 0.3)
    assert loss.item() == pytest.approx(rdrop_loss(logits[:3], logits[3:], inputs["labels"], 0.3).item())
    assert torch.equal(outputs.logits, logits[:3])


@pytest.fixture
def trainer_and_batch(tiny_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from pipelines.sampling import LengthGroupedTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")

    def trainer(alpha: float) -> LengthGroupedTrainer:
        return LengthGroupedTrainer(model=model, args=args, rdrop_alpha=alpha)

    batch = dict(tokenizer(["a fine film", "dull", "not good at all , sadly"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([2, 0, 0])
    return model, trainer, batch


def test_trainer_rdrop_splits_its_doubled_batch_back_into_the_rows(trainer_and_batch):
    """Without dropout the two passes agree: the R-Drop loss is the model's own loss, row for row."""
    from pipelines.dropout import set_dropout

    model, trainer, batch = trainer_and_batch
    set_dropout(model, 0.0)
    model.train()
    expected = model(**batch)
    loss, outputs = trainer(1.0).compute_loss(model, dict(batch), return_outputs=True)
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-5)
    assert torch.allclose(outputs.logits, expected.logits, atol=1e-5)


def test_trainer_rdrop_adds_the_disagreement_of_two_dropout_masks(trainer_and_batch):
    from pipelines.dropout import set_dropout

    model, trainer, batch = trainer_and_batch
    set_dropout(model, 0.3)
    model.train()
    losses = {}
    for alpha in (0.0001, 10.0):  # the same masks (same seed): only alpha differs
        torch.manual_seed(1)
        losses[alpha] = trainer(alpha).compute_loss(model, dict(batch))
    assert losses[10.0].item() > losses[0.0001].item() + 1e-4
    losses[10.0].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()  # evaluation keeps the plain loss
    assert trainer(10.0).compute_loss(model, dict(batch)).item() == pytest.approx(model(**batch).loss.item())


def test_finetune_trains_with_rdrop_each_step_and_evaluates_plainly(tiny_bert, sentiment_files, tmp_path, monkeypatch):
    import pipelines.sampling

    calls, losses = [], []
    original = pipelines.sampling.rdrop_step_loss

    def counting(model, inputs, alpha):
        calls.append((alpha, model.training))
        loss, outputs = original(model, inputs, alpha)
        losses.append(loss.item())
        return loss, outputs

    monkeypatch.setattr(pipelines.sampling, "rdrop_step_loss", counting)
    train, evaluation = sentiment_files
    run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / "out", max_steps=4, eval_steps=2,
                             logging_steps=1, rdrop_alpha=0.5))
    assert calls == [(0.5, True)] * 4
    logged = [entry["loss"] for entry in json.loads((tmp_path / "out" / "training_log.json").read_text())
              if "loss" in entry]
    assert logged == pytest.approx(losses, rel=1e-4)  # the loss trained on is R-Drop's
    with pytest.raises(UserError, match="train.rdrop_alpha must be >= 0, got -1"):
        TrainSettings(rdrop_alpha=-1)


def test_rdrop_is_refused_without_dropout_and_in_distillation():
    from distill.config import DistillConfig
    from pipelines.config import FinetuneConfig, LoraSettings

    with pytest.raises(UserError, match="train.rdrop_alpha needs dropout"):
        FinetuneConfig(lora=LoraSettings(method="full"), train=TrainSettings(rdrop_alpha=1.0, dropout=0.0))
    FinetuneConfig(lora=LoraSettings(method="lora", dropout=0.1), train=TrainSettings(rdrop_alpha=1.0, dropout=0.0))
    with pytest.raises(UserError, match="train.rdrop_alpha applies to fine-tuning only"):
        DistillConfig(train=TrainSettings(rdrop_alpha=1.0))
