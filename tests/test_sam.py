"""Sharpness-aware minimisation: the weight move and its undoing, the Trainer's second gradient, the wiring."""

from __future__ import annotations

import pytest
import torch
from test_finetune import tiny_config

from pipelines.config import TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import run_finetune
from pipelines.sam import ADAPTIVE_ETA, ascended


def test_ascended_moves_the_weights_rho_up_the_gradient_and_puts_them_back():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[1].bias.requires_grad_(False)  # frozen weights stay where they are
    model(torch.randn(5, 4)).square().sum().backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    norm = torch.sqrt(sum(g.square().sum() for g in grads.values()))
    with ascended(model, 0.5):
        moved = {name: p.detach() - before[name] for name, p in model.named_parameters()}
        assert torch.sqrt(sum(m.square().sum() for m in moved.values())).item() == pytest.approx(0.5, rel=1e-5)
        for name, grad in grads.items():
            assert torch.allclose(moved[name], 0.5 * grad / norm, atol=1e-6)
        assert torch.equal(moved["1.bias"], torch.zeros(2))
        assert all(p.grad is None for p in model.parameters())
        model(torch.ones(1, 4)).sum().backward()  # the gradient taken up there is kept
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert model[0].weight.grad is not None


def test_adaptive_move_is_rho_long_relative_to_each_weights_size():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight[0] *= 10  # a row ten times larger moves about a hundred times further (|w|^2)
    model(torch.randn(5, 4)).square().sum().backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    scale = {name: p.abs() + ADAPTIVE_ETA for name, p in before.items()}
    scaled = {name: p.grad * scale[name] for name, p in model.named_parameters()}
    norm = torch.sqrt(sum(g.square().sum() for g in scaled.values()))
    with ascended(model, 0.5, adaptive=True):
        moved = {name: p.detach() - before[name] for name, p in model.named_parameters()}
        relative = torch.sqrt(sum((m / scale[name]).square().sum() for name, m in moved.items()))
        assert relative.item() == pytest.approx(0.5, rel=1e-5)
        for name, move in moved.items():
            assert torch.allclose(move, 0.5 * scale[name] * scaled[name] / norm, atol=1e-7)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_ascended_needs_a_gradient():
    with pytest.raises(RuntimeError, match="without gradients"), ascended(torch.nn.Linear(2, 2), 0.1):
        pass


def test_trainer_step_updates_with_the_gradient_at_the_moved_weights(tiny_classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from pipelines.dropout import set_dropout
    from pipelines.sampling import LengthGroupedTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier)
    set_dropout(model, 0.0)
    batch = dict(tokenizer(["a fine film", "dull", "not good at all , sadly"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([2, 0, 0])
    params = [p for p in model.parameters() if p.requires_grad]
    weights = [p.detach().clone() for p in params]

    model.train()
    first = torch.autograd.grad(model(**batch).loss, params)
    norm = torch.sqrt(sum(g.square().sum() for g in first))
    with torch.no_grad():
        for p, g in zip(params, first, strict=True):
            p.add_(0.2 * g / norm)
    expected = torch.autograd.grad(model(**batch).loss, params)
    with torch.no_grad():
        for p, w in zip(params, weights, strict=True):
            p.copy_(w)
    plain_loss = model(**batch).loss.item()

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = LengthGroupedTrainer(model=model, args=args, sam_rho=0.2)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    loss = trainer.training_step(model, dict(batch))
    assert loss.item() == pytest.approx(plain_loss, rel=1e-5)  # the loss reported is the one at w
    assert all(torch.equal(p, w) for p, w in zip(params, weights, strict=True))  # the weights are back
    assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(params, expected, strict=True))
    assert not all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(params, first, strict=True))


def test_finetune_takes_a_sharpness_aware_step_each_step(tiny_bert, sentiment_files, tmp_path, monkeypatch):
    import pipelines.sampling

    rhos = []
    original = pipelines.sampling.ascended

    def counting(model, rho, adaptive):
        rhos.append((rho, adaptive))
        return original(model, rho, adaptive)

    monkeypatch.setattr(pipelines.sampling, "ascended", counting)
    train, evaluation = sentiment_files
    run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / "out", max_steps=3, eval_steps=3, sam_rho=0.05))
    assert rhos == [(0.05, False)] * 3
    rhos.clear()
    run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / "asam", max_steps=2, eval_steps=2, sam_rho=0.5,
                             sam_adaptive=True))
    assert rhos == [(0.5, True)] * 2


def test_sam_rho_is_checked_and_refused_in_distillation():
    from distill.config import DistillConfig

    with pytest.raises(UserError, match="train.sam_rho must be >= 0, got -0.1"):
        TrainSettings(sam_rho=-0.1)
    with pytest.raises(UserError, match="train.sam_adaptive needs train.sam_rho > 0"):
        TrainSettings(sam_adaptive=True)
    with pytest.raises(UserError, match="train.sam_rho applies to fine-tuning only"):
        DistillConfig(train=TrainSettings(sam_rho=0.05))
